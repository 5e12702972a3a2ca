"""The optimizers: each a short chain of blocks and a learning rate.

Names, argument names, defaults and state trees follow optax where optax has the
name (``jdl.adam(lr).init(p)`` has the tree structure and state classes of
``optax.adam(lr).init(p)``); the lecture conventions optax lacks are keywords
(``form=``, ``eps_in_sqrt=``, ``bias_correction=``), never copies. Every optimizer
checks its arguments when built (``learning_rate`` must be given unless it is
optional, every bool argument must be a bool), names the first mismatched path when
the gradients do not match the params, and carries its
:class:`~jaxopt_dl._core.Description` (its name, its arguments, its blocks), read by
:func:`jaxopt_dl.describe`.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import optax

from jaxopt_dl import _core, _precision
from jaxopt_dl._core import GradientTransformationExtraArgs, ScalarOrSchedule, chain
from jaxopt_dl.transforms import adaptive, regularization, scaling
from jaxopt_dl.transforms import momentum as momentum_lib

MOMENTUM_FORMS = ("velocity", "ema", "trace")
"""The conventions of :func:`momentum`'s ``form``."""

_optimizer = _core.block(optimizer=True)
"""The factory idiom of every optimizer: checked on entry, described, trees checked."""


def _with_lr(*blocks, learning_rate: ScalarOrSchedule) -> GradientTransformationExtraArgs:
    return chain(*blocks, scaling.scale_by_learning_rate(learning_rate))


@_optimizer
def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: Optional[float] = None,
    nesterov: bool = False,
    accumulator_dtype: Optional[Any] = None,
    *,
    rounding: str = "nearest",
    rounding_seed: Any = None,
) -> GradientTransformationExtraArgs:
    """Stochastic gradient descent, optionally with heavy-ball momentum (optax/torch form).

    .. math:: m_t = g_t + \\mu m_{t-1}, \\qquad \\theta_t = \\theta_{t-1} - \\epsilon_t m_t

    Args:
      learning_rate: a number, an array or a schedule ``step -> rate``.
      momentum: the heavy-ball coefficient in [0, 1), or ``None`` (default) for plain
        SGD. torch's ``SGD(momentum=mu)`` buffer ``b <- mu b + g`` (its ``dampening=0``
        default); Keras's ``SGD(momentum=mu)`` keeps ``v <- mu v - lr g`` instead, the
        same iterates for a constant rate (see :func:`momentum`, ``form="velocity"``).
      nesterov: the Nesterov form of the momentum (default ``False``), as torch's and
        Keras's ``nesterov=True``.
      accumulator_dtype: storage dtype of the momentum buffer (default ``None``: the
        param's).
      rounding: how the new buffer is rounded to a bfloat16/float16 storage dtype:
        ``"nearest"`` (default; optax's ``trace`` and state) or ``"stochastic"``
        (unbiased, from a hash of ``rounding_seed`` and the step count kept in the
        state; see :func:`jaxopt_dl.stochastic_round`).
      rounding_seed: an integer seed (or a PRNG key) for ``"stochastic"`` (default
        ``None``: 0).

    Example:
      >>> import jax.numpy as jnp, jaxopt_dl as jdl
      >>> opt = jdl.sgd(0.1, momentum=0.9)
      >>> state = opt.init(jnp.zeros(3))

    References:
      Robbins & Monro 1951; Goodfellow et al. 2016, Alg. 8.1; torch.optim.SGD.
    """
    _precision.check_rounding(rounding, rounding_seed)
    if momentum is None:
        return _with_lr(_core.identity(), learning_rate=learning_rate)
    _core.check_decay("momentum", momentum)
    return _with_lr(
        _heavy_ball(momentum, nesterov, accumulator_dtype, rounding, rounding_seed),
        learning_rate=learning_rate,
    )


