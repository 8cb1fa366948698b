"""Data sets: ImageFolder with the release's transforms; the embedded digits."""

from toolkit.data.datasets import (
    DataError,
    Datasets,
    build_datasets,
    calibration_images,
)

__all__ = ["DataError", "Datasets", "build_datasets", "calibration_images"]
