"""The core contract: protocol interop, dtypes, counter, bad input, tree checks."""

import chex
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import make_params, noisy_ill_conditioned_grad, run_trajectory
from flax.training import train_state

import jaxopt_dl as jdl

# ---------------------------------------------------------------- protocol


def test_ours_inside_optax_chain_and_optax_inside_ours():
    params = make_params()
    mixed_a = optax.chain(optax.clip_by_global_norm(1.0), jdl.scale_by_adam(), optax.scale(-0.01))
    mixed_b = jdl.chain(jdl.clip_by_global_norm(1.0), optax.scale_by_adam(), jdl.scale(-0.01))
    reference = optax.chain(
        optax.clip_by_global_norm(1.0), optax.scale_by_adam(), optax.scale(-0.01)
    )
    want = run_trajectory(reference, params, apply=optax.apply_updates)
    # mixed_b runs optax's own Adam: equal to the reference up to float32 rounding.
    chex.assert_trees_all_close(run_trajectory(mixed_b, params), want, rtol=2e-5)
    # mixed_a runs ours, whose 1 - b2**t is accurate for the b2 given; optax forms it
    # from b2 rounded to float32 (1.3e-5 relative off at t = 1, the same sign for
    # hundreds of steps), which the trajectory accumulates.
    chex.assert_trees_all_close(run_trajectory(mixed_a, params), want, rtol=2e-5, atol=1e-5)
    assert isinstance(jdl.adam(0.1), optax.GradientTransformation)


def test_flax_train_state_runs_our_optimizer():
    params = make_params()
    state = train_state.TrainState.create(apply_fn=None, params=params, tx=jdl.adam(0.01))
    ref = train_state.TrainState.create(apply_fn=None, params=params, tx=optax.adam(0.01))

    @jax.jit
    def step(s, i):
        return s.apply_gradients(grads=noisy_ill_conditioned_grad(s.params, i))

    for i in range(5):
        state, ref = step(state, i), step(ref, i)
    chex.assert_trees_all_close(state.params, ref.params, rtol=2e-5)
    assert int(state.step) == 5


def test_state_roundtrips_through_flax_serialization_bit_exactly():
    params = make_params()
    schedule = optax.linear_schedule(0.1, 0.0, 50)
    opt = jdl.chain(jdl.clip_by_global_norm(1.0), jdl.adamw(schedule, weight_decay=0.01))
    state = opt.init(params)
    _, state = opt.update(noisy_ill_conditioned_grad(params, 0), state, params)
    restored = flax.serialization.from_bytes(opt.init(params), flax.serialization.to_bytes(state))
    chex.assert_trees_all_equal(restored, state)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_params_keep_their_dtype(dtype):
    params = jax.tree.map(lambda x: x.astype(dtype), make_params())
    for opt in (jdl.adam(0.01), jdl.sgd(0.001, momentum=0.9), jdl.rmsprop(0.01)):
        final = run_trajectory(opt, params, steps=5)
        chex.assert_trees_all_equal_dtypes(final, params)
        chex.assert_tree_all_finite(final)


def test_apply_updates_keeps_param_dtype():
    params = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
    updates = {"a": jnp.full(3, 0.5, jnp.float32), "b": jnp.full(2, 0.5, jnp.float32)}
    out = jdl.apply_updates(params, updates)
    assert out["a"].dtype == jnp.bfloat16 and out["b"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out["a"], np.float32), 1.5)


def test_counter_saturates_at_int32_max():
    top = jnp.asarray(np.iinfo(np.int32).max, jnp.int32)
    assert int(jdl.safe_increment(top)) == np.iinfo(np.int32).max
    opt = jdl.adam(optax.constant_schedule(0.01))
    params = jnp.ones(3)
    state = opt.init(params)
    state = (state[0]._replace(count=top), state[1]._replace(count=top))
    updates, new_state = jax.jit(opt.update)(jnp.ones(3), state, params)
    assert int(new_state[0].count) == np.iinfo(np.int32).max
    assert int(new_state[1].count) == np.iinfo(np.int32).max
    chex.assert_tree_all_finite(updates)


