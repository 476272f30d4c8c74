"""Reaching IBM Quantum through Qiskit Runtime: the service, the device and the executor-based
``Estimator``, each call under a timeout, each failure one line that says why.

Example::

    from qmedimg.backends.runtime import runtime_backend, runtime_estimator
    device = runtime_backend(entry)                  # the QPU, or the fake device in local mode
    estimator = runtime_estimator(entry, device)     # executor Estimator in the entry's mode

Credentials are read by ``QiskitRuntimeService`` from QISKIT_IBM_TOKEN / QISKIT_IBM_INSTANCE or its
saved account; qmedimg never reads, prints or writes them.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from qmedimg.backends.devices import fake_device
from qmedimg.errors import QmedimgError

try:  # imported here so tests can replace the one network-facing class
    from qiskit_ibm_runtime import QiskitRuntimeService
except ImportError:  # pragma: no cover - a dependency; kept importable for error messages
    QiskitRuntimeService = None

NO_CREDENTIALS = ("no IBM Quantum credentials found: set QISKIT_IBM_TOKEN (and QISKIT_IBM_INSTANCE) or run "
                  "QiskitRuntimeService.save_account(token=..., instance=...) once")


def account_file() -> Path:
    """Where ``QiskitRuntimeService.save_account`` keeps accounts (``~/.qiskit/qiskit-ibm.json``), read now:
    Runtime fixes its own default when it is imported."""
    return Path.home() / ".qiskit" / "qiskit-ibm.json"


def credentials_found(entry) -> bool:
    """Whether Qiskit Runtime would find an account for the entry's channel (QISKIT_IBM_TOKEN, or a saved
    account), read on this machine only: nothing is sent, nothing written, never a prompt.

    Example::

        credentials_found(get_backend("ibm_brisbane").entry)   # False: a dry run plans on FakeBrisbane
    """
    from qiskit_ibm_runtime.accounts import AccountManager
    from qiskit_ibm_runtime.accounts.exceptions import AccountNotFoundError

    saved = account_file()
    if not os.environ.get("QISKIT_IBM_TOKEN") and not saved.is_file():
        return False  # Runtime would create an empty account file only to find nothing in it
    try:
        AccountManager.get(filename=str(saved), channel=entry.channel)
    except AccountNotFoundError:
        return False
    except Exception:  # an account is there but damaged or invalid: the service says what is wrong with it
        return True
    return True


def with_timeout(function, seconds: float, what: str):
    """Run ``function()`` in a daemon thread; a clear error if it takes longer than ``seconds``."""
    box: dict = {}

    def target():
        try:
            box["value"] = function()
        except BaseException as exc:  # re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise QmedimgError(f"{what}: no answer from IBM Quantum within {seconds:g} s (offline? behind a proxy?)")
    if "error" in box:
        raise box["error"]
    return box["value"]


def runtime_service(entry):
    """``QiskitRuntimeService`` for the entry's channel/instance, or one clear line why not."""
    from qiskit_ibm_runtime.accounts.exceptions import AccountNotFoundError

    kwargs = {"channel": entry.channel, "filename": str(account_file())}
    if entry.instance:
        kwargs["instance"] = entry.instance
    try:
        return with_timeout(lambda: QiskitRuntimeService(**kwargs), entry.timeout_s, "connecting")
    except AccountNotFoundError:
        raise QmedimgError(NO_CREDENTIALS) from None
    except QmedimgError:
        raise
    except Exception as exc:  # DNS failure, bad token, bad instance: say which, in one line
        network = _network_failure(exc)
        if network:  # Runtime reports a failed DNS look-up as an invalid token: say what really happened
            raise QmedimgError(f"cannot reach IBM Quantum ({entry.channel}): the network failed ({network}); "
                               "offline, or behind a proxy? (the token was not checked)") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise QmedimgError(f"cannot reach IBM Quantum ({entry.channel}): {first[:200]}") from None


def _network_failure(exc: BaseException) -> str | None:
    """A short description of the DNS or connection failure behind ``exc`` (its chain of causes), if any."""
    import socket

    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    for cause in chain:
        if isinstance(cause, socket.gaierror):
            return f"DNS look-up failed: {cause.strerror or cause}"
    for cause in chain:
        if isinstance(cause, (ConnectionError, TimeoutError)) or type(cause).__name__ in (
                "NameResolutionError", "NewConnectionError", "ConnectTimeoutError"):
            return type(cause).__name__
    return None


def runtime_backend(entry):
    """The device circuits are transpiled for: the fake device in local mode, else the QPU."""
    if entry.local:
        return fake_device(entry.local)
    service = runtime_service(entry)
    try:
        return with_timeout(lambda: service.backend(entry.device), entry.timeout_s, f"looking up {entry.device}")
    except QmedimgError:
        raise
    except Exception as exc:
        raise QmedimgError(f"IBM Quantum has no backend '{entry.device}' for this account: "
                           f"{str(exc).splitlines()[0][:200]}") from None


def _unsupported_locally(options: dict) -> str | None:
    resilience = options.get("resilience", {}) or {}
    if resilience.get("pec_mitigation") or (resilience.get("zne", {}) or {}).get("amplifier") == "pea":
        return "PEC/PEA need a layer noise model learned on the QPU (NoiseLearnerV3)"
    if resilience.get("layer_noise_model") is not None:
        return "a layer noise model"
    return None


def runtime_estimator(entry, device):
    """The executor-based Runtime ``Estimator`` (the deprecated ``EstimatorV2`` ignores mitigation in
    local mode) in the entry's execution mode, with its options and shots."""
    from qiskit_ibm_runtime import Batch, Session
    from qiskit_ibm_runtime.executor_estimator import Estimator

    if entry.local:
        problem = _unsupported_locally(entry.options)
        if problem:
            raise QmedimgError(f"local testing mode cannot apply {problem}; remove it from options or use a QPU")
    mode = {"batch": Batch, "session": Session}.get(entry.mode)
    options = dict(entry.options)
    if entry.shots is not None:
        options["default_shots"] = entry.shots
    return Estimator(mode=mode(backend=device) if mode else device, options=options)


def trim_for_local(prepared, name: str):
    """Drop idle wires so local mode simulates only the active qubits, which must be 0..k-1 (the
    simulator maps wire i to physical qubit i); the observables lose the same wires."""
    from qiskit.quantum_info import SparsePauliOp

    observables = prepared.observables
    small, physical = prepared.active
    if physical != list(range(len(physical))):
        raise QmedimgError(f"backend '{name}': local mode needs the circuit on physical qubits 0..k-1 but routing "
                           f"used {physical}; set transpile.initial_layout or transpile.routing_method")
    k = len(physical)
    trimmed = []
    for op in observables:
        terms = op.to_sparse_list()
        if any(q >= k for _, qubits, _ in terms for q in qubits):
            raise QmedimgError(f"backend '{name}': an observable acts on a qubit the circuit never touches")
        trimmed.append(SparsePauliOp.from_sparse_list(terms, k))
    return small, trimmed
