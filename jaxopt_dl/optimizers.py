"""The optimizers: each a short chain of blocks and a learning rate.

Names, argument names and defaults follow optax where optax has the name; the
lecture conventions optax lacks are keywords (``form=``, ``eps_in_sqrt=``,
``bias_correction=``), never copies.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, Union

import jax
import optax

from jaxopt_dl import _core
from jaxopt_dl._core import GradientTransformationExtraArgs, ScalarOrSchedule, chain
from jaxopt_dl.transforms import adaptive, momentum as momentum_lib, regularization, scaling

MOMENTUM_FORMS = ("velocity", "ema", "trace")


def _with_lr(*blocks, learning_rate: Optional[ScalarOrSchedule]) -> GradientTransformationExtraArgs:
    return chain(*blocks, scaling.scale_by_learning_rate(learning_rate))


def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: Optional[float] = None,
    nesterov: bool = False,
    accumulator_dtype: Optional[Any] = None,
) -> GradientTransformationExtraArgs:
    """Stochastic gradient descent, optionally with heavy-ball momentum (optax/torch form).

    .. math:: m_t = g_t + \\mu m_{t-1}, \\qquad \\theta_t = \\theta_{t-1} - \\epsilon_t m_t

    Example:
      >>> import jax.numpy as jnp, jaxopt_dl as jdl
      >>> opt = jdl.sgd(0.1, momentum=0.9)
      >>> state = opt.init(jnp.zeros(3))

    References:
      Robbins & Monro 1951; Goodfellow et al. 2016, Alg. 8.1; torch.optim.SGD.
    """
    if momentum is None:
        return _with_lr(learning_rate=learning_rate)
    _core.check_decay("momentum", momentum)
    return _with_lr(
        momentum_lib.trace(momentum, nesterov, accumulator_dtype), learning_rate=learning_rate
    )


def momentum(
    learning_rate: ScalarOrSchedule,
    beta: float = 0.9,
    *,
    nesterov: bool = False,
    form: str = "velocity",
) -> GradientTransformationExtraArgs:
    """SGD with momentum in the lecture's three conventions.

    * ``form="velocity"`` (Goodfellow Alg. 8.2, coupled): ``v <- beta v - eps_t g;
      theta <- theta + v``. With ``nesterov=True`` (Alg. 8.3) the iterates are the
      look-ahead variables ``phi = theta + beta v``.
    * ``form="ema"`` (seed 002, decoupled): ``m <- beta m + (1-beta) g;
      theta <- theta - eps_t m``; Nesterov in look-ahead variables ``w - eps beta m``.
    * ``form="trace"`` (optax/torch heavy ball): ``m <- g + beta m; theta <- theta - eps_t m``.

    For a constant learning rate ``velocity`` and ``trace`` give the same iterates;
    ``ema`` takes steps ``(1 - beta)`` times smaller (use a ``1/(1-beta)`` larger rate).

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


def adagrad(
    learning_rate: ScalarOrSchedule,
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
    *,
    eps_in_sqrt: bool = True,
) -> GradientTransformationExtraArgs:
    """AdaGrad (Duchi et al. 2011).

    .. math:: r_t = r_{t-1} + g_t^2, \\qquad \\theta_t = \\theta_{t-1} - \\epsilon\\,
      g_t / \\sqrt{r_t + \\delta}

    ``eps_in_sqrt=False`` gives Goodfellow Alg. 8.4 and torch.optim.Adagrad:
    ``eps / (delta + sqrt(r))`` (torch defaults: ``initial_accumulator_value=0``,
    ``eps=1e-10``).
    """
    return _with_lr(
        adaptive.scale_by_rss(initial_accumulator_value, eps, eps_in_sqrt=eps_in_sqrt),
        learning_rate=learning_rate,
    )


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
) -> GradientTransformationExtraArgs:
    """RMSProp (Tieleman & Hinton 2012).

    ``eps_in_sqrt=True`` is Goodfellow Alg. 8.5 (``eps / sqrt(delta + r)``), optax's
    default and Keras' ``RMSprop`` (``rsqrt(r + eps)``; Keras defaults ``rho=0.9``,
    ``epsilon=1e-7``); ``eps_in_sqrt=False`` is torch.optim.RMSprop
    (``sqrt(r) + eps``), also with ``centered`` (Graves 2013) and ``momentum`` (torch's
    buffer of the scaled gradient: ``b <- mu b + g / (sqrt(r) + eps); theta <- theta -
    lr b``; the same numbers for a constant learning rate).
    """
    scaler = adaptive.scale_by_stddev if centered else adaptive.scale_by_rms
    blocks = [
        scaler(decay, eps, initial_scale, eps_in_sqrt, bias_correction),
        scaling.scale_by_learning_rate(learning_rate),
    ]
    if momentum is not None:
        _core.check_decay("momentum", momentum)
        blocks.append(momentum_lib.trace(momentum, nesterov))
    return chain(*blocks)


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
    """
    return _with_lr(
        regularization.add_decayed_weights(weight_decay, weight_decay_mask),
        adaptive.scale_by_adadelta(rho, eps),
        learning_rate=1.0 if learning_rate is None else learning_rate,
    )


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
) -> GradientTransformationExtraArgs:
    """Adam (Kingma & Ba 2014; Goodfellow Alg. 8.7).

    .. math::
        m_t = \\beta_1 m + (1-\\beta_1) g,\\; v_t = \\beta_2 v + (1-\\beta_2) g^2,\\;
        \\theta_t = \\theta - \\epsilon \\frac{m_t/(1-\\beta_1^t)}{\\sqrt{v_t/(1-\\beta_2^t)} + \\delta}

    ``bias_correction=False`` is seed 003's "not quite Adam"; ``nesterov=True`` is
    NAdam; ``mu_dtype``/``nu_dtype`` set the moments' storage dtypes.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_dl as jdl
      >>> params = {"w": jnp.ones(3)}
      >>> opt = jdl.adam(1e-3)
      >>> state = opt.init(params)
      >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(params)
      >>> updates, state = opt.update(grads, state, params)
      >>> params = jdl.apply_updates(params, updates)
    """
    return _with_lr(
        adaptive.scale_by_adam(
            b1, b2, eps, eps_root, mu_dtype,
            nesterov=nesterov, bias_correction=bias_correction, nu_dtype=nu_dtype,
        ),
        learning_rate=learning_rate,
    )


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
) -> GradientTransformationExtraArgs:
    """Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    .. math:: \\theta_t = \\theta - \\epsilon_t (\\hat m_t / (\\sqrt{\\hat v_t} + \\delta) + \\lambda \\theta)

    torch.optim.AdamW multiplies the decay by the learning rate the same way
    (``p <- p (1 - lr wd)``), so the numbers agree for the same ``weight_decay``.
    """
    return _with_lr(
        adaptive.scale_by_adam(
            b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype
        ),
        regularization.add_decayed_weights(weight_decay, mask),
        learning_rate=learning_rate,
    )


def adamax(
    learning_rate: ScalarOrSchedule, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> GradientTransformationExtraArgs:
    """Adamax (Kingma & Ba 2014, Sec. 7.1): Adam with an infinity-norm second moment."""
    return _with_lr(adaptive.scale_by_adamax(b1, b2, eps), learning_rate=learning_rate)


nadam = functools.partial(adam, nesterov=True)
"""NAdam (Dozat 2016): ``adam(..., nesterov=True)``, optax's numbers.

