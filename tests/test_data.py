"""qmedimg.data as a user meets it: load MedMNIST, your own npz, or synthetic data; get clear errors."""

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from qmedimg.data import datasets as data
from qmedimg.data import load_dataset, parse_classes, write_synthetic_npz
from qmedimg.errors import QmedimgError

BREAST_MD5 = "750601b1f35ba3300ea97c75c52ff8f6"  # medmnist.INFO["breastmnist"]["MD5"]
BREAST_MD5_64 = "742edef2a1fd1524b2efff4bd7ba9364"  # medmnist.INFO["breastmnist"]["MD5_64"]


def error_message(*args, **kwargs) -> str:
    """Call load_dataset expecting a QmedimgError; return its (single-line) message."""
    with pytest.raises(QmedimgError) as caught:
        load_dataset(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def make_arrays(counts=(6, 4, 4), size=8, num_classes=2, rgb=False, seed=0) -> dict:
    """MedMNIST-layout arrays; pixel (0, 0) of each image holds its index in the split."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(("train", "val", "test"), counts):
        images = rng.integers(0, 256, (n, size, size, 3) if rgb else (n, size, size), dtype=np.uint8)
        images[:, 0, 0] = np.arange(n)[:, None] if rgb else np.arange(n)
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = (np.arange(n) % num_classes).astype(np.uint8)[:, None]
    return arrays


def save(path, arrays):
    np.savez(path, **arrays)
    return path


# --- loading ---------------------------------------------------------------------------------


def test_breastmnist_flag_loads_from_data_root(breastmnist_file):
    """The flag path on a MedMNIST file in --data-root: the generated stand-in everywhere, the real
    file when it is there (``breastmnist_file`` never lets a download happen)."""
    ds = load_dataset("breastmnist", data_root=breastmnist_file.parent)

    assert (ds.name, ds.task, ds.num_classes, ds.channels, ds.size) == ("breastmnist", "binary-class", 2, 1, 28)
    assert ds.label_names == ("malignant", "normal, benign")
    assert [len(s.labels) for s in (ds.train, ds.val, ds.test)] == [546, 78, 156]
    assert ds.train.images.shape == (546, 1, 28, 28) and ds.train.images.dtype == np.uint8
    assert ds.test.labels.shape == (156,) and ds.test.labels.dtype == np.int64
    raw = np.load(breastmnist_file)
    assert np.array_equal(ds.val.images[:, 0], raw["val_images"])
    assert np.array_equal(ds.val.labels, raw["val_labels"].ravel())
    assert Path(ds.source).resolve() == breastmnist_file.resolve()
    assert ds.sha256 == hashlib.sha256(breastmnist_file.read_bytes()).hexdigest()

    info = json.loads(json.dumps(ds.info()))
    assert info["splits"] == {"train": 546, "val": 78, "test": 156}
    assert info["class_counts"]["train"] == np.bincount(raw["train_labels"].ravel()).tolist()
    assert sum(info["class_counts"]["train"]) == 546 and min(info["class_counts"]["train"]) > 0
    assert load_dataset("BreastMNIST", data_root=breastmnist_file.parent).name == "breastmnist"


def test_breastmnist_classes_can_be_swapped(breastmnist_file):
    plain = load_dataset("breastmnist", data_root=breastmnist_file.parent)
    swapped = load_dataset("breastmnist", data_root=breastmnist_file.parent, classes=[1, 0])
    assert swapped.label_names == ("normal, benign", "malignant")
    assert np.array_equal(swapped.train.images, plain.train.images)
    assert np.array_equal(swapped.train.labels, 1 - plain.train.labels)
    assert swapped.info()["class_counts"]["test"] == plain.info()["class_counts"]["test"][::-1]


def test_missing_medmnist_file_names_path_url_and_md5(tmp_path, monkeypatch):
    attempts = []
    monkeypatch.setattr(data, "_download", lambda *args: attempts.append(args) or False)  # offline
    message = error_message("breastmnist", data_root=tmp_path)
    assert str(tmp_path / "breastmnist.npz") in message
    assert "--data-root DIR" in message and BREAST_MD5 in message
    assert "https://zenodo.org/records/10519652/files/breastmnist.npz" in message
    message = error_message("breastmnist", data_root=tmp_path, size=64)
    assert str(tmp_path / "breastmnist_64.npz") in message and BREAST_MD5_64 in message
    assert [a[0] for a in attempts] == ["BreastMNIST", "BreastMNIST"] and attempts[1][2] == 64


def test_missing_medmnist_file_is_downloaded_then_loaded(tmp_path, monkeypatch, tiny_npz):
    def fake_download(python_class, root, size, path):
        root.mkdir(parents=True)
        path.write_bytes(tiny_npz.read_bytes())
        return True

    monkeypatch.setattr(data, "_download", fake_download)
    ds = load_dataset("breastmnist", data_root=tmp_path / "root")
    assert ds.source == str(tmp_path / "root" / "breastmnist.npz")
    assert ds.label_names == ("malignant", "normal, benign") and len(ds.train.labels) == 96


def test_data_file_loads_with_its_label_names(tiny_npz):
    ds = load_dataset(data_file=tiny_npz)
    assert (ds.name, ds.task, ds.label_names) == ("tiny", "binary-class", ("blob", "ring"))
    assert [len(s.labels) for s in (ds.train, ds.val, ds.test)] == [96, 32, 32]
    assert ds.train.images.shape == (96, 1, 28, 28)
    assert ds.source == str(tiny_npz) and ds.sha256 == hashlib.sha256(tiny_npz.read_bytes()).hexdigest()


def test_data_file_rgb_is_made_channel_first_and_numbered(tmp_path):
    arrays = make_arrays(counts=(9, 3, 6), num_classes=3, rgb=True)
    ds = load_dataset(data_file=save(tmp_path / "clinic.npz", arrays))
    assert (ds.channels, ds.size, ds.num_classes, ds.task) == (3, 8, 3, "multi-class")
    assert ds.label_names == ("0", "1", "2")
    assert np.array_equal(ds.train.images, arrays["train_images"].transpose(0, 3, 1, 2))
    assert np.array_equal(ds.test.labels, [0, 1, 2, 0, 1, 2])


def test_data_file_accepts_flat_labels_and_whole_number_pixels(tmp_path):
    arrays = make_arrays()
    arrays["train_labels"] = arrays["train_labels"].ravel().astype(np.int32)
    arrays["val_images"] = arrays["val_images"].astype(np.float32)
    ds = load_dataset(data_file=save(tmp_path / "own.npz", arrays))
    assert ds.train.labels.dtype == np.int64 and ds.val.images.dtype == np.uint8
    assert np.array_equal(ds.val.images[:, 0], arrays["val_images"])


def test_synthetic_is_deterministic_balanced_and_learnable():
    ds = load_dataset("synthetic")
    assert (ds.name, ds.source, ds.sha256, ds.label_names) == ("synthetic", "synthetic", "", ("blob", "ring"))
    assert ds.train.images.shape == (256, 1, 28, 28) and [len(ds.val.labels), len(ds.test.labels)] == [64, 64]
    assert ds.info()["class_counts"]["train"] == [128, 128]
    assert np.array_equal(load_dataset("synthetic").train.images, ds.train.images)
    assert not np.array_equal(load_dataset("synthetic", seed=1).train.images, ds.train.images)

    flat = lambda split: split.images.reshape(len(split.labels), -1).astype(float)  # noqa: E731
    centroids = np.stack([flat(ds.train)[ds.train.labels == k].mean(0) for k in (0, 1)])
    predicted = ((flat(ds.test)[:, None] - centroids) ** 2).sum(-1).argmin(1)
    assert (predicted == ds.test.labels).mean() > 0.9


def test_synthetic_honours_size_classes_and_limit():
    ds = load_dataset("synthetic", size=64, classes=[1, 0], limit=20)
    assert ds.train.images.shape == (20, 1, 64, 64) and len(ds.test.labels) == 20
    assert ds.label_names == ("ring", "blob")


def test_write_synthetic_npz_rgb_multiclass(tmp_path):
    path = write_synthetic_npz(tmp_path / "demo", n_train=12, n_val=4, n_test=8, size=16, channels=3, num_classes=4)
    assert path == tmp_path / "demo" and path.is_file()  # no ".npz" appended behind the caller's back
    ds = load_dataset(data_file=path)
    assert (ds.channels, ds.size, ds.task) == (3, 16, "multi-class")
    assert ds.label_names == ("blob", "ring", "horizontal bar", "vertical bar")
    assert ds.info()["class_counts"] == {"train": [3, 3, 3, 3], "val": [1, 1, 1, 1], "test": [2, 2, 2, 2]}


def test_classes_keep_and_relabel_in_given_order(tmp_path):
    path = save(tmp_path / "four.npz", make_arrays(counts=(12, 8, 8), num_classes=4))
    ds = load_dataset(data_file=path, classes=[3, 1])
    assert (ds.label_names, ds.task) == (("3", "1"), "binary-class")
    assert np.array_equal(ds.train.images[:, 0, 0, 0], [1, 3, 5, 7, 9, 11])  # indices with label 1 or 3
    assert np.array_equal(ds.train.labels, [1, 0, 1, 0, 1, 0])  # 1 -> 1, 3 -> 0
    assert load_dataset(data_file=path, classes=[0, 1, 2]).task == "multi-class"


def test_limit_is_a_seeded_subset_in_original_order(tmp_path):
    path = save(tmp_path / "big.npz", make_arrays(counts=(50, 30, 30)))
    first = load_dataset(data_file=path, limit=10)
    again = load_dataset(data_file=path, limit=10)
    other = load_dataset(data_file=path, limit=10, seed=1)
    for split in ("train", "val", "test"):
        index = getattr(first, split).images[:, 0, 0, 0]
        assert len(index) == 10 and np.all(np.diff(index.astype(int)) > 0)
        assert np.array_equal(index, getattr(again, split).images[:, 0, 0, 0])
    assert not np.array_equal(first.train.images, other.train.images)
    assert len(load_dataset(data_file=path, limit=1000).train.labels) == 50


def test_parse_classes():
    assert parse_classes("3,7") == [3, 7]
    assert parse_classes(" 0, 2 ,5") == [0, 2, 5]
    for bad in ("3,,7", "a", "", "3.5"):
        with pytest.raises(QmedimgError, match="bad classes value") as caught:
            parse_classes(bad)
        assert repr(bad) in str(caught.value)


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("args, kwargs, expected", [
    ((), {}, ["exactly one", "data_file"]),
    (("synthetic",), {"data_file": "x.npz"}, ["exactly one"]),
    (("mnist",), {}, ["'mnist'", "synthetic", "breastmnist", "pathmnist"]),
    (("organmnist3d",), {"size": 128}, ["size 128", "for 3D datasets", "28, 64"]),
    (("chestmnist",), {"size": 32}, ["size 32", "28, 64, 128, 224"]),
    (("breastmnist",), {"size": 32}, ["size 32", "28, 64, 128, 224"]),
    (("synthetic",), {"size": 30}, ["size 30", "28, 64, 128, 224"]),
    (("synthetic",), {"classes": [0, 5]}, ["class 5 does not exist", "0=blob, 1=ring"]),
    (("synthetic",), {"classes": [1, 1]}, ["[1, 1]", "at least 2 different"]),
    (("synthetic",), {"classes": [0]}, ["[0]", "at least 2"]),
    (("synthetic",), {"limit": 0}, ["limit 0", "positive"]),
    (("synthetic",), {"limit": -3}, ["limit -3", "positive"]),
])
def test_bad_arguments_are_named(args, kwargs, expected):
    message = error_message(*args, **kwargs)
    assert all(part in message for part in expected), message


def drop(key):
    return lambda a: a.pop(key)


def put(**changes):
    return lambda a: a.update(changes)


BAD_FILES = {
    "missing key": (drop("val_labels"), [
        "'val_labels'", "train_images, train_labels, val_images, val_labels, test_images, test_labels"]),
    "count mismatch": (put(train_labels=np.zeros((5, 1), np.uint8)), ["'train'", "6 images", "5 labels"]),
    "2D images": (put(test_images=np.zeros((4, 8), np.uint8)), ["test_images", "(4, 8)", "(N, H, W)"]),
    "float pixels": (put(val_images=np.full((4, 8, 8), 0.5)), ["val_images", "float64", "uint8"]),
    "pixels over 255": (put(val_images=np.full((4, 8, 8), 300, np.int16)), ["val_images", "int16", "0..255"]),
    "multi-label and single-label splits": (put(train_labels=np.zeros((6, 3), np.uint8)), [
        "splits disagree on the labels", "multi-label"]),
    "multi-label value 2": (lambda a: a.update({k: np.full((len(a[k]), 3), 2, np.uint8) for k in a
                                               if k.endswith("labels")}), ["train_labels", "must hold 0 or 1, found 2"]),
    "negative label": (put(test_labels=-np.ones((4, 1), np.int64)), ["test_labels", ">= 0"]),
    "one class": (lambda a: [a[k].fill(0) for k in a if k.endswith("labels")], ["1 class", "at least 2"]),
    "label_names too short": (put(label_names=np.array(["benign"])), ["label 1", "1 label_names"]),
    "a stray train label makes no new class": (lambda a: a["train_labels"].__setitem__(2, 7), [
        "train_labels holds label 7", "no label 2..6", "0..K-1 without gaps", "valid labels here: 0, 1"]),
    "labels with a gap make no classes in between": (lambda a: np.place(a["train_labels"], a["train_labels"] == 1, 5), [
        "train_labels holds label 5", "no label 1..4", "valid labels here: 0"]),
    "a test label outside the train split's classes": (lambda a: a["test_labels"].__setitem__(3, 2), [
        "test_labels holds label 2 (index 3)", "outside the train split's labels", "valid labels: 0, 1"]),
    "a val label outside label_names": (put(label_names=np.array(["blob", "ring"]), val_labels=np.full((4, 1), 4)),
                                        [
        "val_labels holds label 4 (index 0, 3 more outside)", "its 2 label_names", "valid labels: 0=blob, 1=ring"]),
    "label_names not strings": (put(label_names=np.array([4, 5])), ["label_names", "strings"]),
    "non-square": (lambda a: a.update({k: a[k][:, :, :6] for k in a if k.endswith("images")}), ["8x6", "square"]),
    "splits differ": (put(val_images=np.zeros((4, 10, 10), np.uint8)), ["different image shapes", "val"]),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_data_files_are_named(tmp_path, case):
    change, expected = BAD_FILES[case]
    arrays = make_arrays()
    change(arrays)
    path = save(tmp_path / "bad.npz", arrays)
    message = error_message(data_file=path)
    assert str(path) in message
    assert all(part in message for part in expected), message


def test_a_stray_label_in_a_medmnist_file_is_named_not_a_new_class(generated_breastmnist, tmp_path):
    """BreastMNIST's classes are MedMNIST's two, in every split: a label 7 is refused, not an 8-class task."""
    with np.load(generated_breastmnist) as npz:
        arrays = dict(npz)
    arrays["val_labels"][5] = 7
    save(tmp_path / "breastmnist.npz", arrays)
    message = error_message("breastmnist", data_root=tmp_path)
    assert message.startswith(f"{tmp_path / 'breastmnist.npz'}: val_labels holds label 7 (index 5)")
    assert "MedMNIST's classes for breastmnist; valid labels: 0=malignant, 1=normal, benign" in message


def test_unreadable_data_files_are_named(tmp_path, tiny_npz):
    missing = tmp_path / "nowhere.npz"
    assert str(missing) in error_message(data_file=missing) and "not found" in error_message(data_file=missing)
    text = tmp_path / "notes.npz"
    text.write_text("patient list, not an archive\n")
    assert f"{text} is not a readable npz archive" in error_message(data_file=text)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(tiny_npz.read_bytes()[:2000])
    assert f"{cut} is not a readable npz archive" in error_message(data_file=cut)


def test_an_npz_of_python_objects_is_one_line_naming_the_key_never_suggesting_to_unpickle(tmp_path, capsys):
    """numpy's own text ("load it unsafely using the allow_pickle= keyword") hints at an unsafe fix: never shown."""
    import pickle

    from qmedimg.cli import main

    objects = save(tmp_path / "objects.npz", {**make_arrays(), "train_labels": np.array([[0], [1]] * 3, dtype=object)})
    message = error_message(data_file=objects)
    assert message.startswith(f"{objects}: 'train_labels' holds Python objects, which qmedimg never loads")
    assert "train_images, val_images, test_images" in message  # what a MedMNIST-layout npz holds
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(pickle.dumps(make_arrays()))
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"\x00" * 64)
    assert "is a Python pickle, which qmedimg never loads" in error_message(data_file=pickled)
    for path in (objects, pickled, damaged):
        assert "allow_pickle" not in error_message(data_file=path)
        assert main(["train", "--data-file", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and str(path) in err and "allow_pickle" not in err
    assert not (tmp_path / "run").exists()


def test_a_file_named_like_a_medmnist_set_but_not_medmnists_warns_once_and_is_recorded(tmp_path, capsys, monkeypatch):
    from qmedimg.cli import main

    monkeypatch.setattr(data, "_download", lambda *args: pytest.fail("downloaded although the file is there"))
    root = tmp_path / "root"
    path = write_synthetic_npz(root / "breastmnist.npz", n_train=16, n_val=8, n_test=8)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("default")  # Python's own default, as a user's script has it (pytest.warns shows all)
        ds = load_dataset("breastmnist", data_root=root)
        load_dataset("breastmnist", data_root=root)  # the same file again: said once
    assert len(said) == 1 and said[0].category is data.UnpublishedDataWarning and str(path) in str(said[0].message)
    assert f"its MD5 is not the published {BREAST_MD5}" in str(said[0].message)
    assert "results are not comparable with published MedMNIST figures" in str(said[0].message)
    assert ds.info()["md5_matches_medmnist"] is False
    write_synthetic_npz(root / "breastmnist_128.npz", size=64, n_train=16, n_val=8, n_test=8)  # refused: not warned
    assert "holds 64x64 images but its name says size 128" in error_message("breastmnist", data_root=root, size=128)
    assert capsys.readouterr().err == ""
    assert main(["train", "--data-file", str(path), "--epochs", "1", "--limit", "8", "--out", str(tmp_path / "run"),
                 "--quiet"]) == 0  # a data file named like one too, recorded in the run; said as one line
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"qmedimg: warning: {path} is named like a MedMNIST file")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["dataset"]["md5_matches_medmnist"] is False
    # MedMNIST's own file (its published MD5): no warning, recorded as matching; other names: nothing said
    monkeypatch.setattr(data, "published_md5", lambda name: hashlib.md5(path.read_bytes()).hexdigest())
    assert load_dataset("breastmnist", data_root=root).info()["md5_matches_medmnist"] is True
    monkeypatch.undo()
    other = write_synthetic_npz(tmp_path / "hospital.npz", n_train=16, n_val=8, n_test=8)
    assert "md5_matches_medmnist" not in load_dataset(data_file=other).info()
    assert capsys.readouterr().err == ""


def test_data_file_rejects_flag_only_options(tiny_npz, tmp_path):
    message = error_message(data_file=tiny_npz, size=64)
    assert str(tiny_npz) in message and "28x28" in message and "size=64" in message
    assert "data_root" in error_message(data_file=tiny_npz, data_root=tmp_path)
    assert load_dataset(data_file=tiny_npz, size=28).size == 28
