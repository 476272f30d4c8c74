"""The numba kernel behind :class:`~qmedimg.quantum.adjoint.AdjointGradient`: adjoint
differentiation of the exact estimator's op program, one parameter row per thread.

For each row it simulates the circuit once, forms λ = Σ_t w_t P_t |ψ⟩ for the row's weights w
(the loss gradient w.r.t. the outputs, or a one-hot row for one column of the Jacobian), then sweeps
the ops backwards once, undoing each op on |ψ⟩ and λ and reading off the gradient of every gate
angle: d/dθ Σ_t w_t ⟨P_t⟩ = 2 Re ⟨λ_after| dU/dθ |ψ_before⟩. A fused single-qubit op (a product of
rotations on one qubit) costs one pass over both states however many angles it holds: the pass
collects the 2×2 matrix R = Σ_pairs ψ_before ⊗ conj(λ_after), and each angle's derivative is a
2×2 trace against it. The op program is the one :mod:`qmedimg.quantum.kernel` runs (same tables).
"""

from __future__ import annotations

import weakref
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from qmedimg.cores import available_cores, cores
from qmedimg.quantum.kernel import DIAG, FIXED, PERM, ROT, RY, RZ, spread


@numba.njit(nogil=True, cache=True, inline="always")
def factor(f, ftype, fangle, fa, fb, c, s):  # pragma: no cover - compiled
    """Factor ``f`` of a fused rotation as its SU(2) pair (a, b) = [[a, -b*], [b, a*]] (c, s: cos
    and sin of the row's half angles)."""
    t, k = ftype[f], fangle[f]
    if t == FIXED:
        return fa[f], fb[f]
    if t == RZ:
        return complex(c[k], -s[k]), 0j
    if t == RY:
        return complex(c[k], 0.0), complex(s[k], 0.0)
    return complex(c[k], 0.0), complex(0.0, -s[k])  # RX


@numba.njit(nogil=True, cache=True, inline="always")
def compose(ga, gb, a, b):  # pragma: no cover - compiled
    """The SU(2) pair of G·X for G = (ga, gb), X = (a, b)."""
    return ga * a - np.conj(gb) * b, gb * a + np.conj(ga) * b


@numba.njit(nogil=True, cache=True)
def rotation(o, code, ftype, fangle, fa, fb, c, s):  # pragma: no cover - compiled
    """The fused op ``o`` as one SU(2) pair: U = F_m ... F_1."""
    a, b = 1.0 + 0j, 0j
    for f in range(code[o, 2], code[o, 2] + code[o, 3]):
        ga, gb = factor(f, ftype, fangle, fa, fb, c, s)
        a, b = compose(ga, gb, a, b)
    return a, b


@numba.njit(nogil=True, cache=True)
def rotation_gradients(o, code, ftype, fangle, fa, fb, c, s, r00, r01, r10, r11, grad, suffix):  # pragma: no cover
    """Add to ``grad`` (per angle) the derivative of every rotation angle of fused op ``o``, given
    R_ab = Σ ψ_before[a] conj(λ_after[b]): with U = L (dF/dθ) P and dF/dθ = -i/2 G F,
    d = 2 Re Tr(L (-i/2) G F P R) = Im Tr(G · (F P R L)). ``suffix``: scratch of (count, 2)."""
    first, count = code[o, 2], code[o, 3]
    suffix[count - 1, 0], suffix[count - 1, 1] = 1.0, 0.0  # L of the last factor: identity
    for i in range(count - 2, -1, -1):
        ga, gb = factor(first + i + 1, ftype, fangle, fa, fb, c, s)
        suffix[i, 0], suffix[i, 1] = compose(suffix[i + 1, 0], suffix[i + 1, 1], ga, gb)
    pa, pb = 1.0 + 0j, 0j
    for i in range(count):
        ga, gb = factor(first + i, ftype, fangle, fa, fb, c, s)
        pa, pb = compose(ga, gb, pa, pb)  # P = F_i ... F_1
        t = ftype[first + i]
        if t == FIXED:
            continue
        la, lb = suffix[i, 0], suffix[i, 1]
        # P R, then (P R) L with P = [[pa, -pb*], [pb, pa*]], L = [[la, -lb*], [lb, la*]]
        q00, q01 = pa * r00 - np.conj(pb) * r10, pa * r01 - np.conj(pb) * r11
        q10, q11 = pb * r00 + np.conj(pa) * r10, pb * r01 + np.conj(pa) * r11
        m00, m01 = q00 * la + q01 * lb, -q00 * np.conj(lb) + q01 * np.conj(la)
        m10, m11 = q10 * la + q11 * lb, -q10 * np.conj(lb) + q11 * np.conj(la)
        if t == RZ:
            tr = m00 - m11
        elif t == RY:
            tr = -1j * m10 + 1j * m01
        else:
            tr = m10 + m01
        grad[fangle[first + i]] += tr.imag


