"""Passes over a statevector kept as two float arrays, real and imaginary parts (``psi[0]``, ``psi[1]``, shape
(2, 2**n)), for the noise-trajectory sampler's forward runs (:mod:`qmedimg.quantum.trajectory_kernel`).

Why split: a 4×4 pass over complex128 amplitudes compiles to scalar arithmetic (about 7.5 µs per pass at 12
qubits on one core), since LLVM does not vectorize the interleaved complex products. On split parts, a block
of the pass whose four amplitude runs are each contiguous (the lower qubit of the pair at bit 3 or above, runs
of ≥ 8 amplitudes) is handed to :func:`mix_runs` as eight separate 1-D views, which LLVM vectorizes (it checks
at run time that the views do not overlap): 2–4× faster. A pair with its lower qubit at bits 0–2 first gathers
its groups' amplitudes into contiguous runs (and scatters them back after): 6.4 µs against the complex pass's
7.5. Results equal the complex pass up to rounding (``tests/test_trajectory_kernel_exact.py``).

Expectation values of Pauli labels come from the split state too (:func:`label_values`; Z strings from one
Walsh–Hadamard transform of the probabilities, whose butterflies of ≥ 8 vectorize the same way).

Conventions as in the kernel: little-endian qubit order; a 4×4 on (a, b) is in Qiskit's order for qargs
[a, b] (local index = bit_a + 2·bit_b).
"""

from __future__ import annotations

import numba
import numpy as np

from qmedimg.quantum.trajectory_matrices import is_identity

VECTOR_RUN = 8  # shortest run of amplitudes handed to the vectorized block (one AVX-512 register of float64)
GATHERED_RUN = 256  # gathered groups mixed per call


@numba.njit(nogil=True, cache=True, fastmath=True, inline="always")
def mix_runs(r0, r1, r2, r3, m0, m1, m2, m3, u, count):  # pragma: no cover - compiled
    """(r_j + i·m_j)[k] <- Σ_c u[j, c]·(r_c + i·m_c)[k] for k < count: the four runs of one block of a pass."""
    a00, a01, a02, a03 = u[0, 0].real, u[0, 1].real, u[0, 2].real, u[0, 3].real
    a10, a11, a12, a13 = u[1, 0].real, u[1, 1].real, u[1, 2].real, u[1, 3].real
    a20, a21, a22, a23 = u[2, 0].real, u[2, 1].real, u[2, 2].real, u[2, 3].real
    a30, a31, a32, a33 = u[3, 0].real, u[3, 1].real, u[3, 2].real, u[3, 3].real
    b00, b01, b02, b03 = u[0, 0].imag, u[0, 1].imag, u[0, 2].imag, u[0, 3].imag
    b10, b11, b12, b13 = u[1, 0].imag, u[1, 1].imag, u[1, 2].imag, u[1, 3].imag
    b20, b21, b22, b23 = u[2, 0].imag, u[2, 1].imag, u[2, 2].imag, u[2, 3].imag
    b30, b31, b32, b33 = u[3, 0].imag, u[3, 1].imag, u[3, 2].imag, u[3, 3].imag
    for k in range(count):
        x0, x1, x2, x3 = r0[k], r1[k], r2[k], r3[k]
        y0, y1, y2, y3 = m0[k], m1[k], m2[k], m3[k]
        r0[k] = a00 * x0 - b00 * y0 + a01 * x1 - b01 * y1 + a02 * x2 - b02 * y2 + a03 * x3 - b03 * y3
        m0[k] = a00 * y0 + b00 * x0 + a01 * y1 + b01 * x1 + a02 * y2 + b02 * x2 + a03 * y3 + b03 * x3
        r1[k] = a10 * x0 - b10 * y0 + a11 * x1 - b11 * y1 + a12 * x2 - b12 * y2 + a13 * x3 - b13 * y3
        m1[k] = a10 * y0 + b10 * x0 + a11 * y1 + b11 * x1 + a12 * y2 + b12 * x2 + a13 * y3 + b13 * x3
        r2[k] = a20 * x0 - b20 * y0 + a21 * x1 - b21 * y1 + a22 * x2 - b22 * y2 + a23 * x3 - b23 * y3
        m2[k] = a20 * y0 + b20 * x0 + a21 * y1 + b21 * x1 + a22 * y2 + b22 * x2 + a23 * y3 + b23 * x3
        r3[k] = a30 * x0 - b30 * y0 + a31 * x1 - b31 * y1 + a32 * x2 - b32 * y2 + a33 * x3 - b33 * y3
        m3[k] = a30 * y0 + b30 * x0 + a31 * y1 + b31 * x1 + a32 * y2 + b32 * x2 + a33 * y3 + b33 * x3


