"""Per-coordinate adaptive scaling: AdaGrad, RMSProp, Adam and its family, Adadelta.

Where the conventions differ (users hit this when porting):

* eps inside the square root, ``g / sqrt(r + eps)``: optax's ``adagrad``/``rmsprop``
  defaults, Keras' ``Adagrad``/``RMSprop`` and Goodfellow Alg. 8.5 (RMSProp) --
  ``eps_in_sqrt=True``.
* eps outside, ``g / (sqrt(r) + eps)``: torch's Adagrad/RMSprop and Goodfellow Alg. 8.4
  (AdaGrad) -- ``eps_in_sqrt=False``.
* Adam always puts ``eps`` outside (and ``eps_root`` inside) the root.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
from optax._src.transform import (  # optax's classes, not exported at its top level
    ScaleByRmsWithCountState,
    ScaleByRStdDevWithCountState,
)

from jaxopt_dl import _core, _precision
from jaxopt_dl._core import GradientTransformation


def inverse_root(nu: jax.Array, eps: jax.typing.ArrayLike, eps_in_sqrt: bool) -> jax.Array:
    """``1 / sqrt(nu + eps)`` (eps inside the root) or ``1 / (sqrt(nu) + eps)`` (outside).

    Args:
      nu: the second-moment accumulator (any float dtype; half precision is widened to
        float32 for the root and the result cast back).
      eps: the small constant ``delta``.
      eps_in_sqrt: ``True``: inside the root (optax, Keras); ``False``: outside (torch).
    """
    dtype = nu.dtype
    nu = _core.widen(nu)
    if eps_in_sqrt:
        return jax.lax.rsqrt(nu + eps).astype(dtype)
    return (1 / (jnp.sqrt(nu) + eps)).astype(dtype)


def _rescale(g: jax.Array, factor: jax.Array) -> jax.Array:
    """``factor * g`` in the gradient's dtype (factors of fp16 leaves come from float32 state).

    Integer gradients (Python ints in a gradient tree) give floating updates, as in optax.
    """
    g = jnp.asarray(g)
    scaled = factor * g
    return scaled.astype(g.dtype) if jnp.issubdtype(g.dtype, jnp.inexact) else scaled


def adam_direction(
    m: jax.Array, v: jax.Array, eps: jax.typing.ArrayLike, eps_root: jax.typing.ArrayLike
) -> jax.Array:
    """Adam's step direction ``m / (sqrt(v + eps_root) + eps)``, in the dtype of ``m``.

    Half-precision moments are divided in float32 (``eps=1e-8`` is zero in fp16);
    float32 leaves are untouched, so their numbers equal optax's.

    Args:
      m: the (bias-corrected) first moment.
      v: the (bias-corrected) second moment, same shape.
      eps: added outside the root.
      eps_root: added inside the root.
    """
    dtype = m.dtype
    m, v = _core.widen(m), _core.widen(v)
    return (m / (jnp.sqrt(v + eps_root) + eps)).astype(dtype)


def _check_adaptive(eps, decays=(), eps_root=0.0):
    _core.check_nonnegative("eps", eps)
    _core.check_nonnegative("eps_root", eps_root)
    for name, value in decays:
        _core.check_decay(name, value)


@_core.block()
def scale_by_rss(
    initial_accumulator_value: jax.typing.ArrayLike = 0.1,
    eps: jax.typing.ArrayLike = 1e-7,
    *,
    eps_in_sqrt: bool = True,
    rounding: str = "nearest",
    rounding_seed: Any = None,
) -> GradientTransformation:
    """AdaGrad scaling by the root of the sum of all squared gradients so far.

    Hand-written, not optax's: ``eps_in_sqrt=False`` (eps outside the root) and float32
    sums for float16 leaves.

    .. math::
        r_t = r_{t-1} + g_t^2, \\qquad
        u_t = g_t / \\sqrt{r_t + \\delta}\\;\\text{(eps_in_sqrt)} \\;\\text{or}\\;
              g_t / (\\delta + \\sqrt{r_t})

    Coordinates whose accumulator is still zero get a zero update.

    Args:
      initial_accumulator_value: starting value of ``r`` (optax 0.1, torch 0).
      eps: the small constant ``delta``.
      eps_in_sqrt: optax's convention (True) or Goodfellow Alg. 8.4 / torch (False).
      rounding: how the new sum is rounded to a bfloat16/float16 accumulator (the
        param's dtype): ``"nearest"`` (optax's state) or ``"stochastic"`` (computed in
        float32 and rounded unbiased, as :func:`scale_by_adam`; the state then also
        counts the steps, :class:`ScaleByRssWithCountState`).
      rounding_seed: an integer seed (or a PRNG key) for ``"stochastic"``; ``None``
        is 0.

    References:
      Duchi et al. 2011; Goodfellow et al. 2016, Alg. 8.4.
    """
    _core.check_nonnegative("initial_accumulator_value", initial_accumulator_value)
    _check_adaptive(eps)
    _precision.check_rounding(rounding, rounding_seed)
    counted = rounding == "stochastic"

    def init_fn(params):
        sum_sq = _core.tree_second_moment_like(params, initial_accumulator_value)
        if counted:
            return ScaleByRssWithCountState(_core.zero_count(), sum_sq)
        return optax.ScaleByRssState(sum_sq)

    def update_fn(updates, state, params=None):
        del params
        _core.check_tree_matches(updates, state.sum_of_squares)
        count = _core.safe_increment(state.count) if counted else None
        words = _rounded(rounding, rounding_seed, _precision.STREAM_NU, count)
        stored, sum_sq = _stored(
            _core.tree_map(
                lambda g, r: _core.abs_sq(g if words is None else _core.widen_to(g, r)) + r,
                updates,
                _widened(state.sum_of_squares, words),
            ),
            None,
            updates,
            state.sum_of_squares,
            words,
        )
        updates = _core.tree_map(
            lambda g, r: _rescale(g, jnp.where(r > 0, inverse_root(r, eps, eps_in_sqrt), 0.0)),
            updates,
            sum_sq,
        )
        if counted:
            return updates, ScaleByRssWithCountState(count, stored)
        return updates, optax.ScaleByRssState(stored)

    return GradientTransformation(init_fn, update_fn)


@_core.block()
def scale_by_rms(
    decay: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-8,
    initial_scale: jax.typing.ArrayLike = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    *,
    rounding: str = "nearest",
    rounding_seed: Any = None,
) -> GradientTransformation:
    """RMSProp scaling by the root of an EMA of squared gradients.

    Hand-written, not optax's: float32 accumulators for float16 leaves, and the root
    taken in float32.

    .. math::
        r_t = \\rho r_{t-1} + (1 - \\rho) g_t^2, \\qquad
        u_t = g_t / \\sqrt{\\delta + r_t}\\;\\text{(Alg. 8.5)}\\;\\text{or}\\;
              g_t / (\\sqrt{r_t} + \\delta)\\;\\text{(torch)}

    Args:
      decay: ``rho`` in [0, 1).
      eps: ``delta``.
      initial_scale: starting value of ``r``.
      eps_in_sqrt: Goodfellow/optax/Keras (True) or torch (False).
      bias_correction: divide ``r_t`` by ``1 - rho^t`` before the root.
      rounding: how the new ``r`` is rounded to a bfloat16/float16 accumulator (the
        param's dtype): ``"nearest"`` (optax's state) or ``"stochastic"`` (as
        :func:`scale_by_adam`; the state then also counts the steps).
      rounding_seed: an integer seed (or a PRNG key) for ``"stochastic"``; ``None``
        is 0.

    References:
      Tieleman & Hinton 2012; Goodfellow et al. 2016, Alg. 8.5.
    """
    _check_adaptive(eps, [("decay", decay)])
    _core.check_nonnegative("initial_scale", initial_scale)
    _precision.check_rounding(rounding, rounding_seed)
    counted = bias_correction or rounding == "stochastic"

    def init_fn(params):
        nu = _core.tree_second_moment_like(params, initial_scale)
        if counted:
            return ScaleByRmsWithCountState(_core.zero_count(), nu)
        return optax.ScaleByRmsState(nu)

    def update_fn(updates, state, params=None):
        del params
        _core.check_tree_matches(updates, state.nu)
        count = _core.safe_increment(state.count) if counted else None
        words = _rounded(rounding, rounding_seed, _precision.STREAM_NU, count)
        stored, nu = _stored(
            _core.tree_ema_sq_norm(updates, _widened(state.nu, words), decay),
            None,
            updates,
            state.nu,
            words,
        )
        nu_hat = _core.tree_bias_correction(nu, decay, count) if bias_correction else nu
        if counted:
            new_state = ScaleByRmsWithCountState(count, stored)
        else:
            new_state = optax.ScaleByRmsState(stored)
        updates = _core.tree_map(
            lambda g, n: _rescale(g, inverse_root(n, eps, eps_in_sqrt)), updates, nu_hat
        )
        return updates, new_state

    return GradientTransformation(init_fn, update_fn)


@_core.block()
def scale_by_stddev(
    decay: jax.typing.ArrayLike = 0.9,
    eps: jax.typing.ArrayLike = 1e-8,
    initial_scale: jax.typing.ArrayLike = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
    *,
    rounding: str = "nearest",
    rounding_seed: Any = None,
) -> GradientTransformation:
    """Centered RMSProp: scale by the root of the EMA variance ``E[g^2] - E[g]^2``.

    Hand-written, not optax's: float32 accumulators for float16 leaves, and the root
    taken in float32.

    .. math::
        m_t = \\rho m_{t-1} + (1-\\rho) g_t,\\;
        r_t = \\rho r_{t-1} + (1-\\rho) g_t^2,\\;
        u_t = g_t / \\sqrt{r_t - m_t^2 + \\delta}

    Args:
      decay: ``rho`` in [0, 1).
      eps: ``delta``.
      initial_scale: starting value of ``r``.
      eps_in_sqrt: Goodfellow/optax/Keras (True) or torch (False).
      bias_correction: divide both EMAs by ``1 - rho^t``.
      rounding: how the new EMAs are rounded to bfloat16/float16 accumulators:
        ``"nearest"`` (optax's state) or ``"stochastic"`` (as :func:`scale_by_adam`;
        the state then also counts the steps).
      rounding_seed: an integer seed (or a PRNG key) for ``"stochastic"``; ``None``
        is 0.

    References:
      Graves 2013; torch ``RMSprop(centered=True)`` with ``eps_in_sqrt=False``.
    """
    _check_adaptive(eps, [("decay", decay)])
    _core.check_nonnegative("initial_scale", initial_scale)
    _precision.check_rounding(rounding, rounding_seed)
    counted = bias_correction or rounding == "stochastic"

    def init_fn(params):
        mu = _core.tree_zeros_like(params)
        nu = _core.tree_second_moment_like(params, initial_scale)
        if counted:
            return ScaleByRStdDevWithCountState(_core.zero_count(), mu, nu)
        return optax.ScaleByRStdDevState(mu, nu)

    def update_fn(updates, state, params=None):
        del params
        _core.check_tree_matches(updates, state.nu)
        count = _core.safe_increment(state.count) if counted else None
        stored_mu, mu, stored_nu, nu = _ema_moments(
            updates, state, (decay, decay), (None, None), rounding, rounding_seed, count
        )
        if bias_correction:
            mu_hat = _core.tree_bias_correction(mu, decay, count)
            nu_hat = _core.tree_bias_correction(nu, decay, count)
        else:
            mu_hat, nu_hat = mu, nu
        if counted:
            new_state = ScaleByRStdDevWithCountState(count, stored_mu, stored_nu)
        else:
            new_state = optax.ScaleByRStdDevState(stored_mu, stored_nu)
        updates = _core.tree_map(
            lambda g, m, n: _rescale(g, inverse_root(n - _core.abs_sq(m), eps, eps_in_sqrt)),
            updates,
            mu_hat,
            nu_hat,
        )
        return updates, new_state

    return GradientTransformation(init_fn, update_fn)


class ScaleByRssWithCountState(NamedTuple):
    """AdaGrad's accumulator and a step count (for stochastic rounding; no optax counterpart).

    Attributes:
      count: updates applied so far (int32); part of the rounding's random bits.
      sum_of_squares: the running sum of squared gradients.
    """

    count: jax.Array
    sum_of_squares: Any


def _rounded(rounding: str, seed: Any, stream: int, count: jax.Array) -> Optional[tuple]:
    """The hash words of a moment's stochastic rounding at ``count``; None: to nearest."""
    return None if rounding == "nearest" else (*_precision.key_words(seed), stream, count)


