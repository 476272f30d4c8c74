"""Volumes (3D images) as a run's input: ``.npy``/``.npz`` arrays and NIfTI ``.nii``/``.nii.gz`` files in,
uint8 (1, size, size, size) out, as MedMNIST's 3D sets hold them.

Example::

    from qmedimg.data.volumes import read_volume
    volume = read_volume("scan.nii.gz", size=28)          # uint8 (1, 28, 28, 28)
    volume = read_volume("crop.npy", size=64)             # any (D, H, W), resized trilinearly to 64³

Axes: a ``.npy``/``.npz`` array is read as stored, (D, H, W) with slices first, like MedMNIST's npz files
(singleton axes are dropped: (1, D, H, W) and (D, H, W, 1) are volumes too). A NIfTI file is first
brought to the closest canonical (RAS+) orientation with nibabel, so files from different scanners agree,
and its voxel array (x, y, z) is read as (z, y, x): axial slices first. MedMNIST's own npz files do not
record an orientation; a run trained on them expects volumes laid out as they are.

Values: brought to 0..255 by the rule of :func:`qmedimg.data.images.to_8_bits` (the one 2D images
follow): uint8 kept; an integer volume within 0..65535 scaled by its storage depth (12-bit data in a
16-bit container by 255/4095); a float volume in [0, 1] by 255; anything else — CT in Hounsfield units
(negative values), MRI intensities, a NIfTI with a scaling slope — min-max over the volume, the way
MedMNIST's 3D volumes span 0..255. NIfTI scaling (``scl_slope``/``scl_inter``) is applied first.
Then a trilinear resize (``torch.nn.functional.interpolate``, ``align_corners=False``) to size³, rounded.
"""

from __future__ import annotations

from pathlib import Path
import numpy as np

from qmedimg.data.images import IMAGE_SUFFIXES, ImageError, to_8_bits

VOLUME_SUFFIXES = (".npy", ".npz", ".nii", ".nii.gz")
MAX_VOXELS = 2**28  # ~645³: larger volumes are refused before their values are read


def is_volume_file(path: str | Path) -> bool:
    """Whether ``path``'s name says it holds a volume (.npy, .npz, .nii, .nii.gz)."""
    return str(path).lower().endswith(VOLUME_SUFFIXES)


def load_volume_array(path: str | Path) -> np.ndarray:
    """The array a volume file holds, singleton axes dropped (NIfTI: canonical orientation, slices first),
    any shape; :class:`ImageError` naming the file if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        array = _read_nifti(path)
    elif name.endswith(".npy"):
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as exc:
            raise ImageError(f"{path}: not a readable .npy array ({type(exc).__name__})") from None
    elif name.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as npz:
                if len(npz.files) != 1:
                    raise ImageError(f"{path}: holds {len(npz.files)} arrays ({', '.join(npz.files[:6])}); a volume "
                                     ".npz holds exactly one (D, H, W) array")
                array = npz[npz.files[0]]
        except ImageError:
            raise
        except Exception as exc:
            raise ImageError(f"{path}: not a readable .npz archive ({type(exc).__name__})") from None
    else:
        raise ImageError(f"{path}: not a volume file; volumes are read from {', '.join(VOLUME_SUFFIXES)}")
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "biuf":
        raise ImageError(f"{path}: holds {getattr(array, 'dtype', type(array).__name__)} values; a volume holds numbers")
    if array.size > MAX_VOXELS:
        raise ImageError(f"{path}: {array.size:,} voxels {tuple(array.shape)}; qmedimg reads volumes of at most "
                         f"{MAX_VOXELS:,} voxels: crop or downsample it first")
    return np.squeeze(array)


def read_volume(path: str | Path, size: int) -> np.ndarray:
    """A volume file as the run's input: uint8 (1, size, size, size) (module docstring: axes, values, resize).
    A 2D image, a file that is not a volume, or an array of another dimensionality: :class:`ImageError`."""
    import torch
    import torch.nn.functional as F

    path = Path(path)
    if not is_volume_file(path):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            raise ImageError(f"{path}: a 2D image, but the run was trained on volumes (D, H, W); give "
                             f"{', '.join(VOLUME_SUFFIXES)} files")
        raise ImageError(f"{path}: not a volume file; a run trained on volumes reads {', '.join(VOLUME_SUFFIXES)}")
    array = load_volume_array(path)
    if array.ndim == 2:
        raise ImageError(f"{path}: holds a 2D image {tuple(array.shape)}, but the run was trained on volumes (D, H, W)")
    if array.ndim != 3:
        raise ImageError(f"{path}: holds a {array.ndim}-D array {tuple(array.shape)}; expected one volume (D, H, W)")
    try:
        array = to_8_bits(np.asarray(array))
    except ValueError as exc:
        raise ImageError(f"{path}: {exc}") from None
    if array.shape != (size,) * 3:
        voxels = torch.from_numpy(np.array(array, dtype=np.float32))[None, None]
        voxels = F.interpolate(voxels, size=(size,) * 3, mode="trilinear", align_corners=False)
        array = voxels[0, 0].round().clamp(0, 255).to(torch.uint8).numpy()
    return np.ascontiguousarray(array)[None]


def _read_nifti(path: Path) -> np.ndarray:
    try:
        import nibabel
    except ImportError:
        raise ImageError(f"{path}: reading NIfTI needs nibabel; run: pip install nibabel") from None
    try:
        image = nibabel.as_closest_canonical(nibabel.load(path))
        if int(np.prod(image.shape)) > MAX_VOXELS:
            raise ImageError(f"{path}: {int(np.prod(image.shape)):,} voxels {tuple(image.shape)}; qmedimg reads "
                             f"volumes of at most {MAX_VOXELS:,} voxels: crop or downsample it first")
        array = np.asarray(image.dataobj)  # scl_slope/scl_inter applied; native dtype when there are none
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"{path}: not a readable NIfTI file ({type(exc).__name__})") from None
    array = array.reshape(array.shape[:3] + tuple(n for n in array.shape[3:] if n != 1))  # (x, y, z, 1) -> 3D
    return array.transpose(2, 1, 0, *range(3, array.ndim)) if array.ndim >= 3 else array
