"""Third-party simulators behind KinsulWorld's gymnasium contract: observations {image, state, instruction}, an
``is_success`` flag in ``info``, registered environment ids. Each is an optional extra."""
