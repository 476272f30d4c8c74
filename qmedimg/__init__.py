"""qmedimg: hybrid quantum-classical medical image classification on Qiskit.

The Python API is the same set of functions the ``qmedimg`` command calls::

    import qmedimg
    metrics = qmedimg.train(qmedimg.make_config(dataset="breastmnist", out="runs/breast"))
    qmedimg.evaluate_run("runs/breast", "fake_brisbane")
    qmedimg.noise_study(["runs/breast"], backends=["fake_brisbane"], scales=[0, 1, 2])
    qmedimg.predict("runs/breast", ["scan.png"])
    qmedimg.export_run("runs/breast", "breast.zip")        # one file to hand over; read back with opened_run
    qmedimg.Inference(qmedimg.load_run("runs/breast"), images).on(qmedimg.get_backend("exact")).decisions

Names are imported on first use, so ``import qmedimg`` stays light.
"""

from importlib import import_module

from qmedimg.errors import QmedimgError

_API = {
    "make_config": "qmedimg.rundir", "load_run": "qmedimg.rundir", "TrainConfig": "qmedimg.rundir",
    "Inference": "qmedimg.inference",
    "train": "qmedimg.workflows.train", "resume": "qmedimg.workflows.train",
    "evaluate_run": "qmedimg.workflows.evaluate", "noise_study": "qmedimg.workflows.noise_study",
    "width_study": "qmedimg.workflows.width_study",
    "predict": "qmedimg.workflows.predict", "explain": "qmedimg.workflows.predict",
    "export_run": "qmedimg.workflows.export", "opened_run": "qmedimg.workflows.export",
    "compare": "qmedimg.workflows.compare", "get_backend": "qmedimg.backends", "load_circuit": "qmedimg.quantum.circuits",
    "load_dataset": "qmedimg.data",
}

__all__ = ["QmedimgError", *_API]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _API:
        return getattr(import_module(_API[name]), name)
    raise AttributeError(f"module 'qmedimg' has no attribute '{name}'")