def _heavy_ball(decay, nesterov, accumulator_dtype=None, rounding="nearest", rounding_seed=None):
    """optax's ``trace``, or its stochastically rounded form."""
    if rounding == "nearest":
        return momentum_lib.trace(decay, nesterov, accumulator_dtype)
    return momentum_lib.stochastic_trace(
        decay, nesterov, accumulator_dtype, rounding_seed=rounding_seed
    )


@_optimizer
def momentum(
    learning_rate: ScalarOrSchedule,
    beta: float = 0.9,
    *,
    nesterov: bool = False,
    form: str = "velocity",
) -> GradientTransformationExtraArgs:
    """SGD with momentum in the lectures' three conventions.

    * ``form="velocity"`` (Goodfellow Alg. 8.2, coupled): ``v <- beta v - eps_t g;
      theta <- theta + v``. With ``nesterov=True`` (Alg. 8.3) the iterates are the
      look-ahead variables ``phi = theta + beta v``.
    * ``form="ema"`` (K. Bipin, "Deep Learning, Lecture 6 -- Optimization", decoupled):
      ``m <- beta m + (1-beta) g; theta <- theta - eps_t m``; Nesterov in look-ahead
      variables ``w - eps beta m``.
    * ``form="trace"`` (optax/torch heavy ball): ``m <- g + beta m; theta <- theta - eps_t m``.

    For a constant learning rate ``velocity`` and ``trace`` give the same iterates;
    ``ema`` takes steps ``(1 - beta)`` times smaller (use a ``1/(1-beta)`` larger rate).

    Args:
      learning_rate: a number, an array or a schedule ``step -> rate``.
      beta: the momentum coefficient in [0, 1) (default 0.9; torch's ``momentum``,
        Keras's ``momentum``).
      nesterov: the Nesterov look-ahead form (default ``False``).
      form: ``"velocity"`` (default; Keras's ``SGD(momentum=...)``), ``"ema"`` or
        ``"trace"`` (torch's ``SGD(momentum=...)``).

    Raises:
      ValueError: for an unknown ``form``.
    """
    _core.check_choice("form", form, MOMENTUM_FORMS)
    _core.check_decay("beta", beta)
    if form == "velocity":
        return chain(momentum_lib.velocity(learning_rate, beta, nesterov))
    if form == "ema":
        averaging = (
            momentum_lib.nesterov_ema(beta) if nesterov else momentum_lib.ema(beta, debias=False)
        )
        return _with_lr(averaging, learning_rate=learning_rate)
    return _with_lr(momentum_lib.trace(beta, nesterov), learning_rate=learning_rate)


@_optimizer
def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
    *,
    eps_in_sqrt: bool = True,
    rounding: str = "nearest",
    rounding_seed: Any = None,
) -> GradientTransformationExtraArgs:
    """AdaGrad (Duchi et al. 2011).

    .. math:: r_t = r_{t-1} + g_t^2, \\qquad \\theta_t = \\theta_{t-1} - \\epsilon\\,
      g_t / \\sqrt{r_t + \\delta}

    ``eps_in_sqrt=False`` gives Goodfellow Alg. 8.4 and torch.optim.Adagrad:
    ``eps / (delta + sqrt(r))`` (torch defaults: ``initial_accumulator_value=0``,
    ``eps=1e-10``).

    Args:
      learning_rate: a number, an array or a schedule ``step -> rate``.
      initial_accumulator_value: starting value of ``r`` (default 0.1, as optax and
        Keras; torch's default is 0).
      eps: the small constant ``delta`` (default ``1e-7``, as optax and Keras; torch's
        default is ``1e-10``, outside the root).
      eps_in_sqrt: ``delta`` inside the root (default ``True``, optax) or outside
        (``False``: Goodfellow, torch).
      rounding: how the new sum is rounded to a bfloat16/float16 accumulator (the
        param's dtype): ``"nearest"`` (default; optax's state) or ``"stochastic"``
        (unbiased; the state then also counts the steps; see
        :func:`jaxopt_dl.stochastic_round`).
      rounding_seed: an integer seed (or a PRNG key) for ``"stochastic"`` (default
        ``None``: 0).
    """
    return _with_lr(
        adaptive.scale_by_rss(
            initial_accumulator_value,
            eps,
            eps_in_sqrt=eps_in_sqrt,
            rounding=rounding,
            rounding_seed=rounding_seed,
        ),
        learning_rate=learning_rate,
    )


