"""Property-based (Hypothesis) checks of the rule for bad input (issue 24): every command that reads a
damaged file — an npz data file, a backends registry, a run's config.json or checkpoint.pt, a QPU
ledger — either works (exit 0) or refuses in one line (exit 2); never a traceback (exit 1 or an
exception out of ``main``), never a second line, and nothing written or overwritten when it refuses.

The damage is applied to real files (a synthetic npz, the shipped registry's shapes, the session's
tiny run and its ledger), each example in a fresh temporary folder. Examples are derandomized (the
same in every run; no example database, Hypothesis's caches stay in its self-ignoring .hypothesis/) and
few enough per property that the file runs in about a minute on two cores; QMEDIMG_PROPERTY_SCALE=10
multiplies them for a deeper search.
Each traceback a property found is kept as an ``@example`` (the explicit examples run first, every time).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
import shutil
import tempfile
import zipfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from qmedimg.cli import main
from qmedimg.data import write_synthetic_npz
from qmedimg.data.datasets import KEYS

NAN, INF = float("nan"), float("inf")


def examples(n: int):
    """Settings for one property: ``n`` derandomized examples (times $QMEDIMG_PROPERTY_SCALE, for a deeper
    search by hand), no deadline (a command takes ~1 s), no example database (nothing written into the tree)."""
    return settings(max_examples=n * int(os.environ.get("QMEDIMG_PROPERTY_SCALE", "1")), deadline=None,
                    derandomize=True, database=None, print_blob=False,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


# ------------------------------------------------------------------------------------------------
# The property, shared by every file kind


def fingerprint(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` by its relative path: its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def run_cli(capsys, argv: list[str]) -> tuple[int, str]:
    """``main(argv)``: its exit code (0 or 2, else the property fails) and its stderr (exactly one line
    when it is 2). An exception out of ``main`` fails the property with its traceback."""
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    event(f"{argv[0]} exit {code}")  # shown by --hypothesis-show-statistics
    assert code in (0, 2), f"{argv} exited {code}:\n{err}"
    if code == 2:
        assert err.count("\n") == 1 and err.endswith("\n") and err.startswith("qmedimg: error: "), \
            f"{argv} exited 2 with not exactly one line on stderr:\n{err!r}"
    return code, err


def assert_nothing_written(before: dict[str, str], after: dict[str, str], code: int, allowed_new=("eval-",),
                           may_change=()) -> None:
    """Files there before are byte-identical (``may_change``: name prefixes a success may rewrite); new files
    only on success and only ``allowed_new`` (by name prefix), or empty ``*.lock`` files."""
    changed = [name for name in before if after.get(name) != before[name]
               and not (code == 0 and name.startswith(may_change))]
    assert not changed, f"exit {code}, yet these files were changed or removed: {changed}"
    empty = hashlib.sha256(b"").hexdigest()
    new = [name for name in after if name not in before
           and not (name.endswith(".lock") and after[name] == empty)
           and not (code == 0 and name.startswith(allowed_new))]
    assert not new, f"exit {code}, yet these files were written: {new}"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("properties")


def fresh(scratch: Path) -> tempfile.TemporaryDirectory:
    """A new empty folder for one example (Hypothesis reuses function-scoped fixtures across examples)."""
    return tempfile.TemporaryDirectory(dir=scratch)


# ------------------------------------------------------------------------------------------------
# (1) npz data files in MedMNIST's layout


@lru_cache(maxsize=1)
def base_arrays() -> dict[str, np.ndarray]:
    with tempfile.TemporaryDirectory() as folder:
        path = write_synthetic_npz(Path(folder) / "base.npz", n_train=24, n_val=12, n_test=12)
        with np.load(path) as npz:
            return {key: npz[key] for key in npz.files}


IMAGE_KEYS = tuple(k for k in KEYS if k.endswith("images"))
LABEL_KEYS = tuple(k for k in KEYS if k.endswith("labels"))
ARRAY_TARGETS = (*KEYS, "label_names", "every images", "every labels")
DTYPES = ("float64", "float32", "int64", "int8", "uint16", "bool", "complex128", "object", "str", "bytes")
SHAPES = ("scalar", "flat", "extra axis", "two columns", "channels 2", "channels 4", "five axes", "empty",
          "zero sides", "swap axes")

npz_array_damage = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(ARRAY_TARGETS)),
    st.tuples(st.just("dtype"), st.sampled_from(ARRAY_TARGETS), st.sampled_from(DTYPES)),
    st.tuples(st.just("shape"), st.sampled_from(ARRAY_TARGETS), st.sampled_from(SHAPES)),
    st.tuples(st.just("side"), st.sampled_from((*IMAGE_KEYS, "every images")),
              st.sampled_from([1, 2, 3, 5, 7, 9, 16, 27, 30])),
    st.tuples(st.just("length"), st.sampled_from(KEYS), st.integers(0, 11)),
    st.tuples(st.just("value"), st.sampled_from((*KEYS, "every images", "every labels")),
              st.sampled_from([NAN, INF, -INF, -1, 256, 2.5, 2, 7, 1e12, -1e12, 2.0**64])),
    st.tuples(st.just("names"), st.sampled_from(["ints", "2-d", "one", "empty", "ten", "objects", "newline"])),
)
npz_file_damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("random bytes"), st.binary(max_size=200)),
    st.tuples(st.just("flip byte"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("pickled"), st.sampled_from(["object array npy", "pickled dict", "object array in npz"])),
    st.tuples(st.just("foreign zip"), st.sampled_from(["text member", "no members", "npy named like a key"])),
)
npz_damage = st.one_of(st.tuples(st.lists(npz_array_damage, min_size=1, max_size=3), st.none() | npz_file_damage),
                       st.tuples(st.just([]), npz_file_damage))


def _targets(arrays: dict, target: str) -> list[str]:
    if target == "every images":
        return [k for k in IMAGE_KEYS if k in arrays]
    if target == "every labels":
        return [k for k in LABEL_KEYS if k in arrays]
    return [target] if target in arrays else []


def _reshape(a: np.ndarray, how: str) -> np.ndarray:
    n = len(a) if a.ndim else 1
    return {
        "scalar": lambda: np.asarray(a.reshape(-1)[0] if a.size else 0),
        "flat": lambda: a.reshape(-1),
        "extra axis": lambda: a[..., None],
        "two columns": lambda: np.stack([a, a], axis=-1).reshape(n, -1)[:, :2] if a.size else a.reshape(0, 2),
        "channels 2": lambda: np.stack([a, a], axis=-1),
        "channels 4": lambda: np.stack([a] * 4, axis=-1),
        "five axes": lambda: a.reshape(a.shape + (1,) * max(0, 5 - a.ndim)),
        "empty": lambda: a[:0],
        "zero sides": lambda: np.zeros((n, 0, 0), dtype=a.dtype),
        "swap axes": lambda: np.swapaxes(a, 0, -1) if a.ndim > 1 else a[::-1],
    }[how]()


def _side(a: np.ndarray, side: int) -> np.ndarray:
    if a.ndim < 3:
        return a
    if side <= a.shape[1]:
        return np.ascontiguousarray(a[:, :side, :side])
    pad = [(0, 0), (0, side - a.shape[1]), (0, side - a.shape[2])] + [(0, 0)] * (a.ndim - 3)
    return np.pad(a, pad)


def _set_value(a: np.ndarray, value) -> np.ndarray:
    if a.size == 0 or a.dtype.kind not in "biuf":
        return a
    wide = a.astype(np.float64 if isinstance(value, float) and not float(value).is_integer() or abs(value) > 2**62
                    or math.isinf(value) else np.int64)
    wide.reshape(-1)[len(wide.reshape(-1)) // 2] = value
    return wide


NAMES = {"ints": lambda: np.array([0, 1]), "2-d": lambda: np.array([["blob", "ring"]]), "one": lambda: np.array(["x"]),
         "empty": lambda: np.array([], dtype="<U1"), "ten": lambda: np.array([f"c{i}" for i in range(10)]),
         "objects": lambda: np.array(["blob", 1], dtype=object), "newline": lambda: np.array(["blob\nx", "ring"])}


def damaged_npz(path: Path, damage) -> Path:
    """Write the base npz into ``path`` with ``damage`` applied (array damage, then file damage)."""
    array_damage, file_damage = damage
    arrays = dict(base_arrays())
    for kind, target, *arg in array_damage:
        if kind == "names":
            arrays["label_names"] = NAMES[target]()
            continue
        for key in _targets(arrays, target):
            a = arrays[key]
            if kind == "drop":
                del arrays[key]
            elif kind == "dtype":
                try:
                    arrays[key] = a.astype({"str": str, "bytes": bytes}.get(arg[0], arg[0]))
                except (ValueError, TypeError):  # e.g. label names that are no numbers: left as they are
                    pass
            elif kind == "shape":
                arrays[key] = _reshape(a, arg[0])
            elif kind == "side":
                arrays[key] = _side(a, arg[0])
            elif kind == "length":
                arrays[key] = a[: arg[0]]
            elif kind == "value":
                arrays[key] = _set_value(a, arg[0])
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)  # pickles object arrays: np.load(allow_pickle=False) must refuse them
    data = buffer.getvalue()
    if file_damage is not None:
        kind, *arg = file_damage
        if kind == "truncate":
            data = data[: int(len(data) * arg[0])]
        elif kind == "random bytes":
            data = arg[0]
        elif kind == "flip byte":
            position = arg[0] % len(data)
            data = data[:position] + bytes([data[position] ^ arg[1]]) + data[position + 1:]
        elif kind == "pickled":
            out = io.BytesIO()
            if arg[0] == "object array npy":
                np.save(out, np.array([{"train_images": 1}, None], dtype=object), allow_pickle=True)
            elif arg[0] == "pickled dict":
                pickle.dump(dict(arrays), out)
            else:
                np.savez(out, **{**arrays, "train_labels": np.array([[0], [1]] * 12, dtype=object)})
            data = out.getvalue()
        elif kind == "foreign zip":
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w") as archive:
                if arg[0] == "text member":
                    archive.writestr("train_images.npy", "not an array")
                elif arg[0] == "npy named like a key":
                    for key in KEYS:
                        archive.writestr(f"{key}.npy", b"\x93NUMPY\x01\x00garbage")
            data = out.getvalue()
    path.write_bytes(data)
    return path


@examples(60)
@given(damage=npz_damage)
# each a traceback found by this property, kept as a regression example
@example(damage=([("side", "every images", 1)], None))  # 1x1 images reached the CNN: max_pool2d output too small
@example(damage=([("value", "val_labels", INF)], None))  # an infinite label passed as a whole number
@example(damage=([("value", "test_labels", 2.0**64)], None))  # a label beyond int64 wrapped to a negative one
def test_a_damaged_npz_data_file_trains_or_is_one_line_and_no_run_directory(scratch, capsys, damage):
    with fresh(scratch) as folder:
        folder = Path(folder)
        data = damaged_npz(folder / "data.npz", damage)
        data_bytes, out = data.read_bytes(), folder / "run"
        code, _ = run_cli(capsys, ["train", "--data-file", str(data), "--epochs", "1", "--limit", "8",
                                   "--out", str(out), "--quiet"])
        if code == 2:
            assert not out.exists(), f"refused, yet {out} was made: {sorted(p.name for p in out.iterdir())}"
        assert data.read_bytes() == data_bytes


# ------------------------------------------------------------------------------------------------
# (2) backends registries


MISSING = object()
ANY_BAD = [None, True, -1, 0, 2.5, NAN, INF, "", "x", "multi\nline", [], [1], {}, {"a": 1}]
ENTRY_VALUES = {  # per key: wrong types and values, plus a few valid ones (kept cheap: small devices only)
    "description": ["a backend", 5, None, ["x"], "two\nlines"],
    "device": ["FakeManilaV2", "FakeNowhere", "ibm_manila", 5, None, ["FakeManilaV2"], ""],
    "local": ["FakeManilaV2", "FakeNowhere", 3, None, "", {"a": 1}],
    "shots": [1, 64, 0, -5, 1.5, "many", None, True, NAN, 10**20],
    "noise_scale": [0, 0.5, 2, -1, NAN, INF, "high", [1], 1001, None, True],
    "transpile": [None, "o3", 3, [], {}, {"optimization_level": 5}, {"optimization_level": 3},
                  {"initial_layout": [0, 0, 1, 2]}, {"initial_layout": [0, 1]}, {"initial_layout": [100, 101, 102, 103]},
                  {"initial_layout": [-1, 0, 1, 2]}, {"initial_layout": "0,1,2,3"}, {"bogus": 1},
                  {"dynamical_decoupling": {"sequence": "XZ"}}, {"dynamical_decoupling": {"sequence": "XX"}},
                  {"dynamical_decoupling": True}, {"approximation_degree": 2}, {"approximation_degree": NAN},
                  {"seed_transpiler": "s"}, {"layout_method": "nope"}, {"routing_method": None}],
    "mitigation": [None, True, "readout", [], {}, {"readout": "yes"}, {"readout": True},
                   {"zne": {"noise_factors": [1]}}, {"zne": {"noise_factors": [0.5, 1]}},
                   {"zne": {"noise_factors": [1, 1]}}, {"zne": {"noise_factors": [1, 3]}},
                   {"zne": {"noise_factors": ["a", 3]}}, {"zne": {"noise_factors": [1, NAN]}},
                   {"zne": {"noise_factors": [1, INF]}}, {"zne": {"noise_factors": [1, 1e9]}},
                   {"zne": {"extrapolator": "cubic"}}, {"zne": None}, {"zne": 3}, {"twirls": 0}, {"twirls": 2},
                   {"twirls": -1}, {"twirls": "many"}, {"token": "abc"}],
    "options": [None, "x", [1], {}, {"resilience_level": 7}, {"resilience_level": 1}, {"bogus": 1},
                {"default_shots": -1}, {"twirling": "on"}, {"resilience": {"zne_mitigation": "yes"}}],
    "mode": ["batch", "session", "nope", 3, None],
    "channel": ["ibm_cloud", "nowhere", 1],
    "instance": ["crn:x", 5, ["a"]],
    "max_rows_per_job": [0, -1, 1, 2, "many", 2.5, None],
    "timeout_s": [0, -1, "slow", NAN, INF, 1, None],
    "seed": [1, "x"],
    "api_key": ["secret"],
    "bogus": [1],
}
KIND_VALUES = ["exact", "aer", "fake", "ibm", "quantum", "", None, 3, ["fake"], {"kind": "fake"}, "FAKE", MISSING]
ENTRY_NAMES = ["exact", "aer", "noisy", "qpu", "a b", "ünï", "two\nlines", "token", 1, 2.5, True, None, ""]


@st.composite
def registry_entry(draw):
    keys = draw(st.lists(st.sampled_from(sorted(ENTRY_VALUES)), max_size=4, unique=True))
    entry = {}
    kind = draw(st.sampled_from(KIND_VALUES))
    if kind is not MISSING:
        entry["kind"] = kind
    for key in keys:
        entry[key] = draw(st.sampled_from(ENTRY_VALUES[key]))
    return entry


scalar = st.sampled_from(ANY_BAD)
registry_data = st.one_of(
    scalar, st.lists(scalar, max_size=3),
    st.dictionaries(st.sampled_from(ENTRY_NAMES), registry_entry() | scalar | st.lists(scalar, max_size=2), max_size=3),
    st.dictionaries(st.sampled_from(ENTRY_NAMES), registry_entry(), min_size=1, max_size=3),
)
text_damage = st.one_of(
    st.tuples(st.just("non-UTF-8 byte"), st.integers(0, 10**4),
              st.sampled_from([b"\xff", b"\xc3", b"\xfe\xff", b"\x80"])),
    st.tuples(st.just("control character"), st.integers(0, 10**4),
              st.sampled_from(["\x00", "\x07", "\x1b", "\ufffe", "\x85"])),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("random text"), st.text(max_size=80)),
    st.tuples(st.just("random bytes"), st.binary(max_size=80)),
    st.tuples(st.just("recursive alias"), st.sampled_from(["mapping", "list", "entry"])),
    st.tuples(st.just("deep nesting"), st.sampled_from([50, 2000, 20000])),
    st.tuples(st.just("python tag"), st.just("!!python/object/apply:os.getcwd []")),
    st.tuples(st.just("duplicate key"), st.just("exact:\n  kind: exact\nexact:\n  kind: aer\n")),
    st.tuples(st.just("tab"), st.just("exact:\n\tkind: exact\n")),
    st.tuples(st.just("alias bomb"), st.just(6)),
)


def registry_text(data, damage) -> bytes:
    text = "" if data is MISSING else yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    raw = text.encode()
    if damage is None:
        return raw
    kind, arg, *more = damage
    if kind == "non-UTF-8 byte":
        position = arg % (len(raw) + 1)
        return raw[:position] + more[0] + raw[position:]
    if kind == "control character":
        position = arg % (len(text) + 1)
        return (text[:position] + more[0] + text[position:]).encode()
    if kind == "truncate":
        return raw[: int(len(raw) * arg)]
    if kind == "random text":
        return arg.encode("utf-8", "surrogatepass")
    if kind == "random bytes":
        return arg
    if kind == "recursive alias":
        return {"mapping": b"a: &a\n  kind: exact\n  b: *a\n", "list": b"a: &a [*a]\n",
                "entry": b"x: &x\n  kind: fake\n  device: FakeManilaV2\n  mitigation: {zne: *x}\n"}[arg]
    if kind == "deep nesting":
        return b"exact:\n  kind: exact\n  description: " + b"[" * arg + b"]" * arg + b"\n"
    if kind == "alias bomb":
        lines = ["a0: &a0 {kind: exact}"]
        lines += [f"a{i}: &a{i} {{{', '.join(f'k{j}: *a{i - 1}' for j in range(9))}}}" for i in range(1, arg + 1)]
        lines += [f"bomb:\n  kind: exact\n  description: x\n  nested: *a{arg}"]
        return "\n".join(lines).encode()
    return (text + arg).encode() if kind != "python tag" else f"exact: {arg}\n".encode()


@st.composite
def registry_case(draw):
    data = draw(registry_data | st.just(MISSING))
    damage = draw(st.none() | text_damage)
    names = [str(n) for n in data] if isinstance(data, dict) else []
    name = draw(st.sampled_from([*names, "exact", "nowhere"]))
    return data, damage, name


class Offline:
    """Qiskit Runtime's service offline (no network in tests): what a DNS failure looks like."""

    def __init__(self, **_):
        raise RuntimeError("Unable to retrieve instances. Please check that you are using a valid API token.")


