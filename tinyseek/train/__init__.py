"""Training: pretraining and SFT (one trainer), metrics, atomic run checkpoints."""