@pytest.mark.parametrize("dtype", [jnp.uint8, jnp.uint32, jnp.int8, jnp.float16])
def test_safe_increment_saturates_for_every_real_dtype(dtype):
    top = jnp.asarray(
        np.iinfo(dtype).max if jnp.issubdtype(dtype, jnp.integer) else np.finfo(dtype).max, dtype
    )
    assert jdl.safe_increment(top) == top and jdl.safe_increment(top).dtype == dtype
    assert int(jdl.safe_increment(jnp.asarray(5, dtype))) == 6


@pytest.mark.parametrize("count", [jnp.asarray(1 + 1j), jnp.asarray(True)])
def test_safe_increment_rejects_complex_and_bool(count):
    with pytest.raises(ValueError, match="dtype"):
        jdl.safe_increment(count)


def test_apply_if_finite_skips_nan_step_and_keeps_state():
    params = make_params()
    opt = jdl.apply_if_finite(jdl.adam(0.01), max_consecutive_errors=3)
    state = opt.init(params)
    grads = noisy_ill_conditioned_grad(params, 0)
    updates, state = opt.update(grads, state, params)
    params = jdl.apply_updates(params, updates)
    bad = jax.tree.map(lambda g: g.at[..., 0].set(jnp.nan) if g.ndim else jnp.nan, grads)
    updates, new_state = jax.jit(opt.update)(bad, state, params)
    new_params = jdl.apply_updates(params, updates)
    chex.assert_trees_all_equal(new_params, params)
    chex.assert_trees_all_equal(new_state.inner_state, state.inner_state)
    assert int(new_state.notfinite_count) == 1 and int(new_state.total_notfinite) == 1
    assert not bool(new_state.last_finite)


# ---------------------------------------------------------------- hyperparameters


def test_jit_and_vmap_over_learning_rate():
    params = make_params()

    lrs = jnp.asarray([1e-3, 1e-2, 1e-1])
    batched = jax.jit(jax.vmap(lambda lr: _scan(jdl.adam(lr), params)))(lrs)
    for i, lr in enumerate([1e-3, 1e-2, 1e-1]):
        single = _scan(jdl.adam(float(lr)), params)
        chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], batched), single, rtol=2e-5)


def _scan(opt, params, steps=100):
    def body(carry, step):
        p, s = carry
        updates, s = opt.update(noisy_ill_conditioned_grad(p, step), s, p)
        return (jdl.apply_updates(p, updates), s), None

    (p, _), _ = jax.lax.scan(body, (params, opt.init(params)), jnp.arange(steps))
    return p


# (factory, kwargs, argument named in the message)
BAD_INPUT = [
    (jdl.sgd, dict(learning_rate=-0.1), "learning_rate"),
    (jdl.sgd, dict(learning_rate=float("nan")), "learning_rate"),
    (jdl.sgd, dict(learning_rate=0.1, momentum=1.0), "momentum"),
    (jdl.sgd, dict(learning_rate=0.1, momentum=-0.1), "momentum"),
    (jdl.adam, dict(learning_rate=0.1, b1=1.0), "b1"),
    (jdl.adam, dict(learning_rate=0.1, b2=1.5), "b2"),
    (jdl.adam, dict(learning_rate=0.1, b1=float("nan")), "b1"),
    (jdl.adam, dict(learning_rate=0.1, eps=-1e-8), "eps"),
    (jdl.adamw, dict(learning_rate=0.1, weight_decay=-1e-4), "weight_decay"),
    (jdl.rmsprop, dict(learning_rate=0.1, decay=1.0), "decay"),
    (jdl.rmsprop, dict(learning_rate=0.1, momentum=2.0), "momentum"),
    (jdl.adadelta, dict(learning_rate=1.0, rho=-0.5), "rho"),
    (
        jdl.adagrad,
        dict(learning_rate=0.1, initial_accumulator_value=-1.0),
        "initial_accumulator_value",
    ),
    (jdl.adagrad, dict(learning_rate=0.1, eps=-1.0), "eps"),
    (jdl.momentum, dict(learning_rate=0.1, beta=1.2), "beta"),
    (jdl.momentum, dict(learning_rate=0.1, form="nesterov"), "form"),
    (jdl.momentum, dict(learning_rate=-1.0), "learning_rate"),
    (jdl.clip_by_global_norm, dict(max_norm=-1.0), "max_norm"),
    (jdl.clip, dict(max_delta=-1.0), "max_delta"),
    (jdl.ema, dict(decay=1.0), "decay"),
    (jdl.trace, dict(decay=-0.1), "decay"),
    (jdl.add_l2, dict(weight=-0.1), "weight"),
    (jdl.add_elastic_net, dict(l1=-0.1, l2=0.1), "l1"),
    (jdl.lion, dict(learning_rate=0.1, b1=1.0), "b1"),
    (jdl.lamb, dict(learning_rate=-0.1), "learning_rate"),
]