@examples(60)
@given(case=registry_case())
@example(case=(MISSING, ("recursive alias", "mapping"), "exact"))  # RecursionError in the secret-key scan
@example(case=(MISSING, ("deep nesting", 2000), "exact"))  # RecursionError inside PyYAML
@example(case=(MISSING, ("control character", 0, "\x00"), "exact"))  # PyYAML's ReaderError: two lines
@example(case=({"two\nlines": None}, None, "two\nlines"))  # an entry name with a newline: two lines
@example(case=({"x": {"kind": "fake", "device": "FakeManilaV2", "mitigation": {"zne": {"noise_factors": [1, NAN]}}}},
               None, "x"))  # a NaN ZNE factor passed validation: "cannot convert float NaN to integer"
@example(case=({"x": {"kind": "aer", "shots": 10**20}}, None, "x"))  # Aer's C++ int: TypeError
@example(case=({"x": {"kind": "ibm", "device": "ibm_manila", "local": "FakeManilaV2", "shots": 10**20}}, None,
               "x"))  # every job fails in Aer (vector::reserve), the ledger is written, exit 2
def test_a_damaged_backends_registry_lists_and_evaluates_or_is_one_line_and_writes_nothing(tiny_run, scratch, capsys,
                                                                                               case):
    from qmedimg.backends import runtime

    data, damage, name = case
    with fresh(scratch) as folder, pytest.MonkeyPatch.context() as patch:
        patch.setattr(runtime, "QiskitRuntimeService", Offline)
        folder = Path(folder)
        registry = folder / "backends.yaml"
        registry.write_bytes(registry_text(data, damage))
        run = Path(shutil.copytree(tiny_run, folder / "run"))
        before = fingerprint(folder)
        code, _ = run_cli(capsys, ["backends", "--backends", str(registry)])
        assert_nothing_written(before, fingerprint(folder), 2)
        code, _ = run_cli(capsys, ["evaluate", str(run), "--backend", name, "--backends", str(registry),
                                   "--test-limit", "4", "--quiet"])
        assert_nothing_written(before, fingerprint(folder), code, allowed_new=("run/eval-", "run/ledger-"))


