"""States are optax's: same tree, same classes, no shared buffers, optax's inputs accepted."""

import inspect
import re

import chex
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from conftest import make_params, noisy_ill_conditioned_grad

import jaxopt_dl as jdl

SCHEDULE = optax.exponential_decay(0.05, transition_steps=10, decay_rate=0.8)
ALL_TRUE = lambda p: jax.tree.map(lambda _: True, p)

# (name, args, kwargs): the same call on jaxopt_dl and on optax.
OPTAX_NAMED = [
    ("sgd", (0.1,), {}),
    ("sgd", (0.1,), dict(momentum=0.9)),
    ("sgd", (SCHEDULE,), dict(momentum=0.9, nesterov=True)),
    ("adagrad", (0.1,), {}),
    ("adagrad", (SCHEDULE,), {}),
    ("rmsprop", (0.1,), {}),
    ("rmsprop", (0.1,), dict(centered=True, momentum=0.9)),
    ("rmsprop", (0.1,), dict(bias_correction=True)),
    ("rmsprop", (0.1,), dict(bias_correction=True, centered=True)),
    ("adadelta", (0.1,), {}),
    ("adadelta", (0.1,), dict(weight_decay=0.1)),
    ("adam", (0.1,), {}),
    ("adam", (SCHEDULE,), dict(mu_dtype=jnp.bfloat16)),
    ("adamw", (0.1,), {}),
    ("adamw", (0.1,), dict(weight_decay=SCHEDULE)),
    ("adamw", (0.1,), dict(mask=ALL_TRUE)),
    ("adamax", (0.1,), {}),
    ("nadam", (0.1,), {}),
    ("amsgrad", (0.1,), {}),
    ("noisy_sgd", (0.1,), dict(key=0)),
    ("lamb", (0.1,), {}),
    ("lion", (0.1,), {}),
    ("adafactor", (0.1,), {}),
    ("identity", (), {}),
    ("trace", (0.9,), {}),
    ("ema", (0.9,), {}),
    ("scale", (0.1,), {}),
    ("scale_by_learning_rate", (0.1,), {}),
    ("scale_by_learning_rate", (SCHEDULE,), {}),
    ("scale_by_schedule", (SCHEDULE,), {}),
    ("scale_by_rss", (), {}),
    ("scale_by_rms", (), {}),
    ("scale_by_rms", (), dict(bias_correction=True)),
    ("scale_by_stddev", (), {}),
    ("scale_by_stddev", (), dict(bias_correction=True)),
    ("scale_by_adam", (), {}),
    ("scale_by_adamax", (), {}),
    ("scale_by_amsgrad", (), {}),
    ("scale_by_adadelta", (), {}),
    ("add_decayed_weights", (0.1,), {}),
    ("add_decayed_weights", (SCHEDULE,), {}),
    ("clip", (0.1,), {}),
    ("clip_by_global_norm", (0.1,), {}),
    ("clip_by_block_rms", (0.1,), {}),
    ("adaptive_grad_clip", (0.1,), {}),
    ("add_noise", (0.1, 0.5, 0), {}),
]


def _wrapped(lib):
    """Wrappers and combinators around ``lib``'s adam, built the same way in both libraries."""
    labels = {"dense": {"kernel": "a", "bias": "b"}, "scale": "b"}
    mask = {"dense": {"kernel": True, "bias": False}, "scale": True}
    return {
        "chain": lib.chain(lib.clip_by_global_norm(1.0), lib.adam(0.01)),
        "masked": lib.masked(lib.adam(0.01), mask),
        "multi_transform": lib.multi_transform({"a": lib.adam(0.01), "b": lib.sgd(0.1)}, labels),
        "MultiSteps": lib.MultiSteps(lib.adam(0.01), every_k_schedule=2).gradient_transformation(),
        "apply_if_finite": lib.apply_if_finite(lib.adam(0.01), 3),
        "inject_hyperparams": lib.inject_hyperparams(lib.adam)(learning_rate=SCHEDULE, b1=0.8),
    }


WRAPPERS = list(_wrapped(optax))


def _id(case):
    name, _, kwargs = case
    return name + "-" + "-".join(kwargs)


def _leaf_info(state):
    return [(jnp.shape(x), jnp.result_type(x)) for x in jax.tree.leaves(state)]


