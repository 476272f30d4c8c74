"""The backend registry: ``backends.yaml`` validated, and the backend class of each ``kind:``.

Example::

    from qmedimg.backends import get_backend, load_backends
    load_backends()                                    # {name: entry}: ./backends.yaml, $QMEDIMG_BACKENDS or qmedimg's
    backend = get_backend("fake_brisbane", shots=1024) # overrides validated as if they were in the file

The YAML file is the registry (data, not code); this module only validates it (pydantic) and picks
the class. A new kind is one module (an ``Entry`` schema and a :class:`~qmedimg.backends.base.Backend`
subclass) and one line in :data:`KINDS`. The shipped kinds' schemas live in :mod:`~qmedimg.backends.entries`
and their classes are imported when an entry is built, so reading (and listing) the registry imports neither
torch nor qiskit.
"""

from __future__ import annotations

import os
import re
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

import yaml
from pydantic import ValidationError

from qmedimg.backends.entries import ENTRIES, ExactEntry
from qmedimg.backends.options import entry_error, quoted, with_keys
from qmedimg.errors import QmedimgError
from qmedimg.files import shipped

if TYPE_CHECKING:
    from qmedimg.backends.base import Backend
    from qmedimg.backends.context import BackendContext

KINDS: dict[str, type[Backend] | str] = {"exact": "qmedimg.backends.exact.ExactBackend",
                                         "aer": "qmedimg.backends.aer.AerBackend",
                                         "fake": "qmedimg.backends.fake.FakeBackend",
                                         "ibm": "qmedimg.backends.ibm.IbmBackend"}
"""Every backend kind by its ``kind:`` name: its class, or where it is (imported when an entry is built; its
``Entry`` is then :data:`~qmedimg.backends.entries.ENTRIES`' one)."""

DEFAULT_FILE: Path = shipped("backends.yaml")  # the checkout's own, or the wheel's copy
SECRET_KEY = re.compile(r"token|api[_-]?key|secret|password|credential", re.IGNORECASE)
CREDENTIALS_HINT = ("credentials never go in a backends file: set QISKIT_IBM_TOKEN (and QISKIT_IBM_INSTANCE) "
                    "or run QiskitRuntimeService.save_account(token=..., instance=...) once")


def registry_path(path: str | Path | None = None) -> Path:
    """``path``, else $QMEDIMG_BACKENDS, else ./backends.yaml, else the one shipped with qmedimg."""
    if path is not None:
        return Path(path)
    if os.environ.get("QMEDIMG_BACKENDS"):
        return Path(os.environ["QMEDIMG_BACKENDS"])
    return Path("backends.yaml") if Path("backends.yaml").is_file() else DEFAULT_FILE


def _find_secret(value, trail: str) -> str | None:
    """The first key under ``value`` (as 'a.b.c') that looks like a secret. Each mapping is looked at once,
    without recursion: YAML aliases can share a mapping many times over, or make it contain itself."""
    seen: set[int] = set()
    todo = [(value, trail)]
    while todo:
        value, trail = todo.pop()
        if not isinstance(value, dict) or id(value) in seen:
            continue
        seen.add(id(value))
        for key in value:
            if SECRET_KEY.search(str(key)):
                return f"{trail}.{key}".lstrip(".")
        todo.extend((item, f"{trail}.{key}") for key, item in reversed(value.items()))
    return None


def backend_class(kind: str) -> type[Backend]:
    """The :class:`~qmedimg.backends.base.Backend` subclass of ``kind`` (imported now where :data:`KINDS` says where
    it is)."""
    cls = KINDS[kind]
    if isinstance(cls, str):
        module, _, name = cls.rpartition(".")
        cls = getattr(import_module(module), name)
    return cls


