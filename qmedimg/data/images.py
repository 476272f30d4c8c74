"""Image files as a run's input: PNG/JPEG/DICOM in, uint8 (channels, size, size) out, and the
tensor scaling every model of qmedimg sees (MedMNIST's ``Normalize(0.5, 0.5)``).

Example::

    from qmedimg.data.images import read_image, list_images, to_tensor
    files = list_images(["scan.dcm", "images/"])
    x = to_tensor(np.stack([read_image(f, channels=1, size=28) for f in files]))   # (N, 1, 28, 28) in [-1, 1]

DICOM: the modality LUT (rescale slope and intercept) and the VOI LUT / window are applied,
MONOCHROME1 is inverted, then min-max to 8 bits. Colour images for a grayscale run are refused;
a gray image stored as RGB is accepted; images are resized bicubically (as MedMNIST's own resizing).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from qmedimg.errors import QmedimgError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom"}


class ImageError(QmedimgError):
    """A file that cannot be turned into the run's input (reported, the batch goes on)."""


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom"):
        return True
    with open(path, "rb") as handle:
        head = handle.read(132)
    return head[128:132] == b"DICM"


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise ImageError(f"{path}: not a readable DICOM file ({type(exc).__name__})") from None
    if "PixelData" not in ds:
        raise ImageError(f"{path}: DICOM without pixel data (a report or structured document?)")
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise ImageError(f"{path}: multi-frame DICOM ({ds.NumberOfFrames} frames) is not supported; export one frame")
    try:
        pixels = ds.pixel_array
    except Exception as exc:
        raise ImageError(f"{path}: DICOM pixel data cannot be decoded ({str(exc).splitlines()[0][:120]})") from None
    if pixels.ndim == 3 and pixels.shape[-1] == 3:  # colour DICOM
        return pixels.astype(np.uint8)
    values = apply_voi_lut(apply_modality_lut(pixels, ds), ds).astype(np.float64)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        values = values.max() - values
    low, high = values.min(), values.max()
    return np.round(255 * (values - low) / (high - low if high > low else 1)).astype(np.uint8)


def read_image(path: str | Path, channels: int, size: int) -> np.ndarray:
    """An image file as the run's input: uint8 (channels, size, size)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if _is_dicom(path):
        array = _read_dicom(path)
    else:
        try:
            with Image.open(path) as image:
                image.load()
                array = np.asarray(image.convert("RGB") if image.mode in ("P", "CMYK", "YCbCr") else
                                   image.convert("L") if image.mode in ("LA", "I", "I;16", "F", "1") else
                                   image.convert("RGB") if image.mode == "RGBA" else image)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{path}: not a readable PNG/JPEG/DICOM image ({type(exc).__name__})") from None
    if array.ndim == 3 and channels == 1:
        if not (np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2])):
            raise ImageError(f"{path}: a colour image, but the run was trained on 1-channel (grayscale) images")
        array = array[..., 0]
    if array.ndim == 2 and channels == 3:
        raise ImageError(f"{path}: a grayscale image, but the run was trained on 3-channel (RGB) images")
    image = Image.fromarray(np.ascontiguousarray(array.astype(np.uint8)))
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    array = np.array(image)
    return array[None] if array.ndim == 2 else np.ascontiguousarray(array.transpose(2, 0, 1))


def list_images(inputs: list[str | Path]) -> list[Path]:
    """Files given, and the files inside folders given (sorted; hidden files skipped)."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif item.exists():
            files.append(item)
        else:
            raise QmedimgError(f"{item}: no such file or folder")
    return files


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 normalised to [-1, 1] (MedMNIST's Normalize(0.5, 0.5))."""
    return torch.from_numpy(images).float().div_(127.5).sub_(1.0)