# ------------------------------------------------------------------------------------------------
# (3) a run's config.json


CONFIG_VALUES = {  # per key: wrong types and out-of-range values, plus valid ones that stay cheap to run
    "dataset": ["synthetic", "SYNTHETIC ", "nosuchflag", "", None, 5, ["synthetic"]],
    "data_file": ["missing.npz", "", None, 3],
    "data_root": ["/nonexistent", 3, None],
    "size": [28, 64, 27, 0, "28", None, 28.5],
    "classes": [[0, 1], [1, 0], [0, 0], [0, 5], [-1, 1], [0], [], "0,1", [0.5, 1], [True, False]],
    "limit": [8, 0, -1, 1.5, "8", 10**30],
    "circuit": ["sel", "ring", "nosuch", "../x.qasm", "", 5, None],
    "qubits": [None, 0, -1, 1, 2, 3, 5, 25, "4", 4.5, True, [4]],
    "layers": [None, 0, -1, 1, 3, 50, "2", 2.5],
    "model": ["hybrid", "resnet18", "vgg16", "quantum", None, 1, ["hybrid"], {"a": 1}],
    "head": ["quantum", "classical", "linear", "qpu", None, ["quantum"]],
    "backbone": ["compact", "hqcnn", "vit", None],
    "angle_map": ["batchnorm", "sin", None, 1],
    "readout": ["z+zz", "z+zz-all", "xx", None],
    "stem": ["3x3", "imagenet", "5x5"],
    "epochs": [1, 3, 0, -1, 2.5, "2", None],
    "batch_size": [1, 2, 10**30, 0, -1, "16", None],
    "lr": [0, -1, NAN, INF, "fast", None, 1e300],
    "weight_decay": [-1, NAN, INF, None, "x"],
    "warmup_epochs": [-1, 10**30, 2.5, "3"],
    "label_smoothing": [1, -0.1, NAN, INF, "x"],
    "ema_decay": [0, 1, -0.5, NAN, "x"],
    "select": ["best-val", "first", None, ["last"]],
    "dropout": [1, -0.1, 0.5, NAN, "x"],
    "class_weights": [True, "yes", 2, None],
    "balanced_sampling": [True, "yes", None],
    "threshold": [0.3, 0, 1, -1, NAN, INF, "val", "youden", "best", None, True, [0.5], {"a": 1}],
    "augment": [True, "yes", 5],
    "amp": [True, "yes", None],
    "backend": ["exact", "nosuch", "", 5, None, ["exact"]],
    "noise_scale": [0, 1, -1, NAN, INF, "x", [1]],
    "backends_file": ["missing.yaml", 5, ""],
    "seed": [1, -1, 10**30, -(10**30), 2.5, "1", None],
    "out": [None, 5, "", "/elsewhere"],
}
HEAD = 'OPENQASM 3.0;\ninclude "stdgates.inc";\n'
GARBAGE_QASM = [
    "", "OPENQASM 3.0;\n", "not qasm at all", "OPENQASM 3.0;\nqubit[2] q;\n",
    HEAD + "input float[64] x0;\ninput float[64] x1;\nqubit[2] q;\nry(x0) q[0];\nry(x1) q[1];\n",  # another network
    HEAD + "input float[64] x0;\ninput float[64] x2;\nqubit[2] q;\nry(x0) q[0];\nry(x2) q[1];\n",  # inputs with a gap
    HEAD + "input float[64] x0;\nqubit[1] q;\nbit[1] c;\nry(x0) q[0];\nc[0] = measure q[0];\nx q[0];\n",  # mid-circuit
    HEAD + "input float[64] x0;\nqubit[22] q;\nry(x0) q[0];\n",  # wider than the exact estimator takes
    'OPENQASM 3.0;\ninclude "nowhere.inc";\nqubit[1] q;\n',
    'OPENQASM 3.0;\nqubit[2] q;\nfor int i in [0:1] { x q[i]; }\n',
    "OPENQASM 2.0;\nqreg q[2];\n",
]
qasm_damage = st.one_of(
    st.tuples(st.just("replace"), st.sampled_from(GARBAGE_QASM) | st.text(max_size=60)),
    st.tuples(st.just("drop line"), st.integers(0, 200)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("observables"), st.sampled_from(["Z0", "Z9", "Q0", "", "Z0 Z1 Z2 Z3 Z0Z1", "X0 Y1 Z2 I3"])),
    st.tuples(st.just("value"), st.sampled_from([None, 5, ["x"], {"a": 1}])),
)
config_damage = st.one_of(
    st.tuples(st.just("text"), st.sampled_from(["", "{", "not json", "{\"config\": ", "\xff\xfe", "NaN", "[1, 2"])),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("record"), st.sampled_from([[], [1], "config", 5, None, True])),
    st.tuples(st.just("config"), st.sampled_from([MISSING, None, [], "x", 5, {}])),
    st.tuples(st.just("drop key"), st.sampled_from(sorted(CONFIG_VALUES))),
    st.tuples(st.just("set key"), st.sampled_from(sorted(CONFIG_VALUES)).flatmap(
        lambda key: st.tuples(st.just(key), st.sampled_from(CONFIG_VALUES[key])))),
    st.tuples(st.just("unknown key"), st.sampled_from(["colour", "", "two\nlines", "Epochs"])),
    st.tuples(st.just("circuit"), st.sampled_from([MISSING, None, [], "sel", 5, {}, {"qasm": None}, {"name": 5},
                                                    {"layers": "x"}, {"path": ["x"]}])),
    st.tuples(st.just("circuit field"), st.sampled_from(["name", "path", "layers", "qubits"]),
              st.sampled_from([None, 5, "x", ["x"], {"a": 1}, -1])),
    st.tuples(st.just("qasm"), qasm_damage),
    st.tuples(st.just("dataset record"), st.sampled_from([MISSING, None, [], "x", 5, {}, {"sha256": 5},
                                                           {"sha256": "0" * 64}, {"sha256": ["x"]}])),
    st.tuples(st.just("other record"), st.sampled_from(["versions", "parameters", "device"]),
              st.sampled_from([MISSING, None, "x", [], 5])),
)


