"""Datasets: a registry of sources that all come out as uint8 ImageSplits."""
from .base import DatasetSpec, ImageSplits
from .folder import ArchiveSummary, load_folder, validate_archive
from .registry import DATASETS, class_counts, dataset_rows, load_dataset, load_plan_data, register, sample_grid
from . import pairs, shifted  # noqa: E402,F401  (each registers its own datasets: two-label pairs, digits on photos)

__all__ = ["ArchiveSummary", "DATASETS", "DatasetSpec", "ImageSplits", "class_counts", "dataset_rows", "load_dataset",
           "load_folder", "load_plan_data", "register", "sample_grid", "validate_archive"]
