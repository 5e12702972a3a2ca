"""Schedules against optax, torch.optim.lr_scheduler, Keras formulas and Robbins-Monro."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jaxopt_dl as jdl

STEPS = jnp.arange(1001)

# (id, builder): builder(module) builds the schedule with jaxopt_dl's or optax's functions,
# so the same arguments reach both.
OPTAX_TABLE = [
    ("constant", lambda m: m.constant_schedule(0.3)),
    ("linear", lambda m: m.linear_schedule(1.0, 0.01, 300, 50)),
    ("linear_up", lambda m: m.linear_schedule(0.0, 2.0, 777)),
    ("polynomial", lambda m: m.polynomial_schedule(1.0, 0.1, 2.5, 600, 100)),
    ("polynomial_sqrt", lambda m: m.polynomial_schedule(0.5, 0.0, 0.5, 1000)),
    ("exponential", lambda m: m.exponential_decay(0.5, 100, 0.9)),
    (
        "exponential_staircase_begin",
        lambda m: m.exponential_decay(0.5, 70, 0.8, transition_begin=30, staircase=True),
    ),
    ("exponential_floor", lambda m: m.exponential_decay(1.0, 50, 0.5, end_value=0.05)),
    ("exponential_growth_cap", lambda m: m.exponential_decay(0.01, 100, 1.5, end_value=0.2)),
    ("cosine", lambda m: m.cosine_decay_schedule(1.0, 700)),
    ("cosine_alpha_exponent", lambda m: m.cosine_decay_schedule(2.0, 400, 0.1, 2.0)),
    ("warmup_cosine", lambda m: m.warmup_cosine_decay_schedule(0.0, 1.0, 100, 900, 0.01)),
    (
        "warmup_cosine_nowarmup",
        lambda m: m.warmup_cosine_decay_schedule(0.1, 0.5, 0, 500, 0.0, 1.5),
    ),
    (
        "warmup_exponential",
        lambda m: m.warmup_exponential_decay_schedule(
            0.0, 1.0, 50, 100, 0.7, transition_begin=20, staircase=True, end_value=0.05
        ),
    ),
    (
        "warmup_exponential_plain",
        lambda m: m.warmup_exponential_decay_schedule(0.1, 1.0, 30, 40, 0.9),
    ),
    ("piecewise", lambda m: m.piecewise_constant_schedule(1.0, {300: 0.1, 100: 0.5, 700: 2.0})),
    ("piecewise_none", lambda m: m.piecewise_constant_schedule(0.7)),
    (
        "join",
        lambda m: m.join_schedules(
            [
                m.linear_schedule(0.0, 1.0, 200),
                m.cosine_decay_schedule(1.0, 500),
                m.constant_schedule(0.3),
            ],
            [200, 700],
        ),
    ),
    (
        "sgdr",
        lambda m: m.sgdr_schedule(
            [
                dict(init_value=0.0, peak_value=1.0, warmup_steps=20, decay_steps=300),
                dict(
                    init_value=0.1, peak_value=0.5, warmup_steps=0, decay_steps=200, end_value=0.01
                ),
                dict(
                    init_value=0.0, peak_value=0.25, warmup_steps=50, decay_steps=400, exponent=2.0
                ),
            ]
        ),
    ),
    ("cosine_onecycle", lambda m: m.cosine_onecycle_schedule(700, 1.0)),
    ("cosine_onecycle_args", lambda m: m.cosine_onecycle_schedule(500, 2.0, 0.25, 10.0, 100.0)),
    ("linear_onecycle", lambda m: m.linear_onecycle_schedule(800, 1.0)),
    ("linear_onecycle_args", lambda m: m.linear_onecycle_schedule(400, 0.5, 0.2, 0.6, 5.0, 50.0)),
]

NEW_TABLE = [
    ("inverse_time", lambda: jdl.inverse_time_decay(0.5, 0.1, 10)),
    ("inverse_time_staircase", lambda: jdl.inverse_time_decay(0.5, 0.1, 10, staircase=True)),
    ("step_decay", lambda: jdl.step_decay(0.1, 0.5, 10)),
    ("multistep", lambda: jdl.multistep_decay(0.1, [10, 30, 30])),
    ("per_epoch", lambda: jdl.per_epoch(jdl.step_decay(0.1, 0.5, 3), 7)),
    ("cyclic", lambda: jdl.cyclic_schedule(0.01, 0.1, 7, 5)),
    ("cyclic2", lambda: jdl.cyclic_schedule(0.01, 0.1, 7, mode="triangular2")),
    ("cyclic_exp", lambda: jdl.cyclic_schedule(0.01, 0.1, 7, mode="exp_range", gamma=0.99)),
]

ALL_SCHEDULES = [(name, lambda b=b: b(jdl)) for name, b in OPTAX_TABLE] + NEW_TABLE


@pytest.mark.parametrize("name,builder", OPTAX_TABLE, ids=[n for n, _ in OPTAX_TABLE])
def test_equals_optax_at_steps_0_to_1000(name, builder):
    # Eager against eager and jitted against jitted, to 2 float32 ulps of the schedule's
    # scale: XLA may rewrite x / c as x * (1/c) under jit, optax's polynomial fraction
    # 1 - T/T falls below 0 there (jaxopt_dl clamps it), and jaxopt_dl's cosine keeps the
    # digits that optax's (1 + cos) / 2 loses near its end.
    for transform, ulps in ((lambda f: f, 2), (jax.jit, 2)):
        ours = transform(jax.vmap(builder(jdl)))(STEPS)
        reference = np.asarray(
            jnp.broadcast_to(transform(jax.vmap(builder(optax)))(STEPS), STEPS.shape)
        )
        # optax's jitted polynomial gives NaN where 1 - t/T rounds below 0 (a fractional
        # power of a negative number): there jaxopt_dl must give optax's eager value.
        eager = np.asarray(jnp.broadcast_to(jax.vmap(builder(optax))(STEPS), STEPS.shape))
        reference = np.where(np.isnan(reference), eager, reference)
        assert np.all(np.isfinite(np.asarray(ours)))
        atol = ulps * 1.2e-7 * float(np.max(np.abs(reference)))
        np.testing.assert_allclose(np.asarray(ours), reference, rtol=1e-6, atol=atol)


@pytest.mark.parametrize("name,make", ALL_SCHEDULES, ids=[n for n, _ in ALL_SCHEDULES])
def test_float_output_jit_vmap_and_array_steps_agree(name, make):
    schedule = make()
    scalar = schedule(37)
    assert isinstance(scalar, jax.Array)
    assert jnp.issubdtype(scalar.dtype, jnp.floating)
    chex.assert_shape(scalar, ())
    steps = jnp.arange(0, 120, dtype=jnp.int32)
    vmapped = jax.jit(jax.vmap(schedule))(steps)
    elementwise = schedule(steps)
    chex.assert_shape(elementwise, (120,))
    # Tolerance: rtol 1e-6 plus two float32 ulps of the schedule's scale (jit may turn a
    # division into a multiplication by the reciprocal).
    atol = 2.4e-7 * float(jnp.max(jnp.abs(schedule(STEPS))))
    chex.assert_trees_all_close(vmapped, elementwise, rtol=1e-6, atol=atol)
    chex.assert_trees_all_close(jax.jit(schedule)(37), scalar, rtol=1e-6, atol=atol)
    chex.assert_trees_all_close(vmapped[37], scalar, rtol=1e-6, atol=atol)


# --------------------------------------------------------------------------
# torch.optim.lr_scheduler
# --------------------------------------------------------------------------


def torch_lrs(make_scheduler, num_steps, lr=0.1):
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(num_steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.asarray(lrs)


def _onecycle_equivalent(total, pct):
    """torch OneCycleLR arguments that equal optax's one-cycle over ``total`` steps."""
    return dict(total_steps=total + 1, pct_start=(int(pct * total) + 1) / (total + 1))


