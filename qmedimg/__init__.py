"""qmedimg: hybrid quantum-classical medical image classification on Qiskit."""

from qmedimg.errors import QmedimgError

__all__ = ["QmedimgError"]
__version__ = "0.1.0"