def damaged_config(path: Path, damages) -> None:
    """Apply ``damages`` to the run's ``config.json`` at ``path`` (JSON damage, then text damage)."""
    record = json.loads(path.read_text())
    text = None
    for kind, *arg in damages:
        config = record.get("config") if isinstance(record, dict) else None
        circuit = record.get("circuit") if isinstance(record, dict) else None
        if kind == "text":
            text = arg[0]
        elif kind == "truncate":
            full = json.dumps(record)
            text = full[: int(len(full) * arg[0])]
        elif kind == "record":
            record = arg[0]
        elif kind == "config" and isinstance(record, dict):
            if arg[0] is MISSING:
                record.pop("config", None)
            else:
                record["config"] = arg[0]
        elif kind == "drop key" and isinstance(config, dict):
            config.pop(arg[0], None)
        elif kind == "set key" and isinstance(config, dict):
            key, value = arg[0]
            config[key] = value
        elif kind == "unknown key" and isinstance(config, dict):
            config[arg[0]] = 1
        elif kind == "circuit" and isinstance(record, dict):
            if arg[0] is MISSING:
                record.pop("circuit", None)
            else:
                record["circuit"] = arg[0]
        elif kind == "circuit field" and isinstance(circuit, dict):
            circuit[arg[0]] = arg[1]
        elif kind == "qasm" and isinstance(circuit, dict):
            how, value = arg[0]
            qasm = circuit.get("qasm") if isinstance(circuit.get("qasm"), str) else ""
            if how == "replace":
                circuit["qasm"] = value
            elif how == "drop line":
                lines = qasm.splitlines(keepends=True)
                if lines:
                    del lines[value % len(lines)]
                circuit["qasm"] = "".join(lines)
            elif how == "truncate":
                circuit["qasm"] = qasm[: int(len(qasm) * value)]
            elif how == "observables":
                circuit["qasm"] = "\n".join(f"// observables: {value}" if line.startswith("// observables:") else line
                                            for line in qasm.splitlines())
            else:
                circuit["qasm"] = value
        elif kind == "dataset record" and isinstance(record, dict):
            if arg[0] is MISSING:
                record.pop("dataset", None)
            elif isinstance(arg[0], dict) and isinstance(record.get("dataset"), dict):
                record["dataset"].update(arg[0])
            else:
                record["dataset"] = arg[0]
        elif kind == "other record" and isinstance(record, dict):
            if arg[1] is MISSING:
                record.pop(arg[0], None)
            else:
                record[arg[0]] = arg[1]
    if text is None:
        text = json.dumps(record)  # NaN and Infinity as JSON's common extension, as Python writes and reads it
    path.write_bytes(text.encode("utf-8", "surrogateescape") if "\xff" not in text else b"\xff\xfe{")


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    from PIL import Image

    path = tmp_path_factory.mktemp("images") / "scan.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), mode="L").save(path)
    return path


