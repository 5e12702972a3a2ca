"""Regularization as gradient transformations: weight decay, L1, L2, elastic net, noise."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from jaxopt_dl import _core
from jaxopt_dl._core import GradientTransformation, ScalarOrSchedule


class WeightDecayScheduleState(NamedTuple):
    """Step count for a scheduled weight decay."""

    count: jax.Array


class AddNoiseState(NamedTuple):
    """Step count and PRNG key of :func:`add_noise`."""

    count: jax.Array
    rng_key: jax.Array


def _scaled_weights(weight: jax.Array, params: jax.Array) -> jax.Array:
    """Gradient of ``weight/2 ||w||^2``: ``weight * w``."""
    return weight * params


def _scaled_sign(weight: jax.Array, params: jax.Array) -> jax.Array:
    """Subgradient of ``weight ||w||_1``: ``weight * sign(w)`` (0 at w = 0)."""
    return weight * jnp.sign(params)


def _params_required(name: str, params: Any) -> None:
    if params is None:
        raise ValueError(f"{name} needs params: call update(updates, state, params)")


def _add_penalty_gradient(
    name: str, weight: ScalarOrSchedule, penalty_grad: Callable[[Any, jax.Array], Any],
    mask: Optional[Union[Any, Callable]] = None,
) -> GradientTransformation:
    """``u = g + penalty_grad(weight_t, w)``, with ``weight`` a float or a schedule."""
    _core.check_nonnegative(name, weight)
    _core.check_finite(name, weight)

    def init_fn(params):
        del params
        if callable(weight):
            return WeightDecayScheduleState(_core.zero_count())
        return _core.EmptyState()

    def update_fn(updates, state, params=None):
        _params_required(name, params)
        if callable(weight):
            value = weight(state.count)
            state = WeightDecayScheduleState(_core.safe_increment(state.count))
        else:
            value = weight
        updates = _core.tree_map(lambda g, p: g + penalty_grad(value, p), updates, params)
        return updates, state

    transform = GradientTransformation(init_fn, update_fn)
    return optax.masked(transform, mask) if mask is not None else transform


def add_decayed_weights(
    weight_decay: ScalarOrSchedule = 0.0, mask: Optional[Union[Any, Callable]] = None
) -> GradientTransformation:
    """Add ``weight_decay * w`` to the updates (optax.add_decayed_weights).

    Placed after the adaptive scaling (as in ``adamw``) this is decoupled weight decay
    (Loshchilov & Hutter 2019); placed before, it is the L2 penalty's gradient.

    Args:
      weight_decay: a float or schedule.
      mask: a tree of booleans or a function params -> tree, True where to decay.
    """
    return _add_penalty_gradient("weight_decay", weight_decay, _scaled_weights, mask)


def add_l2(weight: ScalarOrSchedule, mask: Optional[Union[Any, Callable]] = None):
    """Add the gradient of the L2 penalty ``weight/2 * ||w||^2``, i.e. ``weight * w``.

    .. math:: u = g + \\lambda w

    References:
      Goodfellow et al. 2016, Sec. 7.1.1; seed 003/004.
    """
    return _add_penalty_gradient("weight", weight, _scaled_weights, mask)


def add_l1(weight: ScalarOrSchedule, mask: Optional[Union[Any, Callable]] = None):
    """Add the subgradient of the L1 penalty ``weight * ||w||_1``: ``weight * sign(w)``.

    .. math:: u = g + \\lambda\\, \\mathrm{sign}(w)

    (``sign(0) = 0``: the subgradient of ``|w|`` at 0 chosen as 0.)
    """
    return _add_penalty_gradient("weight", weight, _scaled_sign, mask)


def add_elastic_net(
    l1: ScalarOrSchedule, l2: ScalarOrSchedule, mask: Optional[Union[Any, Callable]] = None
) -> GradientTransformation:
    """Elastic net: the gradient of ``l1 ||w||_1 + l2/2 ||w||^2``.

    .. math:: u = g + \\lambda_1 \\mathrm{sign}(w) + \\lambda_2 w
    """
    return _core.chain(
        _add_penalty_gradient("l1", l1, _scaled_sign, mask),
        _add_penalty_gradient("l2", l2, _scaled_weights, mask),
    )


def add_noise(
    eta: jax.typing.ArrayLike, gamma: jax.typing.ArrayLike, key: Union[jax.Array, int, None] = None
) -> GradientTransformation:
    """Add annealed Gaussian noise ``N(0, eta / (1 + t)^gamma)`` to the updates.

    .. math:: u_t = g_t + \\mathcal{N}(0, \\eta / t^{\\gamma}), \\; t = 1, 2, \\dots

    References:
      Neelakantan et al. 2015.
    """
    _core.check_nonnegative("eta", eta)
    _core.check_nonnegative("gamma", gamma)
    key = 0 if key is None else key

    def init_fn(params):
        del params
        rng = jax.random.PRNGKey(key) if isinstance(key, int) else key
        return AddNoiseState(_core.zero_count(), rng)

    def update_fn(updates, state, params=None):
        del params
        count = _core.safe_increment(state.count)
        std = jnp.sqrt(eta / count**gamma)
        rng, sample_key = jax.random.split(state.rng_key)
        leaves, treedef = jax.tree.flatten(updates)
        keys = jax.random.split(sample_key, len(leaves))
        noisy = [
            g + std * jax.random.normal(k, g.shape, g.dtype) for g, k in zip(leaves, keys)
        ]
        return jax.tree.unflatten(treedef, noisy), AddNoiseState(count, rng)

    return GradientTransformation(init_fn, update_fn)