def _widened(moment: Any, words: Optional[tuple]) -> Any:
    """A stored moment as the EMA reads it: widened to float32 when it is rounded
    stochastically (the update is computed wide, then rounded once)."""
    return moment if words is None else _core.tree_map(_core.widen, moment)


def _stored(
    moment: Any,
    dtype: Optional[Any],
    updates: Any,
    like: Any = None,
    words: Optional[tuple] = None,
) -> tuple[Any, Any]:
    """A new moment as the state stores it and as the step uses it: the stored values,
    widened back to the gradients' precision.

    Stored: cast to ``dtype`` (round to nearest), or with ``words`` rounded
    stochastically to the dtypes of ``like`` (the previous stored moment).
    """
    if words is None:
        stored = _core.tree_cast(moment, dtype)
    else:
        stored = _precision.tree_round_to(moment, like, "stochastic", words)
    return stored, _core.tree_map(_core.widen_to, stored, updates)


def _ema_moments(updates, state, decays, dtypes, rounding, seed, count):
    """The new EMAs of ``g`` and ``|g|^2`` from ``state.mu``/``state.nu``, each as stored
    and as the step uses it (:func:`_stored`): ``(stored_mu, mu, stored_nu, nu)``.

    ``decays`` and ``dtypes`` are ``(first, second)`` moment pairs; ``rounding``, ``seed``
    and ``count`` choose nearest or stochastic rounding (:func:`_rounded`).
    """
    (b_mu, b_nu), (mu_dtype, nu_dtype) = decays, dtypes
    mu_words = _rounded(rounding, seed, _precision.STREAM_MU, count)
    nu_words = _rounded(rounding, seed, _precision.STREAM_NU, count)
    mu = _core.tree_ema(updates, _widened(state.mu, mu_words), b_mu)
    nu = _core.tree_ema_sq_norm(updates, _widened(state.nu, nu_words), b_nu)
    return (
        *_stored(mu, mu_dtype, updates, state.mu, mu_words),
        *_stored(nu, nu_dtype, updates, state.nu, nu_words),
    )


