"""Backends: where a quantum head runs. ``backends.yaml`` is the registry
(:mod:`~qmedimg.backends.registry`); each kind is one module (:mod:`~qmedimg.backends.exact`,
:mod:`~qmedimg.backends.aer`, :mod:`~qmedimg.backends.fake`, :mod:`~qmedimg.backends.ibm`) behind
one interface (:class:`~qmedimg.backends.base.Backend`). What the backends of one piece of work share lives
in a :class:`~qmedimg.backends.context.BackendContext` the workflow passes to each.

Example::

    from qmedimg.backends import HeadRequest, get_backend
    backend = get_backend("fake_brisbane", noise_scale=2)
    values = backend.run_head(HeadRequest(spec, weights, angles)).values
"""

from qmedimg.backends.base import Backend, BackendInfo, HeadRequest, HeadResult, JobOptions
from qmedimg.backends.context import BackendContext, PreparedCircuit
from qmedimg.backends.registry import KINDS, backend_for, get_backend, load_backends, registry_path
from qmedimg.backends.study_rules import StudyRules

__all__ = ["Backend", "BackendContext", "BackendInfo", "HeadRequest", "HeadResult", "JobOptions", "PreparedCircuit",
           "StudyRules", "KINDS", "backend_for", "get_backend", "load_backends", "registry_path"]
