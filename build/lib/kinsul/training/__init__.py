"""Training: VLM pretraining of the shipped tiny VLM (vision stage, question stream, `kinsul pretrain`) and VLA
training (the LightningModule, DataModule, checkpoint callbacks, `kinsul train`)."""
