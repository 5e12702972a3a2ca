"""Data: scikit-learn's bundled digits and MNIST-1D (offline), standardization, toy surfaces.

* :func:`load_digits` — the 8x8 digits (1797 images, 10 classes) with a stratified
  train/test split, standardized with TRAIN statistics only (:func:`standardize`).
* :func:`load_mnist1d` — Greydanus' MNIST-1D (4,000 train / 1,000 test sequences of
  length 40, 10 classes), generated offline, standardized the same way.
* :func:`imbalanced` — subsample classes to given marginals (for
  ``initializers.bias_from_marginals`` experiments).
* Toy surfaces with known minima and exact gradients (:class:`ToySurface`):
  :func:`noisy_quadratic` (from Bipin, "Deep Learning, Lecture 6 — Optimization"),
  :func:`rosenbrock`, :func:`saddle`, :func:`cliff`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import random
from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_dl._core import check_decay, check_int, check_nonnegative, check_positive

__all__ = [
    "load_digits",
    "load_mnist1d",
    "standardize",
    "as_images",
    "imbalanced",
    "ToySurface",
    "noisy_quadratic",
    "rosenbrock",
    "saddle",
    "cliff",
]

Arrays = tuple[np.ndarray, np.ndarray]


# --------------------------------------------------------------------------
# Digits
# --------------------------------------------------------------------------


def standardize(
    x_train: np.ndarray, x_test: np.ndarray, per_feature: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Standardize both sets with the TRAIN mean and standard deviation.

    .. math:: x' = (x - \\mu_{train}) / s, \\quad s = \\sigma_{train} \\text{ if }
              \\sigma_{train} > 0 \\text{ else } 1

    Per feature (default) or, with ``per_feature=False``, one mean and one standard
    deviation over all training entries (for inputs whose features share a scale, like
    pixels). Constant training features (always-blank border pixels of the digits) are
    only centred, so nothing divides by zero. Test statistics are never used.

    Per-feature scaling divides nearly constant features by a tiny ``sigma``: on the
    digits, a border pixel that is almost always blank in the training set reaches 54
    standard deviations on a test image, and an MLP trained on such inputs loses about
    1 point of test accuracy against the global scaling
    (``benchmarks/training.py``).

    Args:
      x_train: ``(n_train, ...)`` training inputs.
      x_test: ``(n_test, ...)`` test inputs, same feature shape.
      per_feature: one mean/std per feature, else one over all entries.

    Returns:
      ``(x_train_std, x_test_std)`` as float32.

    Example:
      >>> import numpy as np
      >>> a, b = standardize(np.array([[0., 1.], [2., 1.]]), np.array([[4., 3.]]))
      >>> a.tolist(), b.tolist()
      ([[-1.0, 0.0], [1.0, 0.0]], [[3.0, 2.0]])

    References:
      Goodfellow et al. 2016, Sec. 12.2.1.1 (dataset preprocessing).
    """
    x_train = np.asarray(x_train, np.float64)
    x_test = np.asarray(x_test, np.float64)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"x_train and x_test must share the feature shape, got {x_train.shape[1:]} and "
            f"{x_test.shape[1:]}"
        )
    axis = 0 if per_feature else None
    mean = x_train.mean(axis=axis)
    std = x_train.std(axis=axis)
    std = np.where(std > 0, std, 1.0)
    return ((x_train - mean) / std).astype(np.float32), ((x_test - mean) / std).astype(np.float32)


# load_digits's ``standardize`` flag shadows the function's name inside it.
_standardize = standardize


def _check_standardize(standardize: Any) -> None:
    """Refuse a ``standardize`` flag other than True, False, "feature" or "global"."""
    if not isinstance(standardize, (bool, str)):
        raise TypeError(f"standardize must be a bool or a string, got standardize={standardize!r}")
    if standardize not in (True, False, "feature", "global"):
        raise ValueError(
            "standardize must be True, False, 'feature' or 'global', got "
            f"standardize={standardize!r}"
        )


