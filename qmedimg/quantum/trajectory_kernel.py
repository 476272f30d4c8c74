"""The numba kernel behind qmedimg's noise-trajectory sampler (:mod:`qmedimg.backends.trajectories`): one
parameter row, many trajectories, each a statevector with its noise sampled.

The program it runs is a list of *steps*, one per gate of the circuit; a step may be followed by a noise
*location* (the gate's error), which has *branches*: one single-qubit matrix per qubit of the gate, each branch
drawn with a fixed, state-independent probability and already scaled so that the mean of |ψ⟩⟨ψ| over draws is
the channel applied to the state (importance weights: see the sampler's module docstring). Since every branch
is a tensor product of single-qubit matrices, single-qubit work never touches the state: each qubit keeps a
*pending* 2×2 matrix (the product of its single-qubit gates and sampled noise since its last two-qubit gate),
folded into the next two-qubit gate as one 4×4 pass (or applied at the end).

Two-qubit gates in a row on one pair (a ZNE-folded G·G†·G, a routing SWAP's three CNOTs) fuse: when the next
two-qubit gate on either qubit of a pair is again on that pair, the gate's 4×4 (its pending matrices and noise
folded in) is *held* (``held[qa]``) and multiplied into the next one instead of being applied, so a run of k
such gates costs one pass over the state, not k. The program says which steps hold (``defer``), which take a
held matrix (``take``: the qubit it is held under, -1 none) and whether it is in the other qubit order
(``swap``); with ``defer`` all false nothing fuses (what the gradient sweep, which needs every gate's state,
runs).

A qubit's single-qubit gates after its last two-qubit gate (its *tail*), with the noise they draw, commute with
everything left on the other qubits, and the draws are known before the trajectory runs: in
:func:`run_trajectories` they are multiplied into that last two-qubit gate's 4×4 (:func:`apply_closing`) and
the qubit is *closed*, so the end of a trajectory applies no pending matrix for it. Labels that are all Z
strings come from one Walsh–Hadamard transform of the probabilities
(:func:`~qmedimg.quantum.split_state.label_values`).

Trajectories share their prefix: branch 0 of every location is the most probable one, and every trajectory
that has drawn only branch 0 so far has the same state. :func:`dominant_path` runs that path once, keeping the
state after every two-qubit gate and the pending matrices at every location; :func:`run_trajectories` starts
each trajectory from the checkpoint of its first other draw. A trajectory that never leaves branch 0 is the
dominant path itself (its values are computed once). Where a trajectory has drawn only branch 0 on a step's
qubits since their last two-qubit gate, that step's 4×4 is the dominant path's, which :func:`dominant_path`
keeps (its *memo*): a trajectory multiplies matrices only on the qubits where it drew something else.

The states of these forward runs (the dominant path, its checkpoints, the trajectories) are kept split, real
and imaginary parts apart (shape (2, 2**n)), so that the 4×4 passes vectorize (:mod:`qmedimg.quantum.split_state`);
the complex :func:`apply_4x4`, :func:`apply_2x2` and :func:`run_step` serve the gradient sweep
(:mod:`qmedimg.quantum.trajectory_adjoint`), which takes the checkpoints as complex.

Conventions: little-endian qubit order (qubit q is bit q of the state index); a two-qubit step on (a, b)
holds its 4×4 matrix in Qiskit's order for qargs [a, b] (local index = bit_a + 2·bit_b).
"""

from __future__ import annotations

import numba
import numpy as np

from qmedimg.quantum.split_state import apply_4x4_split, label_values
from qmedimg.quantum.trajectory_matrices import fold_gate, left_multiply, reset_pending, tails_times, times_held

ONE_QUBIT, TWO_QUBIT = 0, 1


