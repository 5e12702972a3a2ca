"""current_learning_rate reports the rate the next update applies.

Each test recovers the applied rate from the actual update of an SGD step on a
constant gradient (``update = -rate * g``) and compares it with what
``current_learning_rate`` reported just before that step.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state

import jaxopt_dl as jdl
from jaxopt_dl import registry

PARAMS = {"a": jnp.ones(3), "b": jnp.ones(2)}
GRAD = {"a": jnp.full(3, 2.0), "b": jnp.full(2, 2.0)}
SCHEDULE = optax.exponential_decay(0.1, transition_steps=1, decay_rate=0.5)


def _applied(updates, leaf="a"):
    """The rate an SGD step applied: ``-update / gradient`` (the same for every entry)."""
    rate = -np.asarray(updates[leaf]) / np.asarray(GRAD[leaf])
    np.testing.assert_allclose(rate, rate[0], rtol=1e-6)
    return float(rate[0])


def _walk(opt, steps=5, loss=None, optimizer=None):
    """(reported, applied) rates for ``steps`` updates of ``opt``."""
    optimizer = opt if optimizer is None else optimizer
    tx = opt.gradient_transformation() if isinstance(opt, optax.MultiSteps) else opt
    state = tx.init(PARAMS)
    pairs = []
    for step in range(steps):
        reported = jdl.current_learning_rate(state, optimizer)
        extra = {} if loss is None else {"value": loss(step)}
        updates, state = tx.update(GRAD, state, PARAMS, **extra)
        pairs.append((reported, updates))
    return pairs


@pytest.mark.parametrize(
    "opt",
    [
        jdl.sgd(0.1),
        jdl.sgd(SCHEDULE),
        jdl.momentum(SCHEDULE, 0.0, form="trace"),
        jdl.chain(jdl.clip(10.0), jdl.sgd(SCHEDULE)),
        jdl.masked(jdl.sgd(SCHEDULE), {"a": True, "b": False}),
        jdl.apply_if_finite(jdl.sgd(SCHEDULE), 3),
        jdl.inject_hyperparams(jdl.sgd)(learning_rate=SCHEDULE),
    ],
    ids=["constant", "schedule", "momentum0", "chain", "masked", "apply_if_finite", "injected"],
)
def test_reported_rate_is_the_applied_rate(opt):
    for reported, updates in _walk(opt):
        assert float(reported) == pytest.approx(_applied(updates), rel=1e-6)


def test_velocity_form_first_step_applies_the_reported_rate():
    # v_1 = -eps_0 g (v_0 = 0), so the first step recovers the rate exactly.
    opt = jdl.momentum(SCHEDULE, 0.9, form="velocity")
    state = opt.init(PARAMS)
    reported = jdl.current_learning_rate(state, opt)
    updates, state = opt.update(GRAD, state, PARAMS)
    assert float(reported) == pytest.approx(_applied(updates))
    assert float(jdl.current_learning_rate(state, opt)) == pytest.approx(float(SCHEDULE(1)))


# patience=0: the repeated 1.0 at steps 1 and 2 halves the scale in those steps (the
# value passed to a step decides its own scale); the steps that improve keep it.
LOSSES = [1.0, 1.0, 1.0, 0.5, 0.25, 0.1]
STEADY_STEPS = [0, 3, 4, 5]


# optax's patience=p reduces one evaluation earlier than ours: our 0 is its 1.
@pytest.mark.parametrize(
    "plateau",
    [
        jdl.reduce_on_plateau(factor=0.5, patience=0),
        optax.contrib.reduce_on_plateau(factor=0.5, patience=1),
    ],
    ids=["jaxopt_dl", "optax"],
)
def test_plateau_scale_is_included_after_it_reduced(plateau):
    opt = jdl.chain(jdl.sgd(SCHEDULE), plateau)
    pairs = _walk(opt, steps=len(LOSSES), loss=LOSSES.__getitem__)
    for step in STEADY_STEPS:
        reported, updates = pairs[step]
        assert float(reported) == pytest.approx(_applied(updates), rel=1e-6)
    # Two reductions happened before step 3: the schedule alone would be 4x larger.
    assert float(pairs[3][0]) == pytest.approx(float(SCHEDULE(3)) / 4, rel=1e-6)


def test_plateau_scale_with_injected_rate_read_from_the_state_alone():
    opt = jdl.chain(
        jdl.inject_hyperparams(jdl.sgd)(learning_rate=0.1),
        jdl.reduce_on_plateau(factor=0.5, patience=0),
    )
    state = opt.init(PARAMS)
    for step, loss in enumerate(LOSSES):
        reported = jdl.current_learning_rate(state)
        updates, state = opt.update(GRAD, state, PARAMS, value=loss)
        if step in STEADY_STEPS:
            assert float(reported) == pytest.approx(_applied(updates))
        # After the step the state reports what that step applied (constant base rate).
        assert float(jdl.current_learning_rate(state)) == pytest.approx(_applied(updates))
    assert _applied(updates) == pytest.approx(0.025)


def test_multi_transform_reports_every_group():
    labels = {"a": "fast", "b": "slow"}
    opt = jdl.multi_transform({"fast": jdl.sgd(0.1), "slow": jdl.sgd(SCHEDULE)}, labels)
    for reported, updates in _walk(opt):
        assert set(reported) == {"fast", "slow"}
        assert float(reported["fast"]) == pytest.approx(_applied(updates, "a"))
        assert float(reported["slow"]) == pytest.approx(_applied(updates, "b"))


def test_multisteps_reports_the_inner_rate():
    opt = jdl.MultiSteps(jdl.sgd(SCHEDULE), every_k_schedule=2)
    tx = opt.gradient_transformation()
    state = tx.init(PARAMS)
    for _ in range(3):
        reported = [jdl.current_learning_rate(state, opt), jdl.current_learning_rate(state, tx)]
        _, state = tx.update(GRAD, state, PARAMS)
        updates, state = tx.update(GRAD, state, PARAMS)  # the k-th micro-step applies
        assert all(float(r) == pytest.approx(_applied(updates)) for r in reported)


def test_tree_set_learning_rate_takes_effect_on_next_step():
    for inject in (jdl.inject_hyperparams, optax.inject_hyperparams):
        opt = inject(jdl.sgd)(learning_rate=0.1)
        state = opt.init(PARAMS)
        assert float(optax.tree_utils.tree_get(state, "learning_rate")) == pytest.approx(0.1)
        state = optax.tree_utils.tree_set(state, learning_rate=0.025)
        assert float(jdl.current_learning_rate(state)) == pytest.approx(0.025)
        updates, state = opt.update(GRAD, state, PARAMS)
        assert _applied(updates) == pytest.approx(0.025)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop", "adagrad", "amsgrad"])
def test_tree_get_and_tree_set_see_what_optax_sees(name):
    ours = optax.inject_hyperparams(getattr(jdl, name))(learning_rate=0.1).init(PARAMS)
    theirs = optax.inject_hyperparams(getattr(optax, name))(learning_rate=0.1).init(PARAMS)
    assert float(optax.tree_utils.tree_get(ours, "learning_rate")) == pytest.approx(0.1)
    count = lambda s: len(optax.tree_utils.tree_get_all_with_path(s, "count"))
    assert count(ours) == count(theirs)
    chex_equal = jax.tree.structure(optax.tree_utils.tree_set(ours, count=jnp.asarray(7)))
    assert chex_equal == jax.tree.structure(ours)


def test_train_state_rate_and_missing_optimizer_error():
    ts = train_state.TrainState.create(apply_fn=None, params=PARAMS, tx=jdl.adam(SCHEDULE))
    ts = ts.apply_gradients(grads=GRAD)
    assert float(jdl.current_learning_rate(ts.opt_state, ts.tx)) == pytest.approx(
        float(SCHEDULE(1))
    )
    with pytest.raises(ValueError, match="pass the optimizer"):
        jdl.current_learning_rate(jdl.adam(0.1).init(PARAMS))
    with pytest.raises(ValueError, match="no learning rate"):
        jdl.current_learning_rate(jdl.trace(0.9).init(PARAMS), jdl.trace(0.9))


def test_reading_the_rate_works_under_jit():
    opt = jdl.chain(jdl.sgd(SCHEDULE), jdl.reduce_on_plateau(factor=0.5, patience=0))
    state = opt.init(PARAMS)
    _, state = opt.update(GRAD, state, PARAMS, value=1.0)
    _, state = opt.update(GRAD, state, PARAMS, value=1.0)
    eager = jdl.current_learning_rate(state, opt)
    jitted = jax.jit(lambda s: jdl.current_learning_rate(s, opt))(state)
    assert float(jitted) == pytest.approx(float(eager))


# ------------------------------------------------ every optimizer of the registry

MATRIX_PARAMS = {"a": jnp.ones(3), "w": jnp.linspace(0.5, 1.5, 6).reshape(3, 2)}
# Their state depends on the rate's history (or takes no schedule): a constant rate.
# lars's momentum comes after the rate, so a schedule's history stays in its state too.
CONSTANT_RATE = {
    "momentum",
    "rprop",
    "asgd",
    "schedule_free_sgd",
    "schedule_free_adamw",
    "lars",
}
EXTRA = {"asgd": dict(lambd=0.05), "sam": dict(), "lookahead": dict(sync_period=3)}


def _grads(step, params):
    keys = jax.random.split(jax.random.key(step), len(params))
    return {
        k: (1.0 + jax.random.uniform(key, p.shape)) * (-1.0) ** step
        for key, (k, p) in zip(keys, sorted(params.items()))
    }


def _build(name, rate):
    if name == "sam":  # a zero ascent: the descent step applies the outer rate alone
        return jdl.sam(jdl.sgd(rate), jdl.sgd(0.0))
    return registry.example(name, rate, **EXTRA.get(name, {}))


def _applied_ratio(u, u_ref):
    """The rate an update applied relative to the same optimizer at rate 1 (None: no move)."""
    u, u_ref = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)]) for t in (u, u_ref))
    moved = np.abs(u_ref) > 1e-3 * np.abs(u_ref).max(initial=0.0)
    if not moved.any() or not np.abs(u_ref).max() > 1e-9:
        return None
    ratio = u[moved] / u_ref[moved]
    np.testing.assert_allclose(ratio, np.median(ratio), rtol=1e-3)
    return float(np.median(ratio))


@pytest.mark.parametrize("name", list(registry.OPTIMIZERS))
def test_every_optimizer_reports_the_rate_it_applies(name):
    """The rate read before each step is the one the step applies: the update divided by
    the same optimizer's update at rate 1 (asgd and rprop: the update divided by the
    gradient and its sign, which is their step size)."""
    rate = 0.1 if name in CONSTANT_RATE else SCHEDULE
    opt = _build(name, rate)
    ref = _build(name, 1.0)
    params = MATRIX_PARAMS
    if name == "asgd":  # zero params: the update is -eta g exactly
        params = jax.tree.map(jnp.zeros_like, params)
    wrap = (lambda p: optax.LookaheadParams.init_synced(p)) if name == "lookahead" else None
    p = wrap(params) if wrap else params
    state, ref_state = opt.init(p), ref.init(p)
    checked = 0
    for step in range(6):
        reported = float(jdl.current_learning_rate(state, opt))
        grads = _grads(step, params)
        u, state = opt.update(grads, state, p)
        u_ref, ref_state = ref.update(grads, ref_state, p)
        if name == "lookahead":
            if (step + 1) % 3 == 0:  # the synchronizing step also moves the slow weights
                continue
            u, u_ref = u.fast, u_ref.fast
        if name == "asgd":
            applied = -float(u["a"][0] / grads["a"][0])
        elif name == "rprop":
            moved = np.abs(np.asarray(u["a"])) > 0
            if not moved.any():  # the step after a sign flip does not move
                continue
            applied = -float(u["a"][0] * np.sign(grads["a"][0]))
        else:
            applied = _applied_ratio(u, u_ref)
            if applied is None:
                continue
        assert reported == pytest.approx(applied, rel=1e-4), step
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize(
    "make",
    [
        lambda rate: optax.multi_transform(
            {"x": jdl.radam(rate), "y": jdl.yogi(rate)}, {"a": "x", "w": "y"}
        ),
        lambda rate: optax.chain(jdl.torch_nadam(rate)),
        lambda rate: optax.inject_hyperparams(jdl.radam)(learning_rate=rate),
        lambda rate: optax.chain(optax.clip(10.0), jdl.adabelief(rate)),
    ],
    ids=["optax_multi_transform", "optax_chain", "optax_inject_hyperparams", "optax_chain_2"],
)
def test_optax_composers_of_our_optimizers_report_the_rate(make):
    opt, ref = make(SCHEDULE), make(1.0)
    state, ref_state = opt.init(MATRIX_PARAMS), ref.init(MATRIX_PARAMS)
    for step in range(4):
        reported = jdl.current_learning_rate(state, opt)
        rates = reported.values() if isinstance(reported, dict) else [reported]
        grads = _grads(step, MATRIX_PARAMS)
        u, state = opt.update(grads, state, MATRIX_PARAMS)
        u_ref, ref_state = ref.update(grads, ref_state, MATRIX_PARAMS)
        for rate in rates:
            assert float(rate) == pytest.approx(_applied_ratio(u, u_ref), rel=1e-4)
