"""Stochastic rounding to bfloat16/float16: unbiased, exact on specials, and what it buys.

Unbiasedness is checked as a property: the mean of many rounded draws of a value
between two neighbours of the grid lies within the binomial interval around it. The
optimizer-level tests compare low-precision states and parameters with the float32
run of the same optimizer.
"""

import subprocess
import sys
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_dl as jdl
from jaxopt_dl import _precision, training

ROOT = Path(__file__).resolve().parents[1]
DTYPES = {"bfloat16": jnp.bfloat16, "float16": jnp.float16}
DRAWS = 1 << 14
Z = 5.0  # binomial interval half-width in standard errors (a false alarm: ~6e-7 per value)


def _neighbours(x32, dtype):
    """The two grid points of ``dtype`` around each float32 value (equal when on the grid)."""
    np_dtype = np.dtype(dtype)
    near = x32.astype(np_dtype)
    up = np.where(
        near.astype(np.float32) < x32, np.nextafter(near, np.asarray(np.inf, np_dtype)), near
    )
    down = np.where(
        near.astype(np.float32) > x32, np.nextafter(near, np.asarray(-np.inf, np_dtype)), near
    )
    return down.astype(np.float64), up.astype(np.float64)


def _values_between(dtype, exponents, rng):
    """Values strictly between two neighbours at each binade ``2^e`` (both signs)."""
    values = []
    for e in exponents:
        lo = np.float32(2.0**e) * np.float32(1 + rng.integers(1, 100) / 128)
        lo = np.float32(lo.astype(np.dtype(dtype)))  # a grid point
        hi = np.float32(np.nextafter(lo.astype(np.dtype(dtype)), np.asarray(np.inf, dtype)))
        for frac in (1 / 8, 1 / 3, 1 / 2, 0.9, rng.uniform()):
            x = np.float32(lo + np.float32(frac) * (hi - lo))
            if lo < x < hi:
                values.extend([x, -x])
    return np.asarray(values, np.float32)


EXPONENTS = {
    # bfloat16 shares float32's range: subnormals at 2^-130, tiny, small, large, near max.
    "bfloat16": (-130, -100, -20, -3, 0, 7, 60, 126),
    # float16: subnormals (2^-24 spacing) at 2^-30, 2^-24, 2^-17, then the normal range.
    "float16": (-30, -24, -17, -14, -3, 0, 7, 15),
}


def _z_scores(dtype, values, draws):
    """|mean - x| in standard errors of the binomial mean, per value."""
    down, up = _neighbours(values, dtype)
    p = (values.astype(np.float64) - down) / (up - down)
    mean = np.asarray(draws, np.float64).mean(axis=-1)
    se = (up - down) * np.sqrt(p * (1 - p) / draws.shape[-1])
    return np.abs(mean - values) / se


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_mean_of_draws_over_elements_is_the_value(name):
    dtype = DTYPES[name]
    values = _values_between(dtype, EXPONENTS[name], np.random.default_rng(0))
    assert values.size >= 60
    x = jnp.broadcast_to(jnp.asarray(values)[:, None], (values.size, DRAWS))
    draws = jdl.stochastic_round(x, dtype, jax.random.key(1)).astype(jnp.float32)
    down, up = _neighbours(values, dtype)
    d = np.asarray(draws, np.float64)
    assert np.all((d == down[:, None]) | (d == up[:, None]))  # only the two neighbours
    z = _z_scores(dtype, values, d)
    assert z.max() < Z, f"worst value {values[z.argmax()]!r}: {z.max():.2f} standard errors"


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_mean_of_draws_over_steps_is_the_value(name):
    """The optimizer's bits: one element, a new step count each draw."""
    dtype = DTYPES[name]
    values = _values_between(dtype, EXPONENTS[name][2:6], np.random.default_rng(2))
    counts = jnp.arange(1, DRAWS + 1, dtype=jnp.int32)

    def at_count(count):
        words = (5, _precision.STREAM_MU, count, 3)
        return _precision.round_with_bits(
            jnp.asarray(values), dtype, _precision.hash_bits(words, values.shape)
        )

    draws = jax.jit(jax.vmap(at_count))(counts).astype(jnp.float32).T
    z = _z_scores(dtype, values, np.asarray(draws, np.float64))
    assert z.max() < Z, f"worst value {values[z.argmax()]!r}: {z.max():.2f} standard errors"


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_every_representable_value_and_special_is_unchanged(name):
    dtype = DTYPES[name]
    every = np.arange(1 << 16, dtype=np.uint16).view(np.dtype(dtype))
    x = jnp.asarray(every.astype(np.float32))
    for key in (0, 1, jax.random.key(3)):
        out = np.asarray(jdl.stochastic_round(x, dtype, key))
        nan = np.isnan(every.astype(np.float32))
        assert np.all(np.isnan(out.astype(np.float32)) == nan)
        np.testing.assert_array_equal(out.view(np.uint16)[~nan], every.view(np.uint16)[~nan])


