"""The quantum head as a torch layer: a Qiskit ``EstimatorQNN`` with one-PUB forward and backward,
attached through qiskit-machine-learning's ``TorchConnector``.

* :class:`FastEstimatorQNN` — an ``EstimatorQNN`` whose forward is one broadcast PUB
  ``(circuit, [[o] for o in observables], values)`` and whose backward calls
  :class:`~qmedimg.quantum.gradients.BatchedParamShiftGradient`.
* :class:`QuantumTorchConnector` — qiskit-ML's ``TorchConnector``, except that with a
  :class:`~qmedimg.quantum.gradients.SummedGradientEstimator` (noisy Aer) its backward passes the
  loss gradient down, so the weights' gradient is summed over the batch before simulation.
* :class:`QuantumHead` — a circuit as a ``torch.nn.Module``: (B, n) angles -> (B, O) values.

Example::

    from qmedimg.quantum.circuits import load_circuit
    from qmedimg.quantum.exact import ExactEstimator
    from qmedimg.quantum.qnn import QuantumHead

    spec = load_circuit("sel")
    head = QuantumHead(spec, ExactEstimator())          # exact values, precision 0
    values = head(torch.rand(8, 4) * 3)                 # (8, 4) <Z_i>
"""

from __future__ import annotations

import math

import numpy as np
import torch
from qiskit.primitives import BaseEstimatorV2
from qiskit_machine_learning.connectors import TorchConnector
from qiskit_machine_learning.connectors.torch_connector import _TorchNNFunction
from qiskit_machine_learning.neural_networks import EstimatorQNN
from torch import nn

from qmedimg.quantum.circuits import CircuitSpec
from qmedimg.quantum.gradients import BatchedParamShiftGradient, column


class FastEstimatorQNN(EstimatorQNN):
    """``EstimatorQNN`` with a one-PUB forward and a one-PUB batched parameter-shift backward.

    Same constructor as ``EstimatorQNN``; the gradient defaults to
    :class:`BatchedParamShiftGradient` on the same estimator. Give ``default_precision=0.0`` for
    exact estimators (qiskit-ML's default 0.015625 makes Aer add Gaussian noise to every value).
    """

    def __init__(self, **kwargs):
        if kwargs.get("gradient") is None:
            kwargs["gradient"] = BatchedParamShiftGradient(
                kwargs["estimator"], precision=kwargs.get("default_precision", 0.015625)
            )
        super().__init__(**kwargs)
        self._observable_column = column(self._observables)

    def _forward(self, input_data, weights):
        values, num_samples = self._preprocess_forward(input_data, weights)
        pub = (self._circuit, self._observable_column, values)
        evs = self.estimator.run([pub], precision=self._default_precision).result()[0].data.evs
        return np.asarray(evs).reshape(len(self._observables), num_samples).T

    def forward_and_vjp(self, input_data, weights):
        """(outputs (samples, outputs), ``cotangent (samples, outputs) -> (input grads, weight
        grads)``) from one simulation when the estimator allows it (noisy Aer), else None."""
        values, _ = self._preprocess_forward(input_data, weights)
        num_inputs = self._num_inputs if self._input_gradients else 0
        prepared = self.gradient.forward_and_vjp(self._circuit, self._observable_column, values, num_inputs)
        if prepared is None:
            return None
        outputs, vjp = prepared

        def loss_gradient(cotangent):
            grad_in, grad_w = vjp(np.asarray(cotangent, dtype=float).T)
            return (grad_in if self._input_gradients else None), grad_w

        return outputs.T, loss_gradient

    def _backward(self, input_data, weights):
        if not isinstance(self.gradient, BatchedParamShiftGradient):
            return super()._backward(input_data, weights)
        values, num_samples = self._preprocess_forward(input_data, weights)
        if values.size == 0:
            return None, None
        params = list(self._circuit.parameters)
        if not self._input_gradients:
            params = params[self._num_inputs :]
        grads = self.gradient.gradients(self._circuit, self._observable_column, values, params)
        grads = grads.transpose(1, 0, 2)  # (samples, observables, parameters)
        if self._input_gradients:
            return grads[:, :, : self._num_inputs], grads[:, :, self._num_inputs :]
        return None, grads


