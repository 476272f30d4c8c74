"""The 2×2 and 4×4 matrix algebra of the trajectory kernel (:mod:`qmedimg.quantum.trajectory_kernel`): a qubit's
pending matrix, a two-qubit step's 4×4 with its qubits' pending matrices folded in, held and tail matrices.

Conventions as in the kernel: a 4×4 on (a, b) is in Qiskit's order for qargs [a, b] (local index = bit_a + 2·bit_b).
"""

from __future__ import annotations

import numba


@numba.njit(nogil=True, cache=True, inline="always")
def left_multiply(m, pending):  # pragma: no cover - compiled
    """pending <- M · pending (2×2, in place)."""
    p00, p01, p10, p11 = pending[0, 0], pending[0, 1], pending[1, 0], pending[1, 1]
    pending[0, 0] = m[0, 0] * p00 + m[0, 1] * p10
    pending[0, 1] = m[0, 0] * p01 + m[0, 1] * p11
    pending[1, 0] = m[1, 0] * p00 + m[1, 1] * p10
    pending[1, 1] = m[1, 0] * p01 + m[1, 1] * p11


@numba.njit(nogil=True, cache=True)
def fold_gate(gate, pa, pb, u):  # pragma: no cover - compiled
    """u <- gate · (pb ⊗ pa)."""
    for r in range(4):
        for c in range(4):
            acc = 0j
            for m in range(4):
                acc += gate[r, m] * pb[m >> 1, c >> 1] * pa[m & 1, c & 1]
            u[r, c] = acc


@numba.njit(nogil=True, cache=True)
def times_held(u, held, swapped, out):  # pragma: no cover - compiled
    """out <- U · H, H a held 4×4 (in the other qubit order when ``swapped``: local bits exchanged)."""
    for r in range(4):
        for c in range(4):
            acc = 0j
            for m in range(4):
                mm, cc = (((m & 1) << 1) | (m >> 1), ((c & 1) << 1) | (c >> 1)) if swapped else (m, c)
                acc += u[r, m] * held[mm, cc]
            out[r, c] = acc


@numba.njit(nogil=True, cache=True)
def reset_pending(pending, a, b):  # pragma: no cover - compiled
    """The pending matrices of qubits a and b <- identities (after a two-qubit gate took them in)."""
    pending[a, :, :] = 0.0
    pending[b, :, :] = 0.0
    for i in range(2):
        pending[a, i, i] = 1.0
        pending[b, i, i] = 1.0


@numba.njit(nogil=True, cache=True)
def is_identity(m):  # pragma: no cover - compiled
    """Whether a 2×2 matrix is exactly the identity (a pending matrix with nothing in it)."""
    return m[0, 0] == 1.0 and m[1, 1] == 1.0 and m[0, 1] == 0.0 and m[1, 0] == 0.0


@numba.njit(nogil=True, cache=True)
def tails_times(ta, tb, u, out):  # pragma: no cover - compiled
    """out <- (tb ⊗ ta) · U (a two-qubit step's 4×4, qubit a the low bit)."""
    for r in range(4):
        for c in range(4):
            acc = 0j
            for m in range(4):
                acc += tb[r >> 1, m >> 1] * ta[r & 1, m & 1] * u[m, c]
            out[r, c] = acc