@examples(40)
@given(damages=st.lists(config_damage, min_size=1, max_size=2))
@example(damages=[("dataset record", None)])  # AttributeError: 'NoneType' object has no attribute 'get'
@example(damages=[("dataset record", {"sha256": 5})])  # TypeError: 'int' object is not subscriptable
@example(damages=[("unknown key", "two\nlines")])  # the key's newline made the message two lines
@example(damages=[("set key", ("model", ["hybrid"]))])  # TypeError: unhashable type: 'list'
@example(damages=[("set key", ("threshold", [0.5]))])  # TypeError: unhashable type: 'list' (in the validator)
@example(damages=[("set key", ("seed", -1))])  # numpy: ValueError: expected non-negative integer
@example(damages=[("set key", ("seed", 10**30))])  # torch: Overflow when unpacking long long
@example(damages=[("circuit field", "name", ["x"])])  # TypeError: unhashable type (the pinned circuit's cache)
def test_a_damaged_run_config_evaluates_predicts_resumes_or_is_one_line_and_writes_nothing(tiny_run, scratch, png,
                                                                                              capsys, damages):
    with fresh(scratch) as folder:
        run = Path(shutil.copytree(tiny_run, Path(folder) / "run"))
        damaged_config(run / "config.json", damages)
        for argv in (["evaluate", str(run), "--quiet"], ["predict", str(run), str(png), "--quiet"]):
            before = fingerprint(run)
            code, _ = run_cli(capsys, argv)
            assert_nothing_written(before, fingerprint(run), code)
        before = fingerprint(run)
        code, _ = run_cli(capsys, ["train", "--resume", str(run), "--quiet"])
        if code == 2:  # a resumed run rewrites its checkpoint, metrics and plots: only a refusal must keep them
            assert_nothing_written(before, fingerprint(run), code)