def load_digits(
    test_fraction: float = 0.2, seed: int = 0, standardize: Union[bool, str] = True
) -> tuple[Arrays, Arrays]:
    """The 8x8 handwritten digits of scikit-learn (bundled, no network), split and scaled.

    Args:
      test_fraction: fraction of examples held out, in (0, 1); the split is stratified
        by class.
      seed: seed of the split.
      standardize: ``True`` or ``"feature"``: standardize each pixel with TRAIN
        statistics; ``"global"``: one TRAIN mean and std for all pixels (see
        :func:`standardize`; better for the digits); ``False``: the raw values 0..16.

    Returns:
      ``(x_train, y_train), (x_test, y_test)`` with ``x`` float32 of shape ``(n, 64)``
      (use :func:`as_images` for ``(n, 8, 8, 1)``) and ``y`` int32 labels 0..9.

    Example:
      >>> (x_tr, y_tr), (x_te, y_te) = load_digits()
      >>> x_tr.shape, x_te.shape
      ((1437, 64), (360, 64))
    """
    import sklearn.datasets
    import sklearn.model_selection

    check_positive("test_fraction", test_fraction)
    check_decay("test_fraction", test_fraction)
    check_int("seed", seed)
    _check_standardize(standardize)
    digits = sklearn.datasets.load_digits()
    x_train, x_test, y_train, y_test = sklearn.model_selection.train_test_split(
        digits.data,
        digits.target,
        test_size=test_fraction,
        random_state=seed,
        stratify=digits.target,
    )
    if standardize:
        x_train, x_test = _standardize(x_train, x_test, per_feature=standardize != "global")
    return (
        (np.asarray(x_train, np.float32), np.asarray(y_train, np.int32)),
        (np.asarray(x_test, np.float32), np.asarray(y_test, np.int32)),
    )


