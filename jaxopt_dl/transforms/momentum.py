"""Momentum in its three conventions, EMAs and bias correction.

Three parameterizations of the same idea are in use, and they are NOT the same
numbers once the learning rate changes over time:

* ``velocity`` -- Goodfellow et al. (2016) Alg. 8.2/8.3, "coupled": the learning
  rate multiplies the gradient inside the velocity, ``v <- beta v - eps_t g``.
* ``ema`` -- the decoupled exponential moving average of K. Bipin's "Deep Learning,
  Lecture 6 -- Optimization" and of the notes on Andrew Ng's course: ``m <- beta m + (1 - beta) g; theta <- theta - eps_t m``.
* ``trace`` -- optax/torch heavy ball: ``m <- g + beta m; theta <- theta - eps_t m``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import optax

from jaxopt_dl import _core, _precision
from jaxopt_dl._core import GradientTransformation, ScalarOrSchedule


class VelocityState(NamedTuple):
    """Goodfellow's velocity ``v`` and the step count (no optax counterpart).

    Attributes:
      count: updates applied so far (int32), indexes the learning-rate schedule.
      velocity: ``v``, a tree shaped like the params.
    """

    count: jax.Array
    velocity: Any


class BiasCorrectionState(NamedTuple):
    """Step count for :func:`bias_correction` (no optax counterpart).

    Attributes:
      count: updates applied so far (int32); the correction divides by ``1 - beta^count``.
    """

    count: jax.Array


class StochasticTraceState(NamedTuple):
    """The heavy-ball buffer and a step count (no optax counterpart).

    Attributes:
      count: updates applied so far (int32); part of the rounding's random bits.
      trace: the momentum buffer ``m``, a tree shaped like the params.
    """

    count: jax.Array
    trace: Any


@_core.block(kernel="trace", checks={"decay": _core.check_nonnegative}, signature_of=optax.trace)
def trace(decay, nesterov=False, accumulator_dtype=None):
    """Heavy-ball momentum: optax.trace (torch SGD's momentum buffer with dampening 0).

    .. math::
        m_t = g_t + \\beta m_{t-1}, \\qquad
        u_t = m_t \\;\\text{or, with Nesterov,}\\; g_t + \\beta m_t

    optax's numbers and ``TraceState``; ``decay`` is checked when built (finite and
    non-negative; ``decay=1`` is a running sum, as optax and torch allow).

    References:
      Polyak 1964; Sutskever et al. 2013.
    """
    return optax.trace(decay, nesterov, accumulator_dtype)


@_core.block(checks={"decay": _core.check_nonnegative})
def stochastic_trace(
    decay: jax.typing.ArrayLike,
    nesterov: bool = False,
    accumulator_dtype: Any = None,
    *,
    rounding_seed: Any = None,
) -> GradientTransformation:
    """Heavy-ball momentum whose low-precision buffer is rounded stochastically.

    Hand-written: :func:`trace`'s update, computed in float32 and rounded to the
    buffer's bfloat16/float16 dtype up or down at random, unbiased (see
    :func:`jaxopt_dl.stochastic_round`; the bits hash ``rounding_seed``, the step
    count, the leaf and the element). The step uses the buffer as stored. A float32
    buffer gives :func:`trace`'s numbers.

    .. math::
        m_t = \\mathrm{SR}(g_t + \\beta m_{t-1}), \\qquad
        u_t = m_t \\;\\text{or, with Nesterov,}\\; g_t + \\beta m_t

    Args:
      decay: the momentum coefficient ``beta`` (finite, >= 0).
      nesterov: the Nesterov form.
      accumulator_dtype: storage dtype of the buffer (default ``None``: the param's).
      rounding_seed: an integer seed (or a PRNG key) of the random bits; ``None``
        is 0.

    References:
      Polyak 1964; Gupta et al. 2015 (stochastic rounding).
    """
    _precision.check_rounding("stochastic", rounding_seed)

    def init_fn(params):
        return StochasticTraceState(
            _core.zero_count(), _core.tree_zeros_like(params, dtype=accumulator_dtype)
        )

    def update_fn(updates, state, params=None):
        del params
        _core.check_tree_matches(updates, state.trace)
        count = _core.safe_increment(state.count)
        wide = _core.tree_map(
            lambda g, m: _core.widen(_core.widen_to(g, m)) + decay * _core.widen(m),
            updates,
            state.trace,
        )
        stored = _precision.tree_round_to(
            wide,
            state.trace,
            "stochastic",
            (*_precision.key_words(rounding_seed), _precision.STREAM_MU, count),
        )
        used = _core.tree_map(_core.widen_to, stored, updates)
        if nesterov:
            used = _core.tree_map(lambda g, m: g + decay * m, updates, used)
        return _core.tree_cast_like(used, updates), StochasticTraceState(count, stored)

    return GradientTransformation(init_fn, update_fn)


@_core.block(checks={"decay": _core.check_decay}, signature_of=optax.ema)
def ema(decay, debias=True, accumulator_dtype=None):
    """Exponential moving average of the updates: optax.ema, optionally bias-corrected.

    .. math::
        m_t = \\beta m_{t-1} + (1 - \\beta) g_t, \\qquad
        u_t = m_t / (1 - \\beta^t) \\;\\text{if debias}

    optax's numbers and ``EmaState``; ``decay`` is checked when built (in [0, 1)).
    ``chain(ema(b, debias=False), bias_correction(b))`` equals ``ema(b)``.

    References:
      Kingma & Ba 2014 (bias correction); Bipin, the exponentially weighted average.
    """
    return optax.ema(decay, debias, accumulator_dtype)


@_core.block(checks={"decay": _core.check_decay})
def bias_correction(decay: jax.typing.ArrayLike) -> GradientTransformation:
    """Divide incoming (already averaged) updates by ``1 - decay**t``.

    Hand-written: optax has no separate bias-correction block (the lecture's
    "not quite Adam" is Adam without it).

    .. math:: u_t = m_t / (1 - \\beta^t)

    Args:
      decay: the EMA decay whose start-up bias is removed, in [0, 1).

    Example:
      >>> import jaxopt_dl as jdl
      >>> tx = jdl.chain(jdl.ema(0.9, debias=False), jdl.bias_correction(0.9))  # == jdl.ema(0.9)
    """

    def init_fn(params):
        del params
        return BiasCorrectionState(count=_core.zero_count())

    def update_fn(updates, state, params=None):
        del params
        count = _core.safe_increment(state.count)
        return _core.tree_bias_correction(updates, decay, count), BiasCorrectionState(count)

    return GradientTransformation(init_fn, update_fn)


@_core.block(checks={"decay": _core.check_decay})
def nesterov_ema(decay: jax.typing.ArrayLike) -> GradientTransformation:
    """Decoupled EMA momentum with Nesterov look-ahead, in look-ahead variables.

    Hand-written (optax has no EMA-form Nesterov): K. Bipin, "Deep Learning, Lecture 6 --
    Optimization": ``w_hat = w - eps beta m``; ``m <- beta m + (1-beta) grad(w_hat)``;
    ``w <- w - eps m``. Written in the look-ahead iterate ``w_hat`` (what the user
    holds, so the gradient passed is the one at ``w_hat``), the step is

    .. math:: u_t = \\beta m_t + (1 - \\beta) g_t

    (to be scaled by ``-eps``; exact for a constant learning rate).

    Args:
      decay: the EMA decay ``beta``, in [0, 1).
    """

    def init_fn(params):
        return optax.TraceState(trace=_core.tree_zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        _core.check_tree_matches(updates, state.trace)
        new_m = _core.tree_ema(updates, state.trace, decay)
        out = _core.tree_map(lambda g, m: decay * m + (1 - decay) * g, updates, new_m)
        return out, optax.TraceState(trace=new_m)

    return GradientTransformation(init_fn, update_fn)


@_core.block(
    checks={"beta": _core.check_decay},
    rate=lambda a: _core.rate_of(a["learning_rate"], count=lambda state: state.count),
)
def velocity(
    learning_rate: ScalarOrSchedule, beta: float = 0.9, nesterov: bool = False
) -> GradientTransformation:
    """Goodfellow's coupled velocity momentum, the learning rate inside the velocity.

    Hand-written: optax has only the decoupled ``trace``; with a changing rate the
    coupled velocity gives other numbers.

    .. math::
        v_t = \\beta v_{t-1} - \\epsilon_t g_t, \\qquad u_t = v_t

    With ``nesterov=True`` (Alg. 8.3) the iterates are the look-ahead variables
    ``phi = theta + beta v``, so the gradient the user passes (taken at the current
    params) is Alg. 8.3's gradient at ``theta + beta v``; the step in ``phi`` is

    .. math:: u_t = \\beta v_t - \\epsilon_t g_t

    Returns the final updates (already scaled: add them to the params).

    Args:
      learning_rate: a number, an array or a schedule ``step -> rate``.
      beta: the momentum coefficient in [0, 1).
      nesterov: Alg. 8.3's look-ahead form.

    References:
      Goodfellow, Bengio & Courville 2016, Alg. 8.2 and 8.3; Sutskever et al. 2013.
    """

    def init_fn(params):
        return VelocityState(_core.zero_count(), _core.tree_zeros_like(params))

    def update_fn(updates, state, params=None):
        del params
        _core.check_tree_matches(updates, state.velocity)
        rate = _core.evaluate(learning_rate, state.count)
        new_v = _core.tree_map(lambda g, v: beta * v - rate * g, updates, state.velocity)
        if nesterov:
            out = _core.tree_map(lambda g, v: beta * v - rate * g, updates, new_v)
        else:
            out = new_v
        out = _core.tree_cast_like(out, updates)
        new_v = _core.tree_cast_like(new_v, state.velocity)
        return out, VelocityState(_core.safe_increment(state.count), new_v)

    return GradientTransformation(init_fn, update_fn)