# ------------------------------------------------------------------------------------------------
# (4) a run's checkpoint.pt


STATE_KEYS = ("epoch", "model", "averaged", "best_model", "best", "optimizer", "scheduler", "generator", "torch_rng",
              "history", "train_seconds", "trained_samples", "wall_seconds")
VALUE_KINDS = ("none", "string", "minus one", "ninety-nine", "float", "list", "empty dict", "tensor", "int tensor",
               "nan")
checkpoint_damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("random bytes"), st.binary(max_size=200)),
    st.tuples(st.just("flip byte"), st.integers(0, 10**7), st.integers(1, 255)),
    st.tuples(st.just("not a dict"), st.sampled_from(["list", "tensor", "int", "string", "none", "tuple"])),
    st.tuples(st.just("drop"), st.sampled_from(STATE_KEYS)),
    st.tuples(st.just("set"), st.sampled_from((*STATE_KEYS, "cuda_rng", "scaler", "bogus")), st.sampled_from(VALUE_KINDS)),
    st.tuples(st.just("weights"), st.sampled_from(["best_model", "model", "averaged"]),
              st.sampled_from(["drop a tensor", "extra tensor", "wrong shape", "wrong dtype", "scalar", "not a tensor",
                               "empty", "nan"])),
    st.tuples(st.just("optimizer"), st.sampled_from(["no state", "no param_groups", "groups a string", "one group",
                                                     "state of wrong shape"])),
    st.tuples(st.just("history"), st.sampled_from(["rows without keys", "rows strings", "empty"])),
    st.tuples(st.just("not weights-only"), st.just("a class instance")),
)


class Foreign:
    """A pickled object that ``torch.load(weights_only=True)`` must refuse."""


def _value(kind: str):
    return {"none": None, "string": "x", "minus one": -1, "ninety-nine": 99, "float": 2.5, "list": [1, 2],
            "empty dict": {}, "tensor": torch.zeros(3), "int tensor": torch.tensor(1), "nan": NAN}[kind]


def _damage_weights(weights: dict, how: str) -> dict:
    weights = dict(weights)
    name = next((k for k, v in weights.items() if torch.is_tensor(v) and v.ndim >= 2), None)
    if name is None and how not in ("extra tensor", "empty"):  # damaged before: no weight matrix left to damage
        return weights
    if how == "drop a tensor":
        del weights[name]
    elif how == "extra tensor":
        weights["bogus.weight"] = torch.zeros(2)
    elif how == "wrong shape":
        weights[name] = torch.zeros(weights[name].shape[0] + 1, *weights[name].shape[1:])
    elif how == "wrong dtype":
        weights[name] = weights[name].to(torch.int64)
    elif how == "scalar":
        weights[name] = torch.tensor(1.0)
    elif how == "not a tensor":
        weights[name] = "x"
    elif how == "empty":
        weights = {}
    elif how == "nan":
        weights = {k: torch.full_like(v, NAN) if torch.is_tensor(v) and v.is_floating_point() else v
                   for k, v in weights.items()}
    return weights