@_optimizer
def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: Optional[float] = None,
    nesterov: bool = False,
    bias_correction: bool = False,
    *,
    rounding: str = "nearest",
    rounding_seed: Any = None,
) -> GradientTransformationExtraArgs:
    """RMSProp (Tieleman & Hinton 2012).

    ``eps_in_sqrt=True`` is Goodfellow Alg. 8.5 (``eps / sqrt(delta + r)``), optax's
    default and Keras' ``RMSprop`` (``rsqrt(r + eps)``; Keras defaults ``rho=0.9``,
    ``epsilon=1e-7``); ``eps_in_sqrt=False`` is torch.optim.RMSprop
    (``sqrt(r) + eps``), also with ``centered`` (Graves 2013) and ``momentum`` (torch's
    buffer of the scaled gradient: ``b <- mu b + g / (sqrt(r) + eps); theta <- theta -
    lr b``; the same numbers for a constant learning rate).

    Args:
      learning_rate: a number, an array or a schedule ``step -> rate``.
      decay: ``rho``, the EMA decay of the squared gradients, in [0, 1) (default 0.9,
        as optax and Keras's ``rho``; torch's ``alpha`` defaults to 0.99).
      eps: ``delta`` (default ``1e-8``; Keras's ``epsilon`` defaults to ``1e-7``).
      initial_scale: starting value of ``r`` (default 0).
      eps_in_sqrt: ``delta`` inside the root (default ``True``: optax, Goodfellow,
        Keras) or outside (``False``: torch).
      centered: divide by the root of the variance (Graves 2013; default ``False``,
        torch's and Keras's ``centered``).
      momentum: coefficient of a heavy-ball buffer after the scaling, or ``None``
        (default; torch's ``momentum=0``).
      nesterov: the Nesterov form of that buffer (default ``False``).
      bias_correction: divide ``r_t`` by ``1 - rho^t`` (default ``False``, as torch,
        Keras and optax).
      rounding: how the new accumulators (and momentum buffer) are rounded to a
        bfloat16/float16 state (the param's dtype): ``"nearest"`` (default; optax's
        state) or ``"stochastic"`` (unbiased; the states then also count the steps;
        see :func:`jaxopt_dl.stochastic_round`).
      rounding_seed: an integer seed (or a PRNG key) for ``"stochastic"`` (default
        ``None``: 0).
    """
    scaler = adaptive.scale_by_stddev if centered else adaptive.scale_by_rms
    if momentum is None:
        accumulate = _core.identity()
    else:
        _core.check_decay("momentum", momentum)
        accumulate = _heavy_ball(momentum, nesterov, None, rounding, rounding_seed)
    return chain(
        scaler(
            decay,
            eps,
            initial_scale,
            eps_in_sqrt,
            bias_correction,
            rounding=rounding,
            rounding_seed=rounding_seed,
        ),
        scaling.scale_by_learning_rate(learning_rate),
        accumulate,
    )