@numba.njit(nogil=True, cache=True, fastmath=True)
def apply_4x4(psi, a, b, u, dim):  # pragma: no cover - compiled
    """psi <- U on qubits (a, b)."""
    lo, hi = min(a, b), max(a, b)
    sa, sb = 1 << a, 1 << b
    slo, shi = 1 << lo, 1 << hi
    u00, u01, u02, u03 = u[0, 0], u[0, 1], u[0, 2], u[0, 3]
    u10, u11, u12, u13 = u[1, 0], u[1, 1], u[1, 2], u[1, 3]
    u20, u21, u22, u23 = u[2, 0], u[2, 1], u[2, 2], u[2, 3]
    u30, u31, u32, u33 = u[3, 0], u[3, 1], u[3, 2], u[3, 3]
    for top in range(0, dim, 2 * shi):
        for mid in range(top, top + shi, 2 * slo):
            for i0 in range(mid, mid + slo):
                i1, i2, i3 = i0 + sa, i0 + sb, i0 + sa + sb
                x0, x1, x2, x3 = psi[i0], psi[i1], psi[i2], psi[i3]
                psi[i0] = u00 * x0 + u01 * x1 + u02 * x2 + u03 * x3
                psi[i1] = u10 * x0 + u11 * x1 + u12 * x2 + u13 * x3
                psi[i2] = u20 * x0 + u21 * x1 + u22 * x2 + u23 * x3
                psi[i3] = u30 * x0 + u31 * x1 + u32 * x2 + u33 * x3


@numba.njit(nogil=True, cache=True, fastmath=True)
def apply_2x2(psi, q, m, dim):  # pragma: no cover - compiled
    """psi <- M on qubit q."""
    step = 1 << q
    for hi in range(0, dim, 2 * step):
        for i0 in range(hi, hi + step):
            x0, x1 = psi[i0], psi[i0 + step]
            psi[i0] = m[0, 0] * x0 + m[0, 1] * x1
            psi[i0 + step] = m[1, 0] * x0 + m[1, 1] * x1


@numba.njit(nogil=True, cache=True, inline="always")
def draw_branch(u, cum, offset, count):  # pragma: no cover - compiled
    """The branch a uniform draw ``u`` picks at a location (cumulative probabilities ``cum``)."""
    for j in range(count - 1):
        if u < cum[offset + j]:
            return j
    return count - 1


@numba.njit(nogil=True, cache=True)
def apply_gate(s, psi, pending, kind, qa, qb, gates, u4, dim):  # pragma: no cover - compiled
    """Step ``s``'s gate: a single-qubit one joins its qubit's pending matrix; a two-qubit one folds both
    pending matrices in, is applied to ``psi``, and leaves them identities."""
    a, b = qa[s], qb[s]
    if kind[s] == TWO_QUBIT:
        fold_gate(gates[s], pending[a], pending[b], u4)
        apply_4x4(psi, a, b, u4, dim)
        reset_pending(pending, a, b)
    else:
        left_multiply(gates[s, :2, :2], pending[a])


@numba.njit(nogil=True, cache=True)
def step_matrix(s, pending, held, qa, qb, gates, take, swap, u4, w4):  # pragma: no cover - compiled
    """u4 <- two-qubit step ``s``'s 4×4: its gate with its qubits' pending matrices folded in, times the matrix
    held for it (``take[s]``, if any)."""
    fold_gate(gates[s], pending[qa[s]], pending[qb[s]], u4)
    if take[s] >= 0:
        times_held(u4, held[take[s]], swap[s], w4)
        u4[:, :] = w4


@numba.njit(nogil=True, cache=True)
def apply_gate_fused(s, psi, pending, held, kind, qa, qb, gates, defer, take, swap, u4, w4, dim):  # pragma: no cover
    """:func:`apply_gate`, with fusion: a two-qubit step first multiplies in the matrix held for it
    (``take[s]``), then holds its own product under its first qubit (``defer[s]``) or applies it."""
    if kind[s] != TWO_QUBIT:
        left_multiply(gates[s, :2, :2], pending[qa[s]])
        return
    a, b = qa[s], qb[s]
    step_matrix(s, pending, held, qa, qb, gates, take, swap, u4, w4)
    if defer[s]:
        held[a, :, :] = u4
    else:
        apply_4x4_split(psi, a, b, u4, dim)
    reset_pending(pending, a, b)


@numba.njit(nogil=True, cache=True)
def apply_noise(s, branch, pending, kind, qa, qb, loc, offset, op_a, op_b):  # pragma: no cover - compiled
    """Branch ``branch`` of step ``s``'s noise location (if it has one), into the pending matrices."""
    ell = loc[s]
    if ell >= 0:
        j = offset[ell] + branch
        left_multiply(op_a[j], pending[qa[s]])
        if kind[s] == TWO_QUBIT:
            left_multiply(op_b[j], pending[qb[s]])


