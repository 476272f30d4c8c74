"""Data: MedMNIST datasets and npz files, 2D and 3D (:mod:`~qmedimg.data.datasets`; npz files read safely and
identified by :mod:`~qmedimg.data.npz`), image files and
volume files as model input (:mod:`~qmedimg.data.images`, :mod:`~qmedimg.data.volumes`), generated data
(:mod:`~qmedimg.data.synthetic`)."""

from qmedimg.data.datasets import MULTI_LABEL, Dataset, Split, load_dataset, parse_classes, write_synthetic_npz
from qmedimg.data.images import ImageError, list_images, read_image, to_tensor

__all__ = ["MULTI_LABEL", "Dataset", "Split", "load_dataset", "parse_classes", "write_synthetic_npz", "ImageError",
           "list_images", "read_image", "to_tensor"]
