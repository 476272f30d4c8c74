"""The quantum head as a torch layer: a Qiskit ``EstimatorQNN`` with one-PUB forward and backward,
attached through qiskit-machine-learning's ``TorchConnector``.

* :class:`FastEstimatorQNN` — an ``EstimatorQNN`` whose forward is one broadcast PUB
  ``(circuit, [[o] for o in observables], values)`` and whose backward calls
  :class:`~qmedimg.quantum.adjoint.AdjointGradient` (exact) or
  :class:`~qmedimg.quantum.gradients.BatchedParamShiftGradient` (any estimator).
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
from string import ascii_lowercase

import numpy as np
import torch
from qiskit.primitives import BaseEstimatorV2
from qiskit_machine_learning.connectors import TorchConnector
from qiskit_machine_learning.exceptions import QiskitMachineLearningError
from qiskit_machine_learning.neural_networks import EstimatorQNN
from torch import nn

from qmedimg.quantum.circuits import CircuitSpec
from qmedimg.quantum.adjoint import default_gradient
from qmedimg.quantum.gradients import BatchedParamShiftGradient, column


def parameter_rows(input_data: np.ndarray | None, weights: np.ndarray | None) -> tuple[np.ndarray, int]:
    """(rows of inputs then weights, the weights repeated on every row; number of samples): what
    qiskit-ML's ``NeuralNetwork._preprocess_forward`` builds, from public inputs only."""
    if input_data is None:
        return (np.asarray([]) if weights is None else np.broadcast_to(weights, (1, len(weights)))), 1
    if weights is None:
        return input_data, input_data.shape[0]
    n = input_data.shape[0]
    return np.concatenate((input_data, np.broadcast_to(weights, (n, len(weights)))), axis=1), n


class FastEstimatorQNN(EstimatorQNN):
    """``EstimatorQNN`` with a one-PUB forward and a one-call backward.

    Same constructor as ``EstimatorQNN``; the gradient defaults to
    :func:`~qmedimg.quantum.adjoint.default_gradient` on the same estimator: adjoint differentiation
    (or batched parameter shift, where faster) for exact values of the ``ExactEstimator``, one PUB
    of shifted rows (:class:`BatchedParamShiftGradient`) for any other estimator. Give ``default_precision=0.0`` for
    exact estimators (qiskit-ML's default 0.015625 makes Aer add Gaussian noise to every value).
    It overrides ``EstimatorQNN``'s ``_forward``/``_backward`` hooks and reads its ``_circuit`` (the
    circuit with inputs, then weights, as parameters; no public accessor): hence the
    ``qiskit-machine-learning<0.10`` bound in ``pyproject.toml``.
    """

    def __init__(self, **kwargs):
        if kwargs.get("gradient") is None:
            kwargs["gradient"] = default_gradient(kwargs["estimator"], kwargs.get("default_precision", 0.015625))
        super().__init__(**kwargs)
        self._observable_column = column(self.observables)
        self.value_covariance: np.ndarray | None = None
        """(samples, outputs, outputs): each sample's covariance of its outputs in the last forward pass, where the
        estimator's values are means over noise trajectories (its result's ``value_covariance``); else None."""

    def _forward(self, input_data, weights):
        values, num_samples = parameter_rows(input_data, weights)
        pub = (self._circuit, self._observable_column, values)
        result = self.estimator.run([pub], precision=self.default_precision).result()[0]
        self.value_covariance = result.metadata.get("value_covariance")
        return np.asarray(result.data.evs).reshape(len(self.observables), num_samples).T

    def forward_and_vjp(self, input_data, weights):
        """(outputs (samples, outputs), ``cotangent (samples, outputs) -> (input grads, weight
        grads)``) from one simulation when the estimator allows it (noisy Aer), else None (no
        ``value_covariance`` either way)."""
        self.value_covariance = None
        values, _ = parameter_rows(input_data, weights)
        num_inputs = self.num_inputs if self.input_gradients else 0
        prepared = self.gradient.forward_and_vjp(self._circuit, self._observable_column, values, num_inputs)
        if prepared is None:
            return None
        outputs, vjp = prepared

        def loss_gradient(cotangent):
            grad_in, grad_w = vjp(np.asarray(cotangent, dtype=float).T)
            return (grad_in if self.input_gradients else None), grad_w

        return outputs.T, loss_gradient

    def _backward(self, input_data, weights):
        if not isinstance(self.gradient, BatchedParamShiftGradient):
            return super()._backward(input_data, weights)
        values, num_samples = parameter_rows(input_data, weights)
        if values.size == 0:
            return None, None
        params = list(self._circuit.parameters)
        if not self.input_gradients:
            params = params[self.num_inputs :]
        grads = self.gradient.gradients(self._circuit, self._observable_column, values, params)
        grads = grads.transpose(1, 0, 2)  # (samples, observables, parameters)
        if self.input_gradients:
            return grads[:, :, : self.num_inputs], grads[:, :, self.num_inputs :]
        return None, grads


