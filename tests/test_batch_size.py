"""Batch-size schedules (epoch -> batch size): formulas, bad input, and the lr/batch claim."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_dl as jdl
from jaxopt_dl.training import batch_size

BAD_INPUT = [
    (lambda: jdl.constant_batch_size(0), "batch_size", "0"),
    (lambda: jdl.step_doubling_batch_size(32, 0), "every", "0"),
    (lambda: jdl.step_doubling_batch_size(32, 5, factor=0.5), "factor", "0.5"),
    (lambda: jdl.step_doubling_batch_size(32, 5, max_batch_size=16), "max_batch_size", "16"),
    (lambda: jdl.geometric_batch_size(16, 0.9, 128), "growth", "0.9"),
    (lambda: jdl.geometric_batch_size(-16, 1.5, 128), "initial", "-16"),
    (lambda: jdl.constant_batch_size(8)(-1), "epoch", "-1"),
]


@pytest.mark.parametrize("make,name,value", BAD_INPUT, ids=[f"{n}={v}" for _, n, v in BAD_INPUT])
def test_bad_input_raises_value_error_naming_argument_and_value(make, name, value):
    with pytest.raises(ValueError, match=rf"{name}.*{value}"):
        make()


def test_top_level_names_are_the_training_modules():
    for name in batch_size.__all__:
        assert getattr(jdl, name) is getattr(batch_size, name)


# --------------------------------------------------------------------------
# Batch-size schedules
# --------------------------------------------------------------------------

BATCH_TABLE = [
    (jdl.constant_batch_size(64), lambda e: 64),
    (jdl.step_doubling_batch_size(32, 5), lambda e: 32 * 2 ** (e // 5)),
    (
        jdl.step_doubling_batch_size(32, 3, 4, max_batch_size=1000),
        lambda e: min(1000, 32 * 4 ** (e // 3)),
    ),
    (jdl.geometric_batch_size(16, 1.5, 500), lambda e: min(500, int(round(16 * 1.5**e)))),
    (jdl.geometric_batch_size(10, 2, 10**9), lambda e: min(10**9, 10 * 2**e)),
]


@pytest.mark.parametrize("schedule,formula", BATCH_TABLE)
def test_batch_size_schedules(schedule, formula):
    sizes = [schedule(e) for e in range(60)]
    assert sizes == [formula(e) for e in range(60)]
    assert all(isinstance(s, int) for s in sizes)
    assert all(b >= a for a, b in zip(sizes, sizes[1:]))
    assert isinstance(schedule(10**6), int)


def test_lr_decay_by_k_matches_batch_growth_by_k_on_noisy_quadratic():
    # The docstrings' claim: the stationary variance of SGD on a quadratic with curvature a
    # and per-example gradient noise sigma is eps sigma^2 / (B a (2 - eps a)) ~ eps/B for
    # small eps, so (eps/k, B) and (eps, kB) wander alike and k times less than (eps, B).
    # Minibatch noise of a batch of B independent examples has std sigma / sqrt(B).
    a, sigma, k = 0.5, 1.0, 4
    settings = jnp.array([[0.1, 8.0], [0.1 / k, 8.0], [0.1, 8.0 * k]])  # (eps, B)

    def stationary_variance(eps_and_batch, key):
        eps, batch = eps_and_batch

        def step(w, key):
            w = w - eps * (a * w + sigma / jnp.sqrt(batch) * jax.random.normal(key, (256,)))
            return w, w

        _, path = jax.lax.scan(step, jnp.zeros(256), jax.random.split(key, 3000))
        return jnp.var(path[1000:])

    var = jax.jit(jax.vmap(stationary_variance, in_axes=(0, None)))(settings, jax.random.PRNGKey(1))
    exact = settings[:, 0] * sigma**2 / (settings[:, 1] * a * (2 - settings[:, 0] * a))
    # 256 chains x 2000 correlated steps (correlation time ~1/(eps a) <= 80): >6000 effective
    # samples, so the relative standard error of each variance is < 2%; 10% is a wide margin.
    np.testing.assert_allclose(np.asarray(var), np.asarray(exact), rtol=0.1)
    np.testing.assert_allclose(float(var[1] / var[2]), 1.0, atol=0.1)
    assert float(var[0]) > 3 * float(var[1])