@numba.njit(nogil=True, cache=True)
def run_step(s, branch, psi, pending, kind, qa, qb, gates, loc, offset, op_a, op_b, u4, dim):  # pragma: no cover
    """Run step ``s`` (its gate, then branch ``branch`` of its noise, if it has a location)."""
    apply_gate(s, psi, pending, kind, qa, qb, gates, u4, dim)
    apply_noise(s, branch, pending, kind, qa, qb, loc, offset, op_a, op_b)


@numba.njit(nogil=True, cache=True)
def first_departure(t, uniforms, cum, offset):  # pragma: no cover - compiled
    """The first location where trajectory ``t`` draws a branch other than 0 (-1: none)."""
    for ell in range(offset.shape[0]):
        if uniforms[t, ell] >= cum[offset[ell]]:
            return ell
    return -1


@numba.njit(nogil=True, cache=True)
def resume_from_dominant(t, start, psi, pending, kind, qa, qb, loc, step_of, offset, count, cum, op_a, op_b,
                         checkpoints, pending_at, checkpoint_at, uniforms):  # pragma: no cover - compiled
    """Set ``psi`` and ``pending`` to trajectory ``t`` just after its first departure ``start`` from the dominant
    path (its state there, then its own draw); returns the next step."""
    psi[:] = checkpoints[checkpoint_at[start]]
    pending[:, :, :] = pending_at[start]
    s0 = step_of[start]
    apply_noise(s0, draw_branch(uniforms[t, start], cum, offset[start], count[start]), pending, kind, qa, qb, loc,
                offset, op_a, op_b)
    return s0 + 1


def dominant_memo(n: int, steps: int) -> tuple:
    """Empty arrays for what :func:`dominant_path` records of every step, for :func:`run_trajectories`: each
    two-qubit step's 4×4 (pending and held matrices in), its qubits' pending matrices before it, the matrix held
    for it, and every qubit's pending matrix at the end."""
    return (np.zeros((steps, 4, 4), np.complex128), np.zeros((steps, 2, 2, 2), np.complex128),
            np.zeros((steps, 4, 4), np.complex128), np.zeros((n, 2, 2), np.complex128))


@numba.njit(nogil=True, cache=True)
def dominant_path(n, kind, qa, qb, gates, loc, offset, op_a, op_b, defer, take, swap, checkpoints, pending_at,
                  checkpoint_at, memo, xmask, zmask, ny, out):  # pragma: no cover - compiled
    """Run the path that draws branch 0 everywhere: checkpoints[c] = the state after c applied two-qubit passes;
    pending_at[ℓ] and checkpoint_at[ℓ] = the pending matrices and the checkpoint just before location ℓ's noise;
    ``memo`` (:func:`dominant_memo`) = its steps' matrices; ``out`` = its label values."""
    step_u4, step_pending, step_held, final_pending = memo
    dim = 1 << n
    psi = np.zeros((2, dim))
    psi[0, 0] = 1.0
    pending = np.zeros((n, 2, 2), np.complex128)
    for q in range(n):
        pending[q, 0, 0] = 1.0
        pending[q, 1, 1] = 1.0
    held = np.zeros((n, 4, 4), np.complex128)
    u4 = np.empty((4, 4), np.complex128)
    w4 = np.empty((4, 4), np.complex128)
    c = 0
    checkpoints[0] = psi
    for s in range(kind.shape[0]):
        if kind[s] == TWO_QUBIT:
            step_pending[s, 0] = pending[qa[s]]
            step_pending[s, 1] = pending[qb[s]]
            if take[s] >= 0:
                step_held[s] = held[take[s]]
        apply_gate_fused(s, psi, pending, held, kind, qa, qb, gates, defer, take, swap, u4, w4, dim)
        if kind[s] == TWO_QUBIT:
            step_u4[s] = u4
            if not defer[s]:
                c += 1
                checkpoints[c] = psi
        ell = loc[s]
        if ell >= 0:
            pending_at[ell, :, :, :] = pending
            checkpoint_at[ell] = c
        apply_noise(s, 0, pending, kind, qa, qb, loc, offset, op_a, op_b)
    final_pending[:, :, :] = pending
    label_values(psi, pending, n, dim, xmask, zmask, ny, out)


