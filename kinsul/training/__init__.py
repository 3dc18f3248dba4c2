"""Training: VLM pretraining now; the VLA LightningModule and strategies next."""