def _assert_same_tree(ours, theirs):
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    node_types = lambda s: [
        type(n) for n in jax.tree.leaves(s, is_leaf=lambda x: x is not s and hasattr(x, "_fields"))
    ]
    assert node_types(ours) == node_types(theirs)
    assert _leaf_info(ours) == _leaf_info(theirs)


@pytest.mark.parametrize("name,args,kwargs", OPTAX_NAMED, ids=[_id(c) for c in OPTAX_NAMED])
def test_state_is_optax_state(name, args, kwargs):
    params = make_params()
    _assert_same_tree(
        getattr(jdl, name)(*args, **kwargs).init(params),
        getattr(optax, name)(*args, **kwargs).init(params),
    )


@pytest.mark.parametrize("name", WRAPPERS)
def test_wrapper_state_is_optax_state(name):
    params = make_params()
    _assert_same_tree(_wrapped(jdl)[name].init(params), _wrapped(optax)[name].init(params))


def test_lecture_options_add_state_only_when_used():
    params = make_params()
    # Options optax lacks keep optax's tree when they need no state of their own ...
    for ours, theirs in [
        (jdl.adam(0.1, bias_correction=False), optax.adam(0.1)),
        (jdl.adagrad(0.1, eps_in_sqrt=False), optax.adagrad(0.1)),
        (jdl.rmsprop(0.1, eps_in_sqrt=False), optax.rmsprop(0.1)),
        (jdl.momentum(0.1, 0.9, form="trace"), optax.sgd(0.1, 0.9)),
    ]:
        _assert_same_tree(ours.init(params), theirs.init(params))
    # ... and the lecture forms that need one have it.
    state = jdl.momentum(0.1, 0.9, form="velocity").init(params)
    assert type(state[0]).__name__ == "VelocityState"


# ---------------------------------------------------------------- donation


def _jdl_only():
    return {
        "momentum-velocity": jdl.momentum(SCHEDULE, 0.9, nesterov=True, form="velocity"),
        "momentum-ema": jdl.momentum(0.1, 0.9, form="ema"),
        "momentum-ema-nesterov": jdl.momentum(0.1, 0.9, nesterov=True, form="ema"),
        "bias_correction": jdl.chain(jdl.ema(0.9, debias=False), jdl.bias_correction(0.9)),
        "add_l1": jdl.add_l1(SCHEDULE),
        "add_l2": jdl.add_l2(0.1),
        "add_elastic_net": jdl.add_elastic_net(0.1, SCHEDULE),
        "adam-fp16-nu": jdl.adam(0.1, nu_dtype=jnp.float16),
    }


DONATION_CASES = (
    [(f"optax-named:{_id(c)}", c) for c in OPTAX_NAMED]
    + [(f"wrapper:{w}", w) for w in WRAPPERS]
    + [(f"lecture:{k}", k) for k in _jdl_only()]
)


def _comparable(tree):
    """PRNG keys as their integer data, so that trees holding keys can be compared."""
    is_key = lambda x: jnp.issubdtype(jnp.result_type(x), jax.dtypes.prng_key)
    return jax.tree.map(lambda x: jax.random.key_data(x) if is_key(x) else x, tree)


def _build(case):
    if isinstance(case, tuple):
        name, args, kwargs = case
        return getattr(jdl, name)(*args, **kwargs)
    return {**_wrapped(jdl), **_jdl_only()}[case]


@pytest.mark.parametrize("case", [c for _, c in DONATION_CASES], ids=[i for i, _ in DONATION_CASES])
def test_donated_state_step_equals_eager_step(case):
    tx = _build(case)
    params = make_params()
    grads = noisy_ill_conditioned_grad(params, 0)
    eager_updates, eager_state = tx.update(grads, tx.init(params), params)
    kept = jax.jit(tx.update)(grads, tx.init(params), params)
    updates, state = jax.jit(tx.update, donate_argnums=1)(grads, tx.init(params), params)
    # The donated step equals the undonated compiled one bit for bit, and its state equals
    # eager's. (Updates are not compared with eager's: bias-corrected centered RMSProp's
    # first step divides by a variance that cancels to ~0, so rounding dominates.)
    chex.assert_trees_all_equal(_comparable((updates, state)), _comparable(kept))
    chex.assert_trees_all_close(_comparable(state), _comparable(eager_state), rtol=1e-6, atol=1e-7)
    assert jax.tree.structure(updates) == jax.tree.structure(eager_updates)