@functools.lru_cache(maxsize=4)
def _mnist1d_raw(seed: int) -> tuple[np.ndarray, ...]:
    """MNIST-1D's generated train and test arrays, cached per seed (read-only).

    ``mnist1d.data.make_dataset`` seeds Python's and NumPy's global generators; their
    states are restored afterwards, so loading never changes a caller's random draws.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    arrays = (
        np.asarray(data["x"], np.float64),
        np.asarray(data["y"], np.int32),
        np.asarray(data["x_test"], np.float64),
        np.asarray(data["y_test"], np.int32),
    )
    for a in arrays:
        a.flags.writeable = False
    return arrays


def load_mnist1d(seed: int = 42, standardize: Union[bool, str] = True) -> tuple[Arrays, Arrays]:
    """Greydanus' MNIST-1D, generated offline by the ``mnist1d`` package, scaled like
    :func:`load_digits`.

    Ten 1-D templates of the digits, each padded, shifted, scaled, sheared, blurred by
    correlated noise, given i.i.d. noise and resampled to 40 points: 5,000 sequences
    (500 per class) with the package's default arguments, the first 4,000 for training
    and the last 1,000 for testing. A linear classifier reaches about 32% test accuracy,
    an MLP 68%, a CNN 94% and a GRU 91% (Greydanus 2020, "Scaling down deep learning"):
    unlike the 8x8 digits, the models and their training separate clearly. Generating
    takes about two seconds; the result is cached per ``seed``.

    Args:
      seed: seed of the generation; the default 42 is the package's, which produces the
        dataset of the paper.
      standardize: ``True`` or ``"feature"``: standardize each of the 40 positions with
        TRAIN statistics; ``"global"``: one TRAIN mean and std for all positions (see
        :func:`standardize`); ``False``: the generated values (which the package
        already centred and scaled over all 5,000 sequences, test ones included).

    Returns:
      ``(x_train, y_train), (x_test, y_test)`` with ``x`` float32 of shape ``(n, 40)``
      (``n`` = 4000 and 1000) and ``y`` int32 labels 0..9.

    Example:
      >>> (x_tr, y_tr), (x_te, y_te) = load_mnist1d()
      >>> x_tr.shape, x_te.shape, sorted(set(y_tr.tolist())) == list(range(10))
      ((4000, 40), (1000, 40), True)

    References:
      Greydanus 2020, "Scaling down deep learning" (arXiv:2011.14439).
    """
    check_int("seed", seed)
    _check_standardize(standardize)
    x_train, y_train, x_test, y_test = _mnist1d_raw(int(seed))
    if standardize:
        x_train, x_test = _standardize(x_train, x_test, per_feature=standardize != "global")
    return (
        (np.array(x_train, np.float32), np.array(y_train, np.int32)),
        (np.array(x_test, np.float32), np.array(y_test, np.int32)),
    )


def as_images(x: Any) -> Any:
    """Reshape flat square images to NHWC: ``(N, 64) -> (N, 8, 8, 1)``.

    ``(N, H, W)`` gains a channel axis; ``(N, H, W, C)`` is returned unchanged. Works on
    NumPy and JAX arrays (also under ``jit``: only static shapes are read).

    Args:
      x: ``(N, D)`` with ``D`` a perfect square, ``(N, H, W)`` or ``(N, H, W, C)``.

    Returns:
      The images as ``(N, H, W, C)``.

    Example:
      >>> import numpy as np
      >>> as_images(np.zeros((5, 64))).shape
      (5, 8, 8, 1)
    """
    if x.ndim == 4:
        return x
    if x.ndim == 3:
        return x[..., None]
    if x.ndim == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ValueError(
                f"x must hold square images, got x with {x.shape[1]} features per example"
            )
        return x.reshape(x.shape[0], side, side, 1)
    raise ValueError(f"x must be 2-D, 3-D or 4-D, got x with shape {x.shape}")


def imbalanced(
    x: np.ndarray, y: np.ndarray, fractions: Any, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Subsample classes so that the class marginals are ``fractions`` (as far as counts allow).

    Keeps the largest subset with those marginals: ``n = min_c count_c / fractions_c``
    examples in all, ``floor(n * fractions_c)`` of class ``c`` drawn without replacement.
    The kept examples keep their original order.

    Args:
      x: inputs, first axis examples.
      y: integer labels ``0..K-1``.
      fractions: ``K`` non-negative numbers summing to 1 (a 0 drops the class).
      seed: seed of the draw.

    Returns:
      ``(x_sub, y_sub)``.

    Example:
      >>> import numpy as np
      >>> y = np.repeat([0, 1], 100)
      >>> _, y_sub = imbalanced(np.zeros((200, 1)), y, [0.8, 0.2])
      >>> np.bincount(y_sub).tolist()
      [100, 25]
    """
    y = np.asarray(y)
    counts = np.bincount(y)
    c = np.asarray(fractions, np.float64)
    if c.shape != counts.shape:
        raise ValueError(
            f"fractions must have one entry per class ({counts.size}), got fractions={c.tolist()}"
        )
    if np.any(c < 0) or abs(c.sum() - 1.0) > 1e-6:
        raise ValueError(f"fractions must be non-negative and sum to 1, got fractions={c.tolist()}")
    used = c > 0
    total = np.min(counts[used] / c[used])
    wanted = np.floor(total * c + 1e-9).astype(int)
    rng = np.random.default_rng(seed)
    keep = np.concatenate(
        [rng.choice(np.flatnonzero(y == k), size=n, replace=False) for k, n in enumerate(wanted)]
    )
    keep.sort()
    return np.asarray(x)[keep], y[keep]


