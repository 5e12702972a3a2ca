"""Continuation: minimize a sequence of smoothed objectives, each warm-started from the last."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_dl._core import GradientTransformation, apply_updates, check_int, check_nonnegative

__all__ = ["ContinuationResult", "gaussian_smoothing", "continuation"]


class ContinuationResult(NamedTuple):
    """Result of :func:`continuation`.

    Attributes:
      x: the final point.
      stage_x: the point at the end of every stage (a list).
      stage_value: ``fun`` (unsmoothed) at the end of every stage, shape ``(stages,)``.
    """

    x: Any
    stage_x: list
    stage_value: np.ndarray


def gaussian_smoothing(
    fun: Callable[[Any], jax.Array], sigma: jax.typing.ArrayLike, num_samples: int
) -> Callable[[Any, jax.Array], jax.Array]:
    """Monte-Carlo estimate of the Gaussian-smoothed objective.

    .. math:: f_\\sigma(x) = \\mathbb{E}_{\\epsilon \\sim N(0, I)}[f(x + \\sigma \\epsilon)]
              \\approx \\frac{1}{S} \\sum_{s=1}^{S} f(x + \\sigma \\epsilon_s)

    Its gradient (by ``jax.grad`` of the estimate) is the unbiased
    ``mean_s grad f(x + sigma eps_s)``. ``sigma = 0`` gives ``f`` itself.

    Args:
      fun: the objective, on a pytree ``x``.
      sigma: smoothing width (may be traced).
      num_samples: ``S``.

    Returns:
      ``smoothed(x, key)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> f = gaussian_smoothing(lambda x: jnp.sum(x ** 2), 0.5, 20000)
      >>> round(float(f(jnp.zeros(1), jax.random.key(0))), 2)  # E[(0.5 eps)^2] = 0.25
      0.25
    """
    check_int("num_samples", num_samples, 1)

    def smoothed(x, key):
        leaves, treedef = jax.tree.flatten(x)
        keys = jax.random.split(key, len(leaves))
        noise = [
            jax.random.normal(k, (num_samples,) + jnp.shape(leaf), jnp.result_type(leaf))
            for k, leaf in zip(keys, leaves)
        ]
        noise = jax.tree.unflatten(treedef, noise)
        shifted = jax.tree.map(lambda leaf, n: leaf + sigma * n, x, noise)
        return jnp.mean(jax.vmap(fun)(shifted))

    return smoothed


def continuation(
    fun: Callable[[Any], jax.Array],
    x0: Any,
    sigmas: Sequence[float],
    tx: GradientTransformation,
    steps_per_stage: int,
    key: jax.Array,
    num_samples: int = 32,
) -> ContinuationResult:
    """Minimize ``f_{sigma_1}, f_{sigma_2}, ...`` in turn, each stage from the last's point.

    Each stage runs ``steps_per_stage`` steps of ``tx`` on the Gaussian-smoothed
    objective (:func:`gaussian_smoothing`, fresh perturbations every step) starting from
    the previous stage's point with a fresh optimizer state. Give decreasing ``sigmas``
    ending with ``0`` (the true objective): wide smoothing removes the small-scale local
    minima, so the early stages find the basin of a global minimum that the later,
    sharper stages refine. One compile for all stages (``sigma`` is traced).

    Args:
      fun: scalar objective of a pytree.
      x0: starting point.
      sigmas: smoothing widths, one stage each (non-negative).
      tx: optimizer (e.g. ``jdl.sgd(0.1)``).
      steps_per_stage: optimization steps per stage.
      key: PRNG key of the perturbations.
      num_samples: perturbations per gradient estimate.

    Returns:
      A :class:`ContinuationResult`.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_dl as jdl
      >>> f = lambda x: 0.05 * x ** 2 - jnp.cos(2 * x)
      >>> r = continuation(f, jnp.array(4.0), [1.5, 0.5, 0.0], jdl.sgd(0.1), 200,
      ...                  jax.random.key(0))
      >>> abs(float(r.x)) < 1e-2
      True

    References:
      Goodfellow et al. 2016, Sec. 8.7.6 (continuation methods, Gaussian blurring);
      Mobahi & Fisher 2015.
    """
    check_int("steps_per_stage", steps_per_stage, 1)
    for sigma in sigmas:
        check_nonnegative("sigmas", sigma)
    if not len(sigmas):
        raise ValueError("sigmas must name at least one stage, got an empty sequence")

    @jax.jit
    def stage(x, sigma, key):
        grad = jax.grad(gaussian_smoothing(fun, sigma, num_samples))

        def step(carry, step_key):
            x, opt_state = carry
            updates, opt_state = tx.update(grad(x, step_key), opt_state, x)
            return (apply_updates(x, updates), opt_state), None

        (x, _), _ = jax.lax.scan(step, (x, tx.init(x)), jax.random.split(key, steps_per_stage))
        return x, fun(x)

    x, stage_x, values = x0, [], []
    for sigma, stage_key in zip(sigmas, jax.random.split(key, len(sigmas))):
        x, value = stage(x, jnp.asarray(sigma, jnp.float32), stage_key)
        stage_x.append(x)
        values.append(float(value))
    return ContinuationResult(x=x, stage_x=stage_x, stage_value=np.asarray(values))
