"""Learning-rate schedules (step -> value) and batch-size schedules (epoch -> batch size).

Every learning-rate schedule here is a pure function of the step count: it accepts a
Python int or an integer/float array of any shape (elementwise), works under
``jax.jit`` and ``jax.vmap``, returns a float array, and can be passed as the
``learning_rate`` of any optax or jaxopt_dl optimizer.

The optax-named schedules take optax's argument names and defaults and give optax's
values. Where optax only logs or warns on meaningless arguments (non-positive
``transition_steps``, negative ``transition_begin``, warmup longer than the total),
these raise ``ValueError`` naming the argument and its value; traced arguments are not
checked.

Why decay at all (seeds 000-002, Goodfellow et al. 2016, Sec. 8.3.1): a minibatch
gradient is noisy, so with a fixed step SGD keeps wandering around the minimum instead
of converging. SGD converges (Robbins & Monro 1951) when
``sum_t eps_t = inf`` and ``sum_t eps_t**2 < inf``; ``inverse_time_decay`` (1/t) meets
both, exponential and step decay do not meet the first, which is why they are used with
a floor or for a fixed budget.

Learning rate vs batch size (seed 002: "smaller batch sizes lead to larger variance in
the gradients"): the minibatch-gradient noise has covariance ``Sigma / B`` for batch size
``B``, so one SGD step adds noise of covariance ``eps**2 Sigma / B``; over a fixed
distance travelled (``eps`` times the number of steps) the injected variance is
proportional to ``eps / B``. Dividing the learning rate by ``k`` and multiplying the batch
size by ``k`` therefore reduce the noise alike ("decay lr by k ~ grow the batch by k",
Smith et al. 2018), and the batch-size schedules below are the drop-in alternative to a
decaying learning rate, with fewer, cheaper-per-example steps.
"""

from __future__ import annotations

import collections
import math
from typing import Callable, Iterable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp

from jaxopt_dl._core import (
    Schedule,
    check_choice,
    check_finite,
    check_in_range,
    check_nonnegative,
    check_positive,
    is_python_number,
)

ArrayLike = jax.typing.ArrayLike
BatchSizeSchedule = Callable[[int], int]
"""A function ``epoch -> batch size`` (plain Python: the training loop reads it per epoch)."""

__all__ = [
    "constant_schedule",
    "polynomial_schedule",
    "linear_schedule",
    "piecewise_constant_schedule",
    "exponential_decay",
    "cosine_decay_schedule",
    "join_schedules",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
    "sgdr_schedule",
    "linear_onecycle_schedule",
    "cosine_onecycle_schedule",
    "inverse_time_decay",
    "step_decay",
    "multistep_decay",
    "per_epoch",
    "cyclic_schedule",
    "BatchSizeSchedule",
    "constant_batch_size",
    "step_doubling_batch_size",
    "geometric_batch_size",
]


# --------------------------------------------------------------------------
# Shared building blocks
# --------------------------------------------------------------------------


def _as_float(value: ArrayLike) -> jax.Array:
    """A schedule's output as a float array (ints become the default float dtype)."""
    value = jnp.asarray(value)
    if jnp.issubdtype(value.dtype, jnp.inexact):
        return value
    return value.astype(jnp.result_type(float))


def _check_boundaries(name: str, boundaries: Sequence[ArrayLike], sort: bool = True) -> None:
    """Boundaries/milestones must be non-negative and (with ``sort``) non-decreasing."""
    numbers = [b for b in boundaries if is_python_number(b)]
    for b in numbers:
        if math.isnan(float(b)) or b < 0:
            raise ValueError(f"{name} must be non-negative step counts, got {name}={boundaries!r}")
    if sort and len(numbers) == len(boundaries) and list(numbers) != sorted(numbers):
        raise ValueError(f"{name} must be sorted in increasing order, got {name}={boundaries!r}")


