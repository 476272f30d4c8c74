"""The numba kernel behind noise-aware training on qmedimg's trajectory sampler: the gradient of one
trajectory's value by an adjoint sweep, with the trajectory's sampled noise matrices in place.

A trajectory draws its noise branches with state-independent probabilities (:mod:`qmedimg.backends.trajectories`),
so its value f(θ) = ⟨ψ(θ)|O|ψ(θ)⟩, ψ(θ) = (product of gates and fixed branch matrices)|0⟩, has E[f(θ)] = the
noisy expectation for every θ, and E[∇f(θ)] = its gradient: the mean of these gradients over trajectories is
unbiased. The program is the sampler's (:mod:`qmedimg.quantum.trajectory_kernel`): single-qubit work pending as
2×2 matrices, folded into each two-qubit gate (a *fold*: U_g = G·(P_b ⊗ P_a)) or applied at the end.

Branch matrices need not be invertible (a reset's |0⟩⟨0|), so the sweep does not undo the forward pass: the
forward pass keeps the state before every fold and before every final single-qubit matrix, and the sweep
carries only λ = (rest of the circuit)† O ψ backwards (through U†, which always exists). At each fold,
R = Σ ψ_before ⊗ conj(λ_after) over the fold's 4-amplitude groups gives every angle inside the fold at once:
∂f/∂θ = 2 Re Tr(∂U/∂θ · R), with ∂U/∂θ built from the pending factors replayed from the trajectory's draws
(a gate F = exp(-iθ·gen/2) contributes ∂F/∂θ = (-i/2)·gen·F).
"""

from __future__ import annotations

import numba
import numpy as np

from qmedimg.quantum.trajectory_kernel import (TWO_QUBIT, apply_2x2, apply_4x4, draw_branch, first_departure,
                                               resume_from_dominant, run_step)
from qmedimg.quantum.trajectory_matrices import fold_gate

MAX_FACTORS = 512  # single-qubit factors one qubit may pend between two-qubit gates (checked by the caller)


@numba.njit(nogil=True, cache=True, inline="always")
def _mul(x, y, out):  # pragma: no cover - compiled
    """out <- x·y (2×2; out may not alias x or y)."""
    out[0, 0] = x[0, 0] * y[0, 0] + x[0, 1] * y[1, 0]
    out[0, 1] = x[0, 0] * y[0, 1] + x[0, 1] * y[1, 1]
    out[1, 0] = x[1, 0] * y[0, 0] + x[1, 1] * y[1, 0]
    out[1, 1] = x[1, 0] * y[0, 1] + x[1, 1] * y[1, 1]


@numba.njit(nogil=True, cache=True)
def _replay(q, start, end, t, kind, qa, qb, gates, loc, offset, count, cum, op_a, op_b, uniforms, pcol, factors,
            prefix, params):  # pragma: no cover - compiled
    """Qubit q's pending factors from two-qubit step ``start`` (-1: the circuit's start) to step ``end``
    (exclusive), for trajectory t: factors[k], prefix[k] = F_k···F_0, params[k] = the factor's step if it
    is a gate with a parameter, else -1. Returns the count."""
    k = 0
    if start >= 0 and loc[start] >= 0:
        ell = loc[start]
        j = offset[ell] + draw_branch(uniforms[t, ell], cum, offset[ell], count[ell])
        factors[k, :, :] = op_a[j] if qa[start] == q else op_b[j]
        params[k] = -1
        k += 1
    for s in range(start + 1, end):
        if kind[s] == TWO_QUBIT or qa[s] != q:
            continue
        factors[k, :, :] = gates[s, :2, :2]
        params[k] = s if pcol[s] >= 0 else -1
        k += 1
        ell = loc[s]
        if ell >= 0:
            j = offset[ell] + draw_branch(uniforms[t, ell], cum, offset[ell], count[ell])
            factors[k, :, :] = op_a[j]
            params[k] = -1
            k += 1
    for i in range(k):
        if i == 0:
            prefix[0, :, :] = factors[0]
        else:
            _mul(factors[i], prefix[i - 1], prefix[i])
    return k


@numba.njit(nogil=True, cache=True)
def _angle_gradients(k, factors, prefix, params, pcol, gen, q_side, other, tq, grad):  # pragma: no cover
    """Add to grad[pcol[step]] the derivative of every parameterized factor of one pending product P:
    ∂f = 2 Re Tr(K·tq), K = other ⊗ ∂P (q_side 0: P is the low qubit) or ∂P ⊗ other (q_side 1), and
    tq = R·G (4×4) — or, with ``other`` None-like (shape 0), K = ∂P against a 2×2 tq."""
    suffix = np.eye(2, dtype=np.complex128)
    scratch = np.empty((2, 2), np.complex128)
    half = np.empty((2, 2), np.complex128)
    dp = np.empty((2, 2), np.complex128)
    for i in range(k - 1, -1, -1):
        s = params[i]
        if s >= 0:
            _mul(suffix, gen[s], half)
            _mul(half, prefix[i], dp)
            for r in range(2):
                for c in range(2):
                    dp[r, c] *= -0.5j
            acc = 0j
            if other.shape[0] == 0:
                for r in range(2):
                    for c in range(2):
                        acc += dp[r, c] * tq[c, r]
            else:
                for r in range(4):
                    for c in range(4):
                        if q_side == 0:
                            kk = other[r >> 1, c >> 1] * dp[r & 1, c & 1]
                        else:
                            kk = dp[r >> 1, c >> 1] * other[r & 1, c & 1]
                        acc += kk * tq[c, r]
            grad[pcol[s]] += 2.0 * acc.real
        _mul(suffix, factors[i], scratch)
        suffix[:, :] = scratch


