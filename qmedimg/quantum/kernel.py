"""The numba kernel behind :class:`~qmedimg.quantum.exact.ExactEstimator`: an op program (fused
single-qubit rotations, permutations with phases, parameterized diagonals, dense gates) run over
many parameter rows at once, with each row's 2**n amplitudes in cache. Compiled once per machine
(``cache=True``: the first import on a new machine takes ~6 s).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numba
import numpy as np
import torch

def pauli_tables(paulis: tuple[str, ...], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per Pauli label (rightmost char = qubit 0): its X mask and the phase vector with
    P|j> = phase_j |j ^ mask>, so <ψ|P|ψ> = Σ_j conj(ψ[j ^ mask]) phase_j ψ[j]. Not cached here:
    :meth:`ExactEstimator.pauli_tables <qmedimg.quantum.exact.ExactEstimator.pauli_tables>` keeps them."""
    basis = np.arange(1 << n)
    masks = np.zeros(len(paulis), dtype=np.int64)
    phases = np.zeros((len(paulis), 1 << n), dtype=np.complex128)
    for t, label in enumerate(paulis):
        bits = label[::-1]
        masks[t] = sum(1 << q for q, c in enumerate(bits) if c in "XY")
        zmask = sum(1 << q for q, c in enumerate(bits) if c in "YZ")
        parity = np.array([bin(j & zmask).count("1") & 1 for j in basis])
        phases[t] = (1j ** label.count("Y")) * (1.0 - 2.0 * parity)
    return masks, phases