@numba.njit(nogil=True, cache=True, fastmath=True)
def apply_2x2(state, q, a, b, dim):  # pragma: no cover - compiled
    """state <- U on qubit q, U = [[a, -b*], [b, a*]]."""
    step = 1 << q
    u00, u01, u10, u11 = a, -np.conj(b), b, np.conj(a)
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            x0, x1 = state[i0], state[i0 + step]
            state[i0] = u00 * x0 + u01 * x1
            state[i0 + step] = u10 * x0 + u11 * x1


@numba.njit(nogil=True, cache=True, fastmath=True)
def undo_2x2(psi, lam, q, a, b, dim):  # pragma: no cover - compiled
    """psi, lam <- U† on qubit q (U = [[a, -b*], [b, a*]]); returns R_ab = Σ psi_before[a]
    conj(lam_after[b]) over all pairs, as (r00, r01, r10, r11)."""
    step = 1 << q
    v00, v01, v10, v11 = np.conj(a), np.conj(b), -b, a
    r00, r01, r10, r11 = 0j, 0j, 0j, 0j
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            i1 = i0 + step
            p0, p1, l0, l1 = psi[i0], psi[i1], lam[i0], lam[i1]
            b0, b1 = v00 * p0 + v01 * p1, v10 * p0 + v11 * p1
            c0, c1 = np.conj(l0), np.conj(l1)
            r00 += b0 * c0
            r01 += b0 * c1
            r10 += b1 * c0
            r11 += b1 * c1
            psi[i0], psi[i1] = b0, b1
            lam[i0], lam[i1] = v00 * l0 + v01 * l1, v10 * l0 + v11 * l1
    return r00, r01, r10, r11


@numba.njit(nogil=True, cache=True)
def apply_dense(state, off, qoff, k, table_c, table_q, dim, adjoint, small):  # pragma: no cover
    """state <- M (or M† when ``adjoint``) for the fixed k-qubit matrix of a DENSE op."""
    size, mask = 1 << k, 0
    for j in range(k):
        mask |= 1 << table_q[qoff + j]
    for base in range(dim):
        if base & mask:
            continue
        for l in range(size):
            small[l] = state[spread(base, l, table_q, qoff, k)]
        for l in range(size):
            acc = 0j
            for m in range(size):
                g = np.conj(table_c[off + m * size + l]) if adjoint else table_c[off + l * size + m]
                acc += g * small[m]
            state[spread(base, l, table_q, qoff, k)] = acc