.. math::
    u_t = -\\epsilon \\frac{\\beta_1 m_t / (1-\\beta_1^{t+1}) + (1-\\beta_1) g_t / (1-\\beta_1^t)}
    {\\sqrt{v_t / (1-\\beta_2^t)} + \\delta}

Takes every argument of :func:`adam` except ``nesterov``.

Example:
  >>> import jax.numpy as jnp, jaxopt_dl as jdl
  >>> state = jdl.nadam(1e-3).init(jnp.zeros(3))

References:
  Dozat 2016, Incorporating Nesterov Momentum into Adam; optax.nadam.
"""
nadam.__doc__ = "NAdam (Dozat 2016): ``adam(..., nesterov=True)``."


def amsgrad(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Optional[Any] = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> GradientTransformationExtraArgs:
    """AMSGrad (Reddi et al. 2018): Adam with a non-decreasing second moment."""
    return _with_lr(
        adaptive.scale_by_amsgrad(
            b1, b2, eps, eps_root, mu_dtype, bias_correction_mu, bias_correction_nu
        ),
        learning_rate=learning_rate,
    )


def noisy_sgd(
    learning_rate: ScalarOrSchedule,
    eta: float = 0.01,
    gamma: float = 0.55,
    key: Union[jax.Array, int, None] = None,
) -> GradientTransformationExtraArgs:
    """SGD with annealed Gaussian gradient noise (Neelakantan et al. 2015)."""
    return _with_lr(regularization.add_noise(eta, gamma, key), learning_rate=learning_rate)


def _validated(factory: Callable, checks: Callable[[dict], None]) -> Callable:
    """Wrap an optax alias so its Python-number hyperparameters are checked on entry."""

    @functools.wraps(factory)
    def build(*args, **kwargs):
        bound = inspect.signature(factory).bind(*args, **kwargs)
        bound.apply_defaults()
        checks(bound.arguments)
        return factory(*args, **kwargs)

    return build


def _check_lr_and_decays(*decays: str) -> Callable[[dict], None]:
    def checks(arguments):
        _core.check_learning_rate(arguments["learning_rate"])
        for name in decays:
            _core.check_decay(name, arguments[name])

    return checks


lamb = _validated(optax.lamb, _check_lr_and_decays("b1", "b2"))
"""LAMB (You et al. 2020): optax.lamb, its arguments and numbers, inputs validated.

Adam's direction plus weight decay, rescaled per layer by the trust ratio
``||w|| / ||u||``. ``learning_rate``, ``b1`` and ``b2`` are checked when built
(``ValueError`` naming the argument).

References:
  You et al. 2020, Large Batch Optimization for Deep Learning; optax.lamb.
"""
lion = _validated(optax.lion, _check_lr_and_decays("b1", "b2"))
"""Lion (Chen et al. 2023): optax.lion, its arguments and numbers, inputs validated.

.. math:: u_t = -\\epsilon\\, \\mathrm{sign}(\\beta_1 m_{t-1} + (1-\\beta_1) g_t),\\quad
    m_t = \\beta_2 m_{t-1} + (1-\\beta_2) g_t

References:
  Chen et al. 2023, Symbolic Discovery of Optimization Algorithms; optax.lion.
"""
adafactor = _validated(optax.adafactor, lambda a: _core.check_learning_rate(a["learning_rate"]))
"""Adafactor (Shazeer & Stern 2018): optax.adafactor, its arguments and numbers.

Factored second moments (row and column averages) for matrices, so the state costs
``O(n + m)`` instead of ``O(nm)``; ``learning_rate`` is checked when built.

References:
  Shazeer & Stern 2018, Adafactor; optax.adafactor.
"""
