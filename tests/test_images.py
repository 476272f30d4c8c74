"""Image files at their true depth and size: 16-bit, 12-bit and float exports of a run's test split
give the predictions of its 8-bit images, and a huge image is refused alone, the batch going on."""

import struct
import zlib

import numpy as np
import pytest
import tifffile  # a dependency of medmnist (through scikit-image)
from PIL import Image

from qmedimg.data import read_image
from qmedimg.model import predict_probs
from qmedimg.rundir import load_run
from qmedimg.workflows.predict import predict

N = 20


def write_png(path, array: np.ndarray, bits: int = 16):
    """A PNG written by hand (Pillow cannot write 16-bit RGB): gray (H, W) or RGB (H, W, 3), rows
    compressed one at a time so a huge constant image costs little memory."""
    height, width = array.shape[:2]
    colour_type = 2 if array.ndim == 3 else 0
    packer = zlib.compressobj(9)
    dtype = ">u2" if bits == 16 else "u1"
    data = b"".join(packer.compress(b"\x00" + np.ascontiguousarray(row).astype(dtype).tobytes()) for row in array)
    data += packer.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bits, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))
    return path


def save(kind: str, path, image: np.ndarray):
    """The 8-bit gray ``image`` exported as ``kind`` (the way other software writes deeper images)."""
    wide = image.astype(np.uint16) * 257  # PNG's own 8 -> 16 bit scaling
    if kind == "png16":
        Image.fromarray(wide).save(path.with_suffix(".png"))  # mode I;16
    elif kind == "tiff16":
        Image.fromarray(wide).save(path.with_suffix(".tif"))
    elif kind == "png16-rgb":
        write_png(path.with_suffix(".png"), np.stack([wide] * 3, axis=-1))
    elif kind == "tiff16-rgb":
        tifffile.imwrite(path.with_suffix(".tif"), np.stack([wide] * 3, axis=-1), photometric="rgb")
    elif kind == "tiff-float":
        Image.fromarray((image / 255).astype(np.float32)).save(path.with_suffix(".tif"))  # mode F, in [0, 1]
    elif kind == "png12":
        write_png(path.with_suffix(".png"), np.round(image * (4095 / 255)).astype(np.uint16))
    else:
        Image.fromarray(image).save(path.with_suffix(".png"))


@pytest.fixture(scope="module")
def test_split(tiny_run):
    return load_run(tiny_run).dataset.test.images[:N]


@pytest.fixture(scope="module")
def predictions_8_bit(tiny_run, test_split, tmp_path_factory):
    folder = tmp_path_factory.mktemp("png8")
    for i, image in enumerate(test_split):
        save("png8", folder / f"case{i:03d}", image[0])
    return predict(tiny_run, [folder])


@pytest.mark.parametrize("kind", ["png16", "tiff16", "png16-rgb", "tiff16-rgb", "tiff-float", "png12"])
def test_deep_exports_of_the_test_split_give_the_same_predictions_as_evaluate(
        kind, tiny_run, test_split, predictions_8_bit, tmp_path):
    for i, image in enumerate(test_split):
        save(kind, tmp_path / f"case{i:03d}", image[0])
        assert np.array_equal(read_image(next(tmp_path.glob(f"case{i:03d}.*")), 1, 28), image), (kind, i)
    run = load_run(tiny_run)
    names = list(run.dataset.label_names)
    expected = predict_probs(run.model, test_split).argmax(1)
    result = predict(tiny_run, [tmp_path])
    assert result["errors"] == []
    assert [r["class"] for r in result["rows"]] == [names[k] for k in expected]
    assert [r["probabilities"] for r in result["rows"]] == [r["probabilities"] for r in predictions_8_bit["rows"]]


def test_a_16_bit_colour_image_keeps_its_colours_at_8_bits(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint16)
    write_png(tmp_path / "colour.png", rgb * 257)
    tifffile.imwrite(tmp_path / "colour.tif", rgb * 257, photometric="rgb")
    for name in ("colour.png", "colour.tif"):
        assert np.array_equal(read_image(tmp_path / name, 3, 28), rgb.transpose(2, 0, 1)), name


def test_16_bit_values_are_scaled_by_the_storage_depth_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 28 * 28).round().astype(np.uint16).reshape(28, 28)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    read = read_image(tmp_path / "ramp.png", 1, 28)[0]
    assert np.array_equal(read, np.round(ramp * (255 / 65535)).astype(np.uint8))
    assert read.min() == 0 and read.max() == 255 and len(np.unique(read)) == 256