@pytest.mark.parametrize(
    "factory,kwargs,argument", BAD_INPUT, ids=[f"{f.__name__}-{a}" for f, _, a in BAD_INPUT]
)
def test_bad_hyperparameter_raises_naming_argument_and_value(factory, kwargs, argument):
    with pytest.raises(ValueError) as info:
        factory(**kwargs)
    assert argument in str(info.value)
    if argument != "form":
        assert repr(kwargs[argument])[:3] in str(info.value)


def test_traced_hyperparameters_skip_validation():
    # A negative lr under jit is the user's business (e.g. gradient ascent sweeps).
    out = jax.jit(lambda lr: jdl.sgd(lr).update(jnp.ones(2), jdl.sgd(lr).init(jnp.ones(2)))[0])(
        -0.5
    )
    np.testing.assert_allclose(out, 0.5)


def test_mismatched_gradient_structure_names_first_path():
    params = {"a": jnp.ones(3), "b": {"c": jnp.ones(2)}}
    opt = jdl.adam(0.1)
    state = opt.init(params)
    with pytest.raises(ValueError, match=r"structure.*\['b'\]\['d'\]"):
        opt.update({"a": jnp.ones(3), "b": {"d": jnp.ones(2)}}, state, params)
    with pytest.raises(ValueError, match="structure"):
        opt.update({"a": jnp.ones(3)}, state, params)


def test_mismatched_gradient_shape_names_path():
    params = {"a": jnp.ones(3), "b": {"c": jnp.ones(2)}}
    for opt in (
        jdl.adam(0.1),
        jdl.sgd(0.1, momentum=0.9),
        jdl.adagrad(0.1),
        jdl.momentum(0.1),
        jdl.rmsprop(0.1),
    ):
        state = opt.init(params)
        with pytest.raises(ValueError, match=r"shape.*\['b'\]\['c'\].*\(5,\).*\(2,\)"):
            jax.jit(opt.update)({"a": jnp.ones(3), "b": {"c": jnp.ones(5)}}, state, params)


def test_momentum_forms_agree_for_constant_rate():
    # velocity and trace give the same iterates; ema equals trace with lr*(1-beta).
    params = make_params()
    velocity = run_trajectory(jdl.momentum(0.01, 0.9, form="velocity"), params)
    trace = run_trajectory(jdl.momentum(0.01, 0.9, form="trace"), params)
    ema = run_trajectory(jdl.momentum(0.1, 0.9, form="ema"), params)
    chex.assert_trees_all_close(velocity, trace, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_close(ema, trace, rtol=1e-4, atol=1e-6)


def test_bias_correction_block_equals_debiased_ema():
    params = make_params()
    a = run_trajectory(
        jdl.chain(jdl.ema(0.9, debias=False), jdl.bias_correction(0.9), jdl.scale(-0.01)), params
    )
    b = run_trajectory(jdl.chain(jdl.ema(0.9), jdl.scale(-0.01)), params)
    # optax.ema forms 1 - b**t from b rounded to float32; bias_correction is accurate.
    chex.assert_trees_all_close(a, b, rtol=2e-5)


def test_regularizers_add_their_gradients():
    params = {"w": jnp.asarray([-2.0, 0.0, 3.0])}
    zero = {"w": jnp.zeros(3)}
    l1, _ = jdl.add_l1(0.5).update(zero, jdl.add_l1(0.5).init(params), params)
    l2, _ = jdl.add_l2(0.5).update(zero, jdl.add_l2(0.5).init(params), params)
    en = jdl.add_elastic_net(0.5, 0.5)
    both, _ = en.update(zero, en.init(params), params)
    penalty = lambda w: 0.5 * jnp.sum(jnp.abs(w)) + 0.25 * jnp.sum(w**2)
    np.testing.assert_allclose(l1["w"], [-0.5, 0.0, 0.5])
    np.testing.assert_allclose(l2["w"], [-1.0, 0.0, 1.5])
    np.testing.assert_allclose(both["w"], jax.grad(penalty)(params["w"]).at[1].set(0.0))
