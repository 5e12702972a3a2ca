"""jdl against line-by-line NumPy transcriptions of the lectures' pseudo-code.

Each transcription below copies its algorithm's lines in order (seed files in
``shared/seeds``): Goodfellow et al. Alg. 8.2, 8.3, 8.4, 8.5, 8.7 (seed 000), seed 002's
SGD with a decaying rate, its decoupled EMA momentum and the Nesterov variant, and seed
003's "not quite Adam". The problem is seed 002's noisy quadratic

.. math:: L(w) = (0.1 w_1)^2 + w_2^2,\\qquad \\nabla L = (0.02 w_1,\\ 2 w_2) + \\xi_t

with a fixed noise stream ``xi_t ~ N(0, 0.03^2)``. The NumPy side uses the seed's written
gradient formula at ITS OWN iterate (the look-ahead point where the algorithm says so);
jdl gets ``jax.grad`` of the loss at its params. Both run in float64 (jdl under
``jax.enable_x64``) for 100 steps, every step compared.

Seed 003's slide text lost the square roots in extraction (``x - alpha v / (cache + eps)``);
the transcription follows the slides' source (CS231n), ``sqrt(cache) + eps``, which is how
Adam and the preceding RMSProp slide read.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_dl as jdl

STEPS = 100
W0 = np.array([-4.0, 2.0])
NOISE = np.random.default_rng(2).normal(0.0, 0.03, (STEPS, 2))
RTOL, ATOL = 1e-10, 1e-13


def noisy_grad(w, k):
    """Seed 002's gradient of (0.1 w1)^2 + w2^2 plus the k-th noise sample."""
    return np.array([0.02 * w[0], 2.0 * w[1]]) + NOISE[k]


def loss(w, xi):
    """The same problem for jax.grad: the noise enters as a linear term."""
    return (0.1 * w[0]) ** 2 + w[1] ** 2 + jnp.dot(xi, w)


def run_jdl(opt):
    """jdl's iterates after each of STEPS updates, float64, one jitted scan."""
    with jax.enable_x64(True):

        @jax.jit
        def run(w, noise):
            def body(carry, xi):
                w, state = carry
                updates, state = opt.update(jax.grad(loss)(w, xi), state, w)
                w = jdl.apply_updates(w, updates)
                return (w, state), w

            return jax.lax.scan(body, (w, opt.init(w)), noise)[1]

        out = np.asarray(run(jnp.asarray(W0), jnp.asarray(NOISE)))
    assert out.dtype == np.float64
    return out


# ---------------------------------------------------------------------------
# Learning-rate schedules eps_k (written with jnp so jdl can trace them; the NumPy
# side evaluates them at Python ints k).
# ---------------------------------------------------------------------------


def inverse_time(k):
    return 0.1 / (1 + 0.01 * k)


def linear_decay(k, eps0=0.1, eps_tau=0.01, tau=60):
    """Goodfellow eq. 8.14: linear from eps0 to eps_tau over tau steps, then constant."""
    a = jnp.minimum(k * (1.0 / tau), 1.0)  # (jnp's int32 / int is float32 even under x64)
    return (1 - a) * eps0 + a * eps_tau


def eta_over_t(k):
    """Seed 002's eta_t = eta / t (t counted from 1)."""
    return 0.5 / (k + 1)


def at(schedule, k):
    with jax.enable_x64(True):
        return float(schedule(k))


# ---------------------------------------------------------------------------
# Transcriptions. Each returns the iterate jdl holds, after every step.
# ---------------------------------------------------------------------------


def seed002_sgd(eta):
    """w^{t+1} = w^t - eta_t g_t."""
    w, out = W0.copy(), []
    for k in range(STEPS):
        g = noisy_grad(w, k)
        w = w - at(eta, k) * g
        out.append(w)
    return np.array(out)


def alg_8_2(eps, alpha):
    """Goodfellow Alg. 8.2, SGD with momentum, eps_k at step k."""
    theta, v, out = W0.copy(), np.zeros(2), []
    for k in range(STEPS):
        g = noisy_grad(theta, k)  # Compute gradient estimate
        v = alpha * v - at(eps, k) * g  # Compute velocity update
        theta = theta + v  # Apply update
        out.append(theta)
    return np.array(out)


def alg_8_3(eps, alpha):
    """Goodfellow Alg. 8.3, Nesterov momentum; returns the look-ahead point theta + alpha v."""
    theta, v, out = W0.copy(), np.zeros(2), []
    for k in range(STEPS):
        theta_tilde = theta + alpha * v  # Apply interim update
        g = noisy_grad(theta_tilde, k)  # Compute gradient (at interim point)
        v = alpha * v - at(eps, k) * g  # Compute velocity update
        theta = theta + v  # Apply update
        out.append(theta + alpha * v)
    return np.array(out)