sched = torch.optim.lr_scheduler
TORCH_TABLE = [
    ("StepLR", lambda o: sched.StepLR(o, step_size=7, gamma=0.5), jdl.step_decay(0.1, 0.5, 7), 100),
    (
        "MultiStepLR",
        lambda o: sched.MultiStepLR(o, milestones=[10, 25, 25, 60], gamma=0.3),
        jdl.multistep_decay(0.1, [10, 25, 25, 60], 0.3),
        100,
    ),
    (
        "ExponentialLR",
        lambda o: sched.ExponentialLR(o, gamma=0.97),
        jdl.exponential_decay(0.1, 1, 0.97),
        200,
    ),
    (
        "ExponentialLR_gamma_0",
        lambda o: sched.ExponentialLR(o, gamma=0.0),
        jdl.exponential_decay(0.1, 1, 0.0),
        5,
    ),
    (
        "CosineAnnealingLR",
        lambda o: sched.CosineAnnealingLR(o, T_max=50, eta_min=0.001),
        jdl.cosine_decay_schedule(0.1, 50, alpha=0.01),
        51,
    ),
    (
        "OneCycleLR_cos",
        lambda o: sched.OneCycleLR(
            o,
            max_lr=1.0,
            anneal_strategy="cos",
            three_phase=False,
            cycle_momentum=False,
            **_onecycle_equivalent(100, 0.3),
        ),
        jdl.cosine_onecycle_schedule(100, 1.0, 0.3),
        101,
    ),
    (
        "OneCycleLR_cos_args",
        lambda o: sched.OneCycleLR(
            o,
            max_lr=2.0,
            anneal_strategy="cos",
            three_phase=False,
            cycle_momentum=False,
            div_factor=10.0,
            final_div_factor=100.0,
            **_onecycle_equivalent(77, 0.25),
        ),
        jdl.cosine_onecycle_schedule(77, 2.0, 0.25, 10.0, 100.0),
        78,
    ),
    # optax's linear one-cycle has three phases (up, back down to peak/div, then down to
    # the final value), i.e. torch's three_phase=True when pct_final = 2 pct_start.
    (
        "OneCycleLR_linear",
        lambda o: sched.OneCycleLR(
            o,
            max_lr=1.0,
            anneal_strategy="linear",
            three_phase=True,
            cycle_momentum=False,
            **_onecycle_equivalent(100, 0.3),
        ),
        jdl.linear_onecycle_schedule(100, 1.0, 0.3, 0.6),
        101,
    ),
    (
        "CyclicLR_triangular",
        lambda o: sched.CyclicLR(
            o, 0.01, 0.1, step_size_up=7, step_size_down=5, cycle_momentum=False
        ),
        jdl.cyclic_schedule(0.01, 0.1, 7, 5),
        150,
    ),
    (
        "CyclicLR_triangular2",
        lambda o: sched.CyclicLR(
            o, 0.01, 0.1, step_size_up=6, mode="triangular2", cycle_momentum=False
        ),
        jdl.cyclic_schedule(0.01, 0.1, 6, mode="triangular2"),
        150,
    ),
    (
        "CyclicLR_exp_range",
        lambda o: sched.CyclicLR(
            o,
            0.01,
            0.1,
            step_size_up=5,
            step_size_down=9,
            mode="exp_range",
            gamma=0.99,
            cycle_momentum=False,
        ),
        jdl.cyclic_schedule(0.01, 0.1, 5, 9, mode="exp_range", gamma=0.99),
        150,
    ),
]