def _einsum_signature(ndim: int, for_weights: bool = False) -> str:
    """The contraction of the upstream gradient with a Jacobian, as qiskit-ML 0.9's TorchConnector writes it."""
    t = ascii_lowercase[:ndim]
    return f"{t[:-1]},{t}->{t[-1]}" if for_weights else f"{t[:-1]},{t}->{t[0] + t[2:]}"


class _ConnectorFunction(torch.autograd.Function):
    """TorchConnector's autograd function for a dense QNN, written against the QNN's public
    ``forward``/``backward`` (bit-identical to qiskit-ML 0.9.1's). With a ``SummedGradientEstimator``
    the forward also simulates what the backward needs and the backward passes the loss gradient down."""

    @staticmethod
    def forward(ctx, input_data, weights, neural_network, sparse, for_backward):  # type: ignore[override]
        if sparse or neural_network.sparse:
            raise NotImplementedError("sparse QNNs are not supported (an EstimatorQNN is always dense)")
        if input_data.shape[-1] != neural_network.num_inputs:
            raise QiskitMachineLearningError(f"Invalid input dimension! Received {input_data.shape} and "
                                             f"expected input compatible to {neural_network.num_inputs}")
        ctx.neural_network, ctx.loss_gradient = neural_network, None
        ctx.save_for_backward(input_data, weights)
        x, w = input_data.detach().cpu().numpy(), weights.detach().cpu().numpy()
        if for_backward and input_data.dim() == 2 and _passes_loss_gradient(neural_network):
            prepared = neural_network.forward_and_vjp(x, w)
            if prepared is not None:
                outputs, ctx.loss_gradient = prepared
                return torch.as_tensor(outputs, dtype=torch.float).to(input_data.device)
        result = torch.as_tensor(neural_network.forward(x, w), dtype=torch.float)
        return (result[0] if input_data.dim() == 1 else result).to(input_data.device)

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        input_data, weights = ctx.saved_tensors
        if ctx.loss_gradient is not None:
            cotangent = grad_output.detach().cpu().double().reshape(-1, ctx.neural_network.output_shape[0]).numpy()
            grad_in, grad_w = ctx.loss_gradient(cotangent)
            if grad_in is not None:
                grad_in = torch.as_tensor(grad_in, dtype=input_data.dtype).reshape(input_data.shape).to(input_data.device)
            return grad_in, torch.as_tensor(grad_w, dtype=weights.dtype).to(weights.device), None, None, None
        if grad_output.dim() == 1:
            grad_output = grad_output.view(1, -1)
        grad_output = grad_output.detach().cpu()
        grad_in, grad_w = ctx.neural_network.backward(input_data.detach().cpu().numpy(), weights.detach().cpu().numpy())
        if grad_in is not None:
            grad_in = torch.as_tensor(grad_in, dtype=torch.float)
            grad_in = torch.einsum(_einsum_signature(max(grad_output.ndim, grad_in.ndim)), grad_output,
                                   grad_in).to(input_data.device)
        if grad_w is not None:
            grad_w = torch.as_tensor(grad_w, dtype=torch.float)
            grad_w = torch.einsum(_einsum_signature(max(grad_output.ndim, grad_w.ndim), True), grad_output,
                                  grad_w).to(weights.device)
        return grad_in, grad_w, None, None, None


def _passes_loss_gradient(qnn) -> bool:
    gradient = getattr(qnn, "gradient", None)
    return isinstance(gradient, BatchedParamShiftGradient) and gradient.sums_loss_gradient


class QuantumTorchConnector(TorchConnector):
    """qiskit-ML's ``TorchConnector``, except where the gradient can take the loss gradient
    (:meth:`BatchedParamShiftGradient.forward_and_vjp`) when autograd is on: then the backward hands
    the loss gradient down. With a ``SummedGradientEstimator`` (noisy Aer) the forward pass also
    simulates the input-shifted rows and the weights' gradient is summed over the batch before
    simulation: 1,824 Aer rows per batch of 32 become 288 plus 48 of five chained passes. With the
    adjoint gradient (exact, wide circuits) one backward sweep per sample gives the whole product.
    Otherwise TorchConnector's forward and backward, unchanged."""

    def forward(self, input_data=None):
        input_ = torch.zeros(0) if input_data is None else input_data
        for_backward = torch.is_grad_enabled() and (input_.requires_grad or self.weight.requires_grad)
        return _ConnectorFunction.apply(input_, self.weight, self.neural_network, self.sparse, for_backward)


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
