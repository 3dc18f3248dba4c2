"""VLA training: the LightningModule (`module`), the DataModule and its mixed robot/VLM batch stream
(`datamodule`), the steps-to-target callback (`callbacks`), `kinsul train` (`train`). VLM pretraining is
`kinsul.pretraining`; what both share is `kinsul.runs`."""
