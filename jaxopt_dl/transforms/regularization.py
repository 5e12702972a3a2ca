"""Regularization as gradient transformations: weight decay, L1, L2, elastic net, noise.

``add_decayed_weights`` and ``add_noise`` are optax's; L1, L2 and the elastic net
(which optax lacks) are written here, each penalty gradient once.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import optax

from jaxopt_dl import _core
from jaxopt_dl._core import GradientTransformation, ScalarOrSchedule


class WeightDecayScheduleState(NamedTuple):
    """Step count for a scheduled L1/L2 weight (optax has no L1/elastic-net blocks).

    Attributes:
      count: updates applied so far (int32), the step the weight's schedule is read at.
    """

    count: jax.Array


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
    name: str,
    weight: ScalarOrSchedule,
    penalty_grad: Callable[[Any, jax.Array], Any],
    mask: Optional[Union[Any, Callable]] = None,
) -> GradientTransformation:
    """``u = g + penalty_grad(weight_t, w)``, with ``weight`` a float or a schedule."""

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


@_core.block(
    kernel="decoupled_decay",
    checks={"weight_decay": _core.check_nonnegative},
    signature_of=optax.add_decayed_weights,
)
def add_decayed_weights(weight_decay=0.0, mask=None):
    """Add ``weight_decay * w`` to the updates: optax.add_decayed_weights.

    Placed after the adaptive scaling (as in ``adamw``) this is decoupled weight decay
    (Loshchilov & Hutter 2019); placed before, it is the L2 penalty's gradient
    (:func:`add_l2`). optax's numbers and states (with a ``mask``, optax's
    ``MaskedState`` around ``EmptyState``); ``weight_decay`` is checked when built
    (finite, non-negative).
    """
    return optax.add_decayed_weights(weight_decay, mask)


@_core.block(kernel="add_l2", checks={"weight": _core.check_nonnegative})
def add_l2(weight: ScalarOrSchedule, mask: Optional[Union[Any, Callable]] = None):
    """Add the gradient of the L2 penalty ``weight/2 * ||w||^2``, i.e. ``weight * w``.

    .. math:: u = g + \\lambda w

    Args:
      weight: ``lambda``, a float or a schedule.
      mask: a tree of booleans or a function params -> tree, True where to apply.

    References:
      Goodfellow et al. 2016, Sec. 7.1.1; R. Neychev, "Optimization and regularization
      in Deep Learning"; G. Kim, "Optimization and Tips for Neural Network Training".
    """
    return _add_penalty_gradient("weight", weight, _scaled_weights, mask)


@_core.block(checks={"weight": _core.check_nonnegative})
def add_l1(weight: ScalarOrSchedule, mask: Optional[Union[Any, Callable]] = None):
    """Add the subgradient of the L1 penalty ``weight * ||w||_1``: ``weight * sign(w)``.

    .. math:: u = g + \\lambda\\, \\mathrm{sign}(w)

    (``sign(0) = 0``: the subgradient of ``|w|`` at 0 chosen as 0.)

    Args:
      weight: ``lambda``, a float or a schedule.
      mask: a tree of booleans or a function params -> tree, True where to apply.
    """
    return _add_penalty_gradient("weight", weight, _scaled_sign, mask)


@_core.block(checks={"l1": _core.check_nonnegative, "l2": _core.check_nonnegative})
def add_elastic_net(
    l1: ScalarOrSchedule, l2: ScalarOrSchedule, mask: Optional[Union[Any, Callable]] = None
) -> GradientTransformation:
    """Elastic net: the gradient of ``l1 ||w||_1 + l2/2 ||w||^2``.

    .. math:: u = g + \\lambda_1 \\mathrm{sign}(w) + \\lambda_2 w

    Args:
      l1: the L1 weight, a float or a schedule.
      l2: the L2 weight, a float or a schedule.
      mask: a tree of booleans or a function params -> tree, True where to apply.
    """
    return _core.chain(
        _add_penalty_gradient("l1", l1, _scaled_sign, mask),
        _add_penalty_gradient("l2", l2, _scaled_weights, mask),
    )


@_core.block(
    checks={
        "eta": _core.check_nonnegative,
        "gamma": _core.check_nonnegative,
        "key": lambda name, value: value is None or _core.check_key(name, value),
    }
)
def add_noise(
    eta: jax.typing.ArrayLike, gamma: jax.typing.ArrayLike, key: Union[jax.Array, int, None] = None
) -> GradientTransformation:
    """Add annealed Gaussian noise of variance ``eta / t^gamma`` at the t-th update.

    .. math:: u_t = g_t + \\mathcal{N}(0, \\eta / t^{\\gamma}), \\; t = 1, 2, \\dots

    optax.add_noise, its numbers and ``AddNoiseState``; ``eta`` and ``gamma`` are
    checked when built. ``key`` may be a PRNG key, an int or an integer array (the
    seed ``inject_hyperparams`` passes); ``None`` means seed 0, without optax's warning.

    Args:
      eta: base variance of the noise (>= 0).
      gamma: decay exponent of the variance (>= 0).
      key: a PRNG key, an int or an integer array (a seed); ``None`` is 0.

    Raises:
      TypeError: ``key`` is a float, a bool, a string or another non-key.

    References:
      Neelakantan et al. 2015, Adding Gradient Noise Improves Learning for Very Deep
      Networks.
    """
    return optax.add_noise(eta, gamma, 0 if key is None else key)