def _nesterov_mu_hat(updates, mu, b1, count, bias_correction):
    """NAdam's look-ahead first moment (Dozat 2016), as optax computes it."""
    if not bias_correction:
        return _core.tree_map(lambda m, g: b1 * m + (1 - b1) * g, mu, updates)
    return _core.tree_map(
        lambda m, g: b1 * m + (1 - b1) * g,
        _core.tree_bias_correction(mu, b1, _core.safe_increment(count)),
        _core.tree_bias_correction(updates, b1, count),
    )


@_core.block(kernel="adam")
def scale_by_adam(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    mu_dtype: Optional[Any] = None,
    *,
    nesterov: bool = False,
    bias_correction: bool = True,
    nu_dtype: Optional[Any] = None,
    rounding: str = "nearest",
    rounding_seed: Any = None,
) -> GradientTransformation:
    """Adam scaling (Kingma & Ba 2014; Goodfellow Alg. 8.7).

    Hand-written, not optax's: the ``bias_correction`` flag, ``nu_dtype``, float32
    ``nu`` for float16 leaves, the division done in float32 for half-precision
    moments, and the step computed from the moments as stored (optax uses them before
    rounding them to ``mu_dtype``): the state alone determines the next step, and XLA
    updates the moments in place without copying them first.

    A bfloat16 moment moves only when its change exceeds half of bfloat16's spacing
    (2^-9 of its value): an EMA with decay ``b`` stalls within about ``2^-9 / (1 - b)``
    of its target, 2% for ``b1=0.9``; with ``b2=0.999`` a bfloat16 ``nu`` tracks
    ``g^2`` only to within a factor of about 3. Keep ``nu`` in float32 unless memory
    decides.

    .. math::
        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t,\\quad
        v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2,\\\\
        \\hat m_t = m_t / (1 - \\beta_1^t),\\quad \\hat v_t = v_t / (1 - \\beta_2^t),\\quad
        u_t = \\hat m_t / (\\sqrt{\\hat v_t + \\epsilon_{root}} + \\epsilon)

    Args:
      b1: decay rate of the first moment, in [0, 1).
      b2: decay rate of the second moment, in [0, 1).
      eps: added outside the root.
      eps_root: added inside the root.
      mu_dtype: storage dtype of the first moment (e.g. ``jnp.bfloat16`` halves its
        memory); arithmetic happens in the gradient's dtype, on the stored values.
      nesterov: NAdam's look-ahead first moment (Dozat 2016).
      bias_correction: ``False`` gives the "not quite Adam" of R. Neychev,
        "Optimization and regularization in Deep Learning" (no ``1-beta^t``).
      nu_dtype: storage dtype of the second moment (as ``mu_dtype``).
      rounding: how a new moment is rounded to a bfloat16/float16 storage dtype:
        ``"nearest"`` (optax's cast) or ``"stochastic"`` (computed in float32, then
        rounded up or down at random, unbiased, from a hash of ``rounding_seed``, the
        step count, the leaf and the element: see :func:`jaxopt_dl.stochastic_round`).
        The state is the same either way.
      rounding_seed: an integer seed (or a PRNG key) for ``"stochastic"``; ``None``
        is 0.

    References:
      Kingma & Ba 2014; Goodfellow et al. 2016, Alg. 8.7; Dozat 2016.
    """
    _check_adaptive(eps, [("b1", b1), ("b2", b2)], eps_root)
    _precision.check_rounding(rounding, rounding_seed)

    def init_fn(params):
        return optax.ScaleByAdamState(
            _core.zero_count(),
            _core.tree_zeros_like(params, dtype=mu_dtype),
            _core.tree_second_moment_like(params, dtype=nu_dtype),
        )

    def update_fn(updates, state, params=None):
        del params
        _core.check_tree_matches(updates, state.mu)
        count = _core.safe_increment(state.count)
        stored_mu, mu, stored_nu, nu = _ema_moments(
            updates, state, (b1, b2), (mu_dtype, nu_dtype), rounding, rounding_seed, count
        )
        if nesterov:
            mu_hat = _nesterov_mu_hat(updates, mu, b1, count, bias_correction)
        elif bias_correction:
            mu_hat = _core.tree_bias_correction(mu, b1, count)
        else:
            mu_hat = mu
        nu_hat = _core.tree_bias_correction(nu, b2, count) if bias_correction else nu
        updates = _core.tree_map(lambda m, v: adam_direction(m, v, eps, eps_root), mu_hat, nu_hat)
        return updates, optax.ScaleByAdamState(count, stored_mu, stored_nu)

    return GradientTransformation(init_fn, update_fn)


