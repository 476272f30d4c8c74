"""Backends: where a quantum head runs. ``backends.yaml`` is the registry
(:mod:`~qmedimg.backends.registry`); each kind is one module (:mod:`~qmedimg.backends.exact`,
:mod:`~qmedimg.backends.aer`, :mod:`~qmedimg.backends.fake`, :mod:`~qmedimg.backends.ibm`) behind
one interface (:class:`~qmedimg.backends.base.Backend`). What the backends of one piece of work share lives
in a :class:`~qmedimg.backends.context.BackendContext` the workflow passes to each.

Example::

    from qmedimg.backends import HeadRequest, get_backend
    backend = get_backend("fake_brisbane", noise_scale=2)
    values = backend.run_head(HeadRequest(spec, weights, angles)).values

Names are imported on first use, so that ``qmedimg backends`` (the listing) imports neither torch nor qiskit.
"""

from importlib import import_module

_API = {
    **dict.fromkeys(["Backend", "BackendInfo", "HeadRequest", "HeadResult", "JobOptions"], "qmedimg.backends.base"),
    **dict.fromkeys(["BackendContext", "PreparedCircuit"], "qmedimg.backends.context"),
    **dict.fromkeys(["KINDS", "backend_for", "get_backend", "load_backends", "registry_path"],
                    "qmedimg.backends.registry"),
    "StudyRules": "qmedimg.backends.study_rules",
}
"""Each public name by the module it comes from: imported on first use, so that reading the registry
(``qmedimg.backends.registry``) or one kind's module imports nothing else (issue 23)."""

__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'qmedimg.backends' has no attribute '{name}'")
