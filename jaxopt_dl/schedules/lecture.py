"""Schedules of the lectures, torch and Keras that optax lacks.

Inverse-time (1/t) decay, step and multi-step decay, per-epoch schedules and cyclical
learning rates, with the same conventions as the optax-named schedules: pure functions
of the step count, elementwise over arrays, jit- and vmap-compatible, float output.

Why decay at all (J. Petersen, "Optimization in Deep Learning"; Goodfellow et al. 2016,
Sec. 8.3.1): a minibatch gradient is noisy, so with a fixed step SGD keeps wandering
around the minimum instead of converging. SGD converges (Robbins & Monro 1951) when
``sum_t eps_t = inf`` and ``sum_t eps_t**2 < inf``; ``inverse_time_decay`` (1/t) meets
both, exponential and step decay do not meet the first, which is why they are used with
a floor or for a fixed budget.
"""

from __future__ import annotations

import collections
from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from jaxopt_dl._core import (
    Schedule,
    check_bool,
    check_choice,
    check_in_range,
    check_nonnegative,
    check_positive,
)
from jaxopt_dl.schedules.optax_named import (
    _as_float,
    _check_boundaries,
    _check_values,
    exponential_decay,
    piecewise_constant_schedule,
)

ArrayLike = jax.typing.ArrayLike

__all__ = [
    "inverse_time_decay",
    "step_decay",
    "multistep_decay",
    "per_epoch",
    "cyclic_schedule",
]


def inverse_time_decay(
    init_value: ArrayLike,
    decay_rate: ArrayLike,
    decay_steps: int = 1,
    staircase: bool = False,
) -> Schedule:
    """Inverse-time (1/t) decay, the Robbins-Monro schedule.

    .. math::
      \\epsilon_t = \\frac{I}{1 + r\\, p},\\quad p = t / D \\;(\\lfloor t / D\\rfloor
      \\text{ with staircase})

    For large ``t`` this is ``(I D / r) / t``, the lecture's ``eta / t`` (K. Bipin, "Deep Learning,
    Lecture 6 — Optimization"): its sum
    diverges and the sum of its squares converges, so SGD with it converges on a convex
    problem despite gradient noise. Legacy Keras ``SGD(decay=r)`` is this schedule with
    ``decay_steps=1`` applied per iteration.

    Args:
      init_value: ``I``.
      decay_rate: ``r >= 0``.
      decay_steps: ``D > 0``.
      staircase: decay at discrete intervals.

    Returns:
      A function ``step -> value``.

    Raises:
      ValueError: ``decay_rate < 0`` or ``decay_steps <= 0``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> round(float(jdl.inverse_time_decay(1.0, 0.5, 10)(20)), 4)
      0.5

    References:
      Robbins & Monro 1951; Goodfellow et al. 2016, Sec. 8.3.1;
      keras.optimizers.schedules.InverseTimeDecay.
    """
    _check_values(init_value=init_value)
    check_nonnegative("decay_rate", decay_rate)
    check_positive("decay_steps", decay_steps)
    check_bool("staircase", staircase)

    def schedule(count):
        p = count / decay_steps
        if staircase:
            p = jnp.floor(p)
        return _as_float(init_value / (1 + decay_rate * p))

    return schedule


def step_decay(init_value: ArrayLike, drop: ArrayLike, steps_per_drop: int) -> Schedule:
    """Multiply by ``drop`` every ``steps_per_drop`` steps (torch ``StepLR``).

    .. math:: \\epsilon_t = I \\cdot d^{\\lfloor t / K \\rfloor}

    This is ``exponential_decay(I, K, d, staircase=True)``, torch's
    ``StepLR(step_size=K, gamma=d)`` and the lecture's "halve every 10 epochs" when used
    with ``per_epoch``. The lecture's Keras callback computes ``floor((1 + epoch) / K)``,
    i.e. drops one epoch earlier: that is ``lambda e: step_decay(I, d, K)(e + 1)``.

    Args:
      init_value: ``I``.
      drop: ``d`` in (0, 1].
      steps_per_drop: ``K > 0``.

    Returns:
      A function ``step -> value``.

    Raises:
      ValueError: ``drop`` outside (0, 1] or ``steps_per_drop <= 0``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> s = jdl.step_decay(0.1, 0.5, 10)
      >>> [round(float(s(t)), 4) for t in (9, 10, 25)]
      [0.1, 0.05, 0.025]

    References:
      K. Bipin, "Deep Learning, Lecture 6 — Optimization" ("step decay, alpha = 0.5
      common"); G. Kim, "Optimization and Tips for Neural Network Training" (Keras
      ``step_decay``);
      torch.optim.lr_scheduler.StepLR.
    """
    check_positive("drop", drop)
    check_in_range("drop", drop, 0.0, 1.0)
    check_positive("steps_per_drop", steps_per_drop)
    return exponential_decay(init_value, steps_per_drop, drop, staircase=True)