@numba.njit(nogil=True, cache=True)
def single_qubit_tails(n, kind, qa, qb):  # pragma: no cover - compiled
    """(last, first, steps): each qubit's last two-qubit step (-1: none) and, for qubit q, the single-qubit steps
    after it, steps[first[q]:first[q + 1]], in order (its *tail*)."""
    last = np.full(n, -1, np.int64)
    for s in range(kind.shape[0]):
        if kind[s] == TWO_QUBIT:
            last[qa[s]] = s
            last[qb[s]] = s
    first = np.zeros(n + 1, np.int64)
    for s in range(kind.shape[0]):
        if kind[s] != TWO_QUBIT and 0 <= last[qa[s]] < s:
            first[qa[s] + 1] += 1
    first = np.cumsum(first)
    steps = np.empty(first[n], np.int64)
    fill = first[:n].copy()
    for s in range(kind.shape[0]):
        if kind[s] != TWO_QUBIT and 0 <= last[qa[s]] < s:
            steps[fill[qa[s]]] = s
            fill[qa[s]] += 1
    return last, first, steps


@numba.njit(nogil=True, cache=True)
def times_tail(q, t, first, steps, gates, loc, offset, count, cum, op_a, uniforms, out):  # pragma: no cover
    """out <- (qubit q's tail in trajectory t: each single-qubit gate after its last two-qubit step, then the
    noise it draws) · out."""
    for i in range(first[q], first[q + 1]):
        r = steps[i]
        left_multiply(gates[r, :2, :2], out)
        ell = loc[r]
        if ell >= 0:
            left_multiply(op_a[offset[ell] + draw_branch(uniforms[t, ell], cum, offset[ell], count[ell])], out)


@numba.njit(nogil=True, cache=True)
def close_qubit(q, s, side, j, t, pending, closed, tails, gates, loc, offset, count, cum, op_a, uniforms,
                tail):  # pragma: no cover - compiled
    """For :func:`apply_closing`, qubit q after two-qubit step s, whose noise on q is ``side[j]`` (none if j < 0):
    if s is q's last two-qubit step, tail <- what follows on q (that noise, then its tail) and q is closed;
    else tail <- the identity and the noise joins q's pending matrix (the identity before)."""
    last, first, steps = tails
    tail[:, :] = pending[q]
    if last[q] == s:
        if j >= 0:
            tail[:, :] = side[j]
        times_tail(q, t, first, steps, gates, loc, offset, count, cum, op_a, uniforms, tail)
        closed[q] = True
    elif j >= 0:
        left_multiply(side[j], pending[q])


@numba.njit(nogil=True, cache=True)
def apply_closing(s, branch, t, psi, pending, closed, tails, qa, qb, gates, loc, offset, count, cum, op_a, op_b,
                  uniforms, u4, w4, ta, tb, dim):  # pragma: no cover - compiled
    """Step ``s`` (its 4×4 in ``u4``), the last two-qubit step of one of its qubits or both, with branch ``branch``
    of its noise: the tail of each qubit it is the last for (its noise there, then the tail's gates and noise: all
    single-qubit, so they commute with everything else left) is multiplied into the step's 4×4 and the qubit
    *closed*; one pass instead of that pass plus one per closed qubit at the end. A qubit it is not the last for
    takes its noise into its pending matrix (the identity before) as usual."""
    a, b = qa[s], qb[s]
    reset_pending(pending, a, b)
    j = offset[loc[s]] + branch if loc[s] >= 0 else -1
    close_qubit(a, s, op_a, j, t, pending, closed, tails, gates, loc, offset, count, cum, op_a, uniforms, ta)
    close_qubit(b, s, op_b, j, t, pending, closed, tails, gates, loc, offset, count, cum, op_a, uniforms, tb)
    tails_times(ta, tb, u4, w4)
    apply_4x4_split(psi, a, b, w4, dim)


@numba.njit(nogil=True, cache=True, inline="always")
def trajectory_matrix(s, pending, held, dirty, held_dirty, qa, qb, gates, take, swap, memo, u4, w4):  # pragma: no cover
    """u4 <- two-qubit step ``s``'s 4×4 in a trajectory: the dominant path's (``memo``) when neither qubit's pending
    matrix nor the matrix held for it differs from the dominant path's (not ``dirty``), else folded from the
    trajectory's own (the dominant path's for a side that does not differ). Returns whether it differed."""
    step_u4, step_pending, step_held, _ = memo
    a, b, h = qa[s], qb[s], take[s]
    from_held = h >= 0 and held_dirty[h]
    if not (dirty[a] or dirty[b] or from_held):
        u4[:, :] = step_u4[s]
        return False
    fold_gate(gates[s], pending[a] if dirty[a] else step_pending[s, 0], pending[b] if dirty[b] else step_pending[s, 1],
              u4)
    if h >= 0:
        times_held(u4, held[h] if from_held else step_held[s], swap[s], w4)
        u4[:, :] = w4
    return True