@pytest.mark.parametrize(
    "name,make_torch,ours,num_steps", TORCH_TABLE, ids=[t[0] for t in TORCH_TABLE]
)
def test_equals_torch_lr_scheduler(name, make_torch, ours, num_steps):
    reference = torch_lrs(make_torch, num_steps)
    values = jax.jit(jax.vmap(ours))(jnp.arange(num_steps))
    # torch computes in float64, we in float32: values far below the peak (the end of a
    # one-cycle) carry the rounding of the peak, hence the absolute term.
    atol = 1e-7 * np.max(reference)
    np.testing.assert_allclose(np.asarray(values), reference, rtol=1e-5, atol=atol)


# --------------------------------------------------------------------------
# Keras formulas, written by hand
# --------------------------------------------------------------------------


@pytest.mark.parametrize("staircase", [False, True])
def test_inverse_time_decay_equals_keras_formula(staircase):
    init, rate, decay_steps = 0.3, 0.7, 25
    t = np.arange(1001, dtype=np.float64)
    p = np.floor(t / decay_steps) if staircase else t / decay_steps
    reference = init / (1 + rate * p)
    ours = jax.jit(jax.vmap(jdl.inverse_time_decay(init, rate, decay_steps, staircase)))(STEPS)
    np.testing.assert_allclose(np.asarray(ours), reference, rtol=1e-6)


