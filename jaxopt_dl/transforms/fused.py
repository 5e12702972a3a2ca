"""Fused Adam: the same numbers as ``adam``, one pass over memory for the whole tree.

On a single-device CPU backend every float32 leaf is updated by one XLA FFI kernel
call (``jaxopt_dl._fused``): it reads ``g, m, v`` (and ``p`` with
``return_params=True``) and writes the new values in place, on all cores. Everything
else -- other dtypes, bf16 moments, GPU/TPU, several devices (sharded programs), a
kernel that could not be built -- goes through the plain :func:`jaxopt_dl.adam`
transform, so the state, the protocol and the numbers are those of ``adam``.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from jaxopt_dl import _core, _fused
from jaxopt_dl._core import GradientTransformationExtraArgs, ScalarOrSchedule
from jaxopt_dl.optimizers import adam


def fused_adam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Optional[Any] = None,
    *,
    bias_correction: bool = True,
    nu_dtype: Optional[Any] = None,
    use_kernel: bool = True,
    flat_state: bool = False,
) -> GradientTransformationExtraArgs:
    """Adam whose CPU step is one fused multi-leaf kernel; a drop-in for :func:`adam`.

    .. math::
        m_t = \\beta_1 m + (1-\\beta_1) g,\\; v_t = \\beta_2 v + (1-\\beta_2) g^2,\\;
        u_t = -\\epsilon_t \\frac{m_t/(1-\\beta_1^t)}{\\sqrt{v_t/(1-\\beta_2^t) + \\epsilon_{root}} + \\delta}

    The state is ``adam``'s (``(ScaleByAdamState, EmptyState)``, as optax's), so
    states and checkpoints move freely between the two (with ``flat_state=True`` the
    moments are flat buffers instead; see that argument). The kernel performs XLA:CPU's
    own operations (its fused multiply-adds, reciprocal of the bias correction), so a
    jitted ``update`` gives the same bits as ``adam``'s; with ``return_params=True``
    the results may differ from a separately compiled ``update`` + ``apply_updates``
    in the last bit of the parameter (XLA itself contracts ``p + lr * d`` only when
    both land in one fusion).

    ``update(grads, state, params=None, *, return_params=False)``: without
    ``return_params`` only leaves under ``2**16`` elements go through the kernel (larger
    ones are faster in XLA's own fused update + apply); with
    ``return_params=True`` it returns the new *parameters* instead of the updates, and
    the kernel also applies them (7 arrays touched per element instead of 9) -- the
    fastest step; pass ``params`` and donate them and the state under ``jax.jit``.

    Args:
      learning_rate: a float, a traced scalar or a schedule.
      b1: as :func:`adam`.
      b2: as :func:`adam`.
      eps: as :func:`adam`.
      eps_root: as :func:`adam`.
      mu_dtype: as :func:`adam`; only float32 leaves with float32 moments use the kernel.
      nu_dtype: as :func:`adam`.
      bias_correction: as :func:`adam`.
      use_kernel: False forces the pure-JAX path (the plain ``adam`` transform).
      flat_state: keep ``mu`` and ``nu`` as one flat float32 buffer each (the leaves
        in ``jax.tree.leaves`` order) instead of trees; all leaves must be float32.
        For trees of many leaves this cuts the arrays a jitted step passes in and out
        by half, which is what XLA's compile time grows with (2000 leaves: several
        seconds less). Not interchangeable with ``adam``'s state; the pure-JAX path
        splits and joins the buffers (two copies per step).

    Returns:
      An optax ``GradientTransformationExtraArgs``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_dl as jdl
      >>> opt = jdl.fused_adam(1e-3)
      >>> params = {"w": jnp.ones(3)}
      >>> state = opt.init(params)
      >>> grads = {"w": jnp.full(3, 0.5)}
      >>> params, state = jax.jit(
      ...     lambda p, g, s: opt.update(g, s, p, return_params=True))(params, grads, state)

    References:
      Kingma & Ba 2014; torch.optim.Adam(fused=True) for the single-pass idea.
    """
    reference = adam(
        learning_rate, b1, b2, eps, eps_root, mu_dtype,
        bias_correction=bias_correction, nu_dtype=nu_dtype,
    )
    if flat_state and any(d is not None and jnp.dtype(d) != jnp.float32
                          for d in (mu_dtype, nu_dtype)):
        raise ValueError(f"fused_adam: flat_state=True keeps float32 moments, got "
                         f"mu_dtype={mu_dtype}, nu_dtype={nu_dtype}")

    def plain_update(updates, state, params, return_params):
        out, state = reference.update(updates, state, params)
        return (_core.apply_updates(params, out) if return_params else out), state

    def kernel_scalars(count, lr_count):
        """The kernel's hyperparameter vector at the (already incremented) ``count``."""
        if bias_correction:
            rc1, rc2 = 1 / (1 - b1**count), 1 / (1 - b2**count)
        else:
            rc1 = rc2 = 1.0
        rate = _core.evaluate(learning_rate, lr_count)
        return _fused.scalar_vector([b1, 1 - b1, b2, 1 - b2, rc1, rc2, eps, eps_root, -rate])

    def init_fn(params):
        if not flat_state:
            return reference.init(params)
        leaves = jax.tree.leaves(params)
        _check_flat(leaves)
        # Counters and learning-rate state exactly as adam's (from an empty tree).
        adam_state, lr_state = reference.init([])
        total = sum(x.size for x in leaves)
        zeros = jnp.zeros((total,), jnp.float32)
        return adam_state._replace(mu=zeros, nu=jnp.zeros_like(zeros)), lr_state

    def flat_update(updates, state, params, return_params):
        adam_state, lr_state = state
        g_leaves, treedef = jax.tree.flatten(updates)
        _check_flat(g_leaves)
        total = sum(g.size for g in g_leaves)
        if adam_state.mu.shape != (total,):
            raise ValueError(f"fused_adam: the gradient tree has {total} elements, the flat "
                             f"state {adam_state.mu.shape}")
        p_leaves = treedef.flatten_up_to(params) if params is not None else None
        if not (use_kernel and _fused.kernel_available()):
            # Pure JAX: split the flat moments, adam's update, join them again.
            split = lambda flat: _split(flat, g_leaves)  # noqa: E731
            out, (new_adam, new_lr) = plain_update(
                g_leaves, (adam_state._replace(mu=split(adam_state.mu), nu=split(adam_state.nu)),
                           lr_state), p_leaves, return_params)
            join = lambda xs: jnp.concatenate([x.reshape(-1) for x in xs])  # noqa: E731
            new_adam = new_adam._replace(mu=join(new_adam.mu), nu=join(new_adam.nu))
            return treedef.unflatten(out), (new_adam, new_lr)
        _, (new_adam, new_lr) = plain_update(
            [], (adam_state._replace(mu=[], nu=[]), lr_state), [] if return_params else None,
            return_params)
        scalars = kernel_scalars(new_adam.count, lr_state.count)
        if return_params:
            inputs, aliases = list(zip(p_leaves, g_leaves)), [0]
        else:
            inputs, aliases = [(g,) for g in g_leaves], [None]
        (mu, nu), outs = _fused.fused_call_flat(
            "adam", scalars, (adam_state.mu, adam_state.nu), inputs, aliases,
            apply=int(return_params))
        return treedef.unflatten(outs), (new_adam._replace(mu=mu, nu=nu), new_lr)

    def update_fn(updates, state, params=None, *, return_params: bool = False):
        if return_params and params is None:
            raise ValueError("fused_adam: return_params=True needs params, got params=None")
        if flat_state:
            return flat_update(updates, state, params, return_params)
        if not (use_kernel and _fused.kernel_available()):
            return plain_update(updates, state, params, return_params)
        adam_state, lr_state = state
        _core.check_tree_matches(updates, adam_state.mu)
        g_leaves, treedef = jax.tree.flatten(updates)
        m_leaves = treedef.flatten_up_to(adam_state.mu)
        v_leaves = treedef.flatten_up_to(adam_state.nu)
        p_leaves = treedef.flatten_up_to(params) if return_params else [None] * len(g_leaves)
        columns = list(zip(p_leaves, g_leaves, m_leaves, v_leaves))
        # Without return_params the kernel writes the updates to a fresh buffer and XLA
        # adds them to the parameters afterwards (9 arrays touched instead of XLA's 7, and
        # fresh pages to fault in every step), so there it only takes the small leaves,
        # whose per-leaf cost it removes; the large ones stay in XLA's fused loop.
        is_fast = [_fused.eligible(g, m, v, *([p] if return_params else []))
                   and (return_params or g.size < _fused.SMALL_LEAF)
                   for p, g, m, v in columns]
        fast = [i for i, ok in enumerate(is_fast) if ok]
        slow = [i for i, ok in enumerate(is_fast) if not ok]

        # The leaves the kernel cannot take (and the counters and learning-rate state,
        # also when that list is empty) go through the plain transform.
        pick = lambda leaves, idx: [leaves[i] for i in idx]  # noqa: E731
        slow_state = (adam_state._replace(mu=pick(m_leaves, slow), nu=pick(v_leaves, slow)),
                      lr_state)
        slow_out, (new_adam, new_lr) = plain_update(
            pick(g_leaves, slow), slow_state,
            pick(p_leaves, slow) if return_params else None, return_params)

        outs = [None] * len(columns)
        mus, nus = list(m_leaves), list(v_leaves)
        for i, o, m, v in zip(slow, slow_out, new_adam.mu, new_adam.nu):
            outs[i], mus[i], nus[i] = o, m, v
        if fast:
            scalars = kernel_scalars(new_adam.count, lr_state.count)
            if return_params:
                inputs, aliases = [columns[i] for i in fast], [0, 2, 3]
            else:
                # No alias for the updates: an undonated gradient would be copied first.
                inputs, aliases = [columns[i][1:] for i in fast], [None, 1, 2]
            results = _fused.fused_call("adam", scalars, inputs, aliases, apply=int(return_params))
            for i, (o, m, v) in zip(fast, results):
                outs[i], mus[i], nus[i] = o, m, v
        new_adam = new_adam._replace(mu=treedef.unflatten(mus), nu=treedef.unflatten(nus))
        return treedef.unflatten(outs), (new_adam, new_lr)

    return GradientTransformationExtraArgs(init_fn, update_fn)


def _check_flat(leaves) -> None:
    bad = [jnp.result_type(x) for x in leaves if jnp.result_type(x) != jnp.float32]
    if bad:
        raise ValueError(f"fused_adam: flat_state=True needs float32 leaves, got {bad[0]}")


def _split(flat: jax.Array, like: list) -> list:
    """The stretches of ``flat`` that belong to each leaf of ``like``, in their shapes."""
    out, pos = [], 0
    for x in like:
        out.append(flat[pos:pos + x.size].reshape(x.shape))
        pos += x.size
    return out