@_optimizer
def adadelta(
    learning_rate: Optional[ScalarOrSchedule] = None,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    weight_decay_mask: Optional[Union[Any, Callable]] = None,
) -> GradientTransformationExtraArgs:
    """Adadelta (Zeiler 2012), torch/optax numbers.

    ``learning_rate=None`` is Zeiler's original rule, a descent step of the unit-correct
    update (the same as ``learning_rate=1.0``, torch's default). optax's ``None``
    leaves the sign unflipped and ascends; we do not copy that.

    Args:
      learning_rate: a number, an array, a schedule, or ``None`` (default: 1.0, torch's
        default; Keras's default is ``0.001``).
      rho: the EMA decay of both accumulators, in [0, 1) (default 0.9, as torch;
        Keras's default is 0.95).
      eps: added inside both roots (default ``1e-6``, as torch; Keras's ``1e-7``).
      weight_decay: coupled weight decay added to the gradient first (default 0, as
        torch's ``weight_decay``).
      weight_decay_mask: where to apply the decay (a tree of booleans or a function
        ``params -> tree``; default ``None``: every leaf).
    """
    return _with_lr(
        regularization.add_decayed_weights(weight_decay, weight_decay_mask),
        adaptive.scale_by_adadelta(rho, eps),
        learning_rate=1.0 if learning_rate is None else learning_rate,
    )


def _adam_chain(
    learning_rate,
    b1,
    b2,
    eps,
    eps_root,
    mu_dtype,
    nesterov,
    bias_correction,
    nu_dtype,
    *decay,
    rounding="nearest",
    rounding_seed=None,
):
    return _with_lr(
        adaptive.scale_by_adam(
            b1,
            b2,
            eps,
            eps_root,
            mu_dtype,
            nesterov=nesterov,
            bias_correction=bias_correction,
            nu_dtype=nu_dtype,
            rounding=rounding,
            rounding_seed=rounding_seed,
        ),
        *decay,
        learning_rate=learning_rate,
    )


@_optimizer
def adam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Optional[Any] = None,
    *,
    nesterov: bool = False,
    bias_correction: bool = True,
    nu_dtype: Optional[Any] = None,
    rounding: str = "nearest",
    rounding_seed: Any = None,
) -> GradientTransformationExtraArgs:
    """Adam (Kingma & Ba 2014; Goodfellow Alg. 8.7).

    .. math::
        m_t = \\beta_1 m + (1-\\beta_1) g,\\; v_t = \\beta_2 v + (1-\\beta_2) g^2,\\;
        \\theta_t = \\theta - \\epsilon \\frac{m_t/(1-\\beta_1^t)}{\\sqrt{v_t/(1-\\beta_2^t)} + \\delta}

    Args:
      learning_rate: a number, an array or a schedule ``step -> rate``.
      b1: decay of the first moment, in [0, 1) (default 0.9; torch's ``betas[0]``,
        Keras's ``beta_1``).
      b2: decay of the second moment, in [0, 1) (default 0.999; torch's ``betas[1]``,
        Keras's ``beta_2``).
      eps: ``delta``, added outside the root (default ``1e-8``, as torch). Keras's
        ``epsilon`` (default ``1e-7``) is added to the root of the uncorrected second
        moment (Kingma & Ba's "epsilon hat"); the two agree once ``1 - b2^t`` is
        near 1.
      eps_root: added inside the root (default 0).
      mu_dtype: storage dtype of the first moment (default ``None``: the param's).
      nesterov: NAdam's look-ahead first moment (default ``False``; see :func:`nadam`).
      bias_correction: ``False`` is the "not quite Adam" of R. Neychev, "Optimization
        and regularization in Deep Learning" (no ``1 - beta^t``; default ``True``).
      nu_dtype: storage dtype of the second moment (default ``None``: the param's).
      rounding: how new moments are rounded to a bfloat16/float16 ``mu_dtype`` or
        ``nu_dtype``: ``"nearest"`` (default; optax's cast) or ``"stochastic"``
        (computed in float32, rounded up or down at random, unbiased, from a hash of
        ``rounding_seed`` and the step count kept in the state: deterministic, and a
        resumed run continues bit for bit; see :func:`jaxopt_dl.stochastic_round`).
        The state's structure is the same either way.
      rounding_seed: an integer seed (or a PRNG key) for ``"stochastic"`` (default
        ``None``: 0).

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_dl as jdl
      >>> params = {"w": jnp.ones(3)}
      >>> opt = jdl.adam(1e-3)
      >>> state = opt.init(params)
      >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
      >>> updates, state = opt.update(grads, state, params)
      >>> params = jdl.apply_updates(params, updates)
    """
    return _adam_chain(
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        mu_dtype,
        nesterov,
        bias_correction,
        nu_dtype,
        rounding=rounding,
        rounding_seed=rounding_seed,
    )