@numba.njit(nogil=True, cache=True, fastmath=True)
def forward(n, lead, code, ftype, fangle, fa, fb, table_i, table_c, table_q, ang, c, s, psi, tmp, small):  # pragma: no cover
    """psi <- the circuit applied to |0...0> for one row (the first ``lead`` ops build a product state)."""
    dim = 1 << n
    u0 = np.ones(n, np.complex128)
    u1 = np.zeros(n, np.complex128)
    for o in range(lead):
        u0[code[o, 1]], u1[code[o, 1]] = rotation(o, code, ftype, fangle, fa, fb, c, s)
    psi[0] = 1.0
    size = 1
    for q in range(n):
        for j in range(size):
            psi[j + size] = psi[j] * u1[q]
            psi[j] = psi[j] * u0[q]
        size *= 2
    for o in range(lead, code.shape[0]):
        kind = code[o, 0]
        if kind == ROT:
            a, b = rotation(o, code, ftype, fangle, fa, fb, c, s)
            apply_2x2(psi, code[o, 1], a, b, dim)
        elif kind == PERM:
            off = code[o, 1]
            for i in range(dim):
                tmp[i] = table_c[off + i] * psi[table_i[off + i]]
            psi[:] = tmp
        elif kind == DIAG:
            off, k = code[o, 1], code[o, 2]
            for i in range(dim):
                a = table_c[off + i].real * ang[k]
                psi[i] *= complex(np.cos(a), np.sin(a))
        else:
            apply_dense(psi, code[o, 1], code[o, 2], code[o, 3], table_c, table_q, dim, False, small)


@numba.njit(nogil=True, cache=True, fastmath=True)
def backward(n, code, ftype, fangle, fa, fb, table_i, table_c, table_q, ang, c, s, psi, lam, tmp, small, grad,
             suffix):  # pragma: no cover
    """The adjoint sweep of one row: undo every op on psi (the final state) and lam (Σ w_t P_t psi),
    adding each gate angle's derivative to ``grad``."""
    dim = 1 << n
    for o in range(code.shape[0] - 1, -1, -1):
        kind = code[o, 0]
        if kind == ROT:
            a, b = rotation(o, code, ftype, fangle, fa, fb, c, s)
            r00, r01, r10, r11 = undo_2x2(psi, lam, code[o, 1], a, b, dim)
            rotation_gradients(o, code, ftype, fangle, fa, fb, c, s, r00, r01, r10, r11, grad, suffix)
        elif kind == PERM:
            off = code[o, 1]
            for i in range(dim):
                tmp[table_i[off + i]] = np.conj(table_c[off + i]) * psi[i]
            psi[:] = tmp
            for i in range(dim):
                tmp[table_i[off + i]] = np.conj(table_c[off + i]) * lam[i]
            lam[:] = tmp
        elif kind == DIAG:
            off, k = code[o, 1], code[o, 2]
            d = 0.0
            for i in range(dim):
                sign = table_c[off + i].real
                d += sign * (np.conj(lam[i]) * psi[i]).imag
                a = -sign * ang[k]
                z = complex(np.cos(a), np.sin(a))
                psi[i] *= z
                lam[i] *= z
            grad[k] += -2.0 * d
        else:
            apply_dense(psi, code[o, 1], code[o, 2], code[o, 3], table_c, table_q, dim, True, small)
            apply_dense(lam, code[o, 1], code[o, 2], code[o, 3], table_c, table_q, dim, True, small)


@numba.njit(nogil=True, cache=True)
def adjoint_rows(n, lead, code, ftype, fangle, fa, fb, table_i, table_c, table_q, angles, cos, sin,
                 xmasks, phases, weights, values, grad, with_gradient, states, start, stop):  # pragma: no cover
    """For rows start..stop of ``angles`` (rows, num_angles; cos/sin of half angles alike):
    values[r, t] = <P_t> and, ``with_gradient``, grad[r, k] = d/dθ_k Σ_t weights[r, t] <P_t>.
    One state (two with the gradient) of 2**n contiguous amplitudes per row. ``states`` (rows, 2**n),
    or empty: without the gradient each row's final state is kept there; with it, the sweep starts
    from the kept state instead of simulating the row again."""
    dim = 1 << n
    labels = xmasks.shape[0]
    psi, lam = np.empty(dim, np.complex128), np.empty(dim if with_gradient else 1, np.complex128)
    tmp, small = np.empty(dim, np.complex128), np.empty(64, np.complex128)
    suffix = np.empty((max(1, ftype.shape[0]), 2), np.complex128)
    kept = states.shape[0] > 0
    for row in range(start, stop):
        lam[:] = 0.0
        ang, c, s = angles[row], cos[row], sin[row]
        if kept and with_gradient:
            psi[:] = states[row]
        else:
            psi[:] = 0.0
            forward(n, lead, code, ftype, fangle, fa, fb, table_i, table_c, table_q, ang, c, s, psi, tmp, small)
            if kept:
                states[row] = psi
        for t in range(labels):
            x, w, acc = xmasks[t], weights[row, t] if with_gradient else 0.0, 0.0
            for j in range(dim):
                z = phases[t, j] * psi[j]
                acc += (np.conj(psi[j ^ x]) * z).real
                if with_gradient:
                    lam[j ^ x] += w * z
            values[row, t] = acc
        if with_gradient:
            g = grad[row]
            g[:] = 0.0
            backward(n, code, ftype, fangle, fa, fb, table_i, table_c, table_q, ang, c, s, psi, lam, tmp, small, g,
                     suffix)


