"""The model a run trains: the LightningModule, its networks, optimiser, metrics and batch
augmentation."""