def test_piecewise_constant_equals_keras_piecewise_constant_decay():
    boundaries, values = [100, 300, 301], [1.0, 0.5, 0.1, 0.02]

    def keras(step):  # PiecewiseConstantDecay: values[i] for b[i-1] < step <= b[i]
        for boundary, value in zip(boundaries, values):
            if step <= boundary:
                return value
        return values[-1]

    reference = np.array([keras(t) for t in range(1001)])
    scales = {b + 1: values[i + 1] / values[i] for i, b in enumerate(boundaries)}
    ours = jax.jit(jax.vmap(jdl.piecewise_constant_schedule(values[0], scales)))(STEPS)
    np.testing.assert_allclose(np.asarray(ours), reference, rtol=1e-6)


# --------------------------------------------------------------------------
# Robbins-Monro
# --------------------------------------------------------------------------


def test_robbins_monro_one_over_t_sum_diverges_and_squares_converge():
    n = 10**6
    terms = np.asarray(
        jax.jit(jax.vmap(jdl.inverse_time_decay(1.0, 1.0)))(jnp.arange(n)), np.float64
    )
    np.testing.assert_allclose(terms[:5], [1, 1 / 2, 1 / 3, 1 / 4, 1 / 5], rtol=1e-7)
    partial = np.cumsum(terms)
    squares = np.cumsum(terms**2)
    euler_gamma = 0.5772156649015329
    decades = [10**k for k in range(2, 7)]
    for n_k in decades:
        # H_N = ln N + gamma + 1/(2N) + O(1/N^2): the sum grows like log N, without bound;
        # 1e-6 covers the float32 rounding of a million terms.
        assert abs(partial[n_k - 1] - math.log(n_k) - euler_gamma) < 1.0 / n_k + 1e-6
        # sum 1/k^2 = pi^2/6 - 1/N + O(1/N^2): converges.
        gap = math.pi**2 / 6 - squares[n_k - 1]
        assert -1e-6 < gap < 1.01 / n_k + 1e-6
    # Each decade adds ln 10 (up to the 1/(2N) terms): no bound.
    growth = np.diff([partial[n_k - 1] for n_k in decades])

    def harmonic(n):  # ln N + gamma + 1/(2N) - 1/(12 N^2), error O(1/N^4)
        return math.log(n) + euler_gamma + 1 / (2 * n) - 1 / (12 * n**2)

    expected = [harmonic(10 * n_k) - harmonic(n_k) for n_k in decades[:-1]]
    np.testing.assert_allclose(growth, expected, atol=2e-6)
    assert np.all(np.diff([squares[n_k - 1] for n_k in decades]) < 1e-2)


_CURVATURE = jnp.array([0.02, 2.0])  # grad of (0.1 w1)^2 + w2^2 (seed 002)
_NOISE_STD = 0.03


def _distances_from_optimum(schedule, key, num_steps):
    def step(w, inputs):
        t, k = inputs
        grad = _CURVATURE * w + _NOISE_STD * jax.random.normal(k, (2,))
        w = w - schedule(t) * grad
        return w, jnp.linalg.norm(w)

    keys = jax.random.split(key, num_steps)
    _, distances = jax.lax.scan(step, jnp.zeros(2), (jnp.arange(num_steps), keys))
    return distances