def cos_sin_half(angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos(θ/2) and sin(θ/2): through torch's SIMD kernels for large arrays (several times numpy's
    speed here), numpy below 32,768 values (there torch's thread hand-off can cost milliseconds
    when the cores are busy)."""
    if angles.size < 32768:
        return np.cos(0.5 * angles), np.sin(0.5 * angles)
    half = torch.from_numpy(0.5 * angles)
    return torch.cos(half).numpy(), torch.sin(half).numpy()


# ---- numba kernel -------------------------------------------------------------------------------
# An op program as flat arrays, interpreted row by row with the 2**n amplitudes in cache:
#   code[o] = (kind, a0, a1, a2)
#     ROT:   qubit, first factor, factor count   factors: ftype (FIXED/RZ/RY/RX), fangle, fa, fb
#     PERM:  offset into table (new[i] = phase[i] * old[perm[i]])
#     DIAG:  offset into table (signs), angle id (new[i] = exp(i * sign[i] * angle) * old[i])
#     DENSE: offset into table (matrix, row-major), offset into qubit list, k
ROT, PERM, DIAG, DENSE = 0, 1, 2, 3
FIXED, RZ, RY, RX = 0, 1, 2, 3




@numba.njit(nogil=True, cache=True, fastmath=True)
def su2(o, nb, code, ftype, fangle, fa, fb, cos, sin, ar, ai, br, bi):  # pragma: no cover
    """Fill (a, b) of the fused rotation op ``o`` for the nb rows of the block (cos, sin:
    (num_angles, block)): the SU(2) matrices [[a, -b*], [b, a*]]."""
    ar[:nb], ai[:nb], br[:nb], bi[:nb] = 1.0, 0.0, 0.0, 0.0
    for f in range(code[o, 2], code[o, 2] + code[o, 3]):
        t, k = ftype[f], fangle[f]
        if t == FIXED:  # (a, b) <- G @ (a, b): a' = ga a - conj(gb) b, b' = gb a + conj(ga) b
            gar, gai, gbr, gbi = fa[f].real, fa[f].imag, fb[f].real, fb[f].imag
            for r in range(nb):
                xr, xi, yr, yi = ar[r], ai[r], br[r], bi[r]
                ar[r] = gar * xr - gai * xi - (gbr * yr + gbi * yi)
                ai[r] = gar * xi + gai * xr - (gbr * yi - gbi * yr)
                br[r] = gbr * xr - gbi * xi + (gar * yr + gai * yi)
                bi[r] = gbr * xi + gbi * xr + (gar * yi - gai * yr)
        elif t == RZ:  # ga = c - i s, gb = 0
            for r in range(nb):
                c, s, xr, xi, yr, yi = cos[k, r], sin[k, r], ar[r], ai[r], br[r], bi[r]
                ar[r], ai[r] = c * xr + s * xi, c * xi - s * xr
                br[r], bi[r] = c * yr - s * yi, c * yi + s * yr
        elif t == RY:  # ga = c, gb = s
            for r in range(nb):
                c, s, xr, xi, yr, yi = cos[k, r], sin[k, r], ar[r], ai[r], br[r], bi[r]
                ar[r], ai[r] = c * xr - s * yr, c * xi - s * yi
                br[r], bi[r] = s * xr + c * yr, s * xi + c * yi
        else:  # RX: ga = c, gb = -i s
            for r in range(nb):
                c, s, xr, xi, yr, yi = cos[k, r], sin[k, r], ar[r], ai[r], br[r], bi[r]
                ar[r], ai[r] = c * xr + s * yi, c * xi - s * yr
                br[r], bi[r] = s * xi + c * yr, -s * xr + c * yi


@numba.njit(nogil=True, cache=True)
def spread(base, l, table_q, qoff, k):  # pragma: no cover - compiled
    """The basis index with the bits of ``base`` and bit j of ``l`` on qubit table_q[qoff + j]."""
    for j in range(k):
        if (l >> j) & 1:
            base |= 1 << table_q[qoff + j]
    return base


@numba.njit(nogil=True, cache=True, fastmath=True)
def run_rows(n, lead, code, ftype, fangle, fa, fb, table_i, table_c, table_q, angles, cos, sin,
              xmasks, phases, out, start, stop, block):  # pragma: no cover - compiled
    """Simulate rows start..stop (rows of ``angles``, ``cos``, ``sin``: (rows, num_angles), cos/sin
    of half angles) and write <P_t> to out[t, row]. Rows go in blocks of ``block``, held with the
    block as the innermost axis so the loops vectorize. The first ``lead`` ops are rotations on distinct
    qubits acting on |0...0>: they build a product state directly."""
    dim = 1 << n
    re, im = np.empty((dim, block)), np.empty((dim, block))
    tre, tim = np.empty((dim, block)), np.empty((dim, block))
    ar, ai, br, bi = np.empty(block), np.empty(block), np.empty(block), np.empty(block)
    small_re, small_im = np.empty((64, block)), np.empty((64, block))
    num_angles = angles.shape[1]
    ang, co, si = np.empty((num_angles, block)), np.empty((num_angles, block)), np.empty((num_angles, block))
    touched = np.zeros(n, np.bool_)
    for o in range(lead):
        touched[code[o, 1]] = True
    for r0 in range(start, stop, block):
        nb = min(block, stop - r0)
        for r in range(nb):
            for k in range(num_angles):
                ang[k, r], co[k, r], si[k, r] = angles[r0 + r, k], cos[r0 + r, k], sin[r0 + r, k]
        for j in range(dim):
            live = True
            for q in range(n):
                if not touched[q] and (j >> q) & 1:
                    live = False  # an untouched qubit is still |0>
            for r in range(nb):
                re[j, r], im[j, r] = (1.0 if live else 0.0), 0.0
        for o in range(lead):
            su2(o, nb, code, ftype, fangle, fa, fb, co, si, ar, ai, br, bi)
            q = code[o, 1]
            for j in range(dim):
                if (j >> q) & 1:
                    cr, ci = br, bi
                else:
                    cr, ci = ar, ai
                for r in range(nb):
                    xr, xi = re[j, r], im[j, r]
                    re[j, r] = xr * cr[r] - xi * ci[r]
                    im[j, r] = xr * ci[r] + xi * cr[r]
        for o in range(lead, code.shape[0]):
            kind = code[o, 0]
            if kind == ROT:
                su2(o, nb, code, ftype, fangle, fa, fb, co, si, ar, ai, br, bi)
                step = 1 << code[o, 1]
                for hi in range(0, dim, 2 * step):
                    for i0 in range(hi, hi + step):
                        i1 = i0 + step
                        for r in range(nb):
                            x0r, x0i, x1r, x1i = re[i0, r], im[i0, r], re[i1, r], im[i1, r]
                            # x0' = a x0 - conj(b) x1, x1' = b x0 + conj(a) x1
                            re[i0, r] = ar[r] * x0r - ai[r] * x0i - (br[r] * x1r + bi[r] * x1i)
                            im[i0, r] = ar[r] * x0i + ai[r] * x0r - (br[r] * x1i - bi[r] * x1r)
                            re[i1, r] = br[r] * x0r - bi[r] * x0i + (ar[r] * x1r + ai[r] * x1i)
                            im[i1, r] = br[r] * x0i + bi[r] * x0r + (ar[r] * x1i - ai[r] * x1r)
            elif kind == PERM:
                off = code[o, 1]
                for i in range(dim):
                    src, pr, pi = table_i[off + i], table_c[off + i].real, table_c[off + i].imag
                    for r in range(nb):
                        tre[i, r] = re[src, r] * pr - im[src, r] * pi
                        tim[i, r] = re[src, r] * pi + im[src, r] * pr
                re, tre = tre, re
                im, tim = tim, im
            elif kind == DIAG:
                off, k = code[o, 1], code[o, 2]
                for i in range(dim):
                    sign = table_c[off + i].real
                    for r in range(nb):
                        c, s = np.cos(sign * ang[k, r]), np.sin(sign * ang[k, r])
                        xr, xi = re[i, r], im[i, r]
                        re[i, r], im[i, r] = xr * c - xi * s, xr * s + xi * c
            else:  # DENSE: a fixed k-qubit matrix
                off, qoff, k = code[o, 1], code[o, 2], code[o, 3]
                size, mask = 1 << k, 0
                for j in range(k):
                    mask |= 1 << table_q[qoff + j]
                for base in range(dim):
                    if base & mask:
                        continue
                    for l in range(size):
                        idx = spread(base, l, table_q, qoff, k)
                        for r in range(nb):
                            small_re[l, r], small_im[l, r] = re[idx, r], im[idx, r]
                    for l in range(size):
                        idx = spread(base, l, table_q, qoff, k)
                        for r in range(nb):
                            re[idx, r], im[idx, r] = 0.0, 0.0
                        for m in range(size):
                            gr, gi = table_c[off + l * size + m].real, table_c[off + l * size + m].imag
                            for r in range(nb):
                                re[idx, r] += gr * small_re[m, r] - gi * small_im[m, r]
                                im[idx, r] += gr * small_im[m, r] + gi * small_re[m, r]
        for t in range(xmasks.shape[0]):
            x = xmasks[t]
            for r in range(nb):
                out[t, r0 + r] = 0.0
            for j in range(dim):
                pr, pi = phases[t, j].real, phases[t, j].imag
                if x == 0:  # diagonal: a signed sum of probabilities
                    for r in range(nb):
                        out[t, r0 + r] += pr * (re[j, r] * re[j, r] + im[j, r] * im[j, r])
                else:  # Re(conj(ψ[j^x]) * phase_j * ψ[j])
                    for r in range(nb):
                        ur = pr * re[j, r] - pi * im[j, r]
                        ui = pr * im[j, r] + pi * re[j, r]
                        out[t, r0 + r] += re[j ^ x, r] * ur + im[j ^ x, r] * ui


def announce_compile(kernel=None) -> None:
    """Say on stderr that a kernel is about to be compiled: when it has no compiled signature in this
    process yet (numba's own record: the first call, which compiles or loads it, adds one) and this
    machine has no compiled copy cached (the first run of a fresh install waits ~6-25 s a kernel here,
    otherwise silently). ``kernel``: a numba dispatcher of this package (default :func:`run_rows`)."""
    kernel = run_rows if kernel is None else kernel
    name = f"{kernel.py_func.__module__.rsplit('.', 1)[-1]}.{kernel.__name__}"
    if kernel.signatures:
        return
    if not any(Path(__file__).parent.glob(f"__pycache__/{name}-*.nbi")):
        print(f"qmedimg: compiling the exact estimator's kernel {name} (once per machine, about 6-25 s)...",
              file=sys.stderr, flush=True)