# --------------------------------------------------------------------------
# Toy surfaces
# --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ToySurface:
    """A loss surface ``fun(w)`` with known minima; gradients and Hessians come from JAX.

    Attributes:
      name: short name.
      fun: ``w -> scalar`` (``w`` a 1-D array), jit-able.
      minimum: a global minimizer (``None`` when the surface is unbounded below).
      min_value: ``fun(minimum)`` (``-inf`` when unbounded below).
      minima: all global minimizers.
      saddle_point: a stationary point that is a saddle, if the surface has one.
      noise_std: default gradient-noise standard deviation of :meth:`noisy_grad`.
    """

    name: str
    fun: Callable[[jax.Array], jax.Array]
    minimum: Optional[np.ndarray]
    min_value: float
    minima: tuple = ()
    saddle_point: Optional[np.ndarray] = None
    noise_std: float = 0.0

    def __call__(self, w: jax.Array) -> jax.Array:
        return self.fun(w)

    def grad(self, w: jax.Array) -> jax.Array:
        """Exact gradient ``∇fun(w)`` (``jax.grad``).

        Args:
          w: a point, a 1-D array.
        """
        return jax.grad(self.fun)(w)

    def hessian(self, w: jax.Array) -> jax.Array:
        """Exact Hessian ``∇²fun(w)`` (``jax.hessian``).

        Args:
          w: a point, a 1-D array.
        """
        return jax.hessian(self.fun)(w)

    def noisy_grad(
        self, w: jax.Array, key: jax.Array, noise_std: Optional[float] = None
    ) -> jax.Array:
        """Stochastic gradient ``∇fun(w) + N(0, noise_std^2 I)``.

        Args:
          w: the point.
          key: PRNG key of the noise.
          noise_std: noise standard deviation; defaults to the surface's ``noise_std``
            (0.03 for :func:`noisy_quadratic`).

        Returns:
          The noisy gradient, same shape as ``w``.
        """
        std = self.noise_std if noise_std is None else noise_std
        check_nonnegative("noise_std", std)
        g = self.grad(w)
        return g + std * jax.random.normal(key, g.shape, g.dtype)


def noisy_quadratic(noise_std: float = 0.03) -> ToySurface:
    """An ill-conditioned quadratic with noisy gradients, from a lecture's example.

    From K. Bipin, "Deep Learning, Lecture 6 — Optimization".

    .. math:: L(w) = (0.1 w_1)^2 + w_2^2, \\quad
              \\nabla L(w) = (0.02 w_1, 2 w_2)^\\top + \\mathcal{N}(0, 0.03)

    Minimum ``w* = 0``, ``L(w*) = 0``; condition number 100.

    Args:
      noise_std: default standard deviation of :meth:`ToySurface.noisy_grad`.

    Returns:
      A :class:`ToySurface`.

    Example:
      >>> import jax.numpy as jnp
      >>> [round(float(g), 4) for g in noisy_quadratic().grad(jnp.array([1.0, 1.0]))]
      [0.02, 2.0]
    """
    check_nonnegative("noise_std", noise_std)

    def fun(w):
        return (0.1 * w[0]) ** 2 + w[1] ** 2

    zero = np.zeros(2, np.float32)
    return ToySurface("noisy_quadratic", fun, zero, 0.0, (zero,), None, float(noise_std))


def rosenbrock(dim: int = 2) -> ToySurface:
    """The Rosenbrock banana valley in ``dim`` dimensions.

    .. math:: f(w) = \\sum_{i=1}^{d-1} 100 (w_{i+1} - w_i^2)^2 + (1 - w_i)^2

    Minimum ``w* = (1, ..., 1)``, ``f(w*) = 0`` (the same function as
    ``scipy.optimize.rosen``).

    Args:
      dim: number of variables, >= 2.

    Returns:
      A :class:`ToySurface`.

    Example:
      >>> import jax.numpy as jnp
      >>> float(rosenbrock().fun(jnp.ones(2)))
      0.0
    """
    check_int("dim", dim, 2)

    def fun(w):
        return jnp.sum(100.0 * (w[1:] - w[:-1] ** 2) ** 2 + (1.0 - w[:-1]) ** 2)

    ones = np.ones(dim, np.float32)
    return ToySurface(f"rosenbrock{dim}", fun, ones, 0.0, (ones,))