def test_donated_plateau_chain_step():
    tx = jdl.chain(jdl.adam(0.1), jdl.reduce_on_plateau(patience=0))
    params = make_params()
    grads = noisy_ill_conditioned_grad(params, 0)
    step = jax.jit(lambda g, s, p: tx.update(g, s, p, value=1.0), donate_argnums=1)
    chex.assert_trees_all_close(
        step(grads, tx.init(params), params),
        tx.update(grads, tx.init(params), params, value=1.0),
        rtol=1e-6,
    )


# ---------------------------------------------------------------- optax's inputs


@pytest.mark.parametrize(
    "name", ["adam", "adamw", "nadam", "rmsprop", "adadelta", "adamax", "amsgrad"]
)
def test_python_scalar_gradient_leaves_work_as_in_optax(name):
    # Reference: optax on the same numbers as float arrays (optax's nadam divides an int
    # leaf by an int-cast bias correction and returns -inf; ours stays finite). optax
    # forms 1 - b2**t in float32 (1.3e-5 relative off at t = 1, 6.5e-6 in the update);
    # ours is accurate, hence rtol 2e-5.
    params = {"a": jnp.asarray(0.5), "b": jnp.asarray(1.5)}
    grads = {"a": 1.0, "b": 2}
    float_grads = {"a": jnp.asarray(1.0), "b": jnp.asarray(2.0)}
    ours, theirs = getattr(jdl, name)(0.1), getattr(optax, name)(0.1)
    state_ours, state_theirs = ours.init(params), theirs.init(params)
    for _ in range(2):
        u_ours, state_ours = ours.update(grads, state_ours, params)
        u_theirs, state_theirs = theirs.update(float_grads, state_theirs, params)
        chex.assert_trees_all_close(u_ours, u_theirs, rtol=2e-5)


def test_integer_array_seed_as_inject_hyperparams_passes_it():
    params = make_params()
    grads = noisy_ill_conditioned_grad(params, 0)
    by_int = jdl.noisy_sgd(0.1, key=3)
    by_array = jdl.noisy_sgd(0.1, key=jnp.asarray(3))
    chex.assert_trees_all_equal(
        by_array.update(grads, by_array.init(params), params)[0],
        by_int.update(grads, by_int.init(params), params)[0],
    )
    ours = jdl.inject_hyperparams(jdl.noisy_sgd)(learning_rate=0.1, key=3)
    theirs = optax.inject_hyperparams(optax.noisy_sgd)(learning_rate=0.1, key=3)
    chex.assert_trees_all_close(
        ours.update(grads, ours.init(params), params)[0],
        theirs.update(grads, theirs.init(params), params)[0],
        rtol=1e-6,
    )


OPTIMIZERS = [
    "sgd",
    "momentum",
    "adagrad",
    "rmsprop",
    "adam",
    "adamw",
    "adamax",
    "nadam",
    "amsgrad",
    "noisy_sgd",
    "lamb",
    "lion",
]


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_none_learning_rate_is_rejected(name):
    with pytest.raises(ValueError, match="learning_rate=None"):
        getattr(jdl, name)(None)


def test_adadelta_none_is_a_descent_step():
    params = {"w": jnp.ones(3)}
    opt = jdl.adadelta(None)
    updates, _ = opt.update({"w": jnp.full(3, 0.1)}, opt.init(params), params)
    assert bool(jnp.all(updates["w"] < 0))


@pytest.mark.parametrize("name", OPTIMIZERS + ["adadelta", "adafactor"])
def test_every_optimizer_names_the_mismatched_path(name):
    params = {"a": jnp.ones((3, 2)), "b": {"c": jnp.ones(2)}}
    opt = getattr(jdl, name)(0.1)
    state = opt.init(params)
    with pytest.raises(ValueError, match=r"shape.*\['a'\].*\(1, 2\).*\(3, 2\)"):
        jax.jit(opt.update)({"a": jnp.ones((1, 2)), "b": {"c": jnp.ones(2)}}, state, params)
    with pytest.raises(ValueError, match=r"\['b'\]\['d'\]"):
        opt.update({"a": jnp.ones((3, 2)), "b": {"d": jnp.ones(2)}}, state, params)


def test_apply_updates_names_the_mismatched_path():
    params = {"a": jnp.ones((3, 2)), "b": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"\['a'\].*\(1, 2\).*\(3, 2\)"):
        jax.jit(jdl.apply_updates)(params, {"a": jnp.ones((1, 2)), "b": jnp.ones(2)})