@pytest.mark.parametrize("name", sorted(DTYPES))
def test_never_overflows_and_saturates_beyond_the_largest_value(name):
    dtype = DTYPES[name]
    largest = float(jnp.finfo(dtype).max)
    below = np.nextafter(np.float32(largest), np.float32(0))  # between the top two values
    top = np.finfo(np.float32).max
    beyond = np.asarray([np.nextafter(np.float32(largest), np.float32(np.inf)), top, -top])
    x = jnp.asarray(np.concatenate([np.full(4096, below), -np.full(4096, below), beyond]))
    out = np.asarray(jdl.stochastic_round(x.astype(jnp.float32), dtype, 0).astype(jnp.float32))
    assert np.all(np.isfinite(out))
    assert np.all(np.abs(out[-3:]) == largest)
    np.testing.assert_array_equal(
        np.asarray(jdl.stochastic_round(jnp.asarray([np.inf, -np.inf, 0.0, -0.0]), dtype, 0))
        .astype(np.float32)
        .tolist(),
        [np.inf, -np.inf, 0.0, -0.0],
    )
    signs = np.signbit(np.asarray(jdl.stochastic_round(jnp.asarray([0.0, -0.0]), dtype, 0)))
    assert signs.tolist() == [False, True]


def test_jit_vmap_and_keys():
    x = jax.random.normal(jax.random.key(0), (4, 257)) * 3.0
    keys = jax.random.split(jax.random.key(1), 4)
    eager = jnp.stack([jdl.stochastic_round(x[i], jnp.bfloat16, keys[i]) for i in range(4)])
    mapped = jax.jit(jax.vmap(lambda v, k: jdl.stochastic_round(v, jnp.bfloat16, k)))(x, keys)
    chex.assert_trees_all_equal(mapped, eager)
    assert mapped.dtype == jnp.bfloat16
    # Other keys, other draws; the same key, the same draws.
    a = jdl.stochastic_round(x, jnp.float16, 1)
    chex.assert_trees_all_equal(a, jdl.stochastic_round(x, jnp.float16, 1))
    assert not np.array_equal(np.asarray(a), np.asarray(jdl.stochastic_round(x, jnp.float16, 2)))


def test_bad_arguments_name_themselves():
    x = jnp.ones(3)
    with pytest.raises(ValueError, match="dtype"):
        jdl.stochastic_round(x, jnp.float32, 0)
    with pytest.raises(TypeError, match="key"):
        jdl.stochastic_round(x, jnp.bfloat16, 0.5)
    with pytest.raises(TypeError, match="x"):
        jdl.stochastic_round(jnp.ones(3, jnp.int32), jnp.bfloat16, 0)
    with pytest.raises(ValueError, match="rounding='up'"):
        jdl.adam(1e-3, rounding="up")
    with pytest.raises(TypeError, match="rounding_seed"):
        jdl.sgd(1e-3, 0.9, rounding="stochastic", rounding_seed="a")
    with pytest.raises(ValueError, match="key="):
        jdl.apply_updates(x, x, rounding="stochastic")
    with pytest.raises(ValueError, match="rounding"):
        jdl.apply_updates(x, x, rounding="Stochastic", key=0)


# -- moments --------------------------------------------------------------------------

GRAD = jnp.asarray(np.random.default_rng(0).uniform(0.5, 2.0, 1024), jnp.float32)
STEPS = 5000