@numba.njit(nogil=True, cache=True, fastmath=True)
def apply_4x4_split(psi, a, b, u, dim):  # pragma: no cover - compiled
    """psi <- U on qubits (a, b), psi split (2, dim)."""
    lo, hi = min(a, b), max(a, b)
    sa, sb = 1 << a, 1 << b
    slo, shi = 1 << lo, 1 << hi
    re, im = psi[0], psi[1]
    if slo >= VECTOR_RUN:
        for top in range(0, dim, 2 * shi):
            for i0 in range(top, top + shi, 2 * slo):
                i1, i2, i3 = i0 + sa, i0 + sb, i0 + sa + sb
                mix_runs(re[i0:i0 + slo], re[i1:i1 + slo], re[i2:i2 + slo], re[i3:i3 + slo],
                         im[i0:i0 + slo], im[i1:i1 + slo], im[i2:i2 + slo], im[i3:i3 + slo], u, slo)
        return
    index = group_indices(a, b, dim)
    runs = np.empty((8, dim >> 2))  # the four amplitudes of every group, gathered into contiguous runs
    for j in range(4):
        re_j, im_j, at = runs[j], runs[j + 4], index[j]
        for g in range(dim >> 2):
            re_j[g], im_j[g] = re[at[g]], im[at[g]]
    for c in range(0, dim >> 2, GATHERED_RUN):  # (in a loop, LLVM vectorizes the inlined mix; alone, it did not)
        e = min(c + GATHERED_RUN, dim >> 2)
        mix_runs(runs[0, c:e], runs[1, c:e], runs[2, c:e], runs[3, c:e], runs[4, c:e], runs[5, c:e], runs[6, c:e],
                 runs[7, c:e], u, e - c)
    for j in range(4):
        re_j, im_j, at = runs[j], runs[j + 4], index[j]
        for g in range(dim >> 2):
            re[at[g]], im[at[g]] = re_j[g], im_j[g]


@numba.njit(nogil=True, cache=True)
def group_indices(a, b, dim):  # pragma: no cover - compiled
    """index[j, g]: the state index of amplitude j (local index bit_a + 2·bit_b) of group g of a pass on (a, b)."""
    lo, hi = min(a, b), max(a, b)
    sa, sb = 1 << a, 1 << b
    slo, shi = 1 << lo, 1 << hi
    index = np.empty((4, dim >> 2), np.int64)
    g = 0
    for top in range(0, dim, 2 * shi):
        for mid in range(top, top + shi, 2 * slo):
            for i0 in range(mid, mid + slo):
                index[0, g], index[1, g], index[2, g], index[3, g] = i0, i0 + sa, i0 + sb, i0 + sa + sb
                g += 1
    return index


@numba.njit(nogil=True, cache=True, fastmath=True)
def apply_2x2_split(psi, q, m, dim):  # pragma: no cover - compiled
    """psi <- M on qubit q, psi split (2, dim)."""
    step = 1 << q
    re, im = psi[0], psi[1]
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            x0, x1 = complex(re[i0], im[i0]), complex(re[i0 + step], im[i0 + step])
            y0 = m[0, 0] * x0 + m[0, 1] * x1
            y1 = m[1, 0] * x0 + m[1, 1] * x1
            re[i0], im[i0], re[i0 + step], im[i0 + step] = y0.real, y0.imag, y1.real, y1.imag


@numba.njit(nogil=True, cache=True, inline="always")
def butterfly(x, y, count):  # pragma: no cover - compiled
    """(x, y) <- (x + y, x - y), elementwise over two runs (separate views: LLVM vectorizes it)."""
    for k in range(count):
        p, q = x[k], y[k]
        x[k], y[k] = p + q, p - q


@numba.njit(nogil=True, cache=True)
def walsh_hadamard(values):  # pragma: no cover - compiled
    """values[z] <- Σ_i values[i]·(-1)^popcount(i & z), in place (length a power of 2)."""
    h = 1
    while h < values.shape[0]:
        for top in range(0, values.shape[0], 2 * h):
            if h >= 8:
                butterfly(values[top:top + h], values[top + h:top + 2 * h], h)
                continue
            for i in range(top, top + h):
                x, y = values[i], values[i + h]
                values[i], values[i + h] = x + y, x - y
        h *= 2


@numba.njit(nogil=True, cache=True)
def label_values(psi, pending, n, dim, xmask, zmask, ny, out):  # pragma: no cover - compiled
    """Apply the pending matrices (those not the identity), then out[l] = <psi|P_l|psi> (unnormalized) for
    every Pauli label. When every label is a Z string (the usual measurement), all of them come from one
    Walsh–Hadamard transform of the probabilities |psi_i|² instead of one pass over the state per label."""
    re, im = psi[0], psi[1]
    for q in range(n):
        if not is_identity(pending[q]):
            apply_2x2_split(psi, q, pending[q], dim)
    if not np.any(xmask):
        probabilities = np.empty(dim)
        for i in range(dim):
            probabilities[i] = re[i] * re[i] + im[i] * im[i]
        walsh_hadamard(probabilities)
        for l in range(zmask.shape[0]):
            out[l] = probabilities[zmask[l]]
        return
    for l in range(xmask.shape[0]):
        acc = 0j
        f, z = xmask[l], zmask[l]
        for i in range(dim):
            v = complex(re[i ^ f], -im[i ^ f]) * complex(re[i], im[i])
            x, parity = i & z, 0
            while x:
                parity ^= 1
                x &= x - 1
            acc += -v if parity else v
        phase = ny[l] % 4  # i^ny
        if phase == 0:
            out[l] = acc.real
        elif phase == 1:
            out[l] = -acc.imag
        elif phase == 2:
            out[l] = -acc.real
        else:
            out[l] = acc.imag


def to_complex(states: np.ndarray) -> np.ndarray:
    """Split states (..., 2, dim) as complex128 (..., dim)."""
    return states[..., 0, :] + 1j * states[..., 1, :]