def test_tree_check_keeps_vmap_over_learning_rate():
    params = make_params()
    grads = noisy_ill_conditioned_grad(params, 0)
    rates = jnp.asarray([0.1, 0.2])
    out = jax.vmap(lambda lr: jdl.sgd(lr).update(grads, jdl.sgd(lr).init(params), params)[0])(rates)
    chex.assert_trees_all_close(
        jax.tree.map(lambda u: u[1], out), jax.tree.map(lambda g: -0.2 * g, grads), rtol=1e-6
    )


# ---------------------------------------------------------------- optax-backed pieces


DELEGATED = [
    "identity",
    "scale",
    "scale_by_schedule",
    "scale_by_learning_rate",
    "clip",
    "trace",
    "ema",
    "add_decayed_weights",
    "masked",
    "apply_if_finite",
    "multi_transform",
    "lamb",
    "lion",
    "adafactor",
]


@pytest.mark.parametrize("name", DELEGATED)
def test_delegated_pieces_keep_optax_signature(name):
    assert inspect.signature(getattr(jdl, name)) == inspect.signature(getattr(optax, name))
    assert (
        "Args:" in getattr(jdl, name).__doc__
        or not inspect.signature(getattr(jdl, name)).parameters
    )


@pytest.mark.parametrize(
    "factory,kwargs,argument",
    [
        (jdl.lamb, dict(learning_rate=0.1, b2=1.0), "b2"),
        (jdl.lamb, dict(learning_rate=float("nan")), "learning_rate"),
        (jdl.lion, dict(learning_rate=-1.0), "learning_rate"),
        (jdl.lion, dict(learning_rate=0.1, b2=-0.5), "b2"),
        (jdl.adafactor, dict(learning_rate=-0.1), "learning_rate"),
        (jdl.scale, dict(step_size=float("inf")), "step_size"),
        (jdl.scale_by_schedule, dict(step_size_fn=0.1), "step_size_fn"),
        (jdl.scale_by_learning_rate, dict(learning_rate=None), "learning_rate"),
        (jdl.clip, dict(max_delta=-1.0), "max_delta"),
        (jdl.ema, dict(decay=1.5), "decay"),
        (jdl.add_decayed_weights, dict(weight_decay=float("nan")), "weight_decay"),
    ],
)
def test_delegated_pieces_validate_on_entry(factory, kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        factory(**kwargs)


def test_optimizer_description_names_alias_and_arguments():
    opt = jdl.adamw(SCHEDULE, b1=0.8)
    description = jdl._core.describe(opt)
    assert description.name == "adamw"
    assert description.hyperparams["learning_rate"] is SCHEDULE
    assert description.hyperparams["b1"] == 0.8
    assert description.hyperparams["weight_decay"] == 1e-4


# Bias-corrected centered RMSProp is left out: its first step divides by a variance that
# cancels to ~0, so eager rounding dominates (its trajectory is in test_optax_parity).
BLOCK_STEPS = [
    c
    for c in OPTAX_NAMED
    if c[0].startswith(("scale", "clip", "trace", "ema", "add_", "identity", "adaptive"))
    and not (c[0] == "scale_by_stddev" and c[2])
]


class BlockStepTest(chex.TestCase):
    """Each optax-named block, jitted and not, gives optax's updates step by step."""

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*[(_id(c), *c) for c in BLOCK_STEPS])
    def test_block_step_matches_optax(self, name, args, kwargs):
        params = make_params()
        ours, theirs = getattr(jdl, name)(*args, **kwargs), getattr(optax, name)(*args, **kwargs)
        update_ours, update_theirs = self.variant(ours.update), self.variant(theirs.update)
        state_ours, state_theirs = ours.init(params), theirs.init(params)
        for step in range(3):
            grads = noisy_ill_conditioned_grad(params, step)
            u_ours, state_ours = update_ours(grads, state_ours, params)
            u_theirs, state_theirs = update_theirs(grads, state_theirs, params)
            chex.assert_trees_all_close(u_ours, u_theirs, rtol=2e-5, atol=1e-7)


# ---------------------------------------------------------------- bfloat16


def _bf16(x):
    return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16)


def _correction(decay, count):
    """``1 - decay**count`` as the library forms it (float32), rounded to bf16."""
    return _bf16(1 - decay ** jnp.asarray(count, jnp.int32))