@_optimizer
def nadam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Optional[Any] = None,
    *,
    bias_correction: bool = True,
    nu_dtype: Optional[Any] = None,
    rounding: str = "nearest",
    rounding_seed: Any = None,
) -> GradientTransformationExtraArgs:
    """NAdam (Dozat 2016): Adam with a Nesterov look-ahead first moment, optax's numbers.

    .. math::
        u_t = -\\epsilon \\frac{\\beta_1 m_t / (1-\\beta_1^{t+1}) + (1-\\beta_1) g_t / (1-\\beta_1^t)}
        {\\sqrt{v_t / (1-\\beta_2^t)} + \\delta}

    The same as ``adam(..., nesterov=True)``.

    Args:
      learning_rate: a number, an array or a schedule ``step -> rate``.
      b1: decay of the first moment, in [0, 1) (default 0.9).
      b2: decay of the second moment, in [0, 1) (default 0.999).
      eps: added outside the root (default ``1e-8``).
      eps_root: added inside the root (default 0).
      mu_dtype: storage dtype of the first moment (default ``None``: the param's).
      bias_correction: as :func:`adam` (default ``True``).
      nu_dtype: storage dtype of the second moment (default ``None``: the param's).
      rounding: as :func:`adam` (default ``"nearest"``).
      rounding_seed: as :func:`adam` (default ``None``: 0).

    torch's ``NAdam`` also decays its momentum (``momentum_decay``), so its numbers
    differ; use :func:`jaxopt_dl.torch_nadam` for those.

    Example:
      >>> import jax.numpy as jnp, jaxopt_dl as jdl
      >>> state = jdl.nadam(1e-3).init(jnp.zeros(3))

    References:
      Dozat 2016, Incorporating Nesterov Momentum into Adam; optax.nadam.
    """
    return _adam_chain(
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        mu_dtype,
        True,
        bias_correction,
        nu_dtype,
        rounding=rounding,
        rounding_seed=rounding_seed,
    )


