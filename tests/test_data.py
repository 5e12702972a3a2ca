"""Data: digits split and standardization, subsampling, toy surfaces."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import sklearn.datasets
import sklearn.model_selection
import sklearn.preprocessing

from jaxopt_dl import data


@pytest.fixture(scope="module")
def digits():
    return data.load_digits()


@pytest.mark.parametrize("test_fraction,n_test", [(0.2, 360), (0.5, 899)])
def test_split_sizes_dtypes_and_stratification(test_fraction, n_test):
    (x_tr, y_tr), (x_te, y_te) = data.load_digits(test_fraction=test_fraction, seed=3)
    assert (len(x_tr), len(x_te)) == (1797 - n_test, n_test)
    chex.assert_shape(x_tr, (1797 - n_test, 64))
    assert (x_tr.dtype, y_tr.dtype, x_te.dtype, y_te.dtype) == (np.float32, np.int32) * 2
    overall = np.bincount(sklearn.datasets.load_digits().target) / 1797
    for y, n in [(y_tr, 1797 - n_test), (y_te, n_test)]:
        np.testing.assert_array_less(np.abs(np.bincount(y, minlength=10) - overall * n), 1.0 + 1e-9)


def test_standardization_uses_train_statistics_only(digits):
    (x_tr, _), (x_te, _) = digits
    (raw_tr, _), (raw_te, _) = data.load_digits(standardize=False)
    scaler = sklearn.preprocessing.StandardScaler().fit(raw_tr)
    np.testing.assert_allclose(x_tr, scaler.transform(raw_tr), atol=1e-5)
    np.testing.assert_allclose(x_te, scaler.transform(raw_te), atol=1e-5)
    varying = raw_tr.std(0) > 0
    np.testing.assert_allclose(x_tr.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(x_tr.std(0)[varying], 1, atol=1e-4)
    assert np.abs(x_te.mean(0)[varying]).max() > 1e-3  # test stats were not used


def test_constant_features_stay_finite(digits):
    (x_tr, _), (x_te, _) = digits
    (raw_tr, _), _ = data.load_digits(standardize=False)
    constant = raw_tr.std(0) == 0
    assert constant.any()  # pixel 0 is blank in every digit
    assert np.isfinite(x_tr).all() and np.isfinite(x_te).all()
    np.testing.assert_array_equal(x_tr[:, constant], 0.0)


def test_raw_split_matches_sklearn():
    (x_tr, y_tr), (x_te, y_te) = data.load_digits(standardize=False, seed=7)
    d = sklearn.datasets.load_digits()
    want = sklearn.model_selection.train_test_split(
        d.data, d.target, test_size=0.2, random_state=7, stratify=d.target
    )
    for got, ref in zip((x_tr, x_te, y_tr, y_te), want):
        np.testing.assert_array_equal(got, ref)


def test_standardize_pair():
    x_tr = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [5.0, 5.0, 0.0]])
    x_te = np.array([[3.0, 7.0, 2.0]])
    a, b = data.standardize(x_tr, x_te)
    mean, std = x_tr.mean(0), np.array([np.sqrt(8 / 3), 1.0, np.sqrt(8 / 3)])
    np.testing.assert_allclose(a, (x_tr - mean) / std, rtol=1e-6)
    np.testing.assert_allclose(b, (x_te - mean) / std, rtol=1e-6)
    with pytest.raises(ValueError, match="feature shape"):
        data.standardize(x_tr, np.zeros((1, 2)))


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_bad_test_fraction(bad):
    with pytest.raises(ValueError, match=f"test_fraction={bad}"):
        data.load_digits(test_fraction=bad)


@pytest.mark.parametrize(
    "shape,want",
    [
        ((5, 64), (5, 8, 8, 1)),
        ((5, 8, 8), (5, 8, 8, 1)),
        ((5, 4, 4, 3), (5, 4, 4, 3)),
        ((2, 16), (2, 4, 4, 1)),
    ],
)
def test_as_images(shape, want):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    out = data.as_images(x)
    assert out.shape == want
    np.testing.assert_array_equal(out.reshape(-1), x.reshape(-1))


@pytest.mark.parametrize("shape", [(5, 63), (5,), (1, 2, 3, 4, 5)])
def test_as_images_rejects(shape):
    with pytest.raises(ValueError):
        data.as_images(np.zeros(shape))


def test_imbalanced_marginals(digits):
    (x_tr, y_tr), _ = digits
    fractions = np.array([0.4, 0.2, 0.1, 0.1, 0.05, 0.05, 0.04, 0.03, 0.02, 0.01])
    x_sub, y_sub = data.imbalanced(x_tr, y_tr, fractions, seed=1)
    counts = np.bincount(y_sub, minlength=10)
    total = np.min(np.bincount(y_tr) / fractions)
    np.testing.assert_array_equal(counts, np.floor(total * fractions + 1e-9))
    assert counts[0] == np.bincount(y_tr)[0]  # the largest share keeps all its examples
    np.testing.assert_allclose(counts / counts.sum(), fractions, atol=0.01)
    # Kept rows are real rows of the training set, in their original order.
    idx = [np.flatnonzero((x_tr == row).all(1))[0] for row in x_sub[:20]]
    assert idx == sorted(idx)
    x2, _ = data.imbalanced(x_tr, y_tr, fractions, seed=2)
    assert not np.array_equal(x2, x_sub)


@pytest.mark.parametrize("fractions", [[0.5, 0.5], np.full(10, 0.2), [-0.1] + [1.1 / 9] * 9])
def test_imbalanced_rejects_bad_fractions(digits, fractions):
    (x_tr, y_tr), _ = digits
    with pytest.raises(ValueError, match="fractions"):
        data.imbalanced(x_tr, y_tr, fractions)


# ---------------------------------------------------------------------------
# Toy surfaces
# ---------------------------------------------------------------------------

SURFACES = [
    data.noisy_quadratic(),
    data.rosenbrock(2),
    data.rosenbrock(5),
    data.saddle(0.25),
    data.saddle(1.0),
    data.cliff(),
]
SURFACE_IDS = [
    "noisy_quadratic",
    "rosenbrock2",
    "rosenbrock5",
    "saddle_q0.25",
    "saddle_q1",
    "cliff",
]


def _central_differences(fun, w, h=1e-5):
    w = np.asarray(w, np.float64)
    eye = np.eye(w.size)
    return np.array([(fun(w + h * e) - fun(w - h * e)) / (2 * h) for e in eye])


@pytest.mark.parametrize("surface", SURFACES, ids=SURFACE_IDS)
def test_known_minima(surface):
    for w_star in surface.minima:
        w = jnp.asarray(w_star)
        np.testing.assert_allclose(jax.jit(surface.fun)(w), surface.min_value, atol=1e-6)
        np.testing.assert_allclose(jax.jit(surface.grad)(w), 0.0, atol=1e-5)
        assert np.linalg.eigvalsh(np.asarray(surface.hessian(w))).min() > 0
    # No sampled point beats the global minimum.
    points = jax.random.uniform(
        jax.random.key(0), (2000, jnp.size(surface.minimum)), minval=-3, maxval=3
    )
    assert float(jax.jit(jax.vmap(surface.fun))(points).min()) >= surface.min_value - 1e-6


@pytest.mark.parametrize("surface", SURFACES, ids=SURFACE_IDS)
def test_gradients_match_central_differences(surface):
    dim = np.size(surface.minimum)
    with jax.enable_x64(True):
        fun, grad = jax.jit(surface.fun), jax.jit(surface.grad)
        for seed in range(3):
            w = np.random.default_rng(seed).uniform(-1.5, 1.5, dim)
            want = _central_differences(lambda v: float(fun(jnp.asarray(v))), w)
            np.testing.assert_allclose(grad(jnp.asarray(w)), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dim", [2, 5])
def test_rosenbrock_matches_scipy(dim):
    s = data.rosenbrock(dim)
    w = np.random.default_rng(dim).normal(size=dim)
    np.testing.assert_allclose(s.fun(jnp.asarray(w)), scipy.optimize.rosen(w), rtol=1e-5)
    np.testing.assert_allclose(s.grad(jnp.asarray(w)), scipy.optimize.rosen_der(w), rtol=1e-4)
    np.testing.assert_allclose(
        s.hessian(jnp.asarray(w)), scipy.optimize.rosen_hess(w), rtol=1e-4, atol=1e-3
    )


def test_noisy_quadratic_seed_002():
    s = data.noisy_quadratic()
    w = jnp.array([3.0, -2.0])
    np.testing.assert_allclose(s.fun(w), (0.1 * 3) ** 2 + 4, rtol=1e-6)
    np.testing.assert_allclose(s.grad(w), [0.02 * 3, 2 * -2.0], rtol=1e-6)
    keys = jax.random.split(jax.random.key(0), 20000)
    noise = jax.jit(jax.vmap(lambda k: s.noisy_grad(w, k)))(keys) - s.grad(w)
    np.testing.assert_allclose(noise.mean(0), 0, atol=2e-3)
    np.testing.assert_allclose(noise.std(0), 0.03, rtol=0.03)
    quiet = jax.vmap(lambda k: s.noisy_grad(w, k, noise_std=0.0))(keys[:3])
    np.testing.assert_allclose(quiet, np.tile(s.grad(w), (3, 1)), rtol=1e-6)


def test_saddle():
    pure = data.saddle()
    assert pure.minimum is None and pure.minima == () and pure.min_value == -np.inf
    for s in (pure, data.saddle(0.25)):
        origin = jnp.asarray(s.saddle_point)
        np.testing.assert_allclose(s.grad(origin), 0.0)
        np.testing.assert_allclose(np.linalg.eigvalsh(s.hessian(origin)), [-2.0, 2.0])
    q = data.saddle(0.25)
    np.testing.assert_allclose(np.abs(q.minimum), [0.0, np.sqrt(2)], rtol=1e-6)
    assert q.min_value == -1.0 and len(q.minima) == 2
    with pytest.raises(ValueError, match="quartic=-1"):
        data.saddle(-1)


def test_cliff_step_jumps_far():
    s = data.cliff()
    lr = 0.1
    before = jnp.array([0.5, 1.0])  # on the bowl, before the wall
    on_wall = jnp.array([1.0, 1.0])
    small = lr * jnp.linalg.norm(s.grad(before))
    big = lr * jnp.linalg.norm(s.grad(on_wall))
    assert small < 0.2 and big > 10.0
    # Plain GD without clipping overshoots the minimum at 0 by far.
    after = on_wall - lr * s.grad(on_wall)
    assert float(jnp.linalg.norm(after)) > 10.0
    with pytest.raises(ValueError, match="sharpness=0"):
        data.cliff(sharpness=0)


@pytest.mark.parametrize("dim", [1, 2.5])
def test_rosenbrock_rejects_bad_dim(dim):
    with pytest.raises(ValueError, match=f"dim={dim}"):
        data.rosenbrock(dim)


# --------------------------------------------------------------------------
# MNIST-1D
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist1d_raw():
    return data.load_mnist1d(standardize=False)


def test_mnist1d_is_the_packages_dataset_4000_train_1000_test_of_length_40(mnist1d_raw):
    from mnist1d.data import get_dataset_args, make_dataset

    (x_tr, y_tr), (x_te, y_te) = mnist1d_raw
    reference = make_dataset(get_dataset_args())
    assert (x_tr.shape, x_te.shape, y_tr.shape, y_te.shape) == (
        (4000, 40),
        (1000, 40),
        (4000,),
        (1000,),
    )
    assert (x_tr.dtype, y_tr.dtype, x_te.dtype, y_te.dtype) == (np.float32, np.int32) * 2
    np.testing.assert_array_equal(x_tr, reference["x"].astype(np.float32))
    np.testing.assert_array_equal(x_te, reference["x_test"].astype(np.float32))
    np.testing.assert_array_equal(y_tr, reference["y"])
    np.testing.assert_array_equal(y_te, reference["y_test"])
    assert np.bincount(np.concatenate([y_tr, y_te])).tolist() == [500] * 10


@pytest.mark.parametrize(
    "standardize,per_feature", [(True, True), ("feature", True), ("global", False)]
)
def test_mnist1d_is_standardized_with_train_statistics_only(mnist1d_raw, standardize, per_feature):
    (raw_tr, y_tr), (raw_te, _) = mnist1d_raw
    (x_tr, y), (x_te, _) = data.load_mnist1d(standardize=standardize)
    axis = 0 if per_feature else None
    mean, std = raw_tr.astype(np.float64).mean(axis), raw_tr.astype(np.float64).std(axis)
    np.testing.assert_allclose(x_tr, (raw_tr - mean) / std, atol=2e-5)
    np.testing.assert_allclose(x_te, (raw_te - mean) / std, atol=2e-5)
    np.testing.assert_allclose(x_tr.mean(axis), 0.0, atol=1e-5)
    np.testing.assert_allclose(x_tr.std(axis), 1.0, atol=1e-5)
    assert abs(float(x_te.mean())) > 1e-4  # the test set keeps its own offset
    np.testing.assert_array_equal(y, y_tr)


def test_mnist1d_is_deterministic_per_seed_and_leaves_global_generators_alone():
    import random

    np.random.seed(7)
    random.seed(7)
    expected = (np.random.rand(), random.random())
    np.random.seed(7)
    random.seed(7)
    (a, ya), _ = data.load_mnist1d(seed=3)
    assert (np.random.rand(), random.random()) == expected
    (b, yb), _ = data.load_mnist1d(seed=3)
    (c, _), _ = data.load_mnist1d(seed=4)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ya, yb)
    assert not np.allclose(a, c)
    a[:] = 0.0  # callers get their own copies; the cache is untouched
    np.testing.assert_array_equal(data.load_mnist1d(seed=3)[0][0], b)


@pytest.mark.parametrize(
    "kwargs,error,needle",
    [
        ({"standardize": "pixel"}, ValueError, "standardize="),
        ({"standardize": 1.0}, TypeError, "standardize="),
        ({"seed": 1.5}, ValueError, "seed"),
        ({"seed": "0"}, TypeError, "seed"),
    ],
)
def test_mnist1d_refuses_bad_arguments_by_name(kwargs, error, needle):
    with pytest.raises(error, match=needle):
        data.load_mnist1d(**kwargs)