@_core.block()
def scale_by_adamax(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
) -> GradientTransformation:
    """Adamax: Adam with the infinity norm (Kingma & Ba 2014, Sec. 7.1).

    Hand-written, not optax's: float32 ``nu`` for float16 leaves.

    .. math::
        m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t,\\quad
        u_t^{\\infty} = \\max(\\beta_2 u_{t-1}, |g_t| + \\epsilon),\\quad
        u_t = \\frac{m_t}{(1-\\beta_1^t)\\, u_t^{\\infty}}

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the infinity norm, in [0, 1).
      eps: added to ``|g|``.
    """
    _check_adaptive(eps, [("b1", b1), ("b2", b2)])

    def init_fn(params):
        return optax.ScaleByAdamState(
            _core.zero_count(), _core.tree_zeros_like(params), _core.tree_second_moment_like(params)
        )

    def update_fn(updates, state, params=None):
        del params
        _core.check_tree_matches(updates, state.mu)
        count = _core.safe_increment(state.count)
        mu = _core.tree_ema(updates, state.mu, b1)
        nu = _core.tree_map(
            lambda g, v: jnp.maximum(jnp.abs(_core.widen_to(g, v)) + eps, b2 * v),
            updates,
            state.nu,
        )
        mu_hat = _core.tree_bias_correction(mu, b1, count)
        updates = _core.tree_map(lambda m, v: (m / v).astype(m.dtype), mu_hat, nu)
        return updates, optax.ScaleByAdamState(count, mu, nu)

    return GradientTransformation(init_fn, update_fn)