def _run(opt, params, grad, steps=STEPS):
    def body(_, state):
        return opt.update(grad, state, params)[1]

    return jax.jit(lambda s: jax.lax.fori_loop(0, steps, body, s))(opt.init(params))


def _relative_errors(low, reference):
    """(|mean ratio - 1|, mean |ratio - 1|) of a low-precision state to the float32 one."""
    ratio = np.asarray(low, np.float64) / np.asarray(reference, np.float64)
    return float(abs(np.mean(ratio) - 1)), float(np.mean(np.abs(ratio - 1)))


# (name, build(rounding, low) -> optimizer, params dtype when low, state fields to compare)
MOMENT_CASES = [
    (
        "adam",
        lambda r, low: jdl.adam(1e-3, mu_dtype=low, nu_dtype=low, rounding=r),
        jnp.float32,
        (lambda s: s[0].mu, lambda s: s[0].nu),
    ),
    (
        "nadam",
        lambda r, low: jdl.nadam(1e-3, mu_dtype=low, nu_dtype=low, rounding=r, rounding_seed=4),
        jnp.float32,
        (lambda s: s[0].mu, lambda s: s[0].nu),
    ),
    (
        "amsgrad",
        lambda r, low: jdl.amsgrad(1e-3, mu_dtype=low, rounding=r),
        jnp.float32,
        (lambda s: s[0].mu,),
    ),
    (
        "sgd_momentum",
        lambda r, low: jdl.sgd(1e-3, 0.9, accumulator_dtype=low, rounding=r),
        jnp.float32,
        (lambda s: s[0].trace,),
    ),
    (
        "rmsprop",
        lambda r, low: jdl.rmsprop(1e-3, 0.99, rounding=r),
        "low",
        (lambda s: s[0].nu,),
    ),
    (
        "rmsprop_centered",
        lambda r, low: jdl.rmsprop(1e-3, 0.99, centered=True, rounding=r),
        "low",
        (lambda s: s[0].mu, lambda s: s[0].nu),
    ),
    (
        "rmsprop_momentum",
        lambda r, low: jdl.rmsprop(1e-3, 0.99, momentum=0.9, rounding=r),
        "low",
        (lambda s: s[0].nu, lambda s: s[2].trace),
    ),
    (
        "adagrad",
        lambda r, low: jdl.adagrad(1e-3, rounding=r),
        "low",
        (lambda s: s[0].sum_of_squares,),
    ),
]


@pytest.mark.parametrize(
    "name,build,params_dtype,fields", MOMENT_CASES, ids=[c[0] for c in MOMENT_CASES]
)
def test_bf16_state_under_a_constant_gradient_stalls_to_nearest_and_tracks_float32_stochastic(
    name, build, params_dtype, fields
):
    low = jnp.bfloat16
    p_dtype = low if params_dtype == "low" else params_dtype
    params = jnp.zeros(GRAD.shape, p_dtype)
    grad = GRAD.astype(p_dtype)
    reference = _run(build("nearest", None), params.astype(jnp.float32), grad.astype(jnp.float32))
    nearest = _run(build("nearest", low), params, grad)
    stochastic = _run(build("stochastic", low), params, grad)
    for field in fields:
        assert field(stochastic).dtype == low and field(nearest).dtype == low
        stalled_bias, stalled = _relative_errors(field(nearest), field(reference))
        bias, tracked = _relative_errors(field(stochastic), field(reference))
        assert bias < 0.005, (name, bias)
        assert stalled_bias > 0.01 and stalled_bias > 4 * bias, (name, stalled_bias, bias)
        if name != "adagrad":
            # An EMA forgets its rounding noise; AdaGrad's growing sum keeps all of it
            # (unbiased, with a spread of about 2^-4.5 of the sum after 5000 steps).
            assert tracked < 0.005, (name, tracked)
    # The state of nearest keeps optax's structure; float32 states are unchanged numbers.
    assert jax.tree.structure(nearest) == jax.tree.structure(build("nearest", low).init(params))


