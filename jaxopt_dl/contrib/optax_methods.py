"""Methods optax already has, with jaxopt_dl's validation and description: optax's
code and numbers, the hyperparameters checked when the optimizer is built."""

from __future__ import annotations

from typing import Any, Optional

import optax
import optax.contrib

from jaxopt_dl import _core
from jaxopt_dl._core import GradientTransformation, GradientTransformationExtraArgs
from jaxopt_dl.contrib._common import _count


@_core.block(
    optimizer=True,
    checks={
        "b1": _core.check_decay,
        "b2": _core.check_decay,
        "eps": _core.check_nonnegative,
        "eps_root": _core.check_nonnegative,
    },
)
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
    return optax.adabelief(learning_rate, b1, b2, eps, eps_root, nesterov=nesterov)


@_core.block(
    optimizer=True,
    checks={"b1": _core.check_decay, "b2": _core.check_decay, "eps": _core.check_nonnegative},
)
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
    return optax.yogi(learning_rate, b1, b2, eps)


@_core.block(
    optimizer=True,
    checks={
        "momentum": _core.check_decay,
        "weight_decay": _core.check_nonnegative,
        "trust_coefficient": _core.check_nonnegative,
        "eps": _core.check_nonnegative,
        "trust_ratio_mask": lambda name, value: _core.check_given(
            name, value, "a pytree of booleans or a function"
        ),
    },
)
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


def _inner_rate(argument: str, field: str):
    """``arguments -> (state -> rate)``: the wrapped optimizer's rate, read at ``state.<field>``."""

    def make(arguments):
        inner = _core.describe(arguments[argument])
        if inner.rate is None:
            return None
        return lambda state: inner.rate(getattr(state, field))

    return make


@_core.block(
    optimizer=True,
    checks={"optimizer": _core.check_transform, "adv_optimizer": _core.check_transform},
    rate=_inner_rate("optimizer", "opt_state"),
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
    sync_period = _count("sync_period", sync_period)
    return optax.contrib.sam(
        optimizer, adv_optimizer, sync_period, reset_state, opaque_mode, batch_axis_name
    )


@_core.block(
    optimizer=True,
    tree_check=False,
    checks={"fast_optimizer": _core.check_transform},
    rate=_inner_rate("fast_optimizer", "fast_state"),
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
    sync_period = _count("sync_period", sync_period)
    _core.check_in_range("slow_step_size", slow_step_size, 0.0, 1.0)
    return optax.lookahead(fast_optimizer, sync_period, slow_step_size, reset_state)


def _schedule_free_rate(arguments: dict):
    """The base optimizer's rate: ``learning_rate`` after optax's linear warmup."""
    rate, warmup = arguments["learning_rate"], arguments["warmup_steps"]
    if warmup is not None:
        rate = optax.warmup_constant_schedule(0.0, rate, warmup)
    return _core.rate_of(rate)


@_core.block(
    optimizer=True,
    checks={
        "weight_decay": lambda name, value: _core.check_nonnegative(name, value, allow_none=True)
    },
    rate=_schedule_free_rate,
)
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
    warmup_steps = _check_schedule_free(warmup_steps, b1, weight_lr_power)
    return optax.contrib.schedule_free_sgd(
        learning_rate, warmup_steps, b1, weight_decay, weight_lr_power, state_dtype
    )


def _check_schedule_free(warmup_steps, b1, weight_lr_power):
    """Check the arguments both schedule-free methods share; returns ``warmup_steps``.

    ``b1`` must be positive: the average ``x`` is recovered as ``(y - (1 - b1) z) / b1``.
    """
    _core.check_decay("b1", b1)
    _core.check_positive("b1", b1)
    _core.check_nonnegative("weight_lr_power", weight_lr_power)
    return None if warmup_steps is None else _count("warmup_steps", warmup_steps)


@_core.block(
    optimizer=True,
    checks={
        "weight_decay": _core.check_nonnegative,
        "b2": _core.check_decay,
        "eps": _core.check_nonnegative,
    },
    rate=_schedule_free_rate,
)
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
    warmup_steps = _check_schedule_free(warmup_steps, b1, weight_lr_power)
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


@_core.block(
    optimizer=True,
    checks={
        "adam_learning_rate": lambda name, value: _core.check_learning_rate(
            value, name, allow_none=True
        ),
        "ns_coeffs": lambda name, value: _core.check_given(
            name, value, "coefficients (a, b, c) or an (n, 3) array"
        ),
        **{name: _core.check_decay for name in ("beta", "adam_b1", "adam_b2")},
        **{
            name: _core.check_nonnegative
            for name in ("eps", "weight_decay", "adam_eps_root", "adam_weight_decay")
        },
    },
    rate=lambda a: _core.rate_of(
        a["learning_rate"],
        count=lambda state: _core.schedule_count(state.inner_states["muon"]),
    ),
)
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
    ns_steps = _count("ns_steps", ns_steps)
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
