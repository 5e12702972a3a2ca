"""Initializers: distributions checked statistically against their formulas."""

import math

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxopt_dl import initializers as ini

DENSE = (400, 300)
CONV = (3, 3, 32, 64)  # HWIO: fan_in = 288, fan_out = 576


# (name, factory, variance(fan_in, fan_out), uniform half-width or None for normal)
SCHEMES = [
    (
        "normalized_uniform",
        ini.normalized_uniform,
        lambda fi, fo: 2 / (fi + fo),
        lambda fi, fo: math.sqrt(6 / (fi + fo)),
    ),
    (
        "glorot_uniform",
        ini.glorot_uniform,
        lambda fi, fo: 2 / (fi + fo),
        lambda fi, fo: math.sqrt(6 / (fi + fo)),
    ),
    ("glorot_normal", ini.glorot_normal, lambda fi, fo: 2 / (fi + fo), None),
    ("he_uniform", ini.he_uniform, lambda fi, fo: 2 / fi, lambda fi, fo: math.sqrt(6 / fi)),
    ("he_normal", ini.he_normal, lambda fi, fo: 2 / fi, None),
    ("lecun_normal", ini.lecun_normal, lambda fi, fo: 1 / fi, None),
    ("small_random", lambda: ini.small_random(0.01), lambda fi, fo: 1e-4, None),
]


def _jit_init(init, key, shape, dtype=jnp.float32):
    return jax.jit(init, static_argnums=(1, 2))(key, shape, dtype)


@pytest.mark.parametrize("shape", [(3, 3, 8, 16), (64, 10), (5, 4, 7), (12,)])
def test_fans_match_torch(shape):
    # torch stores kernels output-first (O, I, *spatial); ours are (*spatial, I, O).
    if len(shape) == 1:
        torch_shape = (shape[0], 1)  # one output unit per entry, fan_in 1
        expected = (1, shape[0])
    else:
        torch_shape = (shape[-1], shape[-2], *shape[:-2])
        expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(torch_shape))
    assert ini.fans(shape) == tuple(expected)


@pytest.mark.parametrize("name,factory,variance,bound", SCHEMES, ids=[s[0] for s in SCHEMES])
@pytest.mark.parametrize("shape", [DENSE, CONV], ids=["dense", "conv"])
def test_variance_and_bounds_match_formula(name, factory, variance, bound, shape):
    w = np.asarray(_jit_init(factory(), jax.random.key(1), shape), np.float64)
    chex.assert_shape(w, shape)
    fi, fo = ini.fans(shape)
    want = variance(fi, fo)
    assert abs(w.var() / want - 1) < 0.05
    assert abs(w.mean()) < 0.05 * math.sqrt(want)
    if bound is not None:
        b = bound(fi, fo)
        assert np.abs(w).max() <= b * (1 + 1e-6)
        assert np.abs(w).max() > 0.99 * b
    else:
        # Untruncated normal: about 4.55% of the mass lies beyond 2 standard deviations.
        tail = np.mean(np.abs(w) > 2 * math.sqrt(want))
        assert 0.040 < tail < 0.051


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
def test_dtype_is_honoured(dtype):
    for _, factory, _, _ in SCHEMES:
        chex.assert_type(factory()(jax.random.key(0), (4, 3), dtype), dtype)
    chex.assert_type(ini.sparse(2)(jax.random.key(0), (4, 3), dtype), dtype)
    chex.assert_type(ini.orthogonal()(jax.random.key(0), (4, 3), dtype), dtype)
    chex.assert_type(ini.zeros(jax.random.key(0), (4, 3), dtype), dtype)


@pytest.mark.parametrize("shape", [(16, 16), (32, 8), (8, 32), (3, 3, 4, 8)])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_orthogonal(shape, scale):
    w = np.asarray(_jit_init(ini.orthogonal(scale), jax.random.key(2), shape), np.float64)
    chex.assert_shape(w, shape)
    m = w.reshape(-1, shape[-1])
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, scale**2 * np.eye(gram.shape[0]), atol=1e-5)


@pytest.mark.parametrize("shape,k", [((50, 20), 5), ((3, 3, 4, 6), 7), ((10, 3), 10), ((9, 4), 1)])
def test_sparse_exact_k_per_output_unit(shape, k):
    w = np.asarray(_jit_init(ini.sparse(k), jax.random.key(3), shape))
    chex.assert_shape(w, shape)
    per_unit = (w.reshape(-1, shape[-1]) != 0).sum(axis=0)
    assert per_unit.tolist() == [k] * shape[-1]


