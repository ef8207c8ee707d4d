"""Training: pretraining and SFT (one trainer), metrics, atomic run checkpoints.

`train(TrainConfig(...)) -> TrainResult` is the entry point the CLI and the R1 pipeline call.
"""

from tinyseek.train.config import TrainConfig, TrainResult
from tinyseek.train.trainer import train

__all__ = ["TrainConfig", "TrainResult", "train"]