@_core.block()
def scale_by_amsgrad(
    b1: jax.typing.ArrayLike = 0.9,
    b2: jax.typing.ArrayLike = 0.999,
    eps: jax.typing.ArrayLike = 1e-8,
    eps_root: jax.typing.ArrayLike = 0.0,
    mu_dtype: Optional[Any] = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    rounding: str = "nearest",
    rounding_seed: Any = None,
) -> GradientTransformation:
    """AMSGrad: Adam with the running maximum of the (bias-corrected) second moment.

    Hand-written, not optax's: float32 second moments for float16 leaves, the division
    in float32.

    .. math:: \\hat v^{max}_t = \\max(\\hat v^{max}_{t-1}, \\hat v_t),\\quad
        u_t = \\hat m_t / (\\sqrt{\\hat v^{max}_t + \\epsilon_{root}} + \\epsilon)

    Args:
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added outside the root.
      eps_root: added inside the root.
      mu_dtype: storage dtype of the first moment.
      bias_correction_mu: divide the first moment by ``1 - b1^t``.
      bias_correction_nu: divide the second moment by ``1 - b2^t``.
      rounding: how the new moments are rounded to a bfloat16/float16 storage dtype:
        ``"nearest"`` or ``"stochastic"`` (as :func:`scale_by_adam`).
      rounding_seed: an integer seed (or a PRNG key) for ``"stochastic"``; ``None``
        is 0.

    References:
      Reddi, Kale & Kumar 2018.
    """
    _check_adaptive(eps, [("b1", b1), ("b2", b2)], eps_root)
    _precision.check_rounding(rounding, rounding_seed)

    def init_fn(params):
        return optax.ScaleByAmsgradState(
            _core.zero_count(),
            _core.tree_zeros_like(params, dtype=mu_dtype),
            _core.tree_second_moment_like(params),
            _core.tree_second_moment_like(params),
        )

    def update_fn(updates, state, params=None):
        del params
        _core.check_tree_matches(updates, state.mu)
        count = _core.safe_increment(state.count)
        stored_mu, mu, stored_nu, nu = _ema_moments(
            updates, state, (b1, b2), (mu_dtype, None), rounding, rounding_seed, count
        )
        mu_hat = _core.tree_bias_correction(mu, b1, count) if bias_correction_mu else mu
        nu_eff = _core.tree_bias_correction(nu, b2, count) if bias_correction_nu else nu
        nu_max = _core.tree_map(jnp.maximum, state.nu_max, nu_eff)
        updates = _core.tree_map(lambda m, v: adam_direction(m, v, eps, eps_root), mu_hat, nu_max)
        return updates, optax.ScaleByAmsgradState(count, stored_mu, stored_nu, nu_max)

    return GradientTransformation(init_fn, update_fn)


