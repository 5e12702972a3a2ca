"""Gradient checking and per-step training diagnostics.

Gradient checking follows the notes "Deep Learning Note 2 — Part 2: Optimization" (on
Ng's course); the training diagnostics follow Bipin, "Deep Learning, Lecture 6 —
Optimization".

``gradient_check`` is a host-side debugging tool (run it a few times, not every step).
The other functions are pure, jittable and cheap (one reduction per leaf): they return
flat ``{path: scalar}`` dicts keyed by the leaf's path (``"params/Dense_0/kernel"``),
ready to be logged into a training history every step.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jaxopt_dl._core import check_int, check_positive, global_norm

__all__ = [
    "GradientCheckResult",
    "gradient_check",
    "update_weight_ratio",
    "gradient_norms",
    "activation_stats",
    "nonfinite_mask",
    "nonfinite_count",
    "first_nonfinite",
    "summarize",
]


def _path(key_path: Any) -> str:
    return jax.tree_util.keystr(key_path, simple=True, separator="/") or "<root>"


def _leaves(tree: Any) -> list[tuple[str, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(_path(p), leaf) for p, leaf in flat]


def _norm(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    return jnp.sqrt(jnp.sum(jnp.abs(x.astype(jnp.promote_types(x.dtype, jnp.float32))) ** 2))


# --------------------------------------------------------------------------
# Gradient check
# --------------------------------------------------------------------------


class GradientCheckResult(NamedTuple):
    """The outcome of :func:`gradient_check`.

    Attributes:
      ok: every leaf's relative error is at most ``tolerance``.
      max_relative_error: the largest per-leaf relative error.
      errors: ``{path: relative error}`` per leaf.
      numerical: the centered-difference gradient (float64, the params' structure).
      analytic: ``jax.grad`` in float64 (the params' structure).
    """

    ok: bool
    max_relative_error: float
    errors: dict[str, float]
    numerical: Any
    analytic: Any


def gradient_check(
    fun: Callable[[Any], jax.Array],
    params: Any,
    eps: Optional[float] = None,
    tolerance: float = 1e-6,
    batch_size: int = 256,
) -> GradientCheckResult:
    """Compare ``jax.grad(fun)`` with centered differences, per leaf, in float64.

    .. math::
        \\hat g_i = \\frac{f(\\theta + h_i e_i) - f(\\theta - h_i e_i)}{2 h_i}, \\quad
        h_i = \\epsilon \\max(1, |\\theta_i|), \\quad
        \\text{err} = \\frac{\\|\\hat g - g\\|_2}{\\|\\hat g\\|_2 + \\|g\\|_2}

    per leaf (0 when both are zero). The centered difference has error
    ``O(h^2)`` versus ``O(h)`` for the one-sided one. Everything runs with
    64-bit types enabled locally (``jax.enable_x64``); params are cast to float64,
    so ``fun`` must not force a lower precision. Costs ``2 n`` evaluations of ``fun``
    for ``n`` parameters (batched by ``batch_size``): use it on small models, without
    dropout.

    Args:
      fun: a scalar function of ``params``.
      params: any pytree of float arrays.
      eps: the relative step ``epsilon`` (default ``1e-6``).
      tolerance: the largest relative error that passes (Ng's rule of thumb: ~1e-7
        great, 1e-5 suspicious, 1e-3 wrong).
      batch_size: coordinates perturbed per vectorized batch.

    Returns:
      A :class:`GradientCheckResult`.

    Example:
      >>> import jax.numpy as jnp
      >>> res = gradient_check(lambda p: jnp.sum(jnp.sin(p["w"]) * p["b"]),
      ...                      {"w": jnp.ones(3), "b": jnp.arange(3.0)})
      >>> res.ok
      True

    References:
      Ng, Deep Learning Specialization, "Gradient checking"; the notes "Deep
      Learning Note 2 — Part 2: Optimization" (on Ng's course);
      Goodfellow et al., Deep Learning, Sec. 11.5 (2016).
    """
    eps = 1e-6 if eps is None else eps
    check_positive("eps", eps)
    check_positive("tolerance", tolerance)
    check_int("batch_size", batch_size, 1)
    with jax.enable_x64(True):
        params64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        flat, unravel = ravel_pytree(params64)
        out = jax.eval_shape(fun, params64)
        if getattr(out, "shape", None) != ():
            raise ValueError(f"fun must return a scalar, got {out}")
        analytic = jax.grad(fun)(params64)
        numerical = unravel(_centered_differences(fun, unravel, flat, eps, batch_size))
        errors = {}
        for (path, num), (_, ana) in zip(_leaves(numerical), _leaves(analytic)):
            diff = float(jnp.linalg.norm(jnp.ravel(num - ana)))
            scale = float(jnp.linalg.norm(jnp.ravel(num)) + jnp.linalg.norm(jnp.ravel(ana)))
            errors[path] = diff / scale if scale > 0 else 0.0
    worst = max(errors.values(), default=0.0)
    return GradientCheckResult(
        ok=bool(worst <= tolerance),
        max_relative_error=worst,
        errors=errors,
        numerical=numerical,
        analytic=analytic,
    )


def _centered_differences(fun, unravel, flat, eps, batch_size):
    steps = eps * jnp.maximum(1.0, jnp.abs(flat))

    @jax.jit
    def coordinate(i):
        e = jnp.zeros_like(flat).at[i].set(steps[i])
        return (fun(unravel(flat + e)) - fun(unravel(flat - e))) / (2 * steps[i])

    idx = jnp.arange(flat.shape[0])
    return jax.lax.map(coordinate, idx, batch_size=min(int(batch_size), flat.shape[0]))


# --------------------------------------------------------------------------
# Per-step diagnostics (jittable)
# --------------------------------------------------------------------------


def update_weight_ratio(params: Any, updates: Any, eps: float = 1e-12) -> dict[str, jax.Array]:
    """Per leaf ``||update|| / (||param|| + eps)``.

    Bipin, "Deep Learning, Lecture 6 — Optimization" (and Karpathy's rule of thumb):
    around ``1e-3`` is healthy; much larger means the learning rate is too high, much
    smaller that it is too low.

    Args:
      params: the parameters before the update.
      updates: the updates applied to them (same structure).
      eps: keeps zero-initialized leaves (biases) finite.

    Returns:
      ``{path: ratio}``.

    Example:
      >>> import jax.numpy as jnp
      >>> update_weight_ratio({"w": jnp.ones(4)}, {"w": jnp.full(4, 1e-3)})
      {'w': Array(0.001, dtype=float32)}

    References:
      Bipin, "Deep Learning, Lecture 6 — Optimization", section "Visualize the
      training process"; Karpathy, CS231n notes (2016).
    """
    return {
        path: _norm(u) / (_norm(p) + eps)
        for (path, p), (_, u) in zip(_leaves(params), _leaves(updates))
    }


def gradient_norms(grads: Any) -> dict[str, jax.Array]:
    """Per leaf ``||g||_2``, plus ``"global"``: the norm of the whole tree.

    Args:
      grads: a pytree of gradient arrays.

    Example:
      >>> import jax.numpy as jnp
      >>> gradient_norms({"w": jnp.array([3.0, 4.0])})["global"]
      Array(5., dtype=float32)
    """
    norms = {path: _norm(g) for path, g in _leaves(grads)}
    norms["global"] = global_norm(grads)
    return norms


def activation_stats(intermediates: Any) -> dict[str, jax.Array]:
    """Mean and standard deviation of each recorded activation.

    Pass the ``intermediates`` collection returned by
    ``model.apply(variables, x, mutable=["intermediates"])`` (values recorded with
    ``self.sow("intermediates", name, value)`` or ``capture_intermediates=True``).
    Bipin, "Deep Learning, Lecture 6 — Optimization": a healthy activation std is of
    order 0.5 to 2; a mean far from 0 hints at batch norm or ELUs.

    Args:
      intermediates: any pytree of activation arrays.

    Returns:
      ``{"<path>/mean": ..., "<path>/std": ...}`` per recorded array (the path ends
      with the index of the value in the tuple ``sow`` stores).

    Example:
      >>> import jax.numpy as jnp
      >>> activation_stats({"Dense_0": {"act": (jnp.array([1.0, 3.0]),)}})
      {'Dense_0/act/0/mean': Array(2., dtype=float32), 'Dense_0/act/0/std': Array(1., dtype=float32)}
    """
    stats = {}
    for path, a in _leaves(intermediates):
        a = jnp.asarray(a)
        a = a.astype(jnp.promote_types(a.dtype, jnp.float32))
        stats[f"{path}/mean"] = jnp.mean(a)
        stats[f"{path}/std"] = jnp.std(a)
    return stats


def nonfinite_mask(tree: Any) -> Any:
    """A tree of booleans: True where a leaf has any NaN or Inf entry (jittable).

    Args:
      tree: any pytree of arrays (params, gradients, updates).
    """
    return jax.tree.map(lambda x: ~jnp.all(jnp.isfinite(x)), tree)


def nonfinite_count(tree: Any) -> jax.Array:
    """The number of NaN/Inf entries in the whole tree (an int32 scalar, jittable).

    Args:
      tree: any pytree of arrays (params, gradients, updates).
    """
    counts = [jnp.sum(~jnp.isfinite(x), dtype=jnp.int32) for x in jax.tree.leaves(tree)]
    return sum(counts, jnp.zeros([], jnp.int32))


def first_nonfinite(tree: Any) -> Optional[str]:
    """The path of the first leaf (in tree order) with a NaN/Inf entry, or None.

    Host-side (it returns a string); call it when a jitted ``nonfinite_count`` is
    nonzero to locate the culprit (Bipin, "Deep Learning, Lecture 6 — Optimization":
    "evaluate your network layer by layer and see where the NaNs appear").

    Args:
      tree: any pytree of arrays (params, gradients, updates).

    Example:
      >>> import jax.numpy as jnp
      >>> first_nonfinite({"a": jnp.ones(2), "b": {"c": jnp.array([0.0, jnp.nan])}})
      'b/c'
    """
    mask = jax.device_get(nonfinite_mask(tree))
    for path, bad in _leaves(mask):
        if bool(np.asarray(bad)):
            return path
    return None


def summarize(
    params: Any, grads: Any, updates: Any, intermediates: Any = None
) -> dict[str, jax.Array]:
    """All per-step diagnostics in one flat dict (jittable).

    Keys: ``grad_norm/<path>`` and ``grad_norm/global``, ``update_ratio/<path>``,
    ``nonfinite/params|grads|updates`` (counts), and ``activation/<path>/mean|std``
    when ``intermediates`` is given.

    Args:
      params: the parameters before the update.
      grads: the gradients of the step (same structure as ``params``).
      updates: the updates the optimizer returned (same structure).
      intermediates: optional ``"intermediates"`` collection of ``model.apply(...,
        mutable=["intermediates"])`` for the activation statistics (default ``None``:
        none).

    Example:
      >>> import jax.numpy as jnp
      >>> p = {"w": jnp.ones(2)}
      >>> sorted(summarize(p, p, p))[:2]
      ['grad_norm/global', 'grad_norm/w']
    """
    out = {f"grad_norm/{k}": v for k, v in gradient_norms(grads).items()}
    out.update({f"update_ratio/{k}": v for k, v in update_weight_ratio(params, updates).items()})
    for name, tree in (("params", params), ("grads", grads), ("updates", updates)):
        out[f"nonfinite/{name}"] = nonfinite_count(tree)
    if intermediates is not None:
        out.update({f"activation/{k}": v for k, v in activation_stats(intermediates).items()})
    return out
