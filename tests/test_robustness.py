"""Robustness: random pytrees through every optimizer, hyperparameter fuzzing, long runs."""

import inspect
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import jaxopt_dl as jdl

OPTIMIZERS = {
    "sgd": lambda: jdl.sgd(0.1),
    "sgd_momentum": lambda: jdl.sgd(0.1, momentum=0.9, nesterov=True),
    "momentum_velocity": lambda: jdl.momentum(0.1, nesterov=True),
    "momentum_ema": lambda: jdl.momentum(0.1, form="ema", nesterov=True),
    "momentum_trace": lambda: jdl.momentum(0.1, form="trace"),
    "adagrad": lambda: jdl.adagrad(0.1, eps_in_sqrt=False),
    "rmsprop": lambda: jdl.rmsprop(0.01, centered=True, momentum=0.9),
    "adadelta": lambda: jdl.adadelta(weight_decay=0.01),
    "adam": lambda: jdl.adam(0.01),
    "adamw": lambda: jdl.adamw(0.01),
    "adamax": lambda: jdl.adamax(0.01),
    "nadam": lambda: jdl.nadam(0.01),
    "amsgrad": lambda: jdl.amsgrad(0.01),
    "noisy_sgd": lambda: jdl.noisy_sgd(0.01, key=0),
    "lamb": lambda: jdl.lamb(0.01),
    "lion": lambda: jdl.lion(0.01),
    "adafactor": lambda: jdl.adafactor(0.01),
    "clipped_adamw_schedule": lambda: jdl.chain(
        jdl.clip_by_global_norm(1.0),
        jdl.adamw(jdl.warmup_cosine_decay_schedule(0.0, 0.01, 2, 10), weight_decay=0.01),
    ),
    "adam_plateau": lambda: jdl.chain(jdl.adam(0.01), jdl.reduce_on_plateau(patience=1)),
    "apply_if_finite": lambda: jdl.apply_if_finite(jdl.adam(0.01), 3),
    "multisteps": lambda: jdl.MultiSteps(jdl.adam(0.01), 2).gradient_transformation(),
    "agc_l2": lambda: jdl.chain(jdl.adaptive_grad_clip(0.1), jdl.add_l2(0.1), jdl.sgd(0.1)),
    "block_rms_elastic": lambda: jdl.chain(
        jdl.clip_by_block_rms(1.0), jdl.add_elastic_net(0.01, 0.01), jdl.adam(0.01)
    ),
}

DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)
SHAPES = ((), (0,), (3,), (2, 3), (0, 2), (1, 1, 2))


@st.composite
def arrays(draw):
    shape = draw(st.sampled_from(SHAPES))
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).uniform(-2.0, 2.0, size=shape)
    return jnp.asarray(values, dtype)


trees = st.recursive(
    arrays(),
    lambda children: st.one_of(
        st.dictionaries(st.text("abcxyz", min_size=1, max_size=3), children, max_size=3),
        st.lists(children, max_size=3),
        st.lists(children, max_size=3).map(tuple),
    ),
    max_leaves=6,
)


def spec(tree):
    return jax.tree.structure(tree), [(x.shape, x.dtype) for x in jax.tree.leaves(tree)]


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(params=trees, seed=st.integers(0, 2**16))
def test_random_trees_keep_structure_shapes_dtypes_and_stay_finite(name, params, seed):
    tx = jdl.chain(OPTIMIZERS[name]())
    state = tx.init(params)
    init_spec = spec(state)
    rng = np.random.default_rng(seed)
    for _ in range(2):
        grads = jax.tree.map(
            lambda p: jnp.asarray(rng.uniform(-1, 1, p.shape), p.dtype), params
        )
        updates, state = tx.update(grads, state, params, value=jnp.asarray(1.0))
        assert spec(updates) == spec(params)
        assert spec(state) == init_spec
        params = jdl.apply_updates(params, updates)
    chex.assert_tree_all_finite(params)
    chex.assert_tree_all_finite(updates)


# --------------------------------------------------------------------------
# Constructor fuzzing: a ValueError naming the argument, or an optimizer that runs
# --------------------------------------------------------------------------

BAD_VALUES = (-1.0, 0.0, math.nan, math.inf, -math.inf, 1e30, 1.5, 1.0, -3, 0)

REQUIRED = {
    "learning_rate": 0.1, "decay": 0.9, "max_delta": 1.0, "max_norm": 1.0, "threshold": 1.0,
    "clipping": 0.1, "step_size": 0.1, "weight": 0.1, "l1": 0.1, "l2": 0.1, "eta": 0.01,
    "gamma": 0.55, "init_value": 1.0, "end_value": 0.1, "peak_value": 1.0, "value": 1.0,
    "transition_steps": 5, "decay_steps": 5, "warmup_steps": 2, "decay_rate": 0.5,
    "power": 2.0, "drop": 0.5, "steps_per_drop": 3, "base_lr": 0.1, "max_lr": 1.0,
    "batch_size": 8, "initial": 8, "growth": 2.0, "max_batch_size": 64, "every": 3,
    "max_consecutive_errors": 3, "milestones": (2, 4),
}