@pytest.mark.parametrize("name", ["adam", "nadam", "amsgrad"])
def test_bf16_moments_are_optax_and_the_division_is_float32(name):
    """Pinned: bf16 moments equal optax's bit for bit; the step divides them in float32.

    NumPy transcription of one step from the stored bf16 moments: bias corrections in
    bf16 (as optax), then ``m_hat / (sqrt(v_hat) + eps)`` in float32, rounded once to
    bf16, then scaled by ``-lr`` in bf16. optax divides in bf16, so about a quarter of
    the entries differ from optax's by 1-2 bf16 ulps.
    """
    b1, b2, eps, lr, t = 0.9, 0.999, 1e-8, 1e-3, 2
    key = jax.random.PRNGKey(0)
    params = {"w": jax.random.normal(key, (64, 64)).astype(jnp.bfloat16)}
    grads = [
        {"w": jax.random.normal(jax.random.fold_in(key, i), (64, 64)).astype(jnp.bfloat16)}
        for i in (1, 2)
    ]
    ours, theirs = getattr(jdl, name)(lr), getattr(optax, name)(lr)
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    for g in grads:
        u_ours, s_ours = ours.update(g, s_ours, params)
        u_theirs, s_theirs = theirs.update(g, s_theirs, params)
    chex.assert_trees_all_equal(s_ours[0], s_theirs[0])

    f32 = lambda x: np.asarray(x).astype(np.float32)
    mu, nu, g = (
        np.asarray(s_ours[0].mu["w"]),
        np.asarray(s_ours[0].nu["w"]),
        np.asarray(grads[-1]["w"]),
    )
    if name == "nadam":
        mu_hat = _bf16(f32(mu) / f32(_correction(b1, t + 1)))
        g_hat = _bf16(f32(g) / f32(_correction(b1, t)))
        # Python-number factors of a bf16 array are rounded to bf16 first (weak typing).
        m_hat = _bf16(
            f32(_bf16(f32(_bf16(b1)) * f32(mu_hat))) + f32(_bf16(f32(_bf16(1 - b1)) * f32(g_hat)))
        )
    else:
        m_hat = _bf16(f32(mu) / f32(_correction(b1, t)))
    if name == "amsgrad":
        v_hat = np.asarray(s_ours[0].nu_max["w"])
    else:
        v_hat = _bf16(f32(nu) / f32(_correction(b2, t)))
    direction = _bf16(f32(m_hat) / (np.sqrt(f32(v_hat)) + np.float32(eps)))
    want = _bf16(f32(direction) * f32(_bf16(-lr)))
    np.testing.assert_array_equal(np.asarray(u_ours["w"]), want)
    differ = np.mean(np.asarray(u_ours["w"]) != np.asarray(u_theirs["w"]))
    assert 0.05 < differ < 0.5


def test_the_step_uses_the_moments_as_stored():
    """With ``mu_dtype``/``nu_dtype``, the update is a float32 transcription of Adam's
    formula applied to the stored bfloat16 moments (optax uses them before rounding:
    up to 2^-9 relative apart)."""
    lr, b1, b2, eps = 1e-3, 0.9, 0.999, 1e-8
    key = jax.random.key(4)
    params = {"w": jax.random.normal(key, (256,))}
    tx = jdl.adam(lr, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)
    state = tx.init(params)
    for t in range(1, 4):
        grads = {"w": jax.random.normal(jax.random.fold_in(key, t), (256,))}
        updates, state = tx.update(grads, state, params)
        mu, nu = (np.asarray(m["w"]).astype(np.float32) for m in (state[0].mu, state[0].nu))
        # 1 - b**t in float64, rounded to float32 (the library's accurate form)
        c1, c2 = (np.float32(1 - b**t) for b in (b1, b2))
        want = np.float32(-lr) * ((mu / c1) / (np.sqrt(nu / c2) + np.float32(eps)))
        np.testing.assert_allclose(np.asarray(updates["w"]), want, rtol=1e-6)


def test_bf16_moments_are_updated_in_place_without_a_copy():
    """Stepping from the stored moments leaves XLA nothing to copy: a donated plain step
    with bfloat16 moments compiles without a ``copy`` (reading the moments before
    rounding made XLA copy both to a fresh buffer on every step)."""
    tx = jdl.adam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)
    params = {"w": jnp.ones((1024,)), "b": jnp.ones((8,))}

    def step(p, g, s):
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s

    compiled = jax.jit(step, donate_argnums=(0, 2)).lower(params, params, tx.init(params))
    assert not re.search(r"\bcopy\(", compiled.compile().as_text())