def test_noisy_quadratic_fixed_lr_wanders_while_inverse_time_decay_converges():
    # Start AT the optimum of seed 002's noisy quadratic. With a fixed lr eps the iterate is
    # an AR(1) process w_i <- (1 - eps a_i) w_i - eps xi, whose stationary variance is
    # eps sigma^2 / (a_i (2 - eps a_i)): for eps = 0.5, sigma = 0.03 the w1 direction
    # (a = 0.02) has std 0.106, so E|w| ~ 0.087, reached after ~1/(eps a) = 100 steps and
    # kept forever. With eps_t = 0.5 / (1 + 0.005 t) ~ c / t, c = 100, 2 a c = 4 > 1, the
    # variance decays like c^2 sigma^2 / ((2ac - 1) t) = 3 / t: std ~0.013 over the last
    # 5000 of 20000 steps, E|w| ~ 0.011. Averaging 5000 steps of 32 seeded chains gives a
    # standard error of ~0.002 (fixed) and ~0.001 (decayed), so the thresholds 0.06 and 0.025
    # are >10 standard errors from the expected values and the test does not flake.
    num_steps, num_chains, tail = 20000, 32, 5000
    keys = jax.random.split(jax.random.PRNGKey(0), num_chains)
    mean_distance = {}
    for name, schedule in [
        ("fixed", jdl.constant_schedule(0.5)),
        ("inverse_time", jdl.inverse_time_decay(0.5, 0.005)),
    ]:
        run = jax.jit(jax.vmap(lambda k, s=schedule: _distances_from_optimum(s, k, num_steps)))
        mean_distance[name] = float(jnp.mean(run(keys)[:, -tail:]))
    assert mean_distance["fixed"] > 0.06
    assert mean_distance["inverse_time"] < 0.025
    assert mean_distance["fixed"] > 4 * mean_distance["inverse_time"]


# --------------------------------------------------------------------------
# As the learning rate of an optimizer
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,builder",
    [t for t in OPTAX_TABLE if t[0] in ("warmup_cosine", "exponential_staircase_begin", "sgdr")],
)
def test_as_optax_sgd_learning_rate_matches_optax_schedule(name, builder):
    def train(schedule):
        opt = optax.sgd(learning_rate=schedule, momentum=0.9)
        params = jnp.array([1.0, -2.0])

        def step(carry, _):
            params, state = carry
            updates, state = opt.update(_CURVATURE * params, state, params)
            return (optax.apply_updates(params, updates), state), params

        _, path = jax.lax.scan(step, (params, opt.init(params)), None, length=300)
        return path

    chex.assert_trees_all_close(
        jax.jit(train, static_argnums=0)(builder(jdl)), train(builder(optax)), rtol=1e-5, atol=1e-7
    )


@pytest.mark.parametrize("name,make", NEW_TABLE[:4], ids=[n for n, _ in NEW_TABLE[:4]])
def test_as_optax_sgd_learning_rate_follows_the_schedule(name, make):
    schedule = make()
    opt = optax.sgd(learning_rate=schedule)
    params = jnp.array([1.0, -2.0])
    state = opt.init(params)
    step = jax.jit(lambda p, s: opt.update(_CURVATURE * p, s, p))
    expected = np.array([1.0, -2.0])
    for t in range(40):
        updates, state = step(params, state)
        params = optax.apply_updates(params, updates)
        expected = expected - float(schedule(t)) * np.asarray(_CURVATURE) * expected
    np.testing.assert_allclose(np.asarray(params), expected, rtol=1e-5)


def test_traced_hyperparameters_are_not_validated_and_work():
    def values(init, rate, peak, gamma):
        steps = jnp.arange(50)
        return (
            jax.vmap(jdl.exponential_decay(init, 10, rate))(steps),
            jax.vmap(jdl.inverse_time_decay(init, rate))(steps),
            jax.vmap(jdl.warmup_cosine_decay_schedule(0.0, peak, 10, 40, 0.01))(steps),
            jax.vmap(jdl.cyclic_schedule(0.01, peak, 5, mode="exp_range", gamma=gamma))(steps),
        )

    args = (
        jnp.array([0.1, 0.2]),
        jnp.array([0.5, 0.9]),
        jnp.array([1.0, 0.0]),
        jnp.array([0.9, 0.99]),
    )
    batched = jax.jit(jax.vmap(values))(*args)
    for i in range(2):
        single = values(*(float(a[i]) for a in args))
        chex.assert_trees_all_close(jax.tree.map(lambda x, i=i: x[i], batched), single, rtol=1e-6)


# --------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------