def test_adam_ema_figures_match_the_issue():
    """b1 = 0.9 mu stalls 2-4% below g, b2 = 0.999 nu at a fraction of g^2 (nearest)."""
    params = jnp.zeros(GRAD.shape)
    opt = lambda r: jdl.adam(1e-3, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16, rounding=r)  # noqa: E731
    reference = _run(jdl.adam(1e-3), params, GRAD)[0]
    nearest, stochastic = (
        _run(opt("nearest"), params, GRAD)[0],
        _run(opt("stochastic"), params, GRAD)[0],
    )
    ratio = lambda a, b: np.asarray(a, np.float64) / np.asarray(b, np.float64)  # noqa: E731
    assert 0.9 < ratio(nearest.mu, reference.mu).mean() < 0.99
    assert ratio(nearest.nu, reference.nu).mean() < 0.6
    assert abs(ratio(stochastic.mu, reference.mu).mean() - 1) < 1e-3
    assert abs(ratio(stochastic.nu, reference.nu).mean() - 1) < 1e-3


def test_float32_state_with_stochastic_rounding_gives_optax_numbers():
    """float32 state: the rounding is a no-op, so optax's numbers (rtol 2e-5, as optax parity:
    the bias correction is computed accurately, optax's as ``1 - b**t``)."""
    params = {"w": jnp.linspace(-1.0, 1.0, 7), "b": jnp.ones(2)}
    grads = jax.tree.map(lambda p: 0.3 * p + 0.1, params)
    for ours, theirs in (
        (jdl.adam(1e-2, rounding="stochastic"), optax.adam(1e-2)),
        (jdl.sgd(1e-2, 0.9, rounding="stochastic"), optax.sgd(1e-2, 0.9)),
        (
            jdl.sgd(1e-2, 0.9, nesterov=True, rounding="stochastic"),
            optax.sgd(1e-2, 0.9, nesterov=True),
        ),
        (jdl.rmsprop(1e-2, momentum=0.9, rounding="stochastic"), optax.rmsprop(1e-2, momentum=0.9)),
        (
            jdl.rmsprop(1e-2, centered=True, rounding="stochastic"),
            optax.rmsprop(1e-2, centered=True),
        ),
        (jdl.adagrad(1e-2, rounding="stochastic"), optax.adagrad(1e-2)),
        (jdl.amsgrad(1e-2, rounding="stochastic"), optax.amsgrad(1e-2)),
    ):
        s1, s2 = ours.init(params), theirs.init(params)
        p1 = p2 = params
        for _ in range(5):
            u1, s1 = ours.update(grads, s1, p1)
            u2, s2 = theirs.update(grads, s2, p2)
            p1, p2 = jdl.apply_updates(p1, u1), optax.apply_updates(p2, u2)
        chex.assert_trees_all_close(p1, p2, rtol=2e-5, atol=1e-6)


def test_stochastic_adam_takes_the_plain_path_in_the_fused_step():
    params = {"w": jnp.linspace(-1.0, 1.0, 64)}
    tx = jdl.adam(1e-2, mu_dtype=jnp.bfloat16, rounding="stochastic")
    state = tx.init(params)
    grads = {"w": jnp.full(64, 0.3)}
    fused = jdl.fused.apply_gradients(tx, grads, state, params)
    updates, plain_state = tx.update(grads, state, params)
    chex.assert_trees_all_equal(fused, (jdl.apply_updates(params, updates), plain_state))


# -- parameters -----------------------------------------------------------------------


def _quadratic(seed=0, n=256):
    rng = np.random.default_rng(seed)
    target = jnp.asarray(rng.uniform(1.0, 2.0, n), jnp.float32)
    start = target + jnp.asarray(rng.choice([-1, 1], n) * rng.uniform(0.5, 1.0, n), jnp.float32)
    curvature = jnp.asarray(rng.uniform(0.5, 1.5, n), jnp.float32)
    return target, start, curvature