# name -> (constructor, kind); "transform" builds a GradientTransformation, "schedule"
# a step -> value function.
CONSTRUCTORS = {
    name: getattr(jdl, name)
    for name in (
        "sgd momentum adagrad rmsprop adadelta adam adamw adamax nadam amsgrad noisy_sgd "
        "lamb lion adafactor scale scale_by_learning_rate trace ema bias_correction "
        "nesterov_ema velocity scale_by_rss scale_by_rms scale_by_stddev scale_by_adam "
        "scale_by_adamax scale_by_amsgrad scale_by_adadelta add_decayed_weights add_l1 add_l2 "
        "add_elastic_net add_noise clip clip_by_global_norm clip_by_block_rms "
        "adaptive_grad_clip reduce_on_plateau constant_schedule linear_schedule "
        "polynomial_schedule exponential_decay cosine_decay_schedule "
        "warmup_cosine_decay_schedule warmup_exponential_decay_schedule "
        "cosine_onecycle_schedule linear_onecycle_schedule inverse_time_decay step_decay "
        "multistep_decay cyclic_schedule constant_batch_size geometric_batch_size "
        "step_doubling_batch_size"
    ).split()
}
# optax's signature makes learning_rate optional (None); fuzz it from a number.
CONSTRUCTORS["scale_by_learning_rate"] = lambda learning_rate=0.1: jdl.scale_by_learning_rate(
    learning_rate
)
CONSTRUCTORS["apply_if_finite"] = lambda max_consecutive_errors: jdl.apply_if_finite(
    jdl.adam(0.1), max_consecutive_errors
)
CONSTRUCTORS["MultiSteps"] = lambda every_k_schedule=2: jdl.MultiSteps(
    jdl.adam(0.1), every_k_schedule
).gradient_transformation()


def numeric_arguments(factory):
    """(name, base kwargs) for every argument taking a number."""
    base, names = {}, []
    for param in inspect.signature(factory).parameters.values():
        if param.default is inspect.Parameter.empty:
            if param.name not in REQUIRED:
                raise KeyError(f"no valid value for required argument {param.name}")
            base[param.name] = REQUIRED[param.name]
        value = base.get(param.name, param.default)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            names.append(param.name)
    return base, names


def exercise(built):
    """Run what a constructor built: two updates of a transform, or a schedule's values."""
    params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.ones(3)}
    if isinstance(built, jdl.GradientTransformation):
        tx = jdl.chain(built)
        state = tx.init(params)
        for _ in range(2):
            grads = jax.tree.map(lambda p: 0.5 * p + 0.1, params)
            updates, state = tx.update(grads, state, params, value=jnp.asarray(1.0))
            params = jdl.apply_updates(params, updates)
        jax.block_until_ready(params)
    else:
        for step in range(4):
            jax.block_until_ready(built(step))


@pytest.mark.parametrize("name", sorted(CONSTRUCTORS))
def test_bad_hyperparameters_raise_value_error_naming_them_or_work(name):
    factory = CONSTRUCTORS[name]
    base, names = numeric_arguments(factory)
    assert names, f"{name} has no numeric argument to fuzz"
    failures = []
    for argument in names:
        for bad in BAD_VALUES:
            kwargs = {**base, argument: bad}
            try:
                built = factory(**kwargs)
            except ValueError as error:
                if argument not in str(error):
                    failures.append(f"{argument}={bad}: ValueError not naming it: {error}")
                continue
            except Exception as error:  # noqa: BLE001 -- anything else is a bug
                kind = type(error).__name__
                failures.append(f"{argument}={bad}: {kind} at construction: {error}")
                continue
            try:
                exercise(built)
            except Exception as error:  # noqa: BLE001
                failures.append(f"{argument}={bad}: accepted, then {type(error).__name__}: {error}")
    assert not failures, f"{name}:\n" + "\n".join(failures)


# --------------------------------------------------------------------------
# Long run: 1e5 Adam steps on the noisy quadratic stay finite and bounded
# --------------------------------------------------------------------------


def test_adam_1e5_steps_on_noisy_quadratic_stay_finite_and_bounded():
    """Seed 002's (0.1 w1)^2 + w2^2 with N(0, 0.03) gradient noise, float32, lax.scan."""
    tx = jdl.adam(1e-2)
    curvature = jnp.asarray([0.1**2, 1.0], jnp.float32) * 2

    @jax.jit
    def run(w0, key):
        def step(carry, key):
            w, state = carry
            grad = curvature * w + 0.03 * jax.random.normal(key, w.shape, jnp.float32)
            updates, state = tx.update(grad, state, w)
            w = jdl.apply_updates(w, updates)
            return (w, state), jnp.max(jnp.abs(w))

        (w, state), sizes = jax.lax.scan(step, (w0, tx.init(w0)), jax.random.split(key, 100_000))
        return w, state, sizes

    w0 = jnp.asarray([3.0, -2.0], jnp.float32)
    w, state, sizes = run(w0, jax.random.key(0))
    chex.assert_tree_all_finite((w, state))
    assert w.dtype == jnp.float32
    assert float(jnp.max(sizes)) <= 3.5  # never blows up beyond the start
    assert float(jnp.max(sizes[-1000:])) < 0.5  # settled near the minimum, within the noise
    assert int(state[0].count) == 100_000