def test_sparse_values_and_independent_choice():
    fan_in, n_out, k, stddev = 200, 2000, 10, 0.5
    w = np.asarray(ini.sparse(k, stddev)(jax.random.key(4), (fan_in, n_out)), np.float64)
    values = w[w != 0]
    assert values.size == k * n_out
    assert abs(values.var() / stddev**2 - 1) < 0.05
    # Each row is chosen with probability k / fan_in per unit, independently per unit:
    # row counts are Binomial(n_out, k/fan_in) (mean 100, sd ~9.7).
    row_counts = (w != 0).sum(axis=1)
    assert abs(row_counts.mean() - n_out * k / fan_in) < 1e-9
    assert 60 < row_counts.min() and row_counts.max() < 140
    supports = {tuple(np.flatnonzero(col)) for col in (w != 0).T}
    assert len(supports) > 0.99 * n_out


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(k=st.integers(1, 12), seed=st.integers(0, 2**31 - 1))
def test_sparse_property_exact_k(k, seed):
    w = np.asarray(ini.sparse(k)(jax.random.key(seed), (12, 6)))
    assert ((w != 0).sum(axis=0) == k).all()


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: ini.sparse(0), "k=0"),
        (lambda: ini.sparse(2.5), "k=2.5"),
        (lambda: ini.sparse(11)(jax.random.key(0), (10, 4)), "k=11.*fan_in=10"),
        (lambda: ini.sparse(37)(jax.random.key(0), (3, 3, 4, 2)), "k=37.*fan_in=36"),
        (lambda: ini.sparse(2, stddev=-1.0), "stddev=-1.0"),
        (lambda: ini.small_random(-0.1), "stddev=-0.1"),
        (lambda: ini.variance_scaling(1.0, "fan_sum", "normal"), "mode='fan_sum'"),
        (lambda: ini.variance_scaling(1.0, "fan_in", "cauchy"), "distribution='cauchy'"),
    ],
)
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "freqs", [[0.5, 0.5], [0.7, 0.2, 0.1], np.full(10, 0.1), [0.97, 0.01, 0.02]]
)
def test_bias_from_marginals_softmax_equals_freqs(freqs):
    freqs = np.asarray(freqs)
    b = _jit_init(ini.bias_from_marginals(freqs), jax.random.key(0), freqs.shape)
    np.testing.assert_allclose(np.asarray(jax.nn.softmax(b)), freqs, rtol=1e-5)
    # softmax is shift-invariant; this solution is log c shifted to mean zero.
    np.testing.assert_allclose(np.asarray(b), np.log(freqs) - np.log(freqs).mean(), atol=1e-6)


@pytest.mark.parametrize(
    "freqs,match",
    [
        ([0.5, 0.6], "sum"),
        ([1.2, -0.2], "positive"),
        ([1.0, 0.0], "positive"),
        ([[0.5, 0.5]], "1-D"),
        ([], "1-D"),
    ],
)
def test_bias_from_marginals_rejects_bad_freqs(freqs, match):
    with pytest.raises(ValueError, match=match):
        ini.bias_from_marginals(freqs)


def test_bias_from_marginals_rejects_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        ini.bias_from_marginals([0.5, 0.5])(jax.random.key(0), (3,))


def test_zeros():
    chex.assert_trees_all_equal(ini.zeros(jax.random.key(0), (2, 3)), jnp.zeros((2, 3)))


def _params():
    return {
        "dense": {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.ones(3)},
        "out": {"kernel": jnp.full((3, 1), 2.0, jnp.bfloat16)},
    }


def test_save_and_from_pretrained_round_trip(tmp_path):
    path = tmp_path / "sub" / "params.msgpack"
    ini.save_params(_params(), path)
    template = jax.tree.map(jnp.zeros_like, _params())
    loaded = ini.from_pretrained(template, path)
    chex.assert_trees_all_equal(loaded, _params())
    chex.assert_trees_all_equal_dtypes(loaded, template)


@pytest.mark.parametrize(
    "edit,match",
    [
        (
            lambda p: p["dense"].update(kernel=jnp.zeros((2, 4))),
            r"shape at path \['dense'\]\['kernel'\]",
        ),
        (lambda p: p["dense"].pop("bias"), r"lack path \['dense'\]\['bias'\]"),
        (
            lambda p: p.update(extra={"w": jnp.zeros(1)}),
            r"path \['extra'\]\['w'\] not in the template",
        ),
    ],
)
def test_from_pretrained_names_first_mismatching_path(tmp_path, edit, match):
    saved = _params()
    edit(saved)
    path = tmp_path / "params.msgpack"
    ini.save_params(saved, path)
    with pytest.raises(ValueError, match=match):
        ini.from_pretrained(_params(), path)