def _polynomial(
    init_value: ArrayLike,
    end_value: ArrayLike,
    power: ArrayLike,
    transition_steps: ArrayLike,
    transition_begin: ArrayLike,
) -> Schedule:
    """``(I - E) (1 - clip(t - B, 0, T) / T)**P + E``; ``T <= 0`` holds ``I`` (a zero warmup)."""

    def schedule(count):
        count = jnp.clip(count - transition_begin, 0, transition_steps)
        frac = 1 - count / jnp.where(transition_steps > 0, transition_steps, 1)
        return _as_float((init_value - end_value) * (frac**power) + end_value)

    return schedule


def _linear_interpolate(start: ArrayLike, end: ArrayLike, pct: ArrayLike) -> jax.Array:
    """``start + (end - start) pct``."""
    return (end - start) * pct + start


def _half_cosine(count: ArrayLike, period: ArrayLike = 1) -> jax.Array:
    """``(1 + cos(pi count / period)) / 2``: 1 at ``count = 0``, 0 at ``count = period``."""
    return 0.5 * (1 + jnp.cos(jnp.pi * count / period))


def _cosine_interpolate(start: ArrayLike, end: ArrayLike, pct: ArrayLike) -> jax.Array:
    """``end + (start - end) (1 + cos(pi pct)) / 2``."""
    return end + (start - end) * _half_cosine(pct)


def _piecewise_interpolate(
    interpolate: Callable[[ArrayLike, ArrayLike, ArrayLike], jax.Array],
    init_value: ArrayLike,
    boundaries_and_scales: Mapping[int, float],
) -> Schedule:
    """Interpolate between the cumulative products of the scales at the boundaries.

    The value at boundary ``b_i`` is ``init_value * s_1 * ... * s_i``; between boundaries
    ``interpolate`` moves from one value to the next; after the last it holds (optax's
    ``piecewise_interpolate_schedule``).
    """
    boundaries, scales = zip(*sorted(boundaries_and_scales.items()))

    def schedule(count):
        count = jnp.asarray(count)[..., None]
        bounds = jnp.stack((0,) + boundaries)
        values = jnp.cumprod(jnp.stack((init_value,) + scales))
        interval_sizes = jnp.maximum(bounds[1:] - bounds[:-1], 1)
        inside = jnp.logical_and(bounds[:-1] <= count, count < bounds[1:])
        pct = (count - bounds[:-1]) / interval_sizes
        interpolated = interpolate(values[:-1], values[1:], pct)
        after = (bounds[-1] <= count[..., 0]) * values[-1]
        return _as_float(jnp.sum(inside * interpolated, axis=-1) + after)

    return schedule


def _linear_warmup(init_value: ArrayLike, peak_value: ArrayLike, warmup_steps: int) -> Schedule:
    check_nonnegative("warmup_steps", warmup_steps)
    return _polynomial(init_value, peak_value, 1, warmup_steps, 0)


# --------------------------------------------------------------------------
# optax-named schedules
# --------------------------------------------------------------------------


def constant_schedule(value: ArrayLike) -> Schedule:
    """A schedule that always returns ``value``.

    .. math:: \\epsilon_t = v

    Args:
      value: the value held at every step.

    Returns:
      A function ``step -> value`` (a float array with the shape of ``step``).

    Example:
      >>> import jaxopt_dl as jdl
      >>> float(jdl.constant_schedule(0.1)(100))
      0.1...

    References:
      optax.constant_schedule.
    """

    def schedule(count):
        return _as_float(value) + jnp.zeros(jnp.shape(count), _as_float(value).dtype)

    return schedule


