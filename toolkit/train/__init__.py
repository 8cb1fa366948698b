"""Conflict-aware supernet training: samplers, losses, data, trainer, conflict analysis."""

from toolkit.train.config import TrainConfig
from toolkit.train.trainer import train

__all__ = ["TrainConfig", "train"]