def alg_8_4(eps, delta):
    """Goodfellow Alg. 8.4, AdaGrad."""
    theta, r, out = W0.copy(), np.zeros(2), []
    for k in range(STEPS):
        g = noisy_grad(theta, k)  # Compute gradient
        r = r + g * g  # Accumulate squared gradient
        delta_theta = -eps / (delta + np.sqrt(r)) * g  # Compute update
        theta = theta + delta_theta  # Apply update
        out.append(theta)
    return np.array(out)


def alg_8_5(eps, rho, delta):
    """Goodfellow Alg. 8.5, RMSProp (delta inside the square root)."""
    theta, r, out = W0.copy(), np.zeros(2), []
    for k in range(STEPS):
        g = noisy_grad(theta, k)  # Compute gradient
        r = rho * r + (1 - rho) * g * g  # Accumulate squared gradient
        delta_theta = -eps / np.sqrt(delta + r) * g  # Compute parameter update
        theta = theta + delta_theta  # Apply update
        out.append(theta)
    return np.array(out)


def alg_8_7(eps, rho1, rho2, delta):
    """Goodfellow Alg. 8.7, Adam."""
    theta, s, r, t, out = W0.copy(), np.zeros(2), np.zeros(2), 0, []
    for k in range(STEPS):
        g = noisy_grad(theta, k)  # Compute gradient
        t = t + 1
        s = rho1 * s + (1 - rho1) * g  # Update biased first moment estimate
        r = rho2 * r + (1 - rho2) * g * g  # Update biased second moment estimate
        s_hat = s / (1 - rho1**t)  # Correct bias in first moment
        r_hat = r / (1 - rho2**t)  # Correct bias in second moment
        delta_theta = -eps * s_hat / (np.sqrt(r_hat) + delta)  # Compute update
        theta = theta + delta_theta  # Apply update
        out.append(theta)
    return np.array(out)


def not_quite_adam(alpha, gamma, beta, eps):
    """Seed 003: momentum + RMSProp normalization, no bias correction."""
    x, v, cache, out = W0.copy(), np.zeros(2), np.zeros(2), []
    for k in range(STEPS):
        grad = noisy_grad(x, k)
        v = gamma * v + (1 - gamma) * grad
        cache = beta * cache + (1 - beta) * grad**2
        x = x - alpha * v / (np.sqrt(cache) + eps)
        out.append(x)
    return np.array(out)


def seed002_ema_momentum(eta, beta1):
    """Seed 002's decoupled momentum: m <- b m + (1-b) grad(w); w <- w - eta m."""
    w, m, out = W0.copy(), np.zeros(2), []
    for k in range(STEPS):
        m = beta1 * m + (1 - beta1) * noisy_grad(w, k)
        w = w - at(eta, k) * m
        out.append(w)
    return np.array(out)


def seed002_nesterov_ema(eta, beta1):
    """Seed 002's decoupled Nesterov momentum; returns the next look-ahead w - eta b m."""
    w, m, out = W0.copy(), np.zeros(2), []
    for k in range(STEPS):
        w_hat = w - eta * beta1 * m
        m = beta1 * m + (1 - beta1) * noisy_grad(w_hat, k)
        w = w - eta * m
        out.append(w - eta * beta1 * m)
    return np.array(out)


def const(value):
    return lambda k: value


