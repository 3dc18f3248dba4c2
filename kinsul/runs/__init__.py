"""What every training job shares, VLM pretraining and VLA training alike: run assembly from a config
(`assembly`), which pretrained VLM a config names and where it lives (`pretrained`), checkpoints
(`checkpoints`), the learning-rate schedule (`schedule`)."""