@numba.njit(nogil=True, cache=True, fastmath=True)
def _gather_and_undo(before, lam, a, b, u, r4, dim):  # pragma: no cover - compiled
    """r4[m, r] = Σ before[m]·conj(lam[r]) over the 4-amplitude groups of qubits (a, b); then lam <- U† lam."""
    lo, hi = min(a, b), max(a, b)
    sa, sb = 1 << a, 1 << b
    slo, shi = 1 << lo, 1 << hi
    v00, v01, v02, v03 = np.conj(u[0, 0]), np.conj(u[1, 0]), np.conj(u[2, 0]), np.conj(u[3, 0])
    v10, v11, v12, v13 = np.conj(u[0, 1]), np.conj(u[1, 1]), np.conj(u[2, 1]), np.conj(u[3, 1])
    v20, v21, v22, v23 = np.conj(u[0, 2]), np.conj(u[1, 2]), np.conj(u[2, 2]), np.conj(u[3, 2])
    v30, v31, v32, v33 = np.conj(u[0, 3]), np.conj(u[1, 3]), np.conj(u[2, 3]), np.conj(u[3, 3])
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = 0j
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = 0j
    for top in range(0, dim, 2 * shi):
        for mid in range(top, top + shi, 2 * slo):
            for i0 in range(mid, mid + slo):
                i1, i2, i3 = i0 + sa, i0 + sb, i0 + sa + sb
                x0, x1, x2, x3 = before[i0], before[i1], before[i2], before[i3]
                l0, l1, l2, l3 = lam[i0], lam[i1], lam[i2], lam[i3]
                y0, y1, y2, y3 = np.conj(l0), np.conj(l1), np.conj(l2), np.conj(l3)
                s00 += x0 * y0
                s01 += x0 * y1
                s02 += x0 * y2
                s03 += x0 * y3
                s10 += x1 * y0
                s11 += x1 * y1
                s12 += x1 * y2
                s13 += x1 * y3
                s20 += x2 * y0
                s21 += x2 * y1
                s22 += x2 * y2
                s23 += x2 * y3
                s30 += x3 * y0
                s31 += x3 * y1
                s32 += x3 * y2
                s33 += x3 * y3
                lam[i0] = v00 * l0 + v01 * l1 + v02 * l2 + v03 * l3
                lam[i1] = v10 * l0 + v11 * l1 + v12 * l2 + v13 * l3
                lam[i2] = v20 * l0 + v21 * l1 + v22 * l2 + v23 * l3
                lam[i3] = v30 * l0 + v31 * l1 + v32 * l2 + v33 * l3
    r4[0, 0], r4[0, 1], r4[0, 2], r4[0, 3] = s00, s01, s02, s03
    r4[1, 0], r4[1, 1], r4[1, 2], r4[1, 3] = s10, s11, s12, s13
    r4[2, 0], r4[2, 1], r4[2, 2], r4[2, 3] = s20, s21, s22, s23
    r4[3, 0], r4[3, 1], r4[3, 2], r4[3, 3] = s30, s31, s32, s33


@numba.njit(nogil=True, cache=True)
def _pauli_into(psi, lam, weight, f, z, ny, dim):  # pragma: no cover - compiled
    """lam += weight · P psi for the Pauli with x-mask f, z-mask z and ny Y's (P|i> = i^ny (-1)^{|i&z|} |i^f>)."""
    phase = (1j) ** (ny % 4)
    for i in range(dim):
        x, parity = i & z, 0
        while x:
            parity ^= 1
            x &= x - 1
        v = psi[i] * phase * weight
        lam[i ^ f] += -v if parity else v


