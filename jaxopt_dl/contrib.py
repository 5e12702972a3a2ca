"""Optimizers beyond the lectures: the methods people ask for, with jdl's validation.

Two kinds live here:

* methods torch has and optax lacks or computes differently: :func:`radam`,
  :func:`rprop`, :func:`asgd` and :func:`torch_nadam`, written out to give
  ``torch.optim``'s numbers with torch's defaults;
* methods optax already has: :func:`adabelief`, :func:`yogi`, :func:`lars`,
  :func:`sam`, :func:`lookahead`, :func:`schedule_free_sgd`,
  :func:`schedule_free_adamw` and :func:`muon` -- optax's code and numbers, with the
  hyperparameters checked when the optimizer is built (``ValueError`` naming the
  argument and its value; traced values pass, so ``vmap`` over hyperparameters works).

Plus averages of the parameters, as ``torch.optim.swa_utils.AveragedModel`` (SWA and
EMA) and Keras's ``use_ema`` do them: :func:`param_averaging` and
:func:`averaged_params`.

The lectures (J. Petersen, "Optimization in Deep Learning"; R. Neychev, "Optimization
and regularization in Deep Learning") stop at Adam and its close relatives; these are the
methods users of torch and optax reach for next.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib

from jaxopt_dl import _core
from jaxopt_dl._core import GradientTransformation, GradientTransformationExtraArgs

__all__ = [
    "radam",
    "rprop",
    "asgd",
    "ASGDState",
    "asgd_average",
    "torch_nadam",
    "TorchNAdamState",
    "adabelief",
    "yogi",
    "lars",
    "sam",
    "lookahead",
    "schedule_free_sgd",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "muon",
    "ParamAverageState",
    "param_averaging",
    "averaged_params",
]


def _count(name: str, value: Any, low: int = 1) -> Any:
    """``value`` checked as a whole number ``>= low``; a Python number comes back as int."""
    _core.check_int(name, value, low)
    return int(value) if _core.is_python_number(value) else value


def _check_weight_decay(weight_decay: Any) -> None:
    _core.check_nonnegative("weight_decay", weight_decay)
    _core.check_finite("weight_decay", weight_decay)


def _check_not_schedule(name: str, value: Any, why: str) -> None:
    if callable(value):
        raise TypeError(f"{name} must be a number or an array ({why}), got {name}={value!r}")


def _decays(weight_decay: Any) -> bool:
    """Whether a weight decay is applied: anything but a Python zero (traced values do)."""
    return not (_core.is_python_number(weight_decay) and weight_decay == 0)


def _need_params(params: Any, name: str) -> None:
    if params is None:
        raise ValueError(f"{name} needs the params: call update(updates, state, params)")


def _add_in_dtype(update: jax.Array, decay: jax.Array) -> jax.Array:
    """``update + decay`` in the update's dtype."""
    return (update + decay).astype(update.dtype)


def _torch_weight_decay(grads, params, learning_rate, weight_decay, decoupled):
    """torch's two weight decays: ``g + wd w`` (coupled) or ``w (1 - lr wd)`` (decoupled).

    Returns ``(grads, decay_update)``: the gradient the method sees and the update the
    decoupled decay adds to the step (zeros when coupled).
    """
    if decoupled:
        return grads, jax.tree.map(lambda p: -learning_rate * weight_decay * p, params)
    grads = jax.tree.map(lambda g, p: g + weight_decay * p, grads, params)
    return grads, jax.tree.map(jnp.zeros_like, params)


# --------------------------------------------------------------------------
# torch's methods, written out
# --------------------------------------------------------------------------


def _bernoulli_tail(x: jax.Array) -> jax.Array:
    """``x / (e^x - 1) - 1 + x/2`` to float32 relative accuracy (series below x = 1)."""
    x2 = x * x
    series = x2 * (1 / 12 - x2 * (1 / 720 - x2 * (1 / 30240 - x2 * (1 / 1209600 - x2 / 47900160))))
    safe = jnp.maximum(x, 1.0)
    return jnp.where(x < 1, series, safe / jnp.expm1(safe) - 1 + safe / 2)


def _radam_rho(t: jax.Array, b2: Any) -> jax.Array:
    """RAdam's ``rho_t = rho_inf - 2 t b2^t / (1 - b2^t)`` without float32 cancellation.

    Written as ``(2/q - 2/l) - 1 + t - (2/l) B(t l)`` with ``q = 1 - b2``,
    ``l = -log b2`` and ``B`` the Bernoulli tail of ``x / (e^x - 1)``: the direct form
    subtracts two numbers near ``rho_inf`` (~2000) and loses the digits that decide
    the rectification near ``rho_t = 5``. The constants are float64 when ``b2`` is a
    Python number.
    """
    xp = np if _core.is_python_number(b2) else jnp
    q = 1 - xp.asarray(b2, xp.float64 if xp is np else jnp.float32)
    log_b2 = -xp.log1p(-q)
    offset = 2 * (log_b2 - q) / (q * log_b2) - 1
    log_b2_32 = jnp.asarray(log_b2, jnp.float32)
    return (
        jnp.asarray(offset, jnp.float32)
        + t
        - jnp.asarray(2 / log_b2, jnp.float32) * _bernoulli_tail(t * log_b2_32)
    )