def damaged_checkpoint(path: Path, damages) -> None:
    state = torch.load(path, weights_only=True)
    data = None
    for kind, *arg in damages:
        if not isinstance(state, dict) and kind not in ("truncate", "random bytes", "flip byte"):
            continue
        if kind == "not a dict":
            state = {"list": [1, 2], "tensor": torch.zeros(2), "int": 3, "string": "checkpoint", "none": None,
                     "tuple": (1, 2)}[arg[0]]
        elif kind == "drop":
            state.pop(arg[0], None)
        elif kind == "set":
            state[arg[0]] = _value(arg[1])
        elif kind == "weights" and isinstance(state.get(arg[0]), dict):
            state[arg[0]] = _damage_weights(state[arg[0]], arg[1])
        elif kind == "optimizer" and isinstance(state.get("optimizer"), dict):
            optimizer = dict(state["optimizer"])
            if arg[0] == "no state":
                optimizer.pop("state", None)
            elif arg[0] == "no param_groups":
                optimizer.pop("param_groups", None)
            elif arg[0] == "groups a string":
                optimizer["param_groups"] = "x"
            elif arg[0] == "one group" and isinstance(optimizer.get("param_groups"), list):
                optimizer["param_groups"] = optimizer["param_groups"][:1]
            elif arg[0] == "state of wrong shape" and isinstance(optimizer.get("state"), dict):
                optimizer["state"] = {k: {**v, "exp_avg": torch.zeros(1)} for k, v in optimizer["state"].items()}
            state["optimizer"] = optimizer
        elif kind == "history":
            state["history"] = {"rows without keys": [{}], "rows strings": ["x"], "empty": []}[arg[0]]
        elif kind == "not weights-only":
            state["bogus"] = Foreign()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    for kind, *arg in damages:
        if kind == "truncate":
            data = data[: int(len(data) * arg[0])]
        elif kind == "random bytes":
            data = arg[0]
        elif kind == "flip byte" and data:
            position = arg[0] % len(data)
            data = data[:position] + bytes([data[position] ^ arg[1]]) + data[position + 1:]
    path.write_bytes(data)


@examples(40)
@given(damages=st.lists(checkpoint_damage, min_size=1, max_size=2))
@example(damages=[("weights", "best_model", "nan")])  # evaluate: sklearn's "Input contains NaN."
@example(damages=[("set", "epoch", "string")])  # resume: TypeError: can only concatenate str (not "int") to str
@example(damages=[("set", "optimizer", "empty dict")])  # resume: KeyError: 'param_groups'
@example(damages=[("optimizer", "one group")])  # resume: ValueError: a different number of parameter groups
@example(damages=[("set", "generator", "none")])  # resume: TypeError: expected a torch.ByteTensor
@example(damages=[("history", "rows without keys")])  # resume: KeyError: 'epoch' (after metrics.json is rewritten)
@example(damages=[("set", "best", "empty dict")])  # resume: KeyError: 'epoch'
@example(damages=[("set", "wall_seconds", "string")])  # resume: TypeError: can only concatenate str
@example(damages=[("weights", "best_model", "wrong shape")])  # resume: RuntimeError from load_state_dict
def test_a_damaged_checkpoint_evaluates_resumes_or_is_one_line_and_writes_nothing(tiny_run, scratch, capsys, damages):
    with fresh(scratch) as folder:
        run = Path(shutil.copytree(tiny_run, Path(folder) / "run"))
        damaged_checkpoint(run / "checkpoint.pt", damages)
        before = fingerprint(run)
        code, _ = run_cli(capsys, ["evaluate", str(run), "--quiet"])
        assert_nothing_written(before, fingerprint(run), code)
        before = fingerprint(run)
        code, _ = run_cli(capsys, ["train", "--resume", str(run), "--quiet"])
        if code == 2:
            assert_nothing_written(before, fingerprint(run), code)


# ------------------------------------------------------------------------------------------------
# (5) QPU ledgers


IBM_LOCAL = ["--backend", "ibm_local", "--test-limit", "3", "--quiet"]
JOB_KEYS = ("index", "rows", "job_id", "status", "usage_s", "evs", "errors", "tag", "submitted")
JOB_VALUES = [None, "x", "", 5, -1, 2.5, NAN, [], [0], [0, 99], [[0.1, 0.2]], [["a", "b"]], {}, {"a": 1}, True]
ledger_damage = st.one_of(
    st.tuples(st.just("text"), st.sampled_from(["", "{", "not json", "\xff", "null", "NaN"])),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True)),
    st.tuples(st.just("whole"), st.sampled_from([[], [1], "ledger", 5, None, {}])),
    st.tuples(st.just("top key"), st.sampled_from(["identity", "jobs", "version", "sent"]),
              st.sampled_from([MISSING, None, "x", 5, [], {}, [1], ["x"], [{}], 99, 1])),
    st.tuples(st.just("identity field"), st.sampled_from(["request", "run", "backend", "repeat", "rows", "bogus"]),
              st.sampled_from([MISSING, None, "x", 5, [], {"a": 1}])),
    st.tuples(st.just("job key"), st.sampled_from(JOB_KEYS), st.sampled_from([MISSING, *JOB_VALUES])),
    st.tuples(st.just("status"), st.sampled_from(["new", "submitting", "submitted", "waiting", "failed", "done",
                                                  "weird"]),
              st.booleans()),
    st.tuples(st.just("evs"), st.sampled_from(["strings", "wrong shape", "flat", "nested deeper", "nan", "empty",
                                               "ragged", "huge"])),
    st.tuples(st.just("jobs"), st.sampled_from(["duplicated", "empty", "reversed", "a string inside", "null inside"])),
)