class RowThreads:
    """The threads :func:`split_rows` runs row chunks on, owned by the one that runs the kernels (an
    :class:`~qmedimg.quantum.exact.ExactEstimator`): started by the first split that needs them (up to one
    per available core, one per chunk), ended by :meth:`close`, or when their owner is garbage collected,
    so a forgotten owner leaves no threads behind.

    Example::

        threads = RowThreads()
        split_rows(lambda start, stop: kernel(rows[start:stop]), len(rows), 4, threads)
        threads.close()
    """

    def __init__(self):
        self._pool: ThreadPoolExecutor | None = None
        self._ended: weakref.finalize | None = None

    def map(self, function, items) -> list:
        """``[function(item) for item in items]``, the items side by side on the threads."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=available_cores(), thread_name_prefix="qmedimg-kernel")
            self._ended = weakref.finalize(self, self._pool.shutdown, wait=False)
        return list(self._pool.map(function, items))

    def close(self) -> None:
        """End the threads, waiting for them; a later split starts new ones."""
        if self._pool is not None:
            self._ended.detach()
            self._pool.shutdown(wait=True)
            self._pool = self._ended = None


def split_rows(call, rows: int, chunks: int, threads: RowThreads) -> None:
    """Run ``call(start, stop)`` over rows 0..rows in ``chunks`` contiguous parts, side by side on
    ``threads``, at most :func:`~qmedimg.cores.cores` at once (the kernels release the GIL). Python
    threads, not an OpenMP pool, so torch's own thread pool is not left competing with spinning workers."""
    chunks = max(1, min(chunks, cores(), rows))
    if chunks == 1:
        call(0, rows)
        return
    bounds = np.linspace(0, rows, chunks + 1).astype(int)
    threads.map(lambda i: call(bounds[i], bounds[i + 1]), range(chunks))


def simulate_rows(tables: tuple, angles: np.ndarray, cos: np.ndarray, sin: np.ndarray, xmasks: np.ndarray,
                  phases: np.ndarray, weights: np.ndarray | None, states: np.ndarray | None = None, *,
                  threads: RowThreads) -> tuple[np.ndarray, np.ndarray | None]:
    """(<P_t> per row, shape (rows, labels); with ``weights`` (rows, labels), the gradient of
    Σ_t weights[r, t]·<P_t> per gate angle, shape (rows, num_angles), else None), rows split across
    ``threads`` (a thread for every 4,096 amplitudes of work at least). ``states`` (rows, 2**n complex):
    filled with the final states by a call without ``weights``, used by the next call with them."""
    rows, n = angles.shape[0], tables[0]
    values = np.empty((rows, xmasks.shape[0]))
    grad = np.empty(angles.shape) if weights is not None else np.empty((0, 0))
    weights = np.ascontiguousarray(weights) if weights is not None else np.empty((0, 0))
    states = states if states is not None else np.empty((0, 0), np.complex128)
    args = (*tables, angles, cos, sin, xmasks, phases, weights, values, grad, weights.size > 0, states)
    split_rows(lambda start, stop: adjoint_rows(*args, start, stop), rows, (rows << n) >> 12, threads)
    return values, (grad if weights.size else None)
