"""optax-named learning-rate schedules: optax's arguments, defaults and values.

Every schedule here (and in :mod:`jaxopt_dl.schedules.lecture`) is a pure function of
the step count: it accepts a Python int or an integer/float array of any shape
(elementwise), works under ``jax.jit`` and ``jax.vmap``, returns a float array, and can
be passed as the ``learning_rate`` of any optax or jaxopt_dl optimizer.

Where the numbers are optax's, the schedule is optax's own, behind one validation
mechanism (:func:`_delegate`): the arguments are checked on entry, where optax only logs
or warns on meaningless ones (non-positive ``transition_steps``, negative
``transition_begin``, warmup longer than the total), and a ``ValueError`` or
``TypeError`` names the argument and its value; arrays and traced arguments pass
unchecked. The few schedules written here open with one line saying why they are not
optax's.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxopt_dl._core import (
    Schedule,
    check_bool,
    check_finite,
    check_in_range,
    check_nonnegative,
    check_positive,
    is_python_number,
)

ArrayLike = jax.typing.ArrayLike

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


def _delegate(schedule: Schedule) -> Schedule:
    """optax's ``schedule`` evaluated elementwise over steps of any shape, as a float array.

    Some optax schedules accept a scalar step only (the one-cycle ones) or return a bare
    Python number (a constant); ``jnp.vectorize`` maps them over the step's shape.
    """
    return jnp.vectorize(lambda count: _as_float(schedule(count)))


def _check_values(**values: ArrayLike) -> None:
    """Each schedule value (initial, peak, end, ...) must be a finite number or an array."""
    for name, value in values.items():
        check_finite(name, value)


def _check_boundaries(name: str, boundaries: Sequence[ArrayLike], sort: bool = True) -> None:
    """Boundaries/milestones must be non-negative step counts and (with ``sort``) non-decreasing."""
    if isinstance(boundaries, (str, bytes)) or not isinstance(boundaries, Sequence):
        raise TypeError(f"{name} must be a sequence of step counts, got {name}={boundaries!r}")
    for b in boundaries:
        try:
            check_nonnegative(name, b)
        except (TypeError, ValueError) as error:
            raise type(error)(
                f"{name} must be non-negative step counts, got {name}={boundaries!r}"
            ) from None
    numbers = [b for b in boundaries if is_python_number(b)]
    if sort and len(numbers) == len(boundaries) and list(numbers) != sorted(numbers):
        raise ValueError(f"{name} must be sorted in increasing order, got {name}={boundaries!r}")


def _polynomial(
    init_value: ArrayLike,
    end_value: ArrayLike,
    power: ArrayLike,
    transition_steps: ArrayLike,
    transition_begin: ArrayLike,
) -> Schedule:
    """``(I - E) max(1 - clip(t - B, 0, T) / T, 0)**P + E``; ``T <= 0`` holds ``I``.

    Not optax's: compiled code turns ``t / T`` into ``t * (1/T)``, so ``1 - T / T`` is
    a few ulps off zero -- negative (a fractional power gives NaN, optax's value under
    ``jit``) or positive (a residual above ``E`` forever). The fraction is clamped at 0
    and is exactly 0 from ``t = B + T`` on, so compiled and eager code reach ``E``
    exactly there; before it the numbers are optax's.
    """

    def schedule(count):
        done = jnp.clip(count - transition_begin, 0, transition_steps)
        remaining = jnp.maximum(1 - done / jnp.where(transition_steps > 0, transition_steps, 1), 0)
        frac = jnp.where((transition_steps > 0) & (done >= transition_steps), 0, remaining)
        return _as_float((init_value - end_value) * (frac**power) + end_value)

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

    _check_values(value=value)
    return _delegate(optax.constant_schedule(value))


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

    optax's numbers, except under ``jax.jit`` at the end of the transition: compiled code
    computes ``1 - T / T`` as a tiny negative number, whose fractional power optax returns
    as NaN; here the fraction is clamped at 0, so compiled and eager code both give ``E``.

    Args:
      init_value: ``I``, the value up to step ``transition_begin``.
      end_value: ``E``, the value from step ``transition_begin + transition_steps`` on.
      power: ``P >= 0``, the power of the polynomial.
      transition_steps: ``T > 0``, the length of the transition.
      transition_begin: ``B >= 0``, the step at which the transition starts.

    Returns:
      A function ``step -> value``.

    Raises:
      ValueError: ``transition_steps <= 0`` or ``transition_begin < 0`` (optax only logs
        these and returns a constant / clips to 0), or ``power < 0``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> round(float(jdl.polynomial_schedule(1.0, 0.0, 2, 10)(5)), 4)
      0.25

    References:
      optax.polynomial_schedule.
    """
    _check_values(init_value=init_value, end_value=end_value)
    check_nonnegative("power", power)
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

    This is Goodfellow et al.'s decay to ``eps_tau`` (Sec. 8.3.1, as quoted in G. Kim,
    "Optimization and Tips for Neural Network Training"):

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
    _check_values(init_value=init_value)
    if boundaries_and_scales is not None and not isinstance(boundaries_and_scales, Mapping):
        raise TypeError(
            "boundaries_and_scales must be a dict {step: scale}, got "
            f"boundaries_and_scales={boundaries_and_scales!r}"
        )
    items = dict(boundaries_and_scales or {})
    _check_boundaries("boundaries_and_scales", list(items), sort=False)
    for boundary, scale in items.items():
        check_nonnegative(f"boundaries_and_scales[{boundary!r}]", scale)
    return _delegate(optax.piecewise_constant_schedule(init_value, items or None))


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
      decay_rate: ``r >= 0``; ``r = 0`` holds ``I`` up to step ``B`` and gives 0 after,
        as torch's ``ExponentialLR(gamma=0)`` (optax returns the constant ``I``).
      transition_begin: ``B >= 0``: the value is held at ``I`` until step ``B``.
      staircase: decay at discrete intervals (``floor(p)``).
      end_value: a bound at which the decay stops (``None``: none).

    Returns:
      A function ``step -> value``.

    Raises:
      ValueError: ``transition_steps <= 0`` (optax returns a constant schedule),
        ``decay_rate < 0`` or ``transition_begin < 0``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> round(float(jdl.exponential_decay(1.0, 10, 0.5)(20)), 4)
      0.25

    References:
      optax.exponential_decay; torch.optim.lr_scheduler.ExponentialLR.
    """
    # Not optax's: optax branches on ``decay_rate`` in Python (no sweep over a traced rate)
    # and returns a constant for ``decay_rate=0``, where this decays to 0 as torch does.
    _check_values(init_value=init_value)
    check_positive("transition_steps", transition_steps)
    check_nonnegative("decay_rate", decay_rate)
    check_nonnegative("transition_begin", transition_begin)
    check_bool("staircase", staircase)
    check_finite("end_value", end_value, allow_none=True)

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
    The cosine factor is computed as ``sin(pi (T - t) / 2T)**2``, its equal, which keeps
    every digit near ``t = T`` where optax's ``(1 + cos)/2`` cancels (the values agree
    to float32 rounding of the scale); ``decay_steps`` beyond ``2**31`` does not overflow.

    Args:
      init_value: ``I``.
      decay_steps: ``T > 0``.
      alpha: the final value as a fraction of ``init_value``.
      exponent: ``p >= 0``, applied to the cosine factor.

    Returns:
      A function ``step -> value``.

    Raises:
      ValueError: ``decay_steps <= 0`` or ``exponent < 0``.

    Example:
      >>> import jaxopt_dl as jdl
      >>> round(float(jdl.cosine_decay_schedule(1.0, 100)(50)), 4)
      0.5

    References:
      Loshchilov & Hutter 2017, SGDR; optax.cosine_decay_schedule.
    """
    # Not optax's: optax's (1 + cos(pi t / T)) / 2 cancels to a few digits near t = T,
    # where a fractional exponent makes eager and jitted values differ by 1e-3; the same
    # number as sin(pi (T - t) / 2T)**2 keeps every digit.
    _check_values(init_value=init_value, alpha=alpha)
    check_nonnegative("exponent", exponent)
    check_positive("decay_steps", decay_steps)
    if is_python_number(decay_steps):
        decay_steps = float(decay_steps)  # an int32 count overflows beyond 2**31 steps

    def schedule(count):
        remaining = (decay_steps - jnp.minimum(count, decay_steps)) / decay_steps
        decayed = (1 - alpha) * (jnp.sin(0.5 * jnp.pi * remaining) ** 2) ** exponent + alpha
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
    if not isinstance(schedules, Sequence) or not schedules or not all(map(callable, schedules)):
        raise TypeError(
            f"schedules must be a non-empty list of schedules, got schedules={schedules!r}"
        )
    _check_boundaries("boundaries", boundaries)
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"boundaries must have len(schedules) - 1 = {len(schedules) - 1} entries, "
            f"got boundaries={boundaries!r}"
        )
    return _delegate(optax.join_schedules(list(schedules), list(boundaries)))


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
    # Not optax's: optax computes ``end_value / peak_value`` behind a Python branch on
    # ``peak_value``, so a traced ``peak_value`` (a sweep) fails there.
    _check_values(init_value=init_value, peak_value=peak_value, end_value=end_value)
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
      decay_rate: ``r >= 0``, see ``exponential_decay``.
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
    _check_values(init_value=init_value, peak_value=peak_value)
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
    if cosine_kwargs is None or isinstance(cosine_kwargs, (str, bytes, Mapping)):
        raise TypeError(
            f"cosine_kwargs must be a list of dicts, got cosine_kwargs={cosine_kwargs!r}"
        )
    schedules, boundaries, step = [], [], 0
    for kwargs in cosine_kwargs:
        if not isinstance(kwargs, Mapping):
            raise TypeError(f"cosine_kwargs must hold dicts, got cosine_kwargs={cosine_kwargs!r}")
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
    _check_values(peak_value=peak_value)
    _check_onecycle(transition_steps, div_factor, final_div_factor, pct_start)
    check_in_range("pct_final", pct_final, 0.0, 1.0)
    if is_python_number(pct_start) and is_python_number(pct_final) and pct_final < pct_start:
        raise ValueError(
            f"pct_final must be at least pct_start, got pct_start={pct_start!r}, "
            f"pct_final={pct_final!r}"
        )
    return _delegate(
        optax.linear_onecycle_schedule(
            transition_steps, peak_value, pct_start, pct_final, div_factor, final_div_factor
        )
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
    _check_values(peak_value=peak_value)
    _check_onecycle(transition_steps, div_factor, final_div_factor, pct_start)
    return _delegate(
        optax.cosine_onecycle_schedule(
            transition_steps, peak_value, pct_start, div_factor, final_div_factor
        )
    )