def damaged_ledger(path: Path, damages) -> None:
    ledger = json.loads(path.read_text())
    text = None
    for kind, *arg in damages:
        jobs = ledger.get("jobs") if isinstance(ledger, dict) else None
        job = jobs[0] if isinstance(jobs, list) and jobs and isinstance(jobs[0], dict) else None
        if kind == "text":
            text = arg[0]
        elif kind == "truncate":
            full = json.dumps(ledger)
            text = full[: int(len(full) * arg[0])]
        elif kind == "whole":
            ledger = arg[0]
        elif kind == "top key" and isinstance(ledger, dict):
            if arg[1] is MISSING:
                ledger.pop(arg[0], None)
            else:
                ledger[arg[0]] = arg[1]
        elif kind == "identity field" and isinstance(ledger, dict) and isinstance(ledger.get("identity"), dict):
            if arg[1] is MISSING:
                ledger["identity"].pop(arg[0], None)
            else:
                ledger["identity"][arg[0]] = arg[1]
        elif kind == "job key" and job is not None:
            if arg[1] is MISSING:
                job.pop(arg[0], None)
            else:
                job[arg[0]] = arg[1]
        elif kind == "status" and job is not None:
            job["status"] = arg[0]
            if arg[1]:
                job["evs"] = None
        elif kind == "evs" and job is not None:
            evs = job.get("evs") if isinstance(job.get("evs"), list) else [[0.0]]
            job["evs"] = {"strings": [["a"] * len(row) if isinstance(row, list) else "a" for row in evs],
                          "wrong shape": [[0.1, 0.2]], "flat": [0.1, 0.2, 0.3], "nested deeper": [evs],
                          "nan": [[NAN] * len(row) if isinstance(row, list) else NAN for row in evs], "empty": [],
                          "ragged": [[0.1], [0.1, 0.2]], "huge": [[1e308 * 10] * len(row) if isinstance(row, list)
                                                                  else 0 for row in evs]}[arg[0]]
        elif kind == "jobs" and isinstance(jobs, list):
            ledger["jobs"] = {"duplicated": jobs + jobs, "empty": [], "reversed": jobs[::-1],
                              "a string inside": [*jobs, "x"], "null inside": [None, *jobs]}[arg[0]]
    if text is None:
        text = json.dumps(ledger)
    path.write_bytes(text.encode("utf-8", "surrogateescape") if "\xff" not in text else b"\xff{")


@pytest.fixture(scope="module")
def ledger_run(tiny_run, scratch) -> Path:
    """A copy of the tiny run with one finished ``ibm_local`` evaluation: its ledger, its eval files (the JSON and
    its per-image npz) gone."""
    run = Path(shutil.copytree(tiny_run, scratch / "ledger_run"))
    assert main(["evaluate", str(run), *IBM_LOCAL]) == 0
    assert (run / "ledger-ibm_local.json").is_file()
    for path in [*run.glob("eval-*.json"), *run.glob("eval-*.npz")]:
        path.unlink()
    return run


@examples(50)
@given(damages=st.lists(ledger_damage, min_size=1, max_size=2))
@example(damages=[("top key", "version", None)])  # TypeError: '>=' not supported between NoneType and int
@example(damages=[("job key", "evs", MISSING)])  # KeyError: 'evs'
@example(damages=[("job key", "usage_s", "x")])  # TypeError: unsupported operand type(s) for +: 'int' and 'str'
@example(damages=[("job key", "usage_s", MISSING)])  # KeyError: 'usage_s'
@example(damages=[("evs", "ragged")])  # ValueError: setting an array element with a sequence
@example(damages=[("evs", "strings")])  # ValueError: could not convert string to float: 'a'
@example(damages=[("evs", "nan")])  # sklearn: "Input contains NaN."
@example(damages=[("status", "waiting", False)])  # IndexError: a waiting job without errors
@example(damages=[("status", "new", True)])  # 'new' with an id: local mode asks no service, exit 2, ledger rewritten
def test_a_damaged_ledger_is_collected_or_one_line_and_writes_nothing(ledger_run, scratch, capsys, damages):
    with fresh(scratch) as folder:
        run = Path(shutil.copytree(ledger_run, Path(folder) / "run"))
        damaged_ledger(run / "ledger-ibm_local.json", damages)
        before = fingerprint(run)
        code, _ = run_cli(capsys, ["evaluate", str(run), *IBM_LOCAL])
        # a success may rewrite the ledger (it is the request's write-ahead log: a job to run again is
        # recorded before it is submitted), keep a finished request of another identity aside, and take the
        # calibration snapshot of a new submission (never over the one an earlier submission kept)
        assert_nothing_written(before, fingerprint(run), code, allowed_new=("eval-", "ledger-", "snapshot-"),
                               may_change=("ledger-",))


# ------------------------------------------------------------------------------------------------
# (6) the other commands that read a run: the same damaged config.json or checkpoint, fewer examples
# (they load through the same read_record / load_checkpoint / load_weights; these check the commands'
# own steps after loading: transpiling, Grad-CAM, the noise study's folder)


def other_readers(run: Path, png: Path) -> list[tuple[list[str], tuple[str, ...]]]:
    """(argv, name prefixes a success may add) of transpile, explain and noise-study on ``run``."""
    return [(["transpile", str(run), "--backend", "fake_manila"], ()),
            (["explain", str(run), str(png), "--out", str(run / "explain")], ("explain",)),
            (["noise-study", str(run), "--backend", "fake_manila", "--scales", "1", "--mitigation", "none",
              "--test-limit", "2", "--quiet"], ("noise-study",))]


@examples(6)
@given(config=st.lists(config_damage, max_size=1), checkpoint=st.lists(checkpoint_damage, max_size=1))
@example(config=[("dataset record", None)], checkpoint=[("drop", "best_model")])
def test_transpile_explain_and_noise_study_on_a_damaged_run_work_or_are_one_line_and_write_nothing(
        tiny_run, scratch, png, capsys, config, checkpoint):
    with fresh(scratch) as folder:
        run = Path(shutil.copytree(tiny_run, Path(folder) / "run"))
        damaged_config(run / "config.json", config)
        if checkpoint:
            damaged_checkpoint(run / "checkpoint.pt", checkpoint)
        for argv, new in other_readers(run, png):
            before = fingerprint(run)
            code, _ = run_cli(capsys, argv)
            assert_nothing_written(before, fingerprint(run), code, allowed_new=new)