@_optimizer
def adamw(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Optional[Any] = None,
    weight_decay: ScalarOrSchedule = 1e-4,
    mask: Optional[Union[Any, Callable]] = None,
    *,
    nesterov: bool = False,
    nu_dtype: Optional[Any] = None,
    rounding: str = "nearest",
    rounding_seed: Any = None,
) -> GradientTransformationExtraArgs:
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    .. math:: \\theta_t = \\theta - \\epsilon_t (\\hat m_t / (\\sqrt{\\hat v_t} + \\delta) + \\lambda \\theta)

    torch.optim.AdamW multiplies the decay by the learning rate the same way
    (``p <- p (1 - lr wd)``), so the numbers agree for the same ``weight_decay``.

    Args:
      learning_rate: a number, an array or a schedule ``step -> rate``.
      b1: as :func:`adam`.
      b2: as :func:`adam`.
      eps: as :func:`adam`.
      eps_root: as :func:`adam`.
      mu_dtype: as :func:`adam`.
      weight_decay: the decay ``lambda`` (a number or a schedule; default ``1e-4``, as
        optax; torch's ``AdamW`` defaults to ``1e-2``, Keras's to ``0.004``).
      mask: where to decay (a tree of booleans or a function params -> tree; default
        ``None``: every leaf).
      nesterov: as :func:`adam`.
      nu_dtype: as :func:`adam`.
      rounding: as :func:`adam` (default ``"nearest"``).
      rounding_seed: as :func:`adam` (default ``None``: 0).
    """
    return _adam_chain(
        learning_rate,
        b1,
        b2,
        eps,
        eps_root,
        mu_dtype,
        nesterov,
        True,
        nu_dtype,
        regularization.add_decayed_weights(weight_decay, mask),
        rounding=rounding,
        rounding_seed=rounding_seed,
    )


@_optimizer
def adamax(
    learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> GradientTransformationExtraArgs:
    """Adamax (Kingma & Ba 2014, Sec. 7.1): Adam with an infinity-norm second moment.

    Args:
      learning_rate: a number, an array or a schedule ``step -> rate``.
      b1: decay of the first moment, in [0, 1) (default 0.9).
      b2: decay of the infinity norm, in [0, 1) (default 0.999).
      eps: added to ``|g|`` (default ``1e-8``, as torch; Keras's ``epsilon`` defaults
        to ``1e-7``). torch's default learning rate is ``2e-3``.
    """
    return _with_lr(adaptive.scale_by_adamax(b1, b2, eps), learning_rate=learning_rate)


@_optimizer
def amsgrad(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Optional[Any] = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    rounding: str = "nearest",
    rounding_seed: Any = None,
) -> GradientTransformationExtraArgs:
    """AMSGrad (Reddi et al. 2018): Adam with a non-decreasing second moment.

    Args:
      learning_rate: a number, an array or a schedule ``step -> rate``.
      b1: as :func:`adam`.
      b2: as :func:`adam`.
      eps: as :func:`adam`.
      eps_root: as :func:`adam`.
      mu_dtype: as :func:`adam`.
      bias_correction_mu: divide the first moment by ``1 - b1^t``.
      bias_correction_nu: divide the second moment by ``1 - b2^t`` before the maximum.
      rounding: as :func:`adam` (default ``"nearest"``).
      rounding_seed: as :func:`adam` (default ``None``: 0).
    """
    return _with_lr(
        adaptive.scale_by_amsgrad(
            b1,
            b2,
            eps,
            eps_root,
            mu_dtype,
            bias_correction_mu,
            bias_correction_nu,
            rounding=rounding,
            rounding_seed=rounding_seed,
        ),
        learning_rate=learning_rate,
    )


@_optimizer
def noisy_sgd(
    learning_rate: ScalarOrSchedule,
    eta: float = 0.01,
    gamma: float = 0.55,
    key: Union[jax.Array, int, None] = None,
) -> GradientTransformationExtraArgs:
    """SGD with annealed Gaussian gradient noise (Neelakantan et al. 2015).

    Args:
      learning_rate: a number, an array or a schedule ``step -> rate``.
      eta: base variance of the noise.
      gamma: decay exponent of the variance.
      key: a PRNG key or an integer seed (an int or an integer array); ``None`` is 0.
    """
    return _with_lr(regularization.add_noise(eta, gamma, key), learning_rate=learning_rate)


@_core.block(
    optimizer=True,
    checks={
        "b1": _core.check_decay,
        "b2": _core.check_decay,
        "eps": _core.check_nonnegative,
        "eps_root": _core.check_nonnegative,
        "weight_decay": _core.check_nonnegative,
    },
    signature_of=optax.lamb,
)
def lamb(learning_rate, b1=0.9, b2=0.999, eps=1e-06, eps_root=0.0, weight_decay=0.0, mask=None):
    """LAMB (You et al. 2020): optax.lamb, its arguments, numbers and state.

    Adam's direction plus weight decay, rescaled per layer by the trust ratio
    ``||w|| / ||u||``. ``learning_rate``, ``b1``, ``b2``, ``eps``, ``eps_root`` and
    ``weight_decay`` are checked when built (``ValueError``/``TypeError`` naming the
    argument and the value).

    References:
      You et al. 2020, Large Batch Optimization for Deep Learning; optax.lamb.
    """
    return optax.lamb(learning_rate, b1, b2, eps, eps_root, weight_decay, mask)


@_core.block(
    optimizer=True,
    checks={
        "b1": _core.check_decay,
        "b2": _core.check_decay,
        "weight_decay": _core.check_nonnegative,
    },
    signature_of=optax.lion,
)
def lion(learning_rate, b1=0.9, b2=0.99, mu_dtype=None, weight_decay=0.001, mask=None):
    """Lion (Chen et al. 2023): optax.lion, its arguments, numbers and state.

    .. math:: u_t = -\\epsilon\\, \\mathrm{sign}(\\beta_1 m_{t-1} + (1-\\beta_1) g_t),\\quad
        m_t = \\beta_2 m_{t-1} + (1-\\beta_2) g_t

    ``learning_rate``, ``b1``, ``b2`` and ``weight_decay`` are checked when built.

    References:
      Chen et al. 2023, Symbolic Discovery of Optimization Algorithms; optax.lion.
    """
    return optax.lion(learning_rate, b1, b2, mu_dtype, weight_decay, mask)


def _optional(check: Callable) -> Callable:
    """``check`` that lets ``None`` (an optional feature left off) through."""
    return lambda name, value: check(name, value, allow_none=True)


@_core.block(
    optimizer=True,
    checks={
        "decay_rate": _core.check_nonnegative,
        "eps": _core.check_nonnegative,
        "min_dim_size_to_factor": _core.check_int,
        "decay_offset": _core.check_int,
        "multiply_by_parameter_scale": _core.check_bool,
        "clipping_threshold": _optional(_core.check_nonnegative),
        "momentum": _optional(_core.check_decay),
        "weight_decay_rate": _optional(_core.check_nonnegative),
        "factored": _core.check_bool,
    },
    signature_of=optax.adafactor,
)
def adafactor(
    learning_rate=None,
    min_dim_size_to_factor=128,
    decay_rate=0.8,
    decay_offset=0,
    multiply_by_parameter_scale=True,
    clipping_threshold=1.0,
    momentum=None,
    dtype_momentum=jnp.float32,
    weight_decay_rate=None,
    eps=1e-30,
    factored=True,
    weight_decay_mask=None,
):
    """Adafactor (Shazeer & Stern 2018): optax.adafactor, its arguments, numbers and state.

    Factored second moments (row and column averages) for matrices, so the state costs
    ``O(n + m)`` instead of ``O(nm)``. The numeric and boolean arguments are checked
    when built (``ValueError``/``TypeError`` naming the argument and the value);
    ``learning_rate=None``, the default, is optax's: no learning-rate scaling, and
    ``None`` also switches off ``clipping_threshold``, ``momentum`` and
    ``weight_decay_rate``.

    References:
      Shazeer & Stern 2018, Adafactor; optax.adafactor.
    """
    return optax.adafactor(
        learning_rate,
        min_dim_size_to_factor,
        decay_rate,
        decay_offset,
        multiply_by_parameter_scale,
        clipping_threshold,
        momentum,
        dtype_momentum,
        weight_decay_rate,
        eps,
        factored,
        weight_decay_mask,
    )


@_core.block(
    optimizer=True,
    checks={
        "b1": _core.check_decay,
        "b2": _core.check_decay,
        "b3": _core.check_decay,
        "eps": _core.check_nonnegative,
        "eps_root": _core.check_nonnegative,
        "weight_decay": _core.check_nonnegative,
    },
    signature_of=optax.adan,
)
def adan(
    learning_rate, b1=0.98, b2=0.92, b3=0.99, eps=1e-08, eps_root=1e-08, weight_decay=0.0, mask=None
):
    """Adan (Xie et al. 2022): optax.adan, its arguments, numbers and state.

    Adaptive Nesterov momentum: moving averages of the gradient, of the gradient
    difference and of the squared look-ahead gradient, with decoupled weight decay.
    ``learning_rate``, ``b1``, ``b2``, ``b3``, ``eps``, ``eps_root`` and ``weight_decay``
    are checked when built.

    References:
      Xie et al. 2022, Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing
      Deep Models; optax.adan.
    """
    return optax.adan(learning_rate, b1, b2, b3, eps, eps_root, weight_decay, mask)
