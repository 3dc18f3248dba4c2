"""What every training job shares, VLM pretraining and VLA training alike: run assembly from a config
(`assembly`), checkpoints (`checkpoints`), the learning-rate schedule (`schedule`)."""