def saddle(quartic: float = 0.0) -> ToySurface:
    """A saddle at the origin, optionally with two minima beyond it.

    .. math:: f(x, y) = x^2 - y^2 + q\\, y^4

    The origin is a saddle (Hessian ``diag(2, -2)``). With ``q = 0`` the surface is
    unbounded below. With ``q > 0`` it has two global minima at
    ``(0, ±1/sqrt(2q))`` with value ``-1/(4q)`` — e.g. ``q = 0.25``: minima
    ``(0, ±sqrt(2))``, value -1. Plain Newton started near the origin converges to the
    saddle; damped / saddle-free Newton and gradient descent escape to a minimum.

    Args:
      quartic: ``q >= 0``.

    Returns:
      A :class:`ToySurface` (``minimum`` is the minimizer with ``y > 0``).

    Example:
      >>> import jax.numpy as jnp
      >>> s = saddle(0.25)
      >>> s.grad(jnp.zeros(2)).tolist(), float(s.fun(jnp.asarray(s.minimum)))
      ([0.0, 0.0], -1.0)
    """
    check_nonnegative("quartic", quartic)

    def fun(w):
        return w[0] ** 2 - w[1] ** 2 + quartic * w[1] ** 4

    origin = np.zeros(2, np.float32)
    if quartic == 0:
        return ToySurface("saddle", fun, None, -math.inf, (), origin)
    y_star = 1.0 / math.sqrt(2.0 * quartic)
    minima = (np.array([0.0, y_star], np.float32), np.array([0.0, -y_star], np.float32))
    return ToySurface("saddle", fun, minima[0], -1.0 / (4.0 * quartic), minima, origin)


def cliff(height: float = 50.0, sharpness: float = 20.0, position: float = 1.0) -> ToySurface:
    """A bowl with a steep cliff: a plain gradient step at the cliff edge jumps far.

    .. math:: f(w) = \\tfrac12 \\lVert w \\rVert^2 \\,
              \\bigl(1 + h\\, \\sigma(s (w_1 - p))\\bigr)

    For ``w_1 < p`` the surface is the bowl ``||w||^2 / 2``; past ``w_1 = p`` it rises by
    a factor ``1 + h`` across a wall of width ``~1/s``. On the wall the gradient in
    ``w_1`` is of order ``h s ||w||^2 / 8`` — a step there catapults the iterate far
    away, which gradient clipping prevents (Goodfellow et al. 2016, Fig. 8.3 / 10.17).
    The global minimum is ``w* = 0`` with ``f = 0`` (``f >= 0`` everywhere, zero only
    there).

    Args:
      height: ``h > 0``, relative height of the plateau beyond the cliff.
      sharpness: ``s > 0``, steepness of the wall.
      position: ``p > 0``, where the wall stands on the ``w_1`` axis.

    Returns:
      A :class:`ToySurface` in two dimensions.

    Example:
      >>> import jax.numpy as jnp
      >>> c = cliff()
      >>> bool(jnp.abs(c.grad(jnp.array([1.0, 1.0]))).max() > 100)
      True

    References:
      Goodfellow et al. 2016, Sec. 8.2.4 and 10.11.1; Pascanu et al. 2013.
    """
    check_positive("height", height)
    check_positive("sharpness", sharpness)
    check_positive("position", position)

    def fun(w):
        wall = jax.nn.sigmoid(sharpness * (w[0] - position))
        return 0.5 * jnp.sum(w**2) * (1.0 + height * wall)

    zero = np.zeros(2, np.float32)
    return ToySurface("cliff", fun, zero, 0.0, (zero,))