def radam(
    learning_rate: _core.ScalarOrSchedule = 1e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
) -> GradientTransformationExtraArgs:
    """RAdam (Liu et al. 2020) as ``torch.optim.RAdam``: same defaults, same numbers.

    .. math::
        m_t = \\beta_1 m + (1-\\beta_1) g,\\quad v_t = \\beta_2 v + (1-\\beta_2) g^2,\\quad
        \\hat m_t = m_t / (1-\\beta_1^t),\\\\
        \\rho_\\infty = \\frac{2}{1-\\beta_2} - 1,\\quad
        \\rho_t = \\rho_\\infty - \\frac{2 t \\beta_2^t}{1-\\beta_2^t},\\\\
        \\theta_t = \\theta - \\alpha\\, \\hat m_t\\, r_t\\,
            \\frac{\\sqrt{1-\\beta_2^t}}{\\sqrt{v_t} + \\epsilon}
            \\text{ if } \\rho_t > 5, \\text{ else } \\theta - \\alpha \\hat m_t,\\\\
        r_t = \\sqrt{\\frac{(\\rho_t-4)(\\rho_t-2)\\rho_\\infty}
                          {(\\rho_\\infty-4)(\\rho_\\infty-2)\\rho_t}}

    Where the numbers differ from ``optax.radam``: torch adds ``eps`` to ``sqrt(v_t)``
    before the bias correction ``sqrt(1 - b2^t)`` is applied, optax after it (the
    effective eps differs by that factor), and torch's default learning rate is 1e-3.
    The state is optax's ``ScaleByAdamState(count, mu, nu)``. Complex parameters take
    ``|g|^2`` in ``v_t``, as optax's Adam family does (torch steps the real and
    imaginary parts as separate coordinates).

    Args:
      learning_rate: the step size ``alpha`` (a number, array or schedule).
      b1: decay of the first moment, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to ``sqrt(v_t)``, non-negative.
      weight_decay: torch's ``weight_decay``: an L2 term ``wd * theta`` added to the
        gradient, or with ``decoupled_weight_decay`` a decay ``theta (1 - alpha wd)``
        (AdamW-style).
      decoupled_weight_decay: decay the weights directly instead of through the gradient.

    Returns:
      A ``GradientTransformationExtraArgs`` whose ``update`` needs ``params`` when
      ``weight_decay`` is nonzero.

    Example:
      >>> import jax.numpy as jnp, jaxopt_dl as jdl
      >>> opt = jdl.radam()
      >>> p = {"w": jnp.ones(2)}
      >>> u, s = opt.update({"w": jnp.ones(2)}, opt.init(p), p)
      >>> [round(v, 6) for v in u["w"].tolist()]  # rho_1 <= 5: plain bias-corrected momentum
      [-0.001, -0.001]

    References:
      Liu et al. 2020, On the Variance of the Adaptive Learning Rate and Beyond;
      ``torch.optim.RAdam`` (torch 2.13).
    """
    _core.check_learning_rate(learning_rate)
    _core.check_decay("b1", b1)
    _core.check_decay("b2", b2)
    _core.check_nonnegative("eps", eps)
    _check_weight_decay(weight_decay)
    _core.check_bool("decoupled_weight_decay", decoupled_weight_decay)
    decays = _decays(weight_decay)

    def init_fn(params):
        return optax.ScaleByAdamState(
            count=_core.zero_count(),
            mu=_core.tree_zeros_like(params),
            nu=_core.tree_second_moment_like(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        count = _core.safe_increment(state.count)
        lr = _core.evaluate(learning_rate, state.count)
        grads = updates
        if decays:
            _need_params(params, "radam with weight_decay")
            grads, decay = _torch_weight_decay(
                grads, params, lr, weight_decay, decoupled_weight_decay
            )
        mu = _core.tree_cast_like(_core.tree_ema(grads, state.mu, b1), state.mu)
        nu = _core.tree_cast_like(_core.tree_ema_sq_norm(grads, state.nu, b2), state.nu)
        t = count.astype(jnp.float32)
        correction1 = 1 - b1**t
        correction2 = 1 - b2**t
        rho_inf = 2 / (1 - b2) - 1
        rho_t = _radam_rho(t, b2)
        rect = jnp.sqrt(
            (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        )
        rectified = rho_t > 5

        def step(g, m, v):
            m_hat = m / correction1
            adaptive = jnp.sqrt(correction2) / (jnp.sqrt(v) + eps)
            return (-lr * jnp.where(rectified, m_hat * adaptive * rect, m_hat)).astype(g.dtype)

        new_updates = jax.tree.map(step, updates, mu, nu)
        if decays:
            new_updates = jax.tree.map(_add_in_dtype, new_updates, decay)
        return new_updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformationExtraArgs(init_fn, update_fn)


def rprop(
    learning_rate: float = 0.01,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> GradientTransformationExtraArgs:
    """Rprop (Riedmiller & Braun 1993) as ``torch.optim.Rprop``: same defaults and numbers.

    Per coordinate, a step size that grows by ``eta_plus`` while the gradient keeps its
    sign and shrinks by ``eta_minus`` when it flips (then that coordinate does not move
    and its gradient is forgotten for the next comparison):

    .. math::
        s_t = \\mathrm{clip}(s_{t-1}\\cdot\\{\\eta_+ \\text{ if } g_t g_{t-1} > 0;\\;
              \\eta_- \\text{ if } g_t g_{t-1} < 0;\\; 1 \\text{ else}\\},
              s_{\\min}, s_{\\max}),\\quad
        \\theta_t = \\theta - s_t\\,\\mathrm{sign}(g_t)\\,[g_t g_{t-1} \\ge 0]

    torch's names map as ``lr -> learning_rate``, ``etas=(eta_minus, eta_plus)``,
    ``step_sizes=(min_step_size, max_step_size)``. ``optax.rprop`` applies each step
    one iteration late (its first update is zero); this one moves on the first step,
    as torch does. The state is optax's ``ScaleByRpropState(step_sizes,
    prev_updates)``, ``prev_updates`` holding torch's ``prev`` (the last gradient, zeroed
    where the sign flipped). Full-batch only: the sign comparison is meaningless on
    noisy minibatch gradients.

    Args:
      learning_rate: the initial step size of every coordinate, positive.
      eta_minus: the factor on a sign flip, in (0, 1].
      eta_plus: the factor while the sign holds, at least 1.
      min_step_size: the smallest step size, non-negative.
      max_step_size: the largest step size, at least ``min_step_size``.

    Returns:
      A ``GradientTransformationExtraArgs``.

    Example:
      >>> import jax.numpy as jnp, jaxopt_dl as jdl
      >>> opt = jdl.rprop()
      >>> p = jnp.ones(2)
      >>> u, s = opt.update(jnp.array([1.0, -1.0]), opt.init(p))
      >>> [round(v, 6) for v in u.tolist()]
      [-0.01, 0.01]

    References:
      Riedmiller & Braun 1993, A Direct Adaptive Method for Faster Backpropagation
      Learning: The RPROP Algorithm; ``torch.optim.Rprop`` (torch 2.13).
    """
    _check_not_schedule("learning_rate", learning_rate, "Rprop's initial step size")
    _check_rprop(locals())

    def init_fn(params):
        return optax.ScaleByRpropState(
            step_sizes=jax.tree.map(lambda p: jnp.full_like(p, learning_rate), params),
            prev_updates=_core.tree_zeros_like(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args

        def one(g, prev, step_size):
            product = g * prev
            factor = jnp.where(product > 0, eta_plus, jnp.where(product < 0, eta_minus, 1.0))
            step_size = jnp.clip(step_size * factor, min_step_size, max_step_size)
            g = jnp.where(factor == eta_minus, jnp.zeros_like(g), g)
            return -step_size * jnp.sign(g), g, step_size

        triples = jax.tree.map(one, updates, state.prev_updates, state.step_sizes)
        outer = jax.tree.structure(updates)
        new_updates, prev, step_sizes = jax.tree.transpose(
            outer, jax.tree.structure((0, 0, 0)), triples
        )
        return new_updates, optax.ScaleByRpropState(step_sizes=step_sizes, prev_updates=prev)

    return GradientTransformationExtraArgs(init_fn, update_fn)


def _check_rprop(a: dict) -> None:
    _core.check_positive("learning_rate", a["learning_rate"])
    _core.check_finite("learning_rate", a["learning_rate"])
    _core.check_in_range("eta_minus", a["eta_minus"], 0.0, 1.0)
    _core.check_positive("eta_minus", a["eta_minus"])
    _core.check_in_range("eta_plus", a["eta_plus"], 1.0, float("inf"))
    _core.check_nonnegative("min_step_size", a["min_step_size"])
    _core.check_in_range(
        "max_step_size",
        a["max_step_size"],
        float(a["min_step_size"]) if _core.is_python_number(a["min_step_size"]) else 0.0,
        float("inf"),
    )


class ASGDState(NamedTuple):
    """The state of :func:`asgd`, torch's ``ASGD`` state as arrays.

    Attributes:
      count: steps taken (int32).
      eta: the step size the next step applies.
      mu: the averaging coefficient the next step applies.
      ax: the running average of the iterates (:func:`asgd_average`).
    """

    count: jax.Array
    eta: jax.Array
    mu: jax.Array
    ax: Any


def asgd(
    learning_rate: float = 0.01,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
    weight_decay: float = 0.0,
) -> GradientTransformationExtraArgs:
    """Averaged SGD (Polyak & Juditsky 1992) as ``torch.optim.ASGD``: same defaults and numbers.

    .. math::
        \\theta_t = \\theta_{t-1}(1 - \\lambda \\eta_{t-1}) - \\eta_{t-1} g_t,\\quad
        \\bar\\theta_t = \\bar\\theta_{t-1} + \\mu_{t-1}(\\theta_t - \\bar\\theta_{t-1}),\\\\
        \\eta_t = \\frac{\\alpha_0}{(1 + \\lambda \\alpha_0 t)^{\\alpha}},\\quad
        \\mu_t = \\frac{1}{\\max(1, t - t_0)}

    with ``eta_0 = learning_rate`` and ``mu_0 = 1``. The parameters follow the decaying
    SGD iterates; the average ``theta_bar`` (which starts averaging after ``t0`` steps)
    is kept in the state: read it with :func:`asgd_average` and evaluate with it, as
    torch users do with ``optimizer.state[p]["ax"]``.

    Args:
      learning_rate: the initial step size ``alpha_0``, non-negative (a number: the
        decay of ``eta`` is built from it).
      lambd: the decay term ``lambda``, non-negative.
      alpha: the power of the step-size decay, non-negative.
      t0: the step after which averaging starts, non-negative.
      weight_decay: an L2 term ``wd * theta`` added to the gradient (torch's coupled
        ``weight_decay``), non-negative.

    Returns:
      A ``GradientTransformationExtraArgs`` whose ``update`` needs ``params``.

    Example:
      >>> import jax.numpy as jnp, jaxopt_dl as jdl
      >>> opt = jdl.asgd(0.1, lambd=0.0)
      >>> p = jnp.ones(2)
      >>> u, s = opt.update(jnp.ones(2), opt.init(p), p)
      >>> [round(v, 6) for v in u.tolist()], [round(v, 6) for v in jdl.asgd_average(s).tolist()]
      ([-0.1, -0.1], [0.9, 0.9])

    References:
      Polyak & Juditsky 1992, Acceleration of Stochastic Approximation by Averaging;
      Bottou 2012, Stochastic Gradient Descent Tricks; ``torch.optim.ASGD``.
    """
    _check_not_schedule("learning_rate", learning_rate, "ASGD builds its own decay from it")
    _core.check_learning_rate(learning_rate)
    _core.check_nonnegative("lambd", lambd)
    _core.check_nonnegative("alpha", alpha)
    _core.check_nonnegative("t0", t0)
    _check_weight_decay(weight_decay)

    def init_fn(params):
        return ASGDState(
            count=_core.zero_count(),
            eta=jnp.asarray(learning_rate, jnp.float32),
            mu=jnp.ones([], jnp.float32),
            ax=_core.tree_zeros_like(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _need_params(params, "asgd")
        count = _core.safe_increment(state.count)
        eta, mu = state.eta, state.mu
        grads = updates
        if _decays(weight_decay):
            grads = jax.tree.map(lambda g, p: g + weight_decay * p, grads, params)
        new_params = jax.tree.map(lambda p, g: p * (1 - lambd * eta) - eta * g, params, grads)
        ax = jax.tree.map(
            lambda a, p: jnp.where(mu == 1, p, a + (p - a) * mu).astype(a.dtype),
            state.ax,
            new_params,
        )
        t = count.astype(jnp.float32)
        new_state = ASGDState(
            count=count,
            eta=(learning_rate / (1 + lambd * learning_rate * t) ** alpha).astype(jnp.float32),
            mu=(1 / jnp.maximum(1.0, t - t0)).astype(jnp.float32),
            ax=ax,
        )
        return jax.tree.map(
            lambda g, new, old: (new - old).astype(g.dtype), updates, new_params, params
        ), new_state

    return GradientTransformationExtraArgs(init_fn, update_fn)


def asgd_average(state: Any) -> Any:
    """The averaged iterates ``theta_bar`` of :func:`asgd` (torch's ``state[p]["ax"]``).

    Args:
      state: the optimizer state of :func:`asgd`, alone or inside a chain.

    Returns:
      The average, in the params' structure.
    """
    found = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, ASGDState))
        if isinstance(s, ASGDState)
    ]
    if len(found) != 1:
        raise ValueError(f"state must hold exactly one ASGDState, got state with {len(found)}")
    return found[0].ax


class TorchNAdamState(NamedTuple):
    """The state of :func:`torch_nadam`.

    Attributes:
      count: steps taken (int32).
      mu_product: the product of the momentum coefficients ``mu_1 ... mu_t``.
      mu: the first moment (torch's ``exp_avg``).
      nu: the second moment (torch's ``exp_avg_sq``).
    """

    count: jax.Array
    mu_product: jax.Array
    mu: Any
    nu: Any


def torch_nadam(
    learning_rate: _core.ScalarOrSchedule = 2e-3,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum_decay: float = 4e-3,
    decoupled_weight_decay: bool = False,
) -> GradientTransformationExtraArgs:
    """NAdam (Dozat 2016) as ``torch.optim.NAdam``, with its momentum-decay schedule.

    .. math::
        \\mu_t = \\beta_1 (1 - \\tfrac12 \\cdot 0.96^{t \\psi}),\\quad
        m_t = \\beta_1 m + (1-\\beta_1) g,\\quad v_t = \\beta_2 v + (1-\\beta_2) g^2,\\\\
        \\theta_t = \\theta - \\alpha \\Big(
            \\frac{(1-\\mu_t)\\, g}{1 - \\prod_{i\\le t}\\mu_i}
            + \\frac{\\mu_{t+1}\\, m_t}{1 - \\prod_{i\\le t+1}\\mu_i}\\Big)
            \\Big/ \\Big(\\sqrt{v_t / (1-\\beta_2^t)} + \\epsilon\\Big)

    with ``psi = momentum_decay``. ``jdl.nadam`` (like ``optax.nadam``) uses a constant
    ``beta1`` instead of Dozat's schedule ``mu_t``; the two agree only as
    ``momentum_decay -> inf``. Use this one to reproduce torch's numbers.

    Args:
      learning_rate: the step size ``alpha`` (a number, array or schedule).
      b1: the base momentum ``beta1``, in [0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root, non-negative.
      weight_decay: torch's ``weight_decay`` (L2 on the gradient, or decoupled with
        ``decoupled_weight_decay``), non-negative.
      momentum_decay: ``psi`` of the momentum schedule, non-negative (torch's 4e-3).
      decoupled_weight_decay: decay the weights as ``theta (1 - alpha wd)`` (NAdamW).

    Returns:
      A ``GradientTransformationExtraArgs`` whose ``update`` needs ``params`` when
      ``weight_decay`` is nonzero.

    Example:
      >>> import jax.numpy as jnp, jaxopt_dl as jdl
      >>> opt = jdl.torch_nadam()
      >>> p = jnp.ones(1)
      >>> u, s = opt.update(jnp.ones(1), opt.init(p), p)
      >>> round(float(u[0]), 6)  # g/denom plus Dozat's look-ahead momentum term
      -0.002113

    References:
      Dozat 2016, Incorporating Nesterov Momentum into Adam; ``torch.optim.NAdam``
      (torch 2.13).
    """
    _core.check_learning_rate(learning_rate)
    _core.check_decay("b1", b1)
    _core.check_decay("b2", b2)
    _core.check_nonnegative("eps", eps)
    _check_weight_decay(weight_decay)
    _core.check_nonnegative("momentum_decay", momentum_decay)
    _core.check_finite("momentum_decay", momentum_decay)
    _core.check_bool("decoupled_weight_decay", decoupled_weight_decay)
    decays = _decays(weight_decay)

    def schedule(t):
        return b1 * (1 - 0.5 * 0.96 ** (t * momentum_decay))

    def init_fn(params):
        return TorchNAdamState(
            count=_core.zero_count(),
            mu_product=jnp.ones([], jnp.float32),
            mu=_core.tree_zeros_like(params),
            nu=_core.tree_second_moment_like(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        count = _core.safe_increment(state.count)
        lr = _core.evaluate(learning_rate, state.count)
        grads = updates
        if decays:
            _need_params(params, "torch_nadam with weight_decay")
            grads, decay = _torch_weight_decay(
                grads, params, lr, weight_decay, decoupled_weight_decay
            )
        t = count.astype(jnp.float32)
        mu_t, mu_next = schedule(t), schedule(t + 1)
        mu_product = state.mu_product * mu_t
        correction2 = 1 - b2**t
        mu = jax.tree.map(lambda g, m: (m + (g - m) * (1 - b1)).astype(m.dtype), grads, state.mu)
        nu = _core.tree_cast_like(_core.tree_ema_sq_norm(grads, state.nu, b2), state.nu)

        def step(u, g, m, v):
            denom = jnp.sqrt(v / correction2) + eps
            return (
                (-lr * (1 - mu_t) / (1 - mu_product)) * g / denom
                + (-lr * mu_next / (1 - mu_product * mu_next)) * m / denom
            ).astype(u.dtype)

        new_updates = jax.tree.map(step, updates, grads, mu, nu)
        if decays:
            new_updates = jax.tree.map(_add_in_dtype, new_updates, decay)
        return new_updates, TorchNAdamState(count, mu_product, mu, nu)

    return GradientTransformationExtraArgs(init_fn, update_fn)


# --------------------------------------------------------------------------
# optax's methods, validated
# --------------------------------------------------------------------------


def adabelief(
    learning_rate: _core.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
) -> GradientTransformationExtraArgs:
    """AdaBelief (Zhuang et al. 2020): ``optax.adabelief``, its defaults and numbers, validated.

    Adam whose second moment tracks the "belief" ``(g - m)^2`` (the gradient's deviation
    from its running mean) instead of ``g^2``:

    .. math::
        m_t = \\beta_1 m + (1-\\beta_1) g,\\quad
        s_t = \\beta_2 s + (1-\\beta_2)(g - m_t)^2 + \\epsilon_{root},\\quad
        \\theta_t = \\theta - \\alpha \\frac{\\hat m_t}{\\sqrt{\\hat s_t} + \\epsilon}

    Args:
      learning_rate: the step size ``alpha`` (a number, array or schedule).
      b1: decay of the first moment, in [0, 1).
      b2: decay of the belief moment, in [0, 1).
      eps: added to the root, non-negative.
      eps_root: added inside the moment, non-negative.
      nesterov: Nesterov-style first moment.

    Returns:
      A ``GradientTransformationExtraArgs`` (state: optax's ``ScaleByBeliefState``).

    Example:
      >>> import jax.numpy as jnp, jaxopt_dl as jdl
      >>> opt = jdl.adabelief(1e-3)
      >>> state = opt.init(jnp.ones(3))

    References:
      Zhuang et al. 2020, AdaBelief Optimizer: Adapting Stepsizes by the Belief in
      Observed Gradients; ``optax.adabelief``.
    """
    _core.check_learning_rate(learning_rate)
    _core.check_decay("b1", b1)
    _core.check_decay("b2", b2)
    _core.check_nonnegative("eps", eps)
    _core.check_nonnegative("eps_root", eps_root)
    return optax.adabelief(learning_rate, b1, b2, eps, eps_root, nesterov=nesterov)


def yogi(
    learning_rate: _core.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-3,
) -> GradientTransformationExtraArgs:
    """Yogi (Zaheer et al. 2018): ``optax.yogi``, its defaults and numbers, validated.

    Adam with an additive second-moment update that cannot grow the effective step
    as fast:

    .. math::
        v_t = v - (1-\\beta_2)\\,\\mathrm{sign}(v - g^2)\\, g^2,\\quad
        \\theta_t = \\theta - \\alpha \\frac{\\hat m_t}{\\sqrt{\\hat v_t} + \\epsilon}

    (optax starts ``v`` at 1e-6, as the paper's code does.)

    Args:
      learning_rate: the step size ``alpha`` (a number, array or schedule).
      b1: decay of the first moment, in [0, 1).
      b2: rate of the second-moment update, in [0, 1).
      eps: added to the root, non-negative (Yogi's default 1e-3 is much larger than
        Adam's).

    Returns:
      A ``GradientTransformationExtraArgs`` (state: optax's ``ScaleByAdamState``).

    Example:
      >>> import jax.numpy as jnp, jaxopt_dl as jdl
      >>> state = jdl.yogi(1e-2).init(jnp.ones(3))

    References:
      Zaheer et al. 2018, Adaptive Methods for Nonconvex Optimization; ``optax.yogi``.
    """
    _core.check_learning_rate(learning_rate)
    _core.check_decay("b1", b1)
    _core.check_decay("b2", b2)
    _core.check_nonnegative("eps", eps)
    return optax.yogi(learning_rate, b1, b2, eps)


def lars(
    learning_rate: _core.ScalarOrSchedule,
    weight_decay: float = 0.0,
    weight_decay_mask: Any = True,
    trust_coefficient: float = 0.001,
    eps: float = 0.0,
    trust_ratio_mask: Any = True,
    momentum: float = 0.9,
    nesterov: bool = False,
) -> GradientTransformationExtraArgs:
    """LARS (You et al. 2017): ``optax.lars``, its defaults and numbers, validated.

    Per layer, the gradient plus weight decay is rescaled by the trust ratio, then
    SGD with momentum:

    .. math::
        u = g + \\lambda \\theta,\\quad
        u \\leftarrow \\eta \\frac{\\|\\theta\\|}{\\|u\\| + \\epsilon}\\, u,\\quad
        m_t = \\beta m + u,\\quad \\theta_t = \\theta - \\alpha m_t

    Args:
      learning_rate: the global step size ``alpha`` (a number, array or schedule).
      weight_decay: ``lambda``, non-negative.
      weight_decay_mask: a tree of booleans (or a function of the params) selecting the
        leaves that decay.
      trust_coefficient: ``eta``, non-negative.
      eps: added to the update norm, non-negative.
      trust_ratio_mask: a tree of booleans (or a function) selecting the leaves that are
        rescaled (exclude biases and norm scales as the paper does).
      momentum: ``beta``, in [0, 1).
      nesterov: Nesterov momentum.

    Returns:
      A ``GradientTransformationExtraArgs``.

    Example:
      >>> import jax.numpy as jnp, jaxopt_dl as jdl
      >>> state = jdl.lars(0.1).init({"w": jnp.ones((2, 2))})

    References:
      You et al. 2017, Large Batch Training of Convolutional Networks; ``optax.lars``.
    """
    _core.check_learning_rate(learning_rate)
    _core.check_decay("momentum", momentum)
    for name, value in (
        ("weight_decay", weight_decay),
        ("trust_coefficient", trust_coefficient),
        ("eps", eps),
    ):
        _core.check_nonnegative(name, value)
    _core.check_given("trust_ratio_mask", trust_ratio_mask, "a pytree of booleans or a function")
    _core.check_bool("nesterov", nesterov)
    return optax.lars(
        learning_rate,
        weight_decay,
        weight_decay_mask,
        trust_coefficient,
        eps,
        trust_ratio_mask,
        momentum,
        nesterov,
    )


def sam(
    optimizer: GradientTransformation,
    adv_optimizer: GradientTransformation,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
    batch_axis_name: Optional[str] = None,
) -> GradientTransformationExtraArgs:
    """Sharpness-aware minimization (Foret et al. 2021): ``optax.contrib.sam``, validated.

    Every ``sync_period`` steps: ``sync_period - 1`` ascent steps of ``adv_optimizer``
    (typically ``chain(optax.contrib.normalize(), jdl.sgd(rho))``, whose update optax
    negates: the adversarial perturbation ``theta + rho g/||g||``), then
    one descent step of ``optimizer`` with the gradient at the perturbed point, taken
    from the original params:

    .. math:: \\theta_{t+1} = \\theta_t - \\alpha\\, \\nabla L\\Big(\\theta_t +
              \\rho \\frac{\\nabla L(\\theta_t)}{\\|\\nabla L(\\theta_t)\\|}\\Big)

    In the default (non-opaque) mode each call is one gradient evaluation and the
    training loop sees the perturbed params on the ascent steps; with
    ``opaque_mode=True`` ``update`` needs ``grad_fn=`` and does the whole cycle in one
    call.

    Args:
      optimizer: the outer (descent) optimizer.
      adv_optimizer: the inner (ascent) optimizer.
      sync_period: steps per cycle (ascent steps + 1), a positive integer.
      reset_state: reset ``adv_optimizer``'s state at each cycle.
      opaque_mode: do the ascent steps inside one ``update`` (needs ``grad_fn``).
      batch_axis_name: ``pmap``/``shard_map`` axis for averaging the ascent gradients.

    Returns:
      A ``GradientTransformationExtraArgs``.

    Example:
      >>> import jax.numpy as jnp, optax, jaxopt_dl as jdl
      >>> opt = jdl.sam(jdl.sgd(0.1), jdl.chain(optax.contrib.normalize(), jdl.sgd(0.05)))
      >>> state = opt.init(jnp.ones(3))

    References:
      Foret et al. 2021, Sharpness-Aware Minimization for Efficiently Improving
      Generalization; ``optax.contrib.sam``.
    """
    _core.check_transform("optimizer", optimizer)
    _core.check_transform("adv_optimizer", adv_optimizer)
    sync_period = _count("sync_period", sync_period)
    _core.check_bool("reset_state", reset_state)
    _core.check_bool("opaque_mode", opaque_mode)
    return optax.contrib.sam(
        optimizer, adv_optimizer, sync_period, reset_state, opaque_mode, batch_axis_name
    )


def lookahead(
    fast_optimizer: GradientTransformation,
    sync_period: int = 5,
    slow_step_size: float = 0.5,
    reset_state: bool = False,
) -> GradientTransformation:
    """Lookahead (Zhang et al. 2019): ``optax.lookahead``, the paper's defaults, validated.

    The fast weights take ``sync_period`` steps of ``fast_optimizer``; then the slow
    weights move part of the way towards them and the fast weights restart there:

    .. math:: \\phi_{t+1} = \\phi_t + \\alpha (\\theta_{t,k} - \\phi_t),\\quad
              \\theta_{t+1,0} = \\phi_{t+1}

    The params must be ``optax.LookaheadParams(fast, slow)``
    (``optax.LookaheadParams.init_synced(params)``) and the gradients those of the fast
    params: ``update(grad(loss)(params.fast), state, params)``; evaluate with
    ``params.slow``.

    Args:
      fast_optimizer: the inner optimizer.
      sync_period: fast steps per slow step ``k``, a positive integer (paper: 5).
      slow_step_size: ``alpha`` in [0, 1] (paper: 0.5).
      reset_state: reset the fast optimizer's state at each synchronization.

    Returns:
      A ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp, optax, jaxopt_dl as jdl
      >>> opt = jdl.lookahead(jdl.adam(1e-3))
      >>> state = opt.init(optax.LookaheadParams.init_synced(jnp.ones(3)))

    References:
      Zhang et al. 2019, Lookahead Optimizer: k steps forward, 1 step back;
      ``optax.lookahead``.
    """
    _core.check_transform("fast_optimizer", fast_optimizer)
    sync_period = _count("sync_period", sync_period)
    _core.check_in_range("slow_step_size", slow_step_size, 0.0, 1.0)
    _core.check_bool("reset_state", reset_state)
    return optax.lookahead(fast_optimizer, sync_period, slow_step_size, reset_state)


def schedule_free_sgd(
    learning_rate: float = 1.0,
    warmup_steps: Optional[int] = None,
    b1: float = 0.9,
    weight_decay: Optional[float] = None,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> GradientTransformationExtraArgs:
    """Schedule-free SGD (Defazio et al. 2024): ``optax.contrib.schedule_free_sgd``, validated.

    No learning-rate schedule: the gradient is taken at an interpolation ``y`` of the
    SGD iterate ``z`` and the running average ``x``, which is what you evaluate:

    .. math::
        y_t = (1-\\beta) z_t + \\beta x_t,\\quad z_{t+1} = z_t - \\gamma \\nabla f(y_t),\\quad
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}

    The params the loop holds are ``y``; get ``x`` for evaluation with
    :func:`schedule_free_eval_params`.

    Args:
      learning_rate: the step size ``gamma`` (a number or array).
      warmup_steps: linear warmup of ``gamma`` over this many steps (positive) or None.
      b1: the interpolation ``beta``, in (0, 1).
      weight_decay: decoupled weight decay, non-negative, or None.
      weight_lr_power: the power of the rate in the averaging weights ``c_t``.
      state_dtype: dtype of the ``z`` state.

    Returns:
      A ``GradientTransformationExtraArgs`` (state: optax's ``ScheduleFreeState``).

    Example:
      >>> import jax.numpy as jnp, jaxopt_dl as jdl
      >>> opt = jdl.schedule_free_sgd(0.1)
      >>> p = jnp.ones(2)
      >>> s = opt.init(p)
      >>> jdl.schedule_free_eval_params(s, p).shape
      (2,)

    References:
      Defazio et al. 2024, The Road Less Scheduled; ``optax.contrib.schedule_free_sgd``.
    """
    warmup_steps = _check_schedule_free(learning_rate, warmup_steps, b1, weight_lr_power)
    if weight_decay is not None:
        _check_weight_decay(weight_decay)
    return optax.contrib.schedule_free_sgd(
        learning_rate, warmup_steps, b1, weight_decay, weight_lr_power, state_dtype
    )


def _check_schedule_free(learning_rate, warmup_steps, b1, weight_lr_power):
    """Check the arguments both schedule-free methods share; returns ``warmup_steps``.

    ``b1`` must be positive: the average ``x`` is recovered as ``(y - (1 - b1) z) / b1``.
    """
    _core.check_learning_rate(learning_rate)
    _core.check_decay("b1", b1)
    _core.check_positive("b1", b1)
    _core.check_nonnegative("weight_lr_power", weight_lr_power)
    return None if warmup_steps is None else _count("warmup_steps", warmup_steps)


def schedule_free_adamw(
    learning_rate: float = 0.0025,
    warmup_steps: Optional[int] = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    weight_lr_power: float = 2.0,
    state_dtype: Any = None,
) -> GradientTransformationExtraArgs:
    """Schedule-free AdamW (Defazio et al. 2024): ``optax.contrib.schedule_free_adamw``, validated.

    The schedule-free interpolation/averaging of :func:`schedule_free_sgd` with an
    Adam-normalized base step and decoupled weight decay. Evaluate with
    :func:`schedule_free_eval_params`.

    Args:
      learning_rate: the step size (a number or array).
      warmup_steps: linear warmup over this many steps (positive) or None.
      b1: the interpolation ``beta``, in (0, 1).
      b2: decay of the second moment, in [0, 1).
      eps: added to the root, non-negative.
      weight_decay: decoupled weight decay, non-negative.
      weight_lr_power: the power of the rate in the averaging weights.
      state_dtype: dtype of the ``z`` state.

    Returns:
      A ``GradientTransformationExtraArgs`` (state: optax's ``ScheduleFreeState``).

    Example:
      >>> import jax.numpy as jnp, jaxopt_dl as jdl
      >>> state = jdl.schedule_free_adamw(1e-3, warmup_steps=10).init(jnp.ones(2))

    References:
      Defazio et al. 2024, The Road Less Scheduled;
      ``optax.contrib.schedule_free_adamw``.
    """
    warmup_steps = _check_schedule_free(learning_rate, warmup_steps, b1, weight_lr_power)
    _check_weight_decay(weight_decay)
    _core.check_decay("b2", b2)
    _core.check_nonnegative("eps", eps)
    return optax.contrib.schedule_free_adamw(
        learning_rate, warmup_steps, b1, b2, eps, weight_decay, weight_lr_power, state_dtype
    )


def schedule_free_eval_params(state: Any, params: Any) -> Any:
    """The params to evaluate a schedule-free run with (the average ``x``).

    Args:
      state: the state of :func:`schedule_free_sgd` / :func:`schedule_free_adamw`.
      params: the params the training loop holds (the interpolation ``y``).

    Returns:
      ``x`` in the params' structure (``optax.contrib.schedule_free_eval_params``).
    """
    return optax.contrib.schedule_free_eval_params(state, params)


def muon(
    learning_rate: _core.ScalarOrSchedule,
    ns_coeffs: Any = (3.4445, -4.775, 2.0315),
    ns_steps: int = 5,
    beta: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    weight_decay_mask: Any = None,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    adam_b1: float = 0.9,
    adam_b2: float = 0.999,
    adam_eps_root: float = 0.0,
    adam_weight_decay: float = 0.0,
    adam_learning_rate: Optional[_core.ScalarOrSchedule] = None,
    muon_weight_dimension_numbers: Any = None,
) -> GradientTransformation:
    """Muon (Jordan et al. 2024): ``optax.contrib.muon``, its defaults and numbers, validated.

    For each matrix: Nesterov momentum, then the momentum is orthogonalized by
    ``ns_steps`` Newton-Schulz iterations (its singular values pushed towards 1) and
    scaled by ``sqrt(max(1, rows/cols))``; every other leaf (biases, scalars) takes an
    Adam step:

    .. math::
        m_t = \\beta m + g,\\quad O_t = \\mathrm{NS}_k(\\beta m_t + g),\\quad
        \\theta_t = \\theta - \\alpha\\, O_t

    Args:
      learning_rate: the step size of the matrices (a number, array or schedule).
      ns_coeffs: the Newton-Schulz polynomial's coefficients ``(a, b, c)``.
      ns_steps: Newton-Schulz iterations, a positive integer.
      beta: the momentum decay, in [0, 1).
      eps: keeps the normalization before Newton-Schulz finite, non-negative.
      weight_decay: decoupled weight decay of the matrices, non-negative.
      weight_decay_mask: leaves that decay (tree of booleans or function), or None.
      mu_dtype: dtype of the momentum.
      nesterov: Nesterov momentum.
      adaptive: scale the orthogonalized update by ``<g, O>`` (dual-norm scaling).
      adam_b1: ``b1`` of the Adam step of non-matrix leaves, in [0, 1).
      adam_b2: ``b2`` of that Adam step, in [0, 1).
      adam_eps_root: ``eps_root`` of that Adam step, non-negative.
      adam_weight_decay: decoupled weight decay of the non-matrix leaves, non-negative.
      adam_learning_rate: the Adam leaves' rate (default: ``learning_rate``).
      muon_weight_dimension_numbers: which axes of which leaves count as the matrix
        (see ``optax.contrib.MuonDimensionNumbers``), or None for all 2-D leaves.

    Returns:
      A ``GradientTransformation``.

    Example:
      >>> import jax.numpy as jnp, jaxopt_dl as jdl
      >>> state = jdl.muon(0.02).init({"w": jnp.ones((4, 3)), "b": jnp.zeros(3)})

    References:
      Jordan et al. 2024, Muon: An optimizer for hidden layers in neural networks
      (blog post); ``optax.contrib.muon``.
    """
    _core.check_learning_rate(learning_rate)
    if adam_learning_rate is not None:
        _core.check_learning_rate(adam_learning_rate, "adam_learning_rate")
    _core.check_given("ns_coeffs", ns_coeffs, "coefficients (a, b, c) or an (n, 3) array")
    ns_steps = _count("ns_steps", ns_steps)
    _core.check_bool("nesterov", nesterov)
    _core.check_bool("adaptive", adaptive)
    for name, value in (("beta", beta), ("adam_b1", adam_b1), ("adam_b2", adam_b2)):
        _core.check_decay(name, value)
    for name, value in (
        ("eps", eps),
        ("weight_decay", weight_decay),
        ("adam_eps_root", adam_eps_root),
        ("adam_weight_decay", adam_weight_decay),
    ):
        _core.check_nonnegative(name, value)
    return optax.contrib.muon(
        learning_rate,
        ns_coeffs,
        ns_steps,
        beta,
        eps,
        weight_decay,
        weight_decay_mask,
        mu_dtype,
        nesterov=nesterov,
        adaptive=adaptive,
        adam_b1=adam_b1,
        adam_b2=adam_b2,
        adam_eps_root=adam_eps_root,
        adam_weight_decay=adam_weight_decay,
        adam_learning_rate=adam_learning_rate,
        muon_weight_dimension_numbers=muon_weight_dimension_numbers,
    )


# --------------------------------------------------------------------------
# Averages of the parameters (torch's swa_utils, Keras's use_ema)
# --------------------------------------------------------------------------


class ParamAverageState(NamedTuple):
    """The state of :func:`param_averaging`.

    Attributes:
      inner_state: the wrapped optimizer's state.
      count: updates taken (int32).
      n_averaged: iterates averaged so far (torch's ``AveragedModel.n_averaged``).
      average: the averaged params (read with :func:`averaged_params`).
    """

    inner_state: Any
    count: jax.Array
    n_averaged: jax.Array
    average: Any


AVERAGING_MODES = ("ema", "swa")


def param_averaging(
    optimizer: GradientTransformation,
    mode: str = "ema",
    decay: float = 0.999,
    start: int = 0,
    overwrite_every: Optional[int] = None,
) -> GradientTransformationExtraArgs:
    """Keep an average of the params after each step, as torch's ``AveragedModel`` does.

    After each update of ``optimizer`` the new params ``theta_t`` enter the average
    (from update number ``start + 1`` on):

    .. math::
        \\bar\\theta \\leftarrow \\theta_t \\text{ (first averaged step)},\\qquad
        \\text{ema: } \\bar\\theta \\leftarrow \\bar\\theta + (1-d)(\\theta_t - \\bar\\theta),
        \\qquad
        \\text{swa: } \\bar\\theta \\leftarrow
            \\bar\\theta + \\frac{\\theta_t - \\bar\\theta}{n + 1}

    with ``n`` the iterates averaged so far. ``mode="ema"`` is
    ``AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))`` and Keras's
    ``use_ema=True, ema_momentum=decay``; ``mode="swa"`` is ``AveragedModel(model)``
    (the equal-weight average of Izmailov et al.), both with ``update_parameters``
    called after every ``optimizer.step()`` from step ``start + 1`` on. The first
    averaged step copies the params, as both torch and Keras do.
    ``overwrite_every=k`` is Keras's ``ema_overwrite_frequency``: every ``k``-th update
    sets the params to the average.

    Averages of batch-norm statistics are not kept (those are not params): after SWA,
    recompute them with a pass over the data, as ``torch.optim.swa_utils.update_bn``
    does.

    Args:
      optimizer: the optimizer whose iterates are averaged.
      mode: ``"ema"`` or ``"swa"``.
      decay: the EMA decay ``d`` in [0, 1) (torch's default 0.999; Keras's 0.99);
        unused by ``"swa"``.
      start: updates taken before averaging starts (torch users' ``swa_start``), a
        non-negative integer.
      overwrite_every: replace the params by the average every this many updates (a
        positive integer), or None to never replace them.

    Returns:
      A ``GradientTransformationExtraArgs`` whose ``update`` needs ``params``; extra
      keyword arguments go to ``optimizer``.

    Example:
      >>> import jax.numpy as jnp, jaxopt_dl as jdl
      >>> opt = jdl.param_averaging(jdl.sgd(1.0), mode="swa")
      >>> p = jnp.zeros(1)
      >>> s = opt.init(p)
      >>> for g in (-1.0, -1.0):
      ...     u, s = opt.update(jnp.full(1, g), s, p)
      ...     p = jdl.apply_updates(p, u)
      >>> p.tolist(), jdl.averaged_params(s).tolist()  # iterates 1 and 2, average 1.5
      ([2.0], [1.5])

    References:
      Izmailov et al. 2018, Averaging Weights Leads to Wider Optima and Better
      Generalization; Polyak & Juditsky 1992; ``torch.optim.swa_utils.AveragedModel``;
      Keras ``Optimizer(use_ema=True)``.
    """
    _core.check_choice("mode", mode, AVERAGING_MODES)
    _core.check_decay("decay", decay)
    _core.check_transform("optimizer", optimizer)
    start = _count("start", start, 0)
    if overwrite_every is not None:
        overwrite_every = _count("overwrite_every", overwrite_every)
    inner = optax.with_extra_args_support(optimizer)

    def init_fn(params):
        return ParamAverageState(
            inner_state=inner.init(params),
            count=_core.zero_count(),
            n_averaged=_core.zero_count(),
            average=jax.tree.map(jnp.array, params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        _need_params(params, "param_averaging")
        updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
        new_params = optax.apply_updates(params, updates)
        count = _core.safe_increment(state.count)
        averaging = count > start
        n = state.n_averaged
        weight = 1 - decay if mode == "ema" else 1 / (n + 1.0)

        def step(a, p):
            averaged = jnp.where(n == 0, p, a + (p - a) * jnp.asarray(weight, a.dtype))
            return jnp.where(averaging, averaged, a)

        average = jax.tree.map(step, state.average, new_params)
        n_averaged = jnp.where(averaging, _core.safe_increment(n), n)
        if overwrite_every is not None:
            overwrite = averaging & (count % overwrite_every == 0)
            updates = jax.tree.map(
                lambda u, a, p: jnp.where(overwrite, a - p, u), updates, average, params
            )
        return updates, ParamAverageState(inner_state, count, n_averaged, average)

    return GradientTransformationExtraArgs(init_fn, update_fn)


def averaged_params(state: Any) -> Any:
    """The averaged params kept by :func:`param_averaging` (torch's ``swa_model.module``).

    Args:
      state: the state of :func:`param_averaging`, alone or inside a chain.

    Returns:
      The average, in the params' structure.
    """
    found = [
        s
        for s in jax.tree.leaves(state, is_leaf=lambda s: isinstance(s, ParamAverageState))
        if isinstance(s, ParamAverageState)
    ]
    if len(found) != 1:
        raise ValueError(
            f"state must hold exactly one ParamAverageState, got state with {len(found)}"
        )
    return found[0].average
