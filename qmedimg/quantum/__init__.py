"""The quantum head: circuits from ``circuits/`` templates (:mod:`~qmedimg.quantum.circuits`),
qmedimg's exact estimator (:mod:`~qmedimg.quantum.exact`), the batched parameter-shift gradient
(:mod:`~qmedimg.quantum.gradients`) and the QNN / torch layer (:mod:`~qmedimg.quantum.qnn`)."""