CASES = [
    ("seed002_sgd_eta_over_t", lambda: jdl.sgd(eta_over_t), lambda: seed002_sgd(eta_over_t)),
    (
        "alg8_2_inverse_time",
        lambda: jdl.momentum(inverse_time, 0.9, form="velocity"),
        lambda: alg_8_2(inverse_time, 0.9),
    ),
    (
        "alg8_2_linear_decay",
        lambda: jdl.momentum(linear_decay, 0.8, form="velocity"),
        lambda: alg_8_2(linear_decay, 0.8),
    ),
    ("alg8_2_constant", lambda: jdl.momentum(0.1, 0.9), lambda: alg_8_2(const(0.1), 0.9)),
    (
        "alg8_3_inverse_time",
        lambda: jdl.momentum(inverse_time, 0.9, nesterov=True, form="velocity"),
        lambda: alg_8_3(inverse_time, 0.9),
    ),
    (
        "alg8_3_linear_decay",
        lambda: jdl.momentum(linear_decay, 0.8, nesterov=True, form="velocity"),
        lambda: alg_8_3(linear_decay, 0.8),
    ),
    (
        "alg8_4_adagrad",
        lambda: jdl.adagrad(0.5, initial_accumulator_value=0.0, eps=1e-7, eps_in_sqrt=False),
        lambda: alg_8_4(0.5, 1e-7),
    ),
    (
        "alg8_5_rmsprop",
        lambda: jdl.rmsprop(0.02, decay=0.9, eps=1e-6, eps_in_sqrt=True),
        lambda: alg_8_5(0.02, 0.9, 1e-6),
    ),
    (
        "alg8_7_adam",
        lambda: jdl.adam(0.05, b1=0.9, b2=0.999, eps=1e-8),
        lambda: alg_8_7(0.05, 0.9, 0.999, 1e-8),
    ),
    (
        "alg8_7_adam_other_rhos",
        lambda: jdl.adam(0.05, b1=0.8, b2=0.99, eps=1e-6),
        lambda: alg_8_7(0.05, 0.8, 0.99, 1e-6),
    ),
    (
        "seed003_not_quite_adam",
        lambda: jdl.adam(0.05, b1=0.9, b2=0.999, eps=1e-8, bias_correction=False),
        lambda: not_quite_adam(0.05, 0.9, 0.999, 1e-8),
    ),
    (
        "seed002_ema_momentum",
        lambda: jdl.momentum(0.5, 0.9, form="ema"),
        lambda: seed002_ema_momentum(const(0.5), 0.9),
    ),
    (
        "seed002_ema_momentum_decaying_lr",
        lambda: jdl.momentum(eta_over_t, 0.9, form="ema"),
        lambda: seed002_ema_momentum(eta_over_t, 0.9),
    ),
    (
        "seed002_nesterov_ema",
        lambda: jdl.momentum(0.5, 0.9, nesterov=True, form="ema"),
        lambda: seed002_nesterov_ema(0.5, 0.9),
    ),
    (
        "seed002_nesterov_ema_b07",
        lambda: jdl.momentum(0.8, 0.7, nesterov=True, form="ema"),
        lambda: seed002_nesterov_ema(0.8, 0.7),
    ),
]


@pytest.mark.parametrize(
    "make_opt, transcription", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_matches_transcription(make_opt, transcription):
    expected = transcription()
    got = run_jdl(make_opt())
    assert np.max(np.abs(expected[-1] - W0)) > 0.1  # the run goes somewhere
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("schedule", [inverse_time, linear_decay], ids=["inverse_time", "linear"])
def test_decaying_lr_separates_velocity_from_trace(schedule):
    """With a decaying rate Alg. 8.2 (rate inside v) is not the heavy ball (rate outside)."""
    expected = alg_8_2(schedule, 0.9)
    trace_form = run_jdl(jdl.momentum(schedule, 0.9, form="trace"))
    assert np.max(np.abs(trace_form - expected)) > 1e-4


def test_nesterov_iterates_are_the_look_ahead_point():
    """jdl's Nesterov params are theta + alpha v, not Alg. 8.3's theta."""
    alpha, theta, v, thetas = 0.9, W0.copy(), np.zeros(2), []
    for k in range(STEPS):
        g = noisy_grad(theta + alpha * v, k)
        v = alpha * v - inverse_time(k) * g
        theta = theta + v
        thetas.append(theta)
    got = run_jdl(jdl.momentum(inverse_time, alpha, nesterov=True, form="velocity"))
    assert np.max(np.abs(got - np.array(thetas))) > 1e-3


def ema_transcription(updates, beta, debias):
    """m <- b m + (1-b) u; optionally m / (1 - b^t), for a stream of update vectors."""
    m, out = np.zeros(updates.shape[1:]), []
    for t, u in enumerate(updates, start=1):
        m = beta * m + (1 - beta) * u
        out.append(m / (1 - beta**t) if debias else m)
    return np.array(out)


def run_transform(tx, updates):
    with jax.enable_x64(True):

        @jax.jit
        def run(stream):
            def body(state, u):
                out, state = tx.update(u, state)
                return state, out

            return jax.lax.scan(body, tx.init(stream[0]), stream)[1]

        return np.asarray(run(jnp.asarray(updates)))


@pytest.mark.parametrize("beta", [0.5, 0.9, 0.99])
def test_ema_then_bias_correction_is_debiased_ema(beta):
    """chain(ema(b, debias=False), bias_correction(b)) == ema(b) == m_t / (1 - b^t)."""
    stream = NOISE + np.array([1.0, -2.0])
    expected = ema_transcription(stream, beta, debias=True)
    chained = run_transform(
        jdl.chain(jdl.ema(beta, debias=False), jdl.bias_correction(beta)), stream
    )
    debiased = run_transform(jdl.ema(beta), stream)
    np.testing.assert_allclose(chained, expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(debiased, expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(
        run_transform(jdl.ema(beta, debias=False), stream),
        ema_transcription(stream, beta, debias=False),
        rtol=RTOL,
        atol=ATOL,
    )
