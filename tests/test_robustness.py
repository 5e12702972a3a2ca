"""Robustness: random pytrees through every optimizer, and a long run.

Mistyped and out-of-range hyperparameters of every factory are fuzzed in
tests/test_constructor_fuzz.py.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
        grads = jax.tree.map(lambda p: jnp.asarray(rng.uniform(-1, 1, p.shape), p.dtype), params)
        updates, state = tx.update(grads, state, params, value=jnp.asarray(1.0))
        assert spec(updates) == spec(params)
        assert spec(state) == init_spec
        params = jdl.apply_updates(params, updates)
    chex.assert_tree_all_finite(params)
    chex.assert_tree_all_finite(updates)


# --------------------------------------------------------------------------
# Long run: 1e5 Adam steps on the noisy quadratic stay finite and bounded
# --------------------------------------------------------------------------


def test_adam_1e5_steps_on_noisy_quadratic_stay_finite_and_bounded():
    """(0.1 w1)^2 + w2^2 with N(0, 0.03) gradient noise, float32, lax.scan.

    The noisy quadratic of K. Bipin, "Deep Learning, Lecture 6 — Optimization".
    """
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
