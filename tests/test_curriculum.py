"""Curriculum sampler and continuation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_dl as jdl
from jaxopt_dl import training


@pytest.mark.parametrize(
    "pacing, fractions",
    [
        (training.baby_steps(4, 2), [0.25, 0.25, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0]),
        (training.linear_pacing(0.1, 6), [0.1 + 0.9 * e / 6 if e < 6 else 1.0 for e in range(8)]),
    ],
)
def test_pool_grows_as_scheduled_and_is_sorted_by_score(pacing, fractions):
    scores = np.random.default_rng(0).normal(size=200)
    sampler = training.CurriculumSampler(scores, pacing)
    previous = 0
    for epoch, fraction in enumerate(fractions):
        pool = sampler.pool(epoch)
        assert len(pool) == int(np.ceil(fraction * 200 - 1e-9))
        assert len(pool) >= previous
        previous = len(pool)
        np.testing.assert_array_equal(pool, np.argsort(scores)[: len(pool)])
        assert np.all(np.diff(scores[pool]) >= 0)
        drawn = sampler(epoch, np.random.default_rng(epoch))
        assert len(drawn) == 200 and set(drawn) == set(pool)


def test_fit_with_curriculum_sampler_trains_on_the_pool_only():
    (x, y), _ = jdl.data.load_digits()
    x, y = x[:256], y[:256]
    state = training.create_train_state(
        jdl.models.MLP(hidden=(16,)), jdl.adam(1e-2), jax.random.key(0), x[:1]
    )
    scores = training.example_scores(state, (x, y), kind="margin")
    seen = []

    class Recording(training.CurriculumSampler):
        def __call__(self, epoch, rng):
            drawn = super().__call__(epoch, rng)
            seen.append(set(drawn.tolist()))
            return drawn

    recording = Recording(scores, training.baby_steps(2, 1))
    _, history = training.fit(
        state,
        (x, y),
        epochs=2,
        batch_size=64,
        progress=False,
        config=training.FitConfig(sampler=recording),
    )
    assert seen[0] == set(np.argsort(scores)[:128].tolist())
    assert len(seen[1]) == 256
    assert history.steps_per_epoch == [4, 4]


def test_example_scores_match_reference_losses():
    (x, y), _ = jdl.data.load_digits()
    model = jdl.models.MLP(hidden=(8,))
    state = training.create_train_state(model, jdl.sgd(0.1), jax.random.key(1), x[:1])
    logits = np.asarray(model.apply({"params": state.params}, x[:50]), np.float64)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ref = -logp[np.arange(50), y[:50]]
    np.testing.assert_allclose(training.example_scores(state, (x[:50], y[:50])), ref, rtol=1e-4)


def f(x):
    """Multimodal: global minimum 0 at x = 0, local minima near every multiple of pi."""
    return 0.05 * x**2 - jnp.cos(2 * x) + 1.0


def test_continuation_escapes_the_local_minimum_plain_gd_gets_stuck_in():
    x0 = jnp.array(4.0)
    tx = jdl.sgd(0.1)
    plain = training.continuation(f, x0, [0.0], tx, 300, jax.random.key(0))
    assert abs(float(plain.x) - np.pi) < 0.2 and float(f(plain.x)) > 0.4
    cont = training.continuation(f, x0, [1.5, 0.7, 0.2, 0.0], tx, 300, jax.random.key(0))
    assert abs(float(cont.x)) < 1e-3
    assert float(f(cont.x)) < 1e-5
    assert cont.stage_value.shape == (4,) and cont.stage_value[-1] <= cont.stage_value[0] + 1e-6


def test_gaussian_smoothing_matches_closed_form():
    # E[cos(2(x + s e))] = cos(2x) exp(-2 s^2)
    x, s = 0.7, 0.6
    smoothed = training.gaussian_smoothing(lambda z: jnp.cos(2 * z), s, 200_000)
    np.testing.assert_allclose(
        smoothed(jnp.array(x), jax.random.key(0)), np.cos(2 * x) * np.exp(-2 * s**2), atol=5e-3
    )