def test_12_bit_data_in_a_16_bit_container_is_scaled_by_4095(tmp_path):
    stored = np.linspace(0, 4095, 28 * 28).round().astype(np.uint16).reshape(28, 28)
    write_png(tmp_path / "twelve.png", stored)
    Image.fromarray(stored).save(tmp_path / "twelve.tif")
    for name in ("twelve.png", "twelve.tif"):
        read = read_image(tmp_path / name, 1, 28)[0]
        assert np.array_equal(read, np.round(stored * (255 / 4095)).astype(np.uint8)), name


def test_a_dark_8_bit_image_stored_as_16_bits_is_not_taken_for_12_bit_data(tmp_path):
    dark = np.arange(28 * 28).reshape(28, 28) % 16  # 8-bit values 0..15: as 16 bits, all <= 4095
    Image.fromarray(dark.astype(np.uint16) * 257).save(tmp_path / "dark.png")
    assert np.array_equal(read_image(tmp_path / "dark.png", 1, 28)[0], dark)


def test_float_images_in_0_1_are_scaled_by_255_and_others_min_max(tmp_path):
    unit = np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(28, 28) * 0.5  # 0..0.5: scaled, not stretched
    Image.fromarray(unit).save(tmp_path / "unit.tif")
    assert np.array_equal(read_image(tmp_path / "unit.tif", 1, 28)[0], np.round(unit.astype(np.float64) * 255).astype(np.uint8))
    hounsfield = np.linspace(-1000, 3000, 28 * 28, dtype=np.float32).reshape(28, 28)
    Image.fromarray(hounsfield).save(tmp_path / "hu.tif")
    read = read_image(tmp_path / "hu.tif", 1, 28)[0]
    assert read.min() == 0 and read.max() == 255 and len(np.unique(read)) == 256


def test_a_huge_png_is_refused_in_one_line_and_the_other_files_are_predicted(tiny_run, test_split, tmp_path):
    for i, image in enumerate(test_split[:3]):
        save("png8", tmp_path / f"case{i:03d}", image[0])
    write_png(tmp_path / "huge.png", np.zeros((15000, 15000), dtype=np.uint8), bits=8)  # 225 M pixels, 220 kB
    result = predict(tiny_run, [tmp_path])
    assert [r["file"].rsplit("/", 1)[-1] for r in result["rows"]] == ["case000.png", "case001.png", "case002.png"]
    assert len(result["errors"]) == 1 and "\n" not in result["errors"][0]
    assert "huge.png: too large to read (225,000,000 pixels" in result["errors"][0]
    assert f"at most {Image.MAX_IMAGE_PIXELS:,} pixels" in result["errors"][0]


def test_images_over_the_pixel_limit_are_refused_and_large_jpegs_are_read_reduced(
        tiny_run, test_split, tmp_path, monkeypatch, recwarn):
    save("png8", tmp_path / "case000", test_split[0][0])  # 784 pixels
    Image.fromarray(np.full((60, 60), 128, np.uint8)).save(tmp_path / "over.png")  # 3,600: over 2,000, warned
    Image.fromarray(np.full((100, 100), 128, np.uint8)).save(tmp_path / "bomb.png")  # 10,000: Pillow's error
    Image.fromarray(np.full((224, 224), 128, np.uint8)).save(tmp_path / "big.jpg")  # 50,176, drafted to 28x28
    Image.fromarray(np.full((200, 200), 128, np.uint8)).save(tmp_path / "bigger.jpg")  # drafted to 50x50: over
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    result = predict(tiny_run, [tmp_path])
    assert sorted(r["file"].rsplit("/", 1)[-1] for r in result["rows"]) == ["big.jpg", "case000.png"]
    errors = sorted(result["errors"])
    assert len(errors) == 3 and all("\n" not in e for e in errors)
    assert "bigger.jpg: too large to read (50×50 = 2,500 pixels; qmedimg reads images of at most 2,000" in errors[0]
    assert "bomb.png: too large to read (10,000 pixels; qmedimg reads images of at most 2,000" in errors[1]
    assert "over.png: too large to read (60×60 = 3,600 pixels; qmedimg reads images of at most 2,000" in errors[2]
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]
    assert np.array_equal(read_image(tmp_path / "big.jpg", 1, 28)[0], np.full((28, 28), 128, np.uint8))