@_core.block()
def scale_by_adadelta(
    rho: jax.typing.ArrayLike = 0.9, eps: jax.typing.ArrayLike = 1e-6
) -> GradientTransformation:
    """Adadelta (Zeiler 2012): unit-correct steps from two EMAs.

    Hand-written, not optax's: float32 accumulators for float16 leaves.

    .. math::
        E[g^2]_t = \\rho E[g^2]_{t-1} + (1-\\rho) g_t^2,\\quad
        u_t = \\frac{\\sqrt{E[\\Delta x^2]_{t-1} + \\epsilon}}{\\sqrt{E[g^2]_t + \\epsilon}} g_t,\\quad
        E[\\Delta x^2]_t = \\rho E[\\Delta x^2]_{t-1} + (1-\\rho) u_t^2

    Args:
      rho: decay of both EMAs, in [0, 1).
      eps: added inside both roots.
    """
    _check_adaptive(eps, [("rho", rho)])

    def init_fn(params):
        return optax.ScaleByAdaDeltaState(
            _core.tree_second_moment_like(params), _core.tree_second_moment_like(params)
        )

    def update_fn(updates, state, params=None):
        del params
        _core.check_tree_matches(updates, state.e_g)
        e_g = _core.tree_ema(updates, state.e_g, rho, 2)
        steps = _core.tree_map(
            lambda g, eg, ex: jnp.sqrt(ex + eps) / jnp.sqrt(eg + eps) * g, updates, e_g, state.e_x
        )
        e_x = _core.tree_ema(steps, state.e_x, rho, 2)
        return _core.tree_cast_like(steps, updates), optax.ScaleByAdaDeltaState(e_g, e_x)

    return GradientTransformation(init_fn, update_fn)