@numba.njit(nogil=True, cache=True)
def run_trajectories(first, last, n, kind, qa, qb, gates, loc, step_of, offset, count, cum, op_a, op_b, defer, take,
                     swap, checkpoints, pending_at, checkpoint_at, memo, uniforms, xmask, zmask, ny, out,
                     close=True):  # pragma: no cover - compiled
    """Trajectories ``first``..``last``-1 of one row: out[t] = their label values; a trajectory that draws
    branch 0 everywhere is left as NaN (it is the dominant path). With ``close``, each qubit's single-qubit
    tail joins its last two-qubit step (:func:`apply_closing`) when the trajectory runs that step.

    A trajectory's matrices differ from the dominant path's only on the qubits where it drew another branch since
    their last two-qubit gate (``dirty``; ``held_dirty`` for a held 4×4): everywhere else it takes the dominant
    path's (``memo``) instead of multiplying them again, and a qubit's pending matrix is brought up to date only
    when it becomes dirty (from ``pending_at``)."""
    dim = 1 << n
    u4 = np.empty((4, 4), np.complex128)
    w4 = np.empty((4, 4), np.complex128)
    psi = np.empty((2, dim))
    pending = np.empty((n, 2, 2), np.complex128)
    held = np.empty((n, 4, 4), np.complex128)
    dirty = np.zeros(n, np.bool_)
    held_dirty = np.zeros(n, np.bool_)
    tails = single_qubit_tails(n, kind, qa, qb)
    closed = np.zeros(n, np.bool_)
    ta = np.empty((2, 2), np.complex128)
    tb = np.empty((2, 2), np.complex128)
    for t in range(first, last):
        start = first_departure(t, uniforms, cum, offset)
        if start < 0:
            out[t, :] = np.nan
            continue
        s0 = resume_from_dominant(t, start, psi, pending, kind, qa, qb, loc, step_of, offset, count, cum, op_a, op_b,
                                  checkpoints, pending_at, checkpoint_at, uniforms)
        closed[:] = False
        dirty[:] = False
        held_dirty[:] = False
        departed = step_of[start]  # its noise is in the pending matrices of its qubits
        dirty[qa[departed]] = dirty[qb[departed]] = True
        for s in range(s0, kind.shape[0]):
            a, b = qa[s], qb[s]
            if closed[a]:  # a single-qubit step already in its qubit's last two-qubit pass
                continue
            ell = loc[s]
            branch = draw_branch(uniforms[t, ell], cum, offset[ell], count[ell]) if ell >= 0 else 0
            if kind[s] != TWO_QUBIT:
                if dirty[a]:
                    left_multiply(gates[s, :2, :2], pending[a])
                elif branch == 0:
                    continue
                else:
                    pending[a, :, :] = pending_at[ell, a]
                    dirty[a] = True
                if ell >= 0:
                    left_multiply(op_a[offset[ell] + branch], pending[a])
                continue
            differed = trajectory_matrix(s, pending, held, dirty, held_dirty, qa, qb, gates, take, swap, memo, u4, w4)
            if close and (tails[0][a] == s or tails[0][b] == s):
                apply_closing(s, branch, t, psi, pending, closed, tails, qa, qb, gates, loc, offset, count, cum, op_a,
                              op_b, uniforms, u4, w4, ta, tb, dim)
                dirty[a] = dirty[b] = True  # (up to date: the identity, or the noise of a qubit not closed)
                continue
            if defer[s]:
                held_dirty[a] = differed
                if differed:
                    held[a, :, :] = u4
            else:
                apply_4x4_split(psi, a, b, u4, dim)
            dirty[a] = dirty[b] = branch != 0  # the pending matrices are the identities, as on the dominant path
            if branch != 0:
                reset_pending(pending, a, b)
                apply_noise(s, branch, pending, kind, qa, qb, loc, offset, op_a, op_b)
        final_pending = memo[3]
        for q in range(n):
            if not (dirty[q] or closed[q]):
                pending[q, :, :] = final_pending[q]
        label_values(psi, pending, n, dim, xmask, zmask, ny, out[t])
