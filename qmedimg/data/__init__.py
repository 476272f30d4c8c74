"""Data: MedMNIST datasets and npz files (:mod:`~qmedimg.data.datasets`), image files as model input
(:mod:`~qmedimg.data.images`)."""

from qmedimg.data.datasets import Dataset, Split, load_dataset, parse_classes, write_synthetic_npz
from qmedimg.data.images import ImageError, list_images, read_image, to_tensor

__all__ = ["Dataset", "Split", "load_dataset", "parse_classes", "write_synthetic_npz", "ImageError",
           "list_images", "read_image", "to_tensor"]