class _SummedGradientFunction(_TorchNNFunction):
    """TorchConnector's autograd function; on noisy Aer the forward also simulates what the
    backward needs (one Aer call fewer) and the backward passes the loss gradient down."""

    @staticmethod
    def forward(ctx, input_data, weights, neural_network, sparse, for_backward):  # type: ignore[override]
        ctx.loss_gradient = None
        if (for_backward and _passes_loss_gradient(neural_network, sparse) and input_data.dim() == 2
                and input_data.shape[-1] == neural_network.num_inputs):
            prepared = neural_network.forward_and_vjp(input_data.detach().cpu().numpy(), weights.detach().cpu().numpy())
            if prepared is not None:
                outputs, ctx.loss_gradient = prepared
                ctx.neural_network, ctx.sparse = neural_network, sparse
                ctx.save_for_backward(input_data, weights)
                return torch.as_tensor(outputs, dtype=torch.float).to(input_data.device)
        return _TorchNNFunction.forward(ctx, input_data, weights, neural_network, sparse)

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        if ctx.loss_gradient is None:
            return *_TorchNNFunction.backward(ctx, grad_output), None
        input_data, weights = ctx.saved_tensors
        cotangent = grad_output.detach().cpu().double().reshape(-1, ctx.neural_network.output_shape[0]).numpy()
        grad_in, grad_w = ctx.loss_gradient(cotangent)
        if grad_in is not None:
            grad_in = torch.as_tensor(grad_in, dtype=input_data.dtype).reshape(input_data.shape).to(input_data.device)
        return grad_in, torch.as_tensor(grad_w, dtype=weights.dtype).to(weights.device), None, None, None


def _passes_loss_gradient(qnn, sparse) -> bool:
    gradient = getattr(qnn, "gradient", None)
    return isinstance(gradient, BatchedParamShiftGradient) and not sparse and gradient.sums_loss_gradient


class QuantumTorchConnector(TorchConnector):
    """qiskit-ML's ``TorchConnector``, except with a ``SummedGradientEstimator`` (noisy Aer)
    when autograd is on: then the forward pass also simulates the input-shifted rows, and the backward
    hands the loss gradient down, so the weights' gradient is summed over the batch before simulation
    (:meth:`BatchedParamShiftGradient.forward_and_vjp`): 1,824 Aer rows per batch of 32 become 288
    plus 48 of five chained passes. Otherwise TorchConnector's own forward and backward, unchanged."""

    def forward(self, input_data=None):
        input_ = torch.zeros(0) if input_data is None else input_data
        for_backward = torch.is_grad_enabled() and (input_.requires_grad or self._weights.requires_grad)
        return _SummedGradientFunction.apply(input_, self._weights, self._neural_network, self._sparse, for_backward)


class QuantumHead(nn.Module):
    """A circuit as a torch layer: (B, n) angles -> (B, O) expectation values, via qiskit-ML's
    ``TorchConnector`` (:class:`QuantumTorchConnector`) around
    :class:`FastEstimatorQNN`.

    ``precision`` 0.0 means exact values (use it with exact estimators); the weights start
    uniform in [-π, π) from torch's generator, so ``torch.manual_seed`` makes them repeatable.
    """

    def __init__(self, spec: CircuitSpec, estimator: BaseEstimatorV2, precision: float = 0.0,
                 circuit=None, observables=None):
        super().__init__()
        self.spec = spec
        self.qnn = FastEstimatorQNN(
            circuit=circuit if circuit is not None else spec.circuit,
            estimator=estimator,
            observables=list(observables if observables is not None else spec.observables),
            input_params=list(spec.inputs),
            weight_params=list(spec.weights),
            input_gradients=True,
            default_precision=precision,
        )
        initial = (torch.rand(len(spec.weights), dtype=torch.float64) * 2 - 1) * math.pi
        self.connector = QuantumTorchConnector(self.qnn, initial_weights=initial.numpy())

    @property
    def num_outputs(self) -> int:
        return len(self.spec.observables)

    def forward(self, angles: torch.Tensor) -> torch.Tensor:
        return self.connector(angles)