def multistep_decay(
    init_value: ArrayLike, milestones: Sequence[int], gamma: ArrayLike = 0.1
) -> Schedule:
    """Multiply by ``gamma`` at each milestone (torch ``MultiStepLR``).

    .. math:: \\epsilon_t = I \\cdot \\gamma^{\\#\\{i:\\, m_i \\le t\\}}

    A milestone listed twice applies ``gamma`` twice, as in torch.

    Args:
      init_value: ``I``.
      milestones: non-negative, increasing steps.
      gamma: ``gamma >= 0``.

    Returns:
      A function ``step -> value``.

    Raises:
      ValueError: negative or unsorted milestones, or ``gamma < 0``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> s = jdl.multistep_decay(1.0, [10, 20])
      >>> [round(float(s(t)), 4) for t in (9, 10, 20)]
      [1.0, 0.1, 0.01]

    References:
      torch.optim.lr_scheduler.MultiStepLR.
    """
    _check_boundaries("milestones", milestones)
    milestones = list(milestones)
    check_nonnegative("gamma", gamma)
    counts = collections.Counter(milestones)
    return piecewise_constant_schedule(init_value, {m: gamma**k for m, k in counts.items()})


def per_epoch(schedule: Schedule, steps_per_epoch: int) -> Schedule:
    """Turn an epoch-indexed schedule into a step-indexed one.

    .. math:: \\epsilon_t = s(\\lfloor t / S \\rfloor)

    Args:
      schedule: a function ``epoch -> value``.
      steps_per_epoch: ``S > 0``, the number of optimizer steps per epoch.

    Returns:
      A function ``step -> value``, constant within each epoch.

    Raises:
      ValueError: ``steps_per_epoch <= 0``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> s = jdl.per_epoch(jdl.step_decay(0.1, 0.5, 10), steps_per_epoch=100)
      >>> round(float(s(999)), 4), round(float(s(1000)), 4)
      (0.1, 0.05)

    References:
      G. Kim, "Optimization and Tips for Neural Network Training" ("normally we
      decrease the learning rate each epoch").
    """
    if not callable(schedule):
        raise TypeError(f"schedule must be a function epoch -> value, got schedule={schedule!r}")
    check_positive("steps_per_epoch", steps_per_epoch)

    def step_schedule(step):
        return _as_float(schedule(step // steps_per_epoch))

    return step_schedule


_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


def cyclic_schedule(
    base_lr: ArrayLike,
    max_lr: ArrayLike,
    step_size_up: int = 2000,
    step_size_down: Optional[int] = None,
    mode: str = "triangular",
    gamma: ArrayLike = 1.0,
) -> Schedule:
    """Cyclical learning rate between ``base_lr`` and ``max_lr`` (torch ``CyclicLR``).

    With ``U`` = ``step_size_up``, ``D`` = ``step_size_down``, cycle ``c = floor(t/(U+D))``
    and position ``x = t - c (U + D)``:

    .. math::
      \\epsilon_t = b + (m - b)\\, h(x)\\, \\sigma,\\quad
      h(x) = x / U \\;(x \\le U),\\; (U + D - x) / D \\;(x > U)

    with ``sigma = 1`` ("triangular"), ``1 / 2^c`` ("triangular2", halved each cycle) or
    ``gamma^t`` ("exp_range").

    Args:
      base_lr: ``b``, the lower bound.
      max_lr: ``m``, the upper bound (reached in "triangular").
      step_size_up: ``U > 0`` steps going up.
      step_size_down: ``D > 0`` steps going down (``None``: ``U``).
      mode: "triangular", "triangular2" or "exp_range".
      gamma: ``gamma > 0``, used by "exp_range".

    Returns:
      A function ``step -> value``.

    Raises:
      ValueError: a non-positive step size or ``gamma``, or an unknown ``mode``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> s = jdl.cyclic_schedule(0.1, 1.0, step_size_up=10)
      >>> [round(float(s(t)), 3) for t in (0, 5, 10, 20)]
      [0.1, 0.55, 1.0, 0.1]

    References:
      Smith 2017, Cyclical Learning Rates for Training Neural Networks;
      torch.optim.lr_scheduler.CyclicLR.
    """
    _check_values(base_lr=base_lr, max_lr=max_lr)
    check_positive("step_size_up", step_size_up)
    check_positive("step_size_down", step_size_down, allow_none=True)
    check_choice("mode", mode, _CYCLIC_MODES)
    check_positive("gamma", gamma)
    step_size_down = step_size_up if step_size_down is None else step_size_down
    total = step_size_up + step_size_down

    def schedule(count):
        cycle = jnp.floor(count / total)
        x = count - cycle * total
        height = jnp.where(x <= step_size_up, x / step_size_up, (total - x) / step_size_down)
        if mode == "triangular":
            amplitude = 1.0
        elif mode == "triangular2":
            amplitude = 1.0 / 2.0**cycle
        else:
            amplitude = jnp.power(gamma, count)
        return _as_float(base_lr + (max_lr - base_lr) * height * amplitude)

    return schedule
