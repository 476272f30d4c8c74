"""What the kinds that run on a calibrated device (``fake``, ``ibm``) share: transpilation for it
(preset pass manager, layout, dynamical decoupling), observables mapped to the layout, and the
transpile report (physical qubits, depth, 2-qubit gates, estimated fidelity).

Example::

    from qmedimg.backends import get_backend
    backend = get_backend("fake_torino", transpile={"optimization_level": 3})
    prepared = backend.prepare(spec)                    # ISA circuit + layout-mapped observables
    backend.describe(spec).transpile["estimated_fidelity"]
"""

from __future__ import annotations

from qmedimg.backends.base import Backend
from qmedimg.backends.context import PreparedCircuit
from qmedimg.backends.device_estimator import density_matrix_limit
from qmedimg.backends.devices import two_qubit_gate
from qmedimg.backends.options import DynamicalDecoupling
from qmedimg.backends.study_rules import StudyRules
from qmedimg.cores import cores
from qmedimg.errors import QmedimgError
from qmedimg.quantum.circuits import CircuitSpec


class DeviceStudy(StudyRules):
    """A noise study on a calibrated device: its shots and optimization levels; a density matrix per core
    under noise."""

    def point_overrides(self, *, scale, shots, opt_level, repeat) -> dict:
        overrides: dict = {"shots": shots}
        if opt_level is not None:
            overrides["transpile"] = {"optimization_level": opt_level}
        return overrides

    def simulation_memory(self, qubits: int, noisy: bool) -> tuple[int, str]:
        """A density matrix (16·4^n bytes) per core under noise up to the CPU's density-matrix limit
        (:func:`~.device_estimator.density_matrix_limit`) of active qubits, a statevector (16·2^n) per core otherwise
        (trajectories, or no noise)."""
        if noisy and qubits <= density_matrix_limit("CPU"):
            return 16 * 4**qubits * cores(), f"density matrix, {cores()} parallel experiments"
        return super().simulation_memory(qubits, noisy)


class DeviceBackend(Backend):
    """A backend whose circuits are transpiled for a calibrated ``BackendV2`` (its ``_device``)."""

    _transpiles = True
    _study_rules = DeviceStudy

    def _initial_layout(self, num_qubits: int) -> list[int] | None:
        """The entry's ``transpile.initial_layout``, checked against the circuit and the device."""
        layout, device = self.entry.transpile.initial_layout, self._device
        if layout is not None and (len(set(layout)) != num_qubits or len(layout) != num_qubits
                                   or max(layout) >= device.num_qubits):
            raise QmedimgError(f"backend '{self.name}': transpile.initial_layout {layout} must list {num_qubits} "
                               f"distinct physical qubits below {device.num_qubits}")
        return layout

    def _pass_manager(self, num_qubits: int):
        """The preset pass manager of the entry's transpile options (+ DD), for a circuit this wide."""
        from qiskit.transpiler import generate_preset_pass_manager

        options, device = self.entry.transpile, self._device
        if num_qubits > device.num_qubits:
            raise QmedimgError(f"backend '{self.name}': the head has {num_qubits} qubits but its device {device.name} "
                               f"has only {device.num_qubits}; use --qubits {device.num_qubits} or fewer, or a "
                               "backend with a larger device")
        pm = generate_preset_pass_manager(
            optimization_level=options.optimization_level, backend=device,
            initial_layout=self._initial_layout(num_qubits),
            layout_method=None if options.layout_method == "default" else options.layout_method,
            routing_method=None if options.routing_method == "default" else options.routing_method,
            seed_transpiler=options.seed_transpiler, approximation_degree=options.approximation_degree)
        if options.dynamical_decoupling is not None:
            pm.scheduling = dd_passes(device, options.dynamical_decoupling)
        return pm

    def _transpile_key(self) -> tuple:
        return (type(self).__name__, self._device_name, self.entry.transpile.model_dump_json())

    def _transpile(self, spec: CircuitSpec) -> PreparedCircuit:
        isa = self._pass_manager(spec.num_qubits).run(spec.circuit)
        return PreparedCircuit(isa, [o.apply_layout(isa.layout) for o in spec.observables])

    def _noise_scale(self) -> float:
        """How the calibrated error rates are scaled (1 = as calibrated)."""
        return 1.0

    def _transpile_report(self, spec: CircuitSpec) -> dict:
        """Physical qubits, depth, 2-qubit gate count and the calibration's estimated circuit fidelity
        (product of (1 - error) over every instruction and the measured qubits' readout)."""
        prepared = self.prepare(spec)
        isa = prepared.circuit
        small, physical = prepared.active
        two_qubit = sum(1 for inst in small.data if inst.operation.num_qubits == 2)
        report = {"backend": self.name, "device": self._device_name, "circuit": spec.name,
                  "physical_qubits": physical, "depth": small.depth(), "two_qubit_gates": two_qubit,
                  "ops": dict(small.count_ops()), "estimated_fidelity": None}
        target = getattr(self._device, "target", None)
        if target is not None:
            scale = self._noise_scale()
            fidelity = 1.0
            for inst in isa.data:
                name = inst.operation.name
                qargs = tuple(isa.find_bit(q).index for q in inst.qubits)
                if name in target and qargs in (target[name] or {}):
                    props = target[name][qargs]
                    if props is not None and props.error is not None:
                        fidelity *= max(0.0, 1 - props.error * scale)
            for q in physical:
                props = target["measure"].get((q,)) if "measure" in target else None
                if props is not None and props.error is not None:
                    fidelity *= max(0.0, 1 - props.error * scale)
            report["estimated_fidelity"] = round(fidelity, 4)
        return report

    def _check_device(self, spec: CircuitSpec) -> list[str]:
        device = self._device
        report = self._transpile_report(spec)
        return [f"device: {device.name}, {device.num_qubits} qubits, 2-qubit gate {two_qubit_gate(device)}",
                f"sel transpiled: physical qubits {report['physical_qubits']}, depth {report['depth']}, "
                f"{report['two_qubit_gates']} two-qubit gates, estimated fidelity {report['estimated_fidelity']}"]


def dd_passes(device, dd: DynamicalDecoupling):
    """ALAP/ASAP scheduling and padding of idle windows with XX or XY4."""
    from qiskit.circuit.library import XGate, YGate
    from qiskit.transpiler import PassManager
    from qiskit.transpiler.passes import ALAPScheduleAnalysis, ASAPScheduleAnalysis, PadDynamicalDecoupling

    if dd.sequence == "XY4" and "y" not in device.operation_names:
        raise QmedimgError(f"dynamical_decoupling.sequence XY4 needs a 'y' gate, which {device.name} does not "
                           "have; use XX")
    sequence = [XGate(), XGate()] if dd.sequence == "XX" else [XGate(), YGate(), XGate(), YGate()]
    schedule = ALAPScheduleAnalysis if dd.scheduling == "alap" else ASAPScheduleAnalysis
    return PassManager([schedule(target=device.target),
                        PadDynamicalDecoupling(target=device.target, dd_sequence=sequence)])
