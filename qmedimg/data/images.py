"""Image files as a run's input: PNG/JPEG/TIFF/DICOM in, uint8 (channels, size, size) out, and the
tensor scaling every model of qmedimg sees (MedMNIST's ``Normalize(0.5, 0.5)``).

Example::

    from qmedimg.data.images import read_image, list_images, to_tensor
    files = list_images(["scan.dcm", "images/"])
    x = to_tensor(np.stack([read_image(f, channels=1, size=28) for f in files]))   # (N, 1, 28, 28) in [-1, 1]

DICOM: the modality LUT (rescale slope and intercept) and the VOI LUT / window are applied,
MONOCHROME1 is inverted, then min-max to 8 bits. Colour images for a grayscale run are refused;
a gray image stored as RGB is accepted; images are resized bicubically (as MedMNIST's own resizing).

Bit depth (PNG, TIFF, JPEG): the model was trained on MedMNIST's 8-bit images, so every image is
brought to 8 bits by one rule, never clipped: an integer image is scaled by its storage depth,
``round(value * 255 / (2**bits - 1))`` — a 16-bit image by 255/65535, so a 16-bit export of an 8-bit
image (value × 257, PNG's own 8→16 scaling) gives back exactly the 8-bit values. A 16-bit gray image
whose values all lie in 0..4095 is 12-bit data in a 16-bit container and is scaled by 255/4095,
unless every value is a multiple of 257 (an 8-bit image stored as 16 bits). A float image ("F",
float TIFF) with values in [0, 1] is scaled by 255; any other float image, and an integer image with
negative values or more than 16 bits, is min-max scaled to 0..255 (as DICOM). 16-bit colour images
keep their high byte (Pillow's reading: exact for value × 257 exports, within one level otherwise).

Size: an image of more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (Pillow's decompression-bomb
limit, ~89 million) is not decoded in full: a JPEG is decoded at a reduced scale (``Image.draft``,
down to 1/8 per side) when that brings it under the limit; any other is refused with an
:class:`ImageError` naming the file and the limit (the batch goes on).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from qmedimg.errors import QmedimgError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm", ".dicom"}


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


def to_8_bits(array: np.ndarray) -> np.ndarray:
    """A decoded image's values as uint8 by the module's bit-depth rule (see the module docstring)."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError("the image has NaN or infinite values")
    low, high = (values.min(), values.max()) if values.size else (0.0, 0.0)
    if np.issubdtype(array.dtype, np.floating):
        scale = 1.0 if low >= 0 and high <= 1 else None
    elif low >= 0 and high <= 65535:
        whole = array.astype(np.int64)
        scale = 4095 if high <= 4095 and np.any(whole % 257) else 65535
    else:
        scale = None
    if scale is None:  # outside any storage range: min-max, as DICOM
        return np.round(255 * (values - low) / (high - low if high > low else 1)).astype(np.uint8)
    return np.round(values * (255 / scale)).astype(np.uint8)


def _open_bounded(path: Path, size: int):
    """The image opened lazily, a large JPEG drafted to a reduced scale, anything still larger than
    ``Image.MAX_IMAGE_PIXELS`` refused (before its pixels are decoded)."""
    import warnings

    from PIL import Image, JpegImagePlugin

    limit = Image.MAX_IMAGE_PIXELS
    with open(path, "rb") as handle:
        is_jpeg = handle.read(3) == b"\xff\xd8\xff"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            # a JPEG is opened without Pillow's bomb check, which runs on the full size before any draft
            image = JpegImagePlugin.JpegImageFile(path) if is_jpeg else Image.open(path)
        except Image.DecompressionBombError as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            pixels = f"{int(found[1]):,} pixels" if found else f"more than {2 * limit:,} pixels"
            raise ImageError(f"{path}: too large to read ({pixels}; qmedimg reads images of at most {limit:,} "
                             "pixels, PIL.Image.MAX_IMAGE_PIXELS); downscale it first") from None
    if limit and image.width * image.height > limit:
        if is_jpeg:
            image.draft("RGB" if image.mode != "L" else "L", (size, size))
        if image.width * image.height > limit:
            width, height = image.width, image.height
            image.close()
            raise ImageError(f"{path}: too large to read ({width}×{height} = {width * height:,} pixels; qmedimg reads "
                             f"images of at most {limit:,} pixels, PIL.Image.MAX_IMAGE_PIXELS); downscale it first")
    return image


def read_image(path: str | Path, channels: int, size: int) -> np.ndarray:
    """An image file as the run's input: uint8 (channels, size, size), by the module's bit-depth rule."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        dangling = path.is_symlink() and not path.exists()
        raise ImageError(f"{path}: {'a link to nothing (dangling, or a loop of links)' if dangling else 'no such file'}")
    if _is_dicom(path):
        array = _read_dicom(path)
    else:
        try:
            with _open_bounded(path, size) as image:
                image.load()
                if image.mode in ("P", "PA", "CMYK", "YCbCr", "RGBA", "RGBa", "LAB", "HSV"):
                    image = image.convert("RGB")
                elif image.mode in ("LA", "La"):
                    image = image.convert("L")
                array = to_8_bits(np.asarray(image))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{path}: not a readable PNG/JPEG/TIFF/DICOM image ({type(exc).__name__})") from None
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
    """Files given, and the files inside folders given (sorted; hidden files skipped). A link in a folder
    that leads nowhere (dangling, or a loop) is listed too, so it is reported and skipped, not silently lost."""
    files = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if not p.name.startswith(".") and (
                p.is_file() or (p.is_symlink() and not p.exists())))
        elif item.exists():
            files.append(item)
        else:
            raise QmedimgError(f"{item}: no such file or folder")
    return files


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 normalised to [-1, 1] (MedMNIST's Normalize(0.5, 0.5))."""
    return torch.from_numpy(images).float().div_(127.5).sub_(1.0)