def _validate(path: Path, name: str, raw: dict, runtime_options: bool = True):
    """The entry ``raw`` as its kind's ``Entry`` (the kind told by ``kind:``), or one line naming what is wrong."""
    kind = raw.get("kind")
    if "kind" not in raw:
        raise QmedimgError(f"{path}: entry '{name}': missing key 'kind' (one of {', '.join(KINDS)})")
    if not isinstance(kind, str) or kind not in KINDS:
        raise QmedimgError(f"{path}: entry '{name}': unknown kind {quoted(kind)}; valid: {', '.join(KINDS)}")
    model = ENTRIES[kind] if isinstance(KINDS[kind], str) else KINDS[kind].Entry
    try:
        # registry: a fake entry's calibration file is found relative to the registry file's folder
        return model.model_validate(raw, context={"runtime_options": runtime_options, "registry": path})
    except ValidationError as exc:
        raise entry_error(path, name, raw, exc, model) from None


def load_backends(path: str | Path | None = None, *, runtime_options: bool = True) -> dict:
    """Read and validate a backends file: ``{name: entry}``; every problem is one line naming file,
    entry and key. ``runtime_options=False`` leaves ``ibm`` entries' ``options`` unchecked against Qiskit Runtime's
    ``EstimatorOptions`` (importing Runtime takes over a second): the listing does; building an entry checks them."""
    path = registry_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise QmedimgError(f"{path}: cannot read backends file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise QmedimgError(f"{path}: not a UTF-8 text file (byte {exc.start}); a backends file is YAML text") from None
    try:
        data = yaml.safe_load(text) or {}
    except (yaml.YAMLError, RecursionError) as exc:
        raise QmedimgError(f"{path}: {_yaml_problem(exc)}") from None
    if not isinstance(data, dict):
        raise QmedimgError(f"{path}: expected a mapping of backend names to entries")
    entries = {}
    for name, raw in data.items():
        if not str(name).isprintable():  # a newline or control character would break every message naming it
            raise QmedimgError(f"{path}: entry name {quoted(name)} is not one line of printable text; name entries "
                               "like fake_brisbane")
        if not isinstance(raw, dict):
            raise QmedimgError(f"{path}: entry '{name}' must be a mapping with at least 'kind'")
        secret = _find_secret(raw, "")
        if secret:
            raise QmedimgError(f"{path}: entry '{name}': key {quoted(secret)} looks like a secret; {CREDENTIALS_HINT}")
        entries[str(name)] = _validate(path, str(name), raw, runtime_options)
    return entries


def _yaml_problem(exc: Exception) -> str:
    """'[line N: ]malformed YAML: what PyYAML found wrong', in one line."""
    if isinstance(exc, RecursionError):  # PyYAML composes nested collections recursively
        return "malformed YAML: nested too deeply (collections inside collections thousands of levels deep)"
    if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow, e.g. NUL or ESC
        character = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        return f"malformed YAML: character {character} at position {exc.position}: {exc.reason}"
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return f"{where}malformed YAML: {' '.join(str(getattr(exc, 'problem', None) or exc).split())}"


def get_backend(name: str, path: str | Path | None = None, *, context: BackendContext | None = None,
                **overrides) -> Backend:
    """The registry entry ``name``, built; ``overrides`` replace entry keys (e.g. ``shots=1024``,
    ``noise_scale=2``, ``transpile={"optimization_level": 3}``), validated as if they were in the file.
    ``context``: what it shares with the other backends of the same work
    (:class:`~qmedimg.backends.context.BackendContext`; default: a fresh one of its own)."""
    path = registry_path(path)
    entries = load_backends(path)
    if name == "exact" and name not in entries:  # always there, whatever the file lists
        return backend_for(name, exact_backend().entry, path, context=context, **overrides)
    if name not in entries:
        raise QmedimgError(f"unknown backend {quoted(name)} in {path}; valid: {', '.join(entries)}")
    return backend_for(name, entries[name], path, context=context, **overrides)


def backend_for(name: str, entry, path: Path | None = None, *, context: BackendContext | None = None,
                **overrides) -> Backend:
    """The backend of a validated entry (e.g. one built in code), with keys replaced by ``overrides``, in
    ``context`` (default: a fresh one)."""
    if overrides:
        entry = with_keys(entry, overrides, name)
    return backend_class(entry.kind)(name, entry, path, context=context)


def exact_backend() -> Backend:
    """The exact estimator as a backend, without reading any registry file."""
    return backend_class("exact")("exact", ExactEntry(kind="exact", description="qmedimg's exact estimator"))