BAD_INPUT = [
    (lambda: jdl.linear_schedule(1.0, 0.0, 0), "transition_steps", "0"),
    (lambda: jdl.polynomial_schedule(1.0, 0.0, 2, -5), "transition_steps", "-5"),
    (lambda: jdl.polynomial_schedule(1.0, 0.0, 2, 5, -1), "transition_begin", "-1"),
    (lambda: jdl.exponential_decay(1.0, 0, 0.5), "transition_steps", "0"),
    (lambda: jdl.exponential_decay(1.0, 10, -0.5), "decay_rate", "-0.5"),
    (lambda: jdl.cosine_decay_schedule(1.0, 0), "decay_steps", "0"),
    (lambda: jdl.warmup_cosine_decay_schedule(0.0, 1.0, 200, 100), "warmup_steps", "200"),
    (lambda: jdl.warmup_cosine_decay_schedule(0.0, 1.0, 100, 100), "decay_steps", "100"),
    (lambda: jdl.warmup_cosine_decay_schedule(0.0, 1.0, -1, 100), "warmup_steps", "-1"),
    (
        lambda: jdl.warmup_exponential_decay_schedule(0.0, 1.0, 10, -3, 0.5),
        "transition_steps",
        "-3",
    ),
    (lambda: jdl.piecewise_constant_schedule(1.0, {-10: 0.5}), "boundaries_and_scales", "-10"),
    (lambda: jdl.piecewise_constant_schedule(1.0, {10: -0.5}), "boundaries_and_scales", "-0.5"),
    (
        lambda: jdl.join_schedules([jdl.constant_schedule(1.0)] * 3, [50, 10]),
        "boundaries",
        "50, 10",
    ),
    (lambda: jdl.join_schedules([jdl.constant_schedule(1.0)] * 2, [-1]), "boundaries", "-1"),
    (lambda: jdl.join_schedules([jdl.constant_schedule(1.0)] * 2, []), "boundaries", r"\[\]"),
    (lambda: jdl.cosine_onecycle_schedule(0, 1.0), "transition_steps", "0"),
    (lambda: jdl.cosine_onecycle_schedule(100, 1.0, pct_start=1.5), "pct_start", "1.5"),
    (lambda: jdl.linear_onecycle_schedule(100, 1.0, 0.5, 0.4), "pct_final", "0.4"),
    (lambda: jdl.linear_onecycle_schedule(100, 1.0, div_factor=0.0), "div_factor", "0.0"),
    (lambda: jdl.inverse_time_decay(1.0, -0.1), "decay_rate", "-0.1"),
    (lambda: jdl.inverse_time_decay(1.0, 0.1, 0), "decay_steps", "0"),
    (lambda: jdl.step_decay(1.0, 0.0, 10), "drop", "0.0"),
    (lambda: jdl.step_decay(1.0, 1.5, 10), "drop", "1.5"),
    (lambda: jdl.step_decay(1.0, 0.5, 0), "steps_per_drop", "0"),
    (lambda: jdl.multistep_decay(1.0, [30, 10]), "milestones", "30, 10"),
    (lambda: jdl.multistep_decay(1.0, [-5, 10]), "milestones", "-5"),
    (lambda: jdl.multistep_decay(1.0, [5], gamma=-1.0), "gamma", "-1.0"),
    (lambda: jdl.per_epoch(jdl.constant_schedule(1.0), 0), "steps_per_epoch", "0"),
    (lambda: jdl.cyclic_schedule(0.1, 1.0, 0), "step_size_up", "0"),
    (lambda: jdl.cyclic_schedule(0.1, 1.0, 10, -2), "step_size_down", "-2"),
    (lambda: jdl.cyclic_schedule(0.1, 1.0, mode="sawtooth"), "mode", "sawtooth"),
    (lambda: jdl.cyclic_schedule(0.1, 1.0, mode="exp_range", gamma=0.0), "gamma", "0.0"),
]


@pytest.mark.parametrize("make,name,value", BAD_INPUT, ids=[f"{n}={v}" for _, n, v in BAD_INPUT])
def test_bad_input_raises_value_error_naming_argument_and_value(make, name, value):
    with pytest.raises(ValueError, match=rf"{name}.*{value}"):
        make()
