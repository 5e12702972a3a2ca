"""Scaling by a constant, a learning rate or a schedule, and reading the current rate back."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from jaxopt_dl import _core
from jaxopt_dl._core import GradientTransformation, ScalarOrSchedule


class ScaleByLearningRateState(NamedTuple):
    """State of :func:`scale_by_learning_rate`.

    Attributes:
      count: number of updates applied so far (saturating int32).
      learning_rate: the (positive) learning rate the NEXT update will apply; read it
        with :func:`current_learning_rate`.
    """

    count: jax.Array
    learning_rate: jax.Array


class ScaleByScheduleState(NamedTuple):
    """State of :func:`scale_by_schedule` (optax's field name)."""

    count: jax.Array


def scale(step_size: jax.typing.ArrayLike) -> GradientTransformation:
    """Multiply updates by a fixed ``step_size`` (optax.scale).

    Args:
      step_size: a scalar (may be traced).

    Example:
      >>> import jaxopt_dl as jdl
      >>> tx = jdl.scale(-0.1)
    """
    _core.check_finite("step_size", step_size)

    def update_fn(updates, state, params=None):
        del params
        return _core.tree_map(lambda g: step_size * g, updates), state

    return GradientTransformation(lambda params: _core.EmptyState(), update_fn)


def scale_by_schedule(step_size_fn: _core.Schedule) -> GradientTransformation:
    """Multiply updates by ``step_size_fn(count)``, ``count`` = updates applied so far."""
    if not callable(step_size_fn):
        raise ValueError(f"step_size_fn must be callable, got step_size_fn={step_size_fn!r}")

    def init_fn(params):
        del params
        return ScaleByScheduleState(count=_core.zero_count())

    def update_fn(updates, state, params=None):
        del params
        step_size = step_size_fn(state.count)
        updates = _core.tree_map(lambda g: jnp.array(step_size, dtype=g.dtype) * g, updates)
        return updates, ScaleByScheduleState(count=_core.safe_increment(state.count))

    return GradientTransformation(init_fn, update_fn)


def scale_by_learning_rate(
    learning_rate: Optional[ScalarOrSchedule], *, flip_sign: bool = True
) -> GradientTransformation:
    """Multiply updates by ``-learning_rate`` (a float, traced array or step -> value schedule).

    .. math:: u_t = -\\epsilon_t \\, g_t

    Unlike optax's, the state records the rate the next update applies, so
    :func:`current_learning_rate` can read it (also for a constant rate). The
    numbers equal optax's ``scale_by_learning_rate``.

    Args:
      learning_rate: the step size, or a schedule evaluated at the update count.
        ``None`` means no scaling (as optax).
      flip_sign: scale by ``-learning_rate`` (descent) when True.
    """
    if learning_rate is None:
        return _core.identity()
    _core.check_learning_rate(learning_rate)
    sign = -1 if flip_sign else 1

    def rate_at(count):
        return jnp.asarray(_core.evaluate(learning_rate, count), jnp.float32)

    def init_fn(params):
        del params
        count = _core.zero_count()
        return ScaleByLearningRateState(count=count, learning_rate=rate_at(count))

    def update_fn(updates, state, params=None):
        del params
        rate = _core.evaluate(learning_rate, state.count)
        if callable(learning_rate):
            updates = _core.tree_map(lambda g: jnp.array(sign * rate, dtype=g.dtype) * g, updates)
        else:
            updates = _core.tree_map(lambda g: (sign * rate) * g, updates)
        count = _core.safe_increment(state.count)
        return updates, ScaleByLearningRateState(count=count, learning_rate=rate_at(count))

    return GradientTransformation(init_fn, update_fn)


_HYPERPARAM_STATES = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)


def current_learning_rate(opt_state: Any) -> jax.Array:
    """The learning rate an optimizer's state holds, found anywhere in a chain.

    Works for every jaxopt_dl optimizer (constant or scheduled rate: the rate the next
    update applies), for ``inject_hyperparams`` states (their ``hyperparams
    ["learning_rate"]``), inside ``masked``/``multi_transform``/``MultiSteps`` and
    ``flax`` ``TrainState.opt_state``.

    Raises:
      ValueError: when the state holds no learning rate.

    Example:
      >>> import jaxopt_dl as jdl, jax.numpy as jnp
      >>> opt = jdl.sgd(jdl.exponential_decay(1.0, 1, 0.5))
      >>> float(jdl.current_learning_rate(opt.init(jnp.zeros(2))))
      1.0
    """

    def is_node(x):
        return isinstance(x, _HYPERPARAM_STATES) or "learning_rate" in getattr(x, "_fields", ())

    for node in jax.tree.leaves(opt_state, is_leaf=is_node):
        if "learning_rate" in getattr(node, "_fields", ()):
            return node.learning_rate
        if isinstance(node, _HYPERPARAM_STATES) and "learning_rate" in node.hyperparams:
            return node.hyperparams["learning_rate"]
    raise ValueError(
        "current_learning_rate: the optimizer state holds no learning rate "
        f"(state type {type(opt_state).__name__})"
    )