@numba.njit(nogil=True, cache=True, fastmath=True)
def trajectory_gradients(first, last, trajectories, n, kind, qa, qb, gates, loc, step_of, offset, count, cum, op_a,
                         op_b, checkpoints, pending_at, checkpoint_at, fold_steps, prev_a, prev_b, last_fold, pcol, gen,
                         uniforms, label_weights, xmask, zmask, ny, grad):  # pragma: no cover - compiled
    """For jobs ``first``..``last``-1 (job j = row j // trajectories): grad[j] = ∇ Σ_l w_l ⟨P_l⟩ of that
    trajectory, by gate-angle column (pcol), with w = label_weights[row]. ``checkpoints``, ``pending_at`` and
    ``checkpoint_at`` are the row's dominant path (:func:`~qmedimg.quantum.trajectory_kernel.dominant_path`): a
    trajectory starts from it at its first draw other than branch 0, and reads its states before that."""
    dim = 1 << n
    folds = fold_steps.shape[0]
    states = np.empty((folds + 1 + n, dim), np.complex128)
    psi = np.empty(dim, np.complex128)
    lam = np.empty(dim, np.complex128)
    pending = np.empty((n, 2, 2), np.complex128)
    u4 = np.empty((4, 4), np.complex128)
    factors = np.empty((MAX_FACTORS, 2, 2), np.complex128)
    prefix = np.empty((MAX_FACTORS, 2, 2), np.complex128)
    params = np.empty(MAX_FACTORS, np.int64)
    factors_b = np.empty((MAX_FACTORS, 2, 2), np.complex128)
    prefix_b = np.empty((MAX_FACTORS, 2, 2), np.complex128)
    params_b = np.empty(MAX_FACTORS, np.int64)
    r4 = np.empty((4, 4), np.complex128)
    none = np.empty((0, 0), np.complex128)
    for job in range(first, last):
        row = job // trajectories
        out = grad[job]
        out[:] = 0.0
        # forward: the state before every fold, then before every final pending matrix
        start = first_departure(job, uniforms, cum, offset)
        if start >= 0:  # shared with the dominant path up to location ``start``
            shared = checkpoint_at[start]
            first_step = resume_from_dominant(job, start, psi, pending, kind, qa, qb, loc, step_of, offset, count,
                                              cum, op_a, op_b, checkpoints, pending_at, checkpoint_at, uniforms)
        else:
            shared = -1
            psi[:] = 0.0
            psi[0] = 1.0
            pending[:, :, :] = 0.0
            for q in range(n):
                pending[q, 0, 0] = 1.0
                pending[q, 1, 1] = 1.0
            first_step = 0
        g = max(shared, 0)
        for s in range(first_step, kind.shape[0]):
            if kind[s] == TWO_QUBIT:
                states[g, :] = psi
                g += 1
            ell = loc[s]
            branch = 0 if ell < 0 else draw_branch(uniforms[job, ell], cum, offset[ell], count[ell])
            run_step(s, branch, psi, pending, kind, qa, qb, gates, loc, offset, op_a, op_b, u4, dim)
        for q in range(n):
            states[folds + q, :] = psi
            apply_2x2(psi, q, pending[q], dim)
        # λ = O ψ (identity labels excluded: their value is exactly 1, their derivative 0)
        lam[:] = 0.0
        for lab in range(xmask.shape[0]):
            w = label_weights[row, lab]
            if w != 0.0 and (xmask[lab] != 0 or zmask[lab] != 0):
                _pauli_into(psi, lam, w, xmask[lab], zmask[lab], ny[lab], dim)
        # the final pending matrices, last applied first
        for q in range(n - 1, -1, -1):
            before = states[folds + q]
            step = 1 << q
            r2 = np.zeros((2, 2), np.complex128)
            for hi in range(0, dim, 2 * step):
                for i0 in range(hi, hi + step):
                    for m in range(2):
                        for r in range(2):
                            r2[m, r] += before[i0 + m * step] * np.conj(lam[i0 + r * step])
            k = _replay(q, last_fold[q], kind.shape[0], job, kind, qa, qb, gates, loc, offset, count, cum, op_a,
                        op_b, uniforms, pcol, factors, prefix, params)
            _angle_gradients(k, factors, prefix, params, pcol, gen, 0, none, r2, out)
            p = prefix[k - 1] if k > 0 else np.eye(2, dtype=np.complex128)
            apply_2x2(lam, q, np.conj(p.T).copy(), dim)
        # the folds, last first: one pass per fold gathers R and carries λ back through U†
        for g in range(folds - 1, -1, -1):
            s = fold_steps[g]
            a, b = qa[s], qb[s]
            ka = _replay(a, prev_a[g], s, job, kind, qa, qb, gates, loc, offset, count, cum, op_a, op_b, uniforms,
                         pcol, factors, prefix, params)
            kb = _replay(b, prev_b[g], s, job, kind, qa, qb, gates, loc, offset, count, cum, op_a, op_b, uniforms,
                         pcol, factors_b, prefix_b, params_b)
            pa = prefix[ka - 1].copy() if ka > 0 else np.eye(2, dtype=np.complex128)
            pb = prefix_b[kb - 1].copy() if kb > 0 else np.eye(2, dtype=np.complex128)
            fold_gate(gates[s], pa, pb, u4)
            angles = False
            for i in range(ka):
                angles = angles or params[i] >= 0
            for i in range(kb):
                angles = angles or params_b[i] >= 0
            if not angles:  # nothing to differentiate in this fold: only carry λ back
                apply_4x4(lam, a, b, np.conj(u4.T).copy(), dim)
                continue
            _gather_and_undo(checkpoints[g] if g <= shared else states[g], lam, a, b, u4, r4, dim)
            tq = r4 @ gates[s]
            _angle_gradients(ka, factors, prefix, params, pcol, gen, 0, pb, tq, out)
            _angle_gradients(kb, factors_b, prefix_b, params_b, pcol, gen, 1, pa, tq, out)
