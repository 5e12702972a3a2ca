"""Scaling by a constant, a learning rate or a schedule, and reading the current rate back.

All three blocks are optax's own (built through :func:`jaxopt_dl._core.block`): same numbers,
same states (``EmptyState`` for a constant, ``ScaleByScheduleState`` for a schedule).
The learning rate is not stored in the state; :func:`current_learning_rate` computes
it from the state and the transform.
"""

from __future__ import annotations

from typing import Any, Optional

import jax.numpy as jnp
import optax

from jaxopt_dl import _core


def _check_callable(name: str, value: Any) -> None:
    if not callable(value):
        raise ValueError(f"{name} must be callable (step -> value), got {name}={value!r}")


@_core.block(checks={"step_size": _core.check_finite}, signature_of=optax.scale)
def scale(step_size):
    """Multiply updates by a fixed ``step_size``: optax.scale, its state and numbers.

    ``step_size`` is checked when built (finite).

    Example:
      >>> import jaxopt_dl as jdl
      >>> tx = jdl.scale(-0.1)
    """
    return optax.scale(step_size)


@_core.block(checks={"step_size_fn": _check_callable}, signature_of=optax.scale_by_schedule)
def scale_by_schedule(step_size_fn):
    """Multiply updates by ``step_size_fn(count)``: optax.scale_by_schedule.

    ``count`` is the number of updates applied so far; the state is optax's
    ``ScaleByScheduleState``. A ``step_size_fn`` that is not callable raises
    ``ValueError`` when built.
    """
    return optax.scale_by_schedule(step_size_fn)


def _rate(arguments: dict):
    """The rate the next update applies: the constant, or the schedule at the state's count."""
    return _core.rate_of(arguments["learning_rate"], count=lambda state: state.count)


@_core.block(
    kernel="learning_rate",
    checks={"learning_rate": _core.check_given_learning_rate},
    rate=_rate,
    signature_of=optax.scale_by_learning_rate,
)
def scale_by_learning_rate(learning_rate=None, *, flip_sign=True):
    """Multiply updates by ``-learning_rate``: optax.scale_by_learning_rate.

    .. math:: u_t = -\\epsilon_t \\, g_t

    The state is optax's: ``EmptyState`` for a constant rate, ``ScaleByScheduleState``
    for a schedule. :func:`current_learning_rate` reads the rate the next update applies
    from that state and this transform. ``learning_rate`` is checked when built (``None``,
    a negative or a non-finite number raise ``ValueError``).
    """
    return optax.scale_by_learning_rate(learning_rate, flip_sign=flip_sign)


_INJECTED_STATES = (optax.InjectHyperparamsState, optax.InjectStatefulHyperparamsState)


def _rate_in_state(state: Any) -> Any:
    """The injected ``learning_rate`` found in ``state`` (times plateau scales), or None."""
    if isinstance(state, _INJECTED_STATES) and "learning_rate" in state.hyperparams:
        rate = jnp.asarray(state.hyperparams["learning_rate"])
        return _core.times(rate, _core.state_rate_scale(state.inner_state))
    if isinstance(state, optax.transforms.PartitionState):
        rates = {group: _rate_in_state(inner) for group, inner in state.inner_states.items()}
        rates = {group: rate for group, rate in rates.items() if rate is not None}
        return rates if len(rates) > 1 else next(iter(rates.values()), None)
    kids = _core.children(state)
    rates = [rate for rate in map(_rate_in_state, kids) if rate is not None]
    if not rates:
        return None
    if len(rates) > 1:
        raise ValueError(
            "current_learning_rate: the state holds several injected learning rates; pass "
            "the optimizer: current_learning_rate(state, optimizer)"
        )
    scales = [s for s in map(_core.state_rate_scale, kids) if s is not None]
    return _core.times(rates[0], jnp.prod(jnp.stack(scales)) if scales else None)


def current_learning_rate(opt_state: Any, optimizer: Optional[Any] = None) -> Any:
    """The learning rate the NEXT update applies, reduce-on-plateau scales included.

    With ``optimizer`` (the transform that made ``opt_state``: any jaxopt_dl
    optimizer, chain or wrapper -- ``inject_hyperparams``, ``masked``,
    ``multi_transform``, ``apply_if_finite``, ``MultiSteps`` -- also inside
    ``flax``'s ``TrainState``: ``current_learning_rate(ts.opt_state, ts.tx)``) the rate
    is computed from the state's step count and the optimizer's rate or schedule, times
    the scale of every ``reduce_on_plateau`` in the chain. ``multi_transform`` with
    several rates gives ``{group: rate}``.

    Without ``optimizer`` only an ``inject_hyperparams`` state can answer: its
    ``hyperparams["learning_rate"]`` (what ``optax.tree_utils.tree_set`` changes), times
    the plateau scales in the state. For an injected schedule that is the rate of the
    last update; pass the optimizer for the next one.

    Args:
      opt_state: an optimizer state.
      optimizer: the transform (or ``MultiSteps``) whose state ``opt_state`` is.

    Returns:
      A scalar array, or ``{group: rate}`` for ``multi_transform`` with several rates.

    Raises:
      ValueError: when the rate cannot be read (no optimizer and no injected rate, or an
        optimizer that applies no learning rate).

    Example:
      >>> import jaxopt_dl as jdl, jax.numpy as jnp
      >>> opt = jdl.sgd(jdl.exponential_decay(1.0, 1, 0.5))
      >>> float(jdl.current_learning_rate(opt.init(jnp.zeros(2)), opt))
      1.0
    """
    if optimizer is not None:
        rate = _core.read_rate(_core.describe(optimizer), opt_state)
        if rate is not None:
            return rate
    rate = _rate_in_state(opt_state)
    if rate is not None:
        return rate
    if optimizer is not None:
        raise ValueError(
            "current_learning_rate: the optimizer applies no learning rate that jaxopt_dl "
            f"can read (state type {type(opt_state).__name__}); build it with "
            "jaxopt_dl's optimizers, chain and wrappers, or with inject_hyperparams"
        )
    raise ValueError(
        "current_learning_rate: the state holds no learning rate (a constant rate is not "
        f"stored in the state; state type {type(opt_state).__name__}): pass the optimizer, "
        "current_learning_rate(opt_state, optimizer)"
    )
