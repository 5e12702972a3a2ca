"""Compiled = eager: every schedule, eagerly, jitted and jit-vmapped, around every boundary.

A schedule's boundaries (the end of a warmup, of a transition, a milestone, a cycle) are
where compiled code and eager code part ways: XLA computes ``1 - t / T`` at ``t = T`` as
a tiny negative number, and a fractional power of it is NaN (optax's
``polynomial_schedule`` under ``jit``). Every public schedule is evaluated at every step
within 2 of each of its boundaries, over many transition lengths and fractional powers,
in the three ways a user runs it; the values must agree and be finite.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_dl as jdl
from jaxopt_dl import schedules

LENGTHS = (1, 2, 3, 7, 10, 300, 500, 1000)
POWERS = (0.3, 0.5, 0.9, 1.0, 1.5)


def _cycle(T, p):
    return {
        "init_value": 0.1,
        "peak_value": 1.0,
        "warmup_steps": T // 3,
        "decay_steps": T + 1,
        "end_value": 0.01,
        "exponent": p,
    }


# name -> builder(T, p) -> (schedule, boundaries); p only where the schedule has a power.
BUILDERS = {
    "constant_schedule": lambda T, p: (jdl.constant_schedule(0.3), [0]),
    "polynomial_schedule": lambda T, p: (jdl.polynomial_schedule(1.0, 0.1, p, T, 5), [5, 5 + T]),
    "linear_schedule": lambda T, p: (jdl.linear_schedule(1.0, 0.01, T, 3), [3, 3 + T]),
    "piecewise_constant_schedule": lambda T, p: (
        jdl.piecewise_constant_schedule(1.0, {T: 0.5, 2 * T: 0.1}),
        [T, 2 * T],
    ),
    "exponential_decay": lambda T, p: (
        jdl.exponential_decay(1.0, T, p if p < 1 else 0.5, 4, end_value=0.01),
        [4, 4 + T, 4 + 2 * T],
    ),
    "cosine_decay_schedule": lambda T, p: (jdl.cosine_decay_schedule(2.0, T, 0.1, p), [0, T]),
    "join_schedules": lambda T, p: (
        jdl.join_schedules(
            [jdl.linear_schedule(0.0, 1.0, T), jdl.polynomial_schedule(1.0, 0.0, p, T)], [T]
        ),
        [T, 2 * T],
    ),
    "warmup_cosine_decay_schedule": lambda T, p: (
        jdl.warmup_cosine_decay_schedule(0.0, 1.0, T, 2 * T + 1, 0.01, p),
        [T, 2 * T + 1],
    ),
    "warmup_exponential_decay_schedule": lambda T, p: (
        jdl.warmup_exponential_decay_schedule(0.0, 1.0, T, T, 0.5, 2, staircase=True),
        [T, T + 2, 2 * T + 2],
    ),
    "sgdr_schedule": lambda T, p: (
        jdl.sgdr_schedule([_cycle(T, p), _cycle(T, p)]),
        [T // 3, T + 1, T + 1 + T // 3, 2 * T + 2],
    ),
    "linear_onecycle_schedule": lambda T, p: (
        jdl.linear_onecycle_schedule(T, 1.0),
        [int(0.3 * T), int(0.85 * T), T],
    ),
    "cosine_onecycle_schedule": lambda T, p: (
        jdl.cosine_onecycle_schedule(T, 1.0),
        [int(0.3 * T), T],
    ),
    "inverse_time_decay": lambda T, p: (jdl.inverse_time_decay(1.0, p, T, True), [T, 2 * T]),
    "step_decay": lambda T, p: (jdl.step_decay(1.0, 0.5, T), [T, 2 * T]),
    "multistep_decay": lambda T, p: (jdl.multistep_decay(1.0, [T, 2 * T, 2 * T]), [T, 2 * T]),
    "per_epoch": lambda T, p: (
        jdl.per_epoch(jdl.polynomial_schedule(1.0, 0.0, p, 3), T),
        [T, 3 * T],
    ),
    "cyclic_schedule": lambda T, p: (
        jdl.cyclic_schedule(0.1, 1.0, T, T + 1, mode="exp_range", gamma=0.999),
        [T, 2 * T + 1, 3 * T + 1],
    ),
}

# The builders whose ``p`` is a power, an exponent or a rate: evaluated for every p.
WITH_POWER = {
    "polynomial_schedule",
    "exponential_decay",
    "cosine_decay_schedule",
    "join_schedules",
    "warmup_cosine_decay_schedule",
    "sgdr_schedule",
    "inverse_time_decay",
    "per_epoch",
}
SCHEDULE_NAMES = [
    n for n in schedules.__all__ if n not in ("reduce_on_plateau", "ReduceLROnPlateauState")
]


def test_every_public_schedule_has_a_builder():
    assert sorted(BUILDERS) == sorted(SCHEDULE_NAMES)


def _steps_around(boundaries):
    steps = {0}
    for b in boundaries:
        steps.update(range(max(b - 2, 0), b + 3))
    return np.asarray(sorted(steps), np.int32)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_eager_jit_and_jit_vmap_agree_and_are_finite_at_every_boundary(name):
    failures = []
    powers = POWERS if name in WITH_POWER else (1.0,)
    for T, p in itertools.product(LENGTHS, powers):
        schedule, boundaries = BUILDERS[name](T, p)
        steps = _steps_around(boundaries)
        eager = np.asarray([schedule(int(t)) for t in steps], np.float64)
        jitted_fn = jax.jit(schedule)
        jitted = np.asarray([jitted_fn(t) for t in steps], np.float64)
        vmapped = np.asarray(jax.jit(jax.vmap(schedule))(jnp.asarray(steps)), np.float64)
        scale = max(float(np.max(np.abs(eager))), 1e-30)
        for mode, values in (("eager", eager), ("jit", jitted), ("jit(vmap)", vmapped)):
            bad = ~np.isfinite(values)
            if bad.any():
                failures.append(f"T={T} p={p}: {mode} not finite at steps {steps[bad].tolist()}")
        for mode, values in (("jit", jitted), ("jit(vmap)", vmapped)):
            # jit may turn x / c into x * (1/c): a few float32 ulps of the schedule's scale.
            close = np.isclose(values, eager, rtol=1e-5, atol=4 * 1.2e-7 * scale)
            if not close.all():
                t = steps[~close][0]
                failures.append(
                    f"T={T} p={p}: {mode} differs from eager at step {t}: "
                    f"{values[~close][0]} vs {eager[~close][0]}"
                )
    assert not failures, f"{name}:\n" + "\n".join(failures[:20])


def test_polynomial_with_fractional_power_ends_at_end_value_under_jit_where_optax_gives_nan():
    make = lambda m: m.polynomial_schedule(1.0, 0.1, power=0.5, transition_steps=500)  # noqa: E731
    assert np.isnan(float(jax.jit(make(optax))(500)))  # the defect this guards against
    for fn in (make(jdl), jax.jit(make(jdl))):
        assert float(fn(500)) == pytest.approx(0.1, abs=1e-7)
    # A jitted SGD with that schedule keeps finite parameters past step 500.
    tx = jdl.chain(optax.sgd(make(jdl)))
    params = jnp.ones(3)
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(0.01 * params, state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(505):
        params, state = step(params, state)
    assert bool(jnp.all(jnp.isfinite(params)))


def test_cosine_decay_with_huge_decay_steps_gives_optax_value_without_overflow():
    expected = float(optax.cosine_decay_schedule(1000.0, int(1e10))(int(1e9)))
    assert expected == pytest.approx(975.528, abs=1e-3)
    schedule = jdl.cosine_decay_schedule(1000.0, int(1e10))
    assert float(schedule(int(1e9))) == pytest.approx(expected, rel=1e-6)
    assert float(jax.jit(schedule)(int(1e9))) == pytest.approx(expected, rel=1e-6)


def test_polynomial_reaches_end_value_exactly_at_and_after_every_length_up_to_1000():
    """Compiled ``t / T`` is ``t * (1/T)``, so ``1 - t/T`` at ``t = T`` can leave a
    permanent residual above the end value (1.5e-4 at T=100, p=0.5 under jit)."""
    lengths = range(1, 1001)
    powers = jnp.asarray(POWERS, jnp.float32)

    def steps(T):
        return jnp.asarray([T, T + 1, T + 7, 2 * T + 3], jnp.int32)

    def at_and_after_end(power):
        # T is a Python constant in each schedule, as in user code: XLA folds 1/T.
        return jnp.stack(
            [jax.vmap(jdl.polynomial_schedule(1.0, 0.0, power, T))(steps(T)) for T in lengths]
        )

    compiled = np.asarray(jax.jit(jax.vmap(at_and_after_end))(powers))
    assert compiled.shape == (len(POWERS), len(lengths), 4)
    residual = np.argwhere(compiled != 0.0)
    assert residual.size == 0, (
        f"(power index, T - 1, step index) off the end value: {residual[:10]}"
    )
    eager = np.stack(
        [
            np.asarray(jdl.polynomial_schedule(1.0, 0.0, powers[:, None], T)(steps(T)))
            for T in lengths
        ]
    )
    assert np.all(eager == 0.0)
    # One step before the end the value is (1/T)**p, not the end value.
    before = jax.jit(jax.vmap(jdl.polynomial_schedule(1.0, 0.0, 0.5, 100)))(jnp.arange(98, 106))
    np.testing.assert_allclose(np.asarray(before[:2]), [0.02**0.5, 0.1], rtol=1e-5)
    assert np.all(np.asarray(before[2:]) == 0.0)
