"""torch's methods that optax lacks or computes differently, written out to give
``torch.optim``'s numbers with torch's defaults: RAdam, Rprop, ASGD and NAdam."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxopt_dl import _core
from jaxopt_dl._core import GradientTransformationExtraArgs
from jaxopt_dl.contrib._common import (
    _add_in_dtype,
    _check_not_schedule,
    _decays,
    _need_params,
    _torch_weight_decay,
)


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


@_core.block(
    optimizer=True,
    checks={
        "b1": _core.check_decay,
        "b2": _core.check_decay,
        "eps": _core.check_nonnegative,
        "weight_decay": _core.check_nonnegative,
    },
    rate=lambda a: _core.rate_of(a["learning_rate"], count=lambda state: state.count),
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
        correction1 = _core.bias_correction_factor(b1, count)
        correction2 = _core.bias_correction_factor(b2, count)
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


def _mean_step_size(arguments: dict):
    """Rprop's rate: the step size of the coordinates, averaged (each coordinate's next
    step is its own times ``eta_plus``, ``eta_minus`` or 1, by the gradient's sign)."""
    del arguments

    def read(state):
        leaves = jax.tree.leaves(state.step_sizes)
        total = sum(jnp.sum(leaf.astype(jnp.float32)) for leaf in leaves)
        return total / sum(leaf.size for leaf in leaves)

    return read


@_core.block(optimizer=True, rate=_mean_step_size)
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


@_core.block(
    optimizer=True,
    checks={
        "lambd": _core.check_nonnegative,
        "alpha": _core.check_nonnegative,
        "t0": _core.check_nonnegative,
        "weight_decay": _core.check_nonnegative,
    },
    rate=lambda a: lambda state: state.eta,
)
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


@_core.block(
    optimizer=True,
    checks={
        "b1": _core.check_decay,
        "b2": _core.check_decay,
        "eps": _core.check_nonnegative,
        "weight_decay": _core.check_nonnegative,
        "momentum_decay": _core.check_nonnegative,
    },
    rate=lambda a: _core.rate_of(a["learning_rate"], count=lambda state: state.count),
)
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
        correction2 = _core.bias_correction_factor(b2, count)
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