def _descend(start, target, curvature, how, steps=20000, lr=1e-3):
    """SGD on 0.5 sum a (w - w*)^2; returns the final float32 loss."""

    def loss(w):
        return 0.5 * jnp.sum(curvature * (w.astype(jnp.float32) - target) ** 2)

    def body(step, carry):
        w, c = carry
        u = jax.tree.map(lambda g: -lr * g.astype(jnp.float32), jax.grad(loss)(w))
        if how == "kahan":
            return jdl.kahan_apply_updates(w, u, c)
        if how == "stochastic":
            key = jnp.stack([jnp.uint32(11), jnp.uint32(0), step.astype(jnp.uint32)])
            return jdl.apply_updates(w, u, rounding="stochastic", key=key), c
        return jdl.apply_updates(w, u), c

    dtype = jnp.float32 if how == "float32" else jnp.bfloat16
    w0 = start.astype(dtype)
    w, _ = jax.jit(lambda w: jax.lax.fori_loop(0, steps, body, (w, jnp.zeros_like(w))))(w0)
    assert w.dtype == dtype
    return float(loss(w))


def test_long_quadratic_bf16_params_stall_to_nearest_and_reach_float32_stochastically():
    target, start, curvature = _quadratic()
    initial = float(0.5 * jnp.sum(curvature * (start - target) ** 2))
    # The best a bfloat16 iterate can do: within one spacing of w* per coordinate.
    spacing = np.asarray(jnp.nextafter(target.astype(jnp.bfloat16), jnp.bfloat16(4)), np.float32)
    spacing = spacing - np.asarray(target.astype(jnp.bfloat16), np.float32)
    floor = float(0.5 * np.sum(np.asarray(curvature) * spacing**2))
    full = _descend(start, target, curvature, "float32")
    nearest = _descend(start, target, curvature, "nearest")
    stochastic = _descend(start, target, curvature, "stochastic")
    kahan = _descend(start, target, curvature, "kahan")
    assert full < 1e-6 * initial
    assert nearest > 0.5 * initial  # lr * |g| < half a spacing: bfloat16 never moves
    assert stochastic <= full + floor
    assert kahan <= full + floor


def test_train_state_with_stochastic_rounding_moves_bf16_params():
    (x, y), _ = jdl.data.load_digits()
    model = jdl.models.MLP(hidden=(8,))
    params = model.init(jax.random.key(0), x[:1], train=False)["params"]
    params = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    grads = jax.tree.map(lambda p: jnp.full(p.shape, 1.0, p.dtype), params)
    tx = jdl.sgd(1e-4)  # far below half a spacing of |w| > 0.05 in bfloat16
    moved = {}
    for rounding in ("nearest", "stochastic"):
        state = training.create_train_state(
            model, tx, jax.random.key(0), x[:1], params=params, rounding=rounding
        )
        step = jax.jit(lambda s: s.apply_gradients(grads=grads))
        for _ in range(50):
            state = step(state)
        kernel = np.asarray(state.params["dense_0"]["kernel"], np.float32)
        start = np.asarray(params["dense_0"]["kernel"], np.float32)
        big = np.abs(start) > 0.05
        moved[rounding] = float(np.mean((start - kernel)[big]))
        assert state.params["dense_0"]["kernel"].dtype == jnp.bfloat16
    assert moved["nearest"] == 0.0
    assert moved["stochastic"] == pytest.approx(50 * 1e-4, rel=0.1)
    with pytest.raises(ValueError, match="rounding"):
        training.create_train_state(model, tx, jax.random.key(0), x[:1], rounding="floor")


def _script(*args):
    subprocess.run(
        [sys.executable, str(ROOT / "tests" / "scripts" / "precision_resume.py"), *map(str, args)],
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"},
        timeout=600,
    )


def test_resume_in_a_new_process_is_bit_identical_with_stochastic_rounding(tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "scripts"))
    try:
        import precision_resume
    finally:
        sys.path.pop(0)
    directory = tmp_path / "checkpoints"
    precision_resume.main(1, tmp_path / "first", str(directory))  # epoch 1, then stops
    precision_resume.main(2, tmp_path / "full")  # uninterrupted, in this process
    _script(2, tmp_path / "resumed", directory)  # a new process resumes at epoch 1
    full, resumed = np.load(tmp_path / "full.npz"), np.load(tmp_path / "resumed.npz")
    first = np.load(tmp_path / "first.npz")
    assert sorted(full) == sorted(resumed)
    for name in full:
        np.testing.assert_array_equal(resumed[name], full[name], err_msg=name)
    # The resumed run did train on: the state differs from the checkpointed one.
    assert any(not np.array_equal(first[n], full[n]) for n in full)