def polynomial_schedule(
    init_value: ArrayLike,
    end_value: ArrayLike,
    power: ArrayLike,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """Polynomial transition from ``init_value`` to ``end_value``.

    .. math::
      \\epsilon_t = (I - E) \\left(1 - \\frac{\\min(\\max(t - B, 0), T)}{T}\\right)^P + E

    Args:
      init_value: ``I``, the value up to step ``transition_begin``.
      end_value: ``E``, the value from step ``transition_begin + transition_steps`` on.
      power: ``P``, the power of the polynomial.
      transition_steps: ``T > 0``, the length of the transition.
      transition_begin: ``B >= 0``, the step at which the transition starts.

    Returns:
      A function ``step -> value``.

    Raises:
      ValueError: ``transition_steps <= 0`` or ``transition_begin < 0`` (optax only logs
        these and returns a constant / clips to 0).

    Example:
      >>> import jaxopt_dl as jdl
      >>> round(float(jdl.polynomial_schedule(1.0, 0.0, 2, 10)(5)), 4)
      0.25

    References:
      optax.polynomial_schedule.
    """
    check_positive("transition_steps", transition_steps)
    check_nonnegative("transition_begin", transition_begin)
    return _polynomial(init_value, end_value, power, transition_steps, transition_begin)


def linear_schedule(
    init_value: ArrayLike,
    end_value: ArrayLike,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    """Linear transition from ``init_value`` to ``end_value`` (``polynomial_schedule``, P=1).

    This is Goodfellow et al.'s decay to ``eps_tau`` (Sec. 8.3.1, seed 004):

    .. math::
      \\epsilon_k = (1 - \\alpha) \\epsilon_0 + \\alpha \\epsilon_\\tau,\\quad
      \\alpha = k / \\tau \\;(k \\le \\tau), \\qquad \\epsilon_k = \\epsilon_\\tau \\;(k > \\tau)

    with ``init_value = eps_0``, ``end_value = eps_tau``, ``transition_steps = tau``.

    Args:
      init_value: the value up to ``transition_begin``.
      end_value: the value from ``transition_begin + transition_steps`` on.
      transition_steps: positive length of the transition.
      transition_begin: non-negative step at which the transition starts.

    Returns:
      A function ``step -> value``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> round(float(jdl.linear_schedule(1.0, 0.01, 100)(50)), 4)
      0.505

    References:
      Goodfellow, Bengio & Courville 2016, Sec. 8.3.1 (Eq. 8.14); optax.linear_schedule.
    """
    return polynomial_schedule(init_value, end_value, 1, transition_steps, transition_begin)


def piecewise_constant_schedule(
    init_value: ArrayLike,
    boundaries_and_scales: Optional[Mapping[int, float]] = None,
) -> Schedule:
    """``init_value`` times the product of the scales whose boundary has been reached.

    .. math:: \\epsilon_t = I \\prod_{i:\\, t \\ge b_i} s_i

    Porting from Keras: ``PiecewiseConstantDecay(boundaries, values)`` switches AFTER a
    boundary (``t > b``); it equals
    ``piecewise_constant_schedule(values[0], {b_i + 1: values[i+1] / values[i]})``.

    Args:
      init_value: ``I``, the value before the first boundary.
      boundaries_and_scales: ``{b_i: s_i}`` with non-negative steps ``b_i`` and
        non-negative scales ``s_i``; the order of the dict does not matter.

    Returns:
      A function ``step -> value``.

    Raises:
      ValueError: a negative boundary or a negative scale.

    Example:
      >>> import jaxopt_dl as jdl
      >>> s = jdl.piecewise_constant_schedule(1.0, {100: 0.1, 200: 0.1})
      >>> [round(float(s(t)), 4) for t in (99, 100, 250)]
      [1.0, 0.1, 0.01]

    References:
      optax.piecewise_constant_schedule; keras.optimizers.schedules.PiecewiseConstantDecay.
    """
    items = sorted((boundaries_and_scales or {}).items())
    _check_boundaries("boundaries_and_scales", [b for b, _ in items], sort=False)
    for boundary, scale in items:
        if is_python_number(scale) and not scale >= 0:
            raise ValueError(
                f"boundaries_and_scales must have non-negative scales, got scale {scale!r} "
                f"at boundary {boundary!r}"
            )

    def schedule(count):
        value = init_value
        for boundary, scale in items:
            value = value * jnp.where(count >= boundary, scale, 1.0)
        return _as_float(value) + jnp.zeros(jnp.shape(count), _as_float(value).dtype)

    return schedule


def exponential_decay(
    init_value: ArrayLike,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: Optional[ArrayLike] = None,
) -> Schedule:
    """Exponential decay, continuous or in stairs, optionally bounded by ``end_value``.

    .. math::
      \\epsilon_t = I \\, r^{p},\\quad p = \\frac{t - B}{T}
      \\;(\\lfloor\\cdot\\rfloor \\text{ with staircase}),\\qquad
      \\epsilon_t = I \\text{ for } t \\le B

    then clipped from below by ``end_value`` when ``r < 1`` (from above when ``r > 1``).
    With ``transition_steps=1`` this is the lecture's ``eta alpha^t`` and torch's
    ``ExponentialLR(gamma=r)``; with ``staircase=True`` it is step decay.

    Args:
      init_value: ``I``.
      transition_steps: ``T > 0``: the value is multiplied by ``r`` every ``T`` steps.
      decay_rate: ``r > 0``.
      transition_begin: ``B >= 0``: the value is held at ``I`` until step ``B``.
      staircase: decay at discrete intervals (``floor(p)``).
      end_value: a bound at which the decay stops.

    Returns:
      A function ``step -> value``.

    Raises:
      ValueError: ``transition_steps <= 0``, ``decay_rate <= 0`` (optax returns a constant
        schedule for both) or ``transition_begin < 0``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> round(float(jdl.exponential_decay(1.0, 10, 0.5)(20)), 4)
      0.25

    References:
      optax.exponential_decay; torch.optim.lr_scheduler.ExponentialLR.
    """
    check_positive("transition_steps", transition_steps)
    check_positive("decay_rate", decay_rate)
    check_finite("decay_rate", decay_rate)
    check_nonnegative("transition_begin", transition_begin)

    def schedule(count):
        decreased_count = count - transition_begin
        p = decreased_count / transition_steps
        if staircase:
            p = jnp.floor(p)
        value = jnp.where(decreased_count <= 0, init_value, init_value * jnp.power(decay_rate, p))
        if end_value is not None:
            value = jnp.where(
                decay_rate < 1.0, jnp.maximum(value, end_value), jnp.minimum(value, end_value)
            )
        return _as_float(value)

    return schedule


def cosine_decay_schedule(
    init_value: ArrayLike,
    decay_steps: int,
    alpha: ArrayLike = 0.0,
    exponent: ArrayLike = 1.0,
) -> Schedule:
    """Cosine decay from ``init_value`` to ``alpha * init_value`` over ``decay_steps``.

    .. math::
      \\epsilon_t = I \\left[(1 - \\alpha)
      \\left(\\tfrac{1}{2}\\left(1 + \\cos\\frac{\\pi \\min(t, T)}{T}\\right)\\right)^p
      + \\alpha\\right]

    With ``exponent=1`` this is torch's ``CosineAnnealingLR(T_max=T, eta_min=alpha*I)``
    over its first half-period (torch's recursive ``get_lr`` equals this closed form).

    Args:
      init_value: ``I``.
      decay_steps: ``T > 0``.
      alpha: the final value as a fraction of ``init_value``.
      exponent: ``p``, applied to the cosine factor.

    Returns:
      A function ``step -> value``.

    Raises:
      ValueError: ``decay_steps <= 0``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> round(float(jdl.cosine_decay_schedule(1.0, 100)(50)), 4)
      0.5

    References:
      Loshchilov & Hutter 2017, SGDR; optax.cosine_decay_schedule.
    """
    check_positive("decay_steps", decay_steps)

    def schedule(count):
        count = jnp.minimum(count, decay_steps)
        decayed = (1 - alpha) * _half_cosine(count, decay_steps) ** exponent + alpha
        return _as_float(init_value * decayed)

    return schedule


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Run ``schedules[i]`` from ``boundaries[i-1]`` on, fed the steps since that boundary.

    .. math:: \\epsilon_t = s_i(t - b_{i-1}) \\text{ for } b_{i-1} \\le t < b_i,\\; b_0 = 0

    Args:
      schedules: the schedules, in order.
      boundaries: ``len(schedules) - 1`` non-negative, increasing steps.

    Returns:
      A function ``step -> value``.

    Raises:
      ValueError: a wrong number of boundaries, or negative or unsorted boundaries.

    Example:
      >>> import jaxopt_dl as jdl
      >>> s = jdl.join_schedules([jdl.constant_schedule(1.0), jdl.constant_schedule(2.0)], [5])
      >>> float(s(4)), float(s(5))
      (1.0, 2.0)

    References:
      optax.join_schedules.
    """
    schedules = list(schedules)
    boundaries = list(boundaries)
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"boundaries must have len(schedules) - 1 = {len(schedules) - 1} entries, "
            f"got boundaries={boundaries!r}"
        )
    _check_boundaries("boundaries", boundaries)

    def schedule(step):
        output = _as_float(schedules[0](step))
        for boundary, later in zip(boundaries, schedules[1:]):
            output = jnp.where(step < boundary, output, later(step - boundary))
        return _as_float(output)

    return schedule


def warmup_cosine_decay_schedule(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: int,
    decay_steps: int,
    end_value: ArrayLike = 0.0,
    exponent: ArrayLike = 1.0,
) -> Schedule:
    """Linear warmup from ``init_value`` to ``peak_value``, then cosine decay to ``end_value``.

    .. math::
      \\epsilon_t = I + (P - I)\\, t / W \\;(t < W), \\qquad
      \\epsilon_t = \\text{cosine\\_decay}(P, D - W, E / P, p)(t - W) \\;(t \\ge W)

    Args:
      init_value: ``I``, the value at step 0.
      peak_value: ``P``, reached at the end of the warmup.
      warmup_steps: ``W >= 0``.
      decay_steps: ``D``, the TOTAL length including the warmup; ``D > W``.
      end_value: ``E``, the value from step ``D`` on.
      exponent: ``p``, see ``cosine_decay_schedule``.

    Returns:
      A function ``step -> value``.

    Raises:
      ValueError: ``warmup_steps < 0``, ``decay_steps <= 0`` or ``warmup_steps >= decay_steps``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> s = jdl.warmup_cosine_decay_schedule(0.0, 1.0, 10, 110)
      >>> round(float(s(5)), 3), round(float(s(10)), 3), round(float(s(110)), 3)
      (0.5, 1.0, 0.0)

    References:
      Goyal et al. 2017 (warmup); Loshchilov & Hutter 2017; optax.warmup_cosine_decay_schedule.
    """
    check_positive("decay_steps", decay_steps)
    warmup = _linear_warmup(init_value, peak_value, warmup_steps)
    if is_python_number(warmup_steps) and is_python_number(decay_steps):
        if warmup_steps >= decay_steps:
            raise ValueError(
                "warmup_steps must be smaller than decay_steps (the total length, warmup "
                f"included), got warmup_steps={warmup_steps!r}, decay_steps={decay_steps!r}"
            )
    if is_python_number(peak_value) and is_python_number(end_value):
        alpha = 0.0 if peak_value == 0.0 else end_value / peak_value
    else:
        safe_peak = jnp.where(peak_value == 0.0, 1.0, peak_value)
        alpha = jnp.where(peak_value == 0.0, 0.0, end_value / safe_peak)
    decay = cosine_decay_schedule(peak_value, decay_steps - warmup_steps, alpha, exponent)
    return join_schedules([warmup, decay], [warmup_steps])


def warmup_exponential_decay_schedule(
    init_value: ArrayLike,
    peak_value: ArrayLike,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: ArrayLike,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: Optional[ArrayLike] = None,
) -> Schedule:
    """Linear warmup to ``peak_value``, then ``exponential_decay`` starting from it.

    .. math::
      \\epsilon_t = I + (P - I)\\, t / W \\;(t < W), \\qquad
      \\epsilon_t = \\text{exponential\\_decay}(P, T, r, B, \\ldots)(t - W) \\;(t \\ge W)

    Args:
      init_value: the value at step 0.
      peak_value: reached at the end of the warmup.
      warmup_steps: ``W >= 0``.
      transition_steps: ``T > 0``, see ``exponential_decay``.
      decay_rate: ``r > 0``.
      transition_begin: steps after the warmup during which ``peak_value`` is held.
      staircase: decay at discrete intervals.
      end_value: bound at which the decay stops.

    Returns:
      A function ``step -> value``.

    Raises:
      ValueError: as ``exponential_decay``, or ``warmup_steps < 0``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> s = jdl.warmup_exponential_decay_schedule(0.0, 1.0, 10, 10, 0.5)
      >>> round(float(s(5)), 3), round(float(s(20)), 3)
      (0.5, 0.5)

    References:
      optax.warmup_exponential_decay_schedule.
    """
    warmup = _linear_warmup(init_value, peak_value, warmup_steps)
    decay = exponential_decay(
        peak_value, transition_steps, decay_rate, transition_begin, staircase, end_value
    )
    return join_schedules([warmup, decay], [warmup_steps])


def sgdr_schedule(cosine_kwargs: Iterable[Mapping[str, ArrayLike]]) -> Schedule:
    """SGD with warm restarts: one ``warmup_cosine_decay_schedule`` cycle after another.

    .. math:: \\epsilon_t = c_i(t - D_1 - \\dots - D_{i-1}) \\text{ during cycle } i

    Args:
      cosine_kwargs: one dict of ``warmup_cosine_decay_schedule`` arguments per cycle; its
        ``decay_steps`` is the cycle length.

    Returns:
      A function ``step -> value``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> cycle = dict(init_value=0.0, peak_value=1.0, warmup_steps=0, decay_steps=10)
      >>> s = jdl.sgdr_schedule([cycle, cycle])
      >>> float(s(10))
      1.0

    References:
      Loshchilov & Hutter 2017, SGDR; optax.sgdr_schedule.
    """
    schedules, boundaries, step = [], [], 0
    for kwargs in cosine_kwargs:
        schedules.append(warmup_cosine_decay_schedule(**kwargs))
        step += kwargs["decay_steps"]
        boundaries.append(step)
    return join_schedules(schedules, boundaries[:-1])


def _check_onecycle(transition_steps, div_factor, final_div_factor, pct_start) -> None:
    check_positive("transition_steps", transition_steps)
    # the phase boundaries become int32 step counts
    check_in_range("transition_steps", transition_steps, 1, 2**31 - 1)
    check_positive("div_factor", div_factor)
    check_positive("final_div_factor", final_div_factor)
    check_in_range("pct_start", pct_start, 0.0, 1.0)


def linear_onecycle_schedule(
    transition_steps: int,
    peak_value: ArrayLike,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """One-cycle schedule with three linear phases.

    With ``T`` = ``transition_steps``, ``P`` = ``peak_value``, ``d`` = ``div_factor``,
    ``f`` = ``final_div_factor``: linear from ``P/d`` to ``P`` over ``[0, floor(pct_start T)]``,
    back to ``P/d`` at ``floor(pct_final T)``, then to ``P/(d f)`` at ``T``, constant after.

    Porting from torch: this is ``OneCycleLR(max_lr=P, total_steps=T+1,
    pct_start=(floor(pct_start T)+1)/(T+1), anneal_strategy="linear", three_phase=True,
    div_factor=d, final_div_factor=f)`` whenever ``floor(pct_final T) = 2 floor(pct_start T)``
    (torch's second phase is as long as its first).

    Args:
      transition_steps: ``T > 0``.
      peak_value: ``P``.
      pct_start: fraction of ``T`` spent increasing, in [0, 1].
      pct_final: fraction of ``T`` at which the value is back to ``P/d``, in [pct_start, 1].
      div_factor: ``d > 0``.
      final_div_factor: ``f > 0``.

    Returns:
      A function ``step -> value``.

    Raises:
      ValueError: ``transition_steps <= 0``, factors ``<= 0``, or fractions out of range.

    Example:
      >>> import jaxopt_dl as jdl
      >>> s = jdl.linear_onecycle_schedule(100, 1.0)
      >>> round(float(s(30)), 3), round(float(s(85)), 3)
      (1.0, 0.04)

    References:
      Smith & Topin 2017, Super-Convergence; optax.linear_onecycle_schedule.
    """
    _check_onecycle(transition_steps, div_factor, final_div_factor, pct_start)
    check_in_range("pct_final", pct_final, 0.0, 1.0)
    if is_python_number(pct_start) and is_python_number(pct_final) and pct_final < pct_start:
        raise ValueError(
            f"pct_final must be at least pct_start, got pct_start={pct_start!r}, "
            f"pct_final={pct_final!r}"
        )
    return _piecewise_interpolate(
        _linear_interpolate,
        peak_value / div_factor,
        {
            int(pct_start * transition_steps): div_factor,
            int(pct_final * transition_steps): 1.0 / div_factor,
            transition_steps: 1.0 / final_div_factor,
        },
    )


def cosine_onecycle_schedule(
    transition_steps: int,
    peak_value: ArrayLike,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """One-cycle schedule: cosine up from ``P/d`` to ``P``, then cosine down to ``P/(d f)``.

    .. math::
      \\epsilon_t = E + (S - E)\\, \\tfrac{1}{2}(1 + \\cos(\\pi\\, \\mathrm{pct}))

    within each phase, from ``S = P/d`` to ``E = P`` over ``[0, floor(pct_start T)]`` and from
    ``S = P`` to ``E = P/(d f)`` over ``[floor(pct_start T), T]``; constant after ``T``.

    Porting from torch: this is ``OneCycleLR(max_lr=P, total_steps=T+1,
    pct_start=(floor(pct_start T)+1)/(T+1), anneal_strategy="cos", three_phase=False,
    div_factor=d, final_div_factor=f)``: torch's phases end at steps ``pct_start N - 1`` and
    ``N - 1`` for ``N`` total steps.

    Args:
      transition_steps: ``T > 0``.
      peak_value: ``P``.
      pct_start: fraction of ``T`` spent increasing, in [0, 1].
      div_factor: ``d > 0``.
      final_div_factor: ``f > 0``.

    Returns:
      A function ``step -> value``.

    Raises:
      ValueError: ``transition_steps <= 0``, factors ``<= 0``, or ``pct_start`` out of [0, 1].

    Example:
      >>> import jaxopt_dl as jdl
      >>> s = jdl.cosine_onecycle_schedule(100, 1.0)
      >>> round(float(s(0)), 3), round(float(s(30)), 3)
      (0.04, 1.0)

    References:
      Smith & Topin 2017, Super-Convergence; optax.cosine_onecycle_schedule.
    """
    _check_onecycle(transition_steps, div_factor, final_div_factor, pct_start)
    return _piecewise_interpolate(
        _cosine_interpolate,
        peak_value / div_factor,
        {
            int(pct_start * transition_steps): div_factor,
            int(transition_steps): 1.0 / (div_factor * final_div_factor),
        },
    )


# --------------------------------------------------------------------------
# Schedules of the lectures, Keras and torch that optax lacks
# --------------------------------------------------------------------------


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

    For large ``t`` this is ``(I D / r) / t``, the lecture's ``eta / t`` (seed 002): its sum
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
    check_nonnegative("decay_rate", decay_rate)
    check_finite("decay_rate", decay_rate)
    check_positive("decay_steps", decay_steps)

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
      Seed 002 ("step decay, alpha = 0.5 common"); seed 004 (Keras ``step_decay``);
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
    milestones = list(milestones)
    _check_boundaries("milestones", milestones)
    check_nonnegative("gamma", gamma)
    check_finite("gamma", gamma)
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
      Seed 004 ("normally we decrease the learning rate each epoch").
    """
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
    check_positive("step_size_up", step_size_up)
    check_positive("step_size_down", step_size_down)
    check_choice("mode", mode, _CYCLIC_MODES)
    check_positive("gamma", gamma)
    check_finite("gamma", gamma)
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
        return _as_float(_linear_interpolate(base_lr, max_lr, height * amplitude))

    return schedule


# --------------------------------------------------------------------------
# Batch-size schedules (plain Python: the training loop reads them once per epoch)
# --------------------------------------------------------------------------


def _check_epoch(epoch: int) -> None:
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise ValueError(f"epoch must be a non-negative int, got epoch={epoch!r}")


def _check_batch_size(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {name}={value!r}")


def constant_batch_size(batch_size: int) -> BatchSizeSchedule:
    """The same batch size every epoch.

    .. math:: B_e = B

    Args:
      batch_size: ``B``, a positive int.

    Returns:
      A function ``epoch -> batch size``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> jdl.constant_batch_size(64)(10)
      64

    References:
      Seed 002 (minibatch SGD).
    """
    _check_batch_size("batch_size", batch_size)

    def schedule(epoch: int) -> int:
        _check_epoch(epoch)
        return batch_size

    return schedule


def step_doubling_batch_size(
    initial: int, every: int, factor: float = 2, max_batch_size: Optional[int] = None
) -> BatchSizeSchedule:
    """Multiply the batch size by ``factor`` every ``every`` epochs, up to a cap.

    .. math:: B_e = \\min\\left(B_{max},\\; \\mathrm{round}(B_0 k^{\\lfloor e / K \\rfloor})\\right)

    The batch-size counterpart of ``step_decay``: growing the batch by ``k`` reduces the
    gradient noise as dividing the learning rate by ``k`` does (see the module docstring),
    so ``step_doubling_batch_size(B, K, 2)`` with a fixed learning rate mirrors
    ``per_epoch(step_decay(eps, 0.5, K), steps_per_epoch)`` with a fixed batch, taking
    fewer steps.

    Args:
      initial: ``B_0``, a positive int.
      every: ``K``, a positive int (epochs between increases).
      factor: ``k >= 1``.
      max_batch_size: ``B_max`` (``None``: no cap), at least ``initial``.

    Returns:
      A function ``epoch -> batch size``.

    Raises:
      ValueError: non-positive ``initial``/``every``, ``factor < 1`` or a cap below
        ``initial``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> s = jdl.step_doubling_batch_size(32, every=5, max_batch_size=100)
      >>> [s(e) for e in (0, 5, 10, 15)]
      [32, 64, 100, 100]

    References:
      Smith, Kindermans, Ying & Le 2018, "Don't Decay the Learning Rate, Increase the
      Batch Size"; seed 000 ("batch size can be adjusted according to a schedule").
    """
    _check_batch_size("initial", initial)
    _check_batch_size("every", every)
    check_in_range("factor", factor, 1.0, math.inf)
    check_finite("factor", factor)
    cap = _check_cap(max_batch_size, initial)

    def schedule(epoch: int) -> int:
        _check_epoch(epoch)
        return _capped(initial, factor, epoch // every, cap)

    return schedule


def geometric_batch_size(initial: int, growth: float, max_batch_size: int) -> BatchSizeSchedule:
    """Grow the batch size by ``growth`` every epoch, up to ``max_batch_size``.

    .. math:: B_e = \\min\\left(B_{max},\\; \\mathrm{round}(B_0\\, g^{e})\\right)

    The batch-size counterpart of ``per_epoch(exponential_decay(eps, 1, 1 / g))``
    ("decay lr by k ~ grow the batch by k", see the module docstring).

    Args:
      initial: ``B_0``, a positive int.
      growth: ``g >= 1``.
      max_batch_size: ``B_max``, at least ``initial``.

    Returns:
      A function ``epoch -> batch size``.

    Raises:
      ValueError: a non-positive ``initial``, ``growth < 1`` or a cap below ``initial``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> s = jdl.geometric_batch_size(16, 1.5, 100)
      >>> [s(e) for e in (0, 1, 2, 10)]
      [16, 24, 36, 100]

    References:
      Smith et al. 2018; seed 000 (small batches early, large batches late).
    """
    _check_batch_size("initial", initial)
    check_in_range("growth", growth, 1.0, math.inf)
    cap = _check_cap(max_batch_size, initial)

    def schedule(epoch: int) -> int:
        _check_epoch(epoch)
        return _capped(initial, growth, epoch, cap)

    return schedule


def _check_cap(max_batch_size: Optional[int], initial: int) -> Optional[int]:
    if max_batch_size is None:
        return None
    _check_batch_size("max_batch_size", max_batch_size)
    if max_batch_size < initial:
        raise ValueError(
            f"max_batch_size must be at least initial={initial}, "
            f"got max_batch_size={max_batch_size!r}"
        )
    return max_batch_size


def _capped(initial: int, factor: float, exponent: int, cap: Optional[int]) -> int:
    """``min(cap, round(initial * factor**exponent))`` without overflowing for large epochs."""
    if cap is not None and factor > 1 and exponent * math.log(factor) >= math.log(cap / initial):
        return cap
    if isinstance(factor, int):
        size = initial * factor**exponent
    else:
        size = int(round(initial * factor**exponent))
    return size if cap is None else min(cap, size)
