"""Parameter initializers (Goodfellow et al. 2016, Sec. 8.4), flax-compatible.

Every factory returns an ``init(key, shape, dtype=jnp.float32)`` callable, so it can be
passed as ``kernel_init=`` / ``bias_init=`` to any flax layer or to ``jaxopt_dl.models``.

Conventions: the output unit is the LAST axis; fan-in is the product of all other axes
and fan-out is the product of the receptive field (all axes but the last two) and the
last axis. For a dense kernel ``(m, n)``: fan_in = m, fan_out = n; for a conv kernel
``HWIO``: fan_in = H*W*I, fan_out = H*W*O (flax/Keras/torch agree on this).

Numerics: ``*_normal`` initializers here sample an untruncated normal with exactly the
named variance (torch's ``kaiming_normal_``/``xavier_normal_`` convention); flax and
Keras use a truncated normal rescaled to the same variance, so the marginal variance is
the same but the tails differ.

Also here: ``save_params`` / ``from_pretrained`` to start from a saved model
(Goodfellow et al. 2016, Sec. 8.4, "Initialize using a pretrained model").
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Sequence

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_dl._core import check_choice, check_int, check_nonnegative, check_positive

Initializer = Callable[..., jax.Array]

__all__ = [
    "Initializer",
    "fans",
    "variance_scaling",
    "normalized_uniform",
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_normal",
    "orthogonal",
    "sparse",
    "small_random",
    "zeros",
    "bias_from_marginals",
    "save_params",
    "from_pretrained",
]


def fans(shape: Sequence[int]) -> tuple[int, int]:
    """Fan-in and fan-out of a weight of ``shape`` whose LAST axis is the output unit.

    .. math:: \\text{fan\\_in} = \\prod_{i < d} s_i, \\qquad
              \\text{fan\\_out} = s_{d} \\prod_{i < d-1} s_i

    Args:
      shape: the weight shape, at least 1-D (a 1-D shape has fan_in = 1).

    Returns:
      ``(fan_in, fan_out)``.

    Example:
      >>> fans((3, 3, 8, 16))
      (72, 144)
    """
    shape = tuple(int(s) for s in shape)
    if not shape:
        raise ValueError(f"shape must have at least one axis, got shape={shape!r}")
    fan_in = math.prod(shape[:-1])
    fan_out = math.prod(shape[:-2]) * shape[-1]
    return fan_in, fan_out


def _as_matrix_shape(shape: Sequence[int]) -> tuple[int, int]:
    """``(fan_in, n_out)``: the weight seen as one column of incoming weights per unit."""
    fan_in, _ = fans(shape)
    return fan_in, int(shape[-1])


def variance_scaling(scale: float, mode: str, distribution: str) -> Initializer:
    """Zero-mean weights with variance ``scale / n``; the one formula behind Glorot/He/LeCun.

    .. math:: \\mathrm{Var}(W) = \\frac{\\text{scale}}{n}, \\quad
              n = \\text{fan\\_in} \\;|\\; \\text{fan\\_out} \\;|\\;
              (\\text{fan\\_in} + \\text{fan\\_out}) / 2

    ``distribution="uniform"`` samples ``U(-sqrt(3 Var), sqrt(3 Var))``;
    ``distribution="normal"`` samples ``N(0, Var)`` (untruncated).

    Args:
      scale: the variance numerator (1 for Glorot/LeCun, 2 for He).
      mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
      distribution: ``"uniform"`` or ``"normal"``.

    Returns:
      An ``init(key, shape, dtype=jnp.float32)`` callable.

    Example:
      >>> import jax
      >>> w = variance_scaling(2.0, "fan_in", "normal")(jax.random.key(0), (64, 32))
      >>> w.shape
      (64, 32)

    References:
      Glorot & Bengio 2010; He et al. 2015; LeCun et al. 1998 (Efficient BackProp).
    """
    check_positive("scale", scale)
    check_choice("mode", mode, ("fan_in", "fan_out", "fan_avg"))
    check_choice("distribution", distribution, ("uniform", "normal"))

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        fan_in, fan_out = fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / n
        if distribution == "uniform":
            bound = math.sqrt(3.0 * variance)
            return jax.random.uniform(key, tuple(shape), dtype, -bound, bound)
        return math.sqrt(variance) * jax.random.normal(key, tuple(shape), dtype)

    return init


def glorot_uniform() -> Initializer:
    """Glorot/Xavier uniform: ``U(-sqrt(6/(fan_in+fan_out)), +sqrt(6/(fan_in+fan_out)))``.

    Returns:
      An ``init(key, shape, dtype)`` callable.

    Example:
      >>> import jax
      >>> glorot_uniform()(jax.random.key(0), (4, 3)).shape
      (4, 3)

    References:
      Glorot & Bengio 2010, eq. 16; Goodfellow et al. 2016, eq. 8.23.
    """
    return variance_scaling(1.0, "fan_avg", "uniform")


def normalized_uniform() -> Initializer:
    """Goodfellow's "normalized initialization": ``W ~ U(-sqrt(6/(m+n)), sqrt(6/(m+n)))``.

    The same scheme as :func:`glorot_uniform` (m = fan_in, n = fan_out), under the
    lecture's name. It keeps activation and gradient variance equal across layers.

    Returns:
      An ``init(key, shape, dtype)`` callable.

    Example:
      >>> import jax
      >>> w = normalized_uniform()(jax.random.key(0), (100, 50))
      >>> bool(abs(w).max() <= (6 / 150) ** 0.5)
      True

    References:
      Goodfellow et al. 2016, eq. 8.23; Glorot & Bengio 2010.
    """
    return glorot_uniform()


def glorot_normal() -> Initializer:
    """Glorot/Xavier normal: ``N(0, 2 / (fan_in + fan_out))``.

    Returns:
      An ``init(key, shape, dtype)`` callable.

    Example:
      >>> import jax
      >>> glorot_normal()(jax.random.key(0), (4, 3)).shape
      (4, 3)

    References:
      Glorot & Bengio 2010.
    """
    return variance_scaling(1.0, "fan_avg", "normal")


def he_uniform() -> Initializer:
    """He/Kaiming uniform for ReLU layers: ``U(-sqrt(6/fan_in), +sqrt(6/fan_in))``.

    Returns:
      An ``init(key, shape, dtype)`` callable.

    Example:
      >>> import jax
      >>> he_uniform()(jax.random.key(0), (4, 3)).shape
      (4, 3)

    References:
      He et al. 2015, "Delving Deep into Rectifiers".
    """
    return variance_scaling(2.0, "fan_in", "uniform")


def he_normal() -> Initializer:
    """He/Kaiming normal for ReLU layers: ``N(0, 2 / fan_in)``.

    Returns:
      An ``init(key, shape, dtype)`` callable.

    Example:
      >>> import jax
      >>> he_normal()(jax.random.key(0), (4, 3)).shape
      (4, 3)

    References:
      He et al. 2015, "Delving Deep into Rectifiers".
    """
    return variance_scaling(2.0, "fan_in", "normal")


def lecun_normal() -> Initializer:
    """LeCun normal (tanh / SELU layers): ``N(0, 1 / fan_in)``.

    Returns:
      An ``init(key, shape, dtype)`` callable.

    Example:
      >>> import jax
      >>> lecun_normal()(jax.random.key(0), (4, 3)).shape
      (4, 3)

    References:
      LeCun et al. 1998, "Efficient BackProp".
    """
    return variance_scaling(1.0, "fan_in", "normal")


def orthogonal(scale: float = 1.0) -> Initializer:
    """Random orthogonal weights (scaled): orthonormal columns when fan_in >= n_out, else rows.

    The weight is viewed as a ``(fan_in, n_out)`` matrix ``W = scale * Q`` where ``Q``
    comes from the QR decomposition of a Gaussian matrix, with the signs of ``diag(R)``
    folded in so that ``Q`` is Haar-distributed. ``W^T W = scale^2 I`` (or ``W W^T``).

    Args:
      scale: multiplier of the orthogonal matrix (gain).

    Returns:
      An ``init(key, shape, dtype)`` callable.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> w = orthogonal()(jax.random.key(0), (8, 8))
      >>> bool(jnp.allclose(w.T @ w, jnp.eye(8), atol=1e-5))
      True

    References:
      Saxe et al. 2014, "Exact solutions to the nonlinear dynamics of learning in deep
      linear neural networks"; Mezzadri 2007 (sign correction).
    """
    check_nonnegative("scale", scale)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        rows, cols = _as_matrix_shape(shape)
        tall = (max(rows, cols), min(rows, cols))
        a = jax.random.normal(key, tall, jnp.float32)
        q, r = jnp.linalg.qr(a)
        q = q * jnp.sign(jnp.diagonal(r))[None, :]
        if rows < cols:
            q = q.T
        return (scale * q).reshape(tuple(shape)).astype(dtype)

    return init


def sparse(k: int, stddev: float = 1.0) -> Initializer:
    """Sparse initialization: exactly ``k`` nonzero incoming weights per output unit.

    For each output unit (each column of the ``(fan_in, n_out)`` view) ``k`` distinct
    input rows are drawn uniformly without replacement, independently per unit; their
    weights are ``N(0, stddev^2)`` and every other weight is 0. Unlike normalized
    initialization the weight size does not shrink with the layer width, and the units
    start out diverse.

    Args:
      k: number of nonzero incoming weights per unit, ``1 <= k <= fan_in``
        (``fan_in`` is checked when the initializer is called with a shape).
      stddev: standard deviation of the nonzero weights.

    Returns:
      An ``init(key, shape, dtype)`` callable.

    Example:
      >>> import jax
      >>> w = sparse(3)(jax.random.key(0), (20, 5))
      >>> (w != 0).sum(axis=0).tolist()
      [3, 3, 3, 3, 3]

    References:
      Martens 2010, "Deep learning via Hessian-free optimization"; Goodfellow et al.
      2016, Sec. 8.4.
    """
    check_int("k", k, 1)
    check_nonnegative("stddev", stddev)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        fan_in, n_out = _as_matrix_shape(shape)
        if k > fan_in:
            raise ValueError(
                f"k must be <= fan_in, got k={k} for shape {tuple(shape)} with fan_in={fan_in}"
            )
        pick_key, value_key = jax.random.split(key)
        # The rank of each row inside its column under i.i.d. uniform scores is a uniform
        # random permutation per column, so "rank < k" picks k distinct rows exactly.
        scores = jax.random.uniform(pick_key, (fan_in, n_out))
        ranks = jnp.argsort(jnp.argsort(scores, axis=0), axis=0)
        values = stddev * jax.random.normal(value_key, (fan_in, n_out), dtype)
        return jnp.where(ranks < k, values, jnp.zeros((), dtype)).reshape(tuple(shape))

    return init


def small_random(stddev: float = 0.01) -> Initializer:
    """Small Gaussian weights ``N(0, stddev^2)``, independent of the layer width.

    Args:
      stddev: standard deviation.

    Returns:
      An ``init(key, shape, dtype)`` callable.

    Example:
      >>> import jax
      >>> small_random(0.01)(jax.random.key(0), (4, 3)).shape
      (4, 3)

    References:
      Goodfellow et al. 2016, Sec. 8.4 (weights "initialized randomly ... scale matters").
    """
    check_nonnegative("stddev", stddev)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return stddev * jax.random.normal(key, tuple(shape), dtype)

    return init


def zeros(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
    """All-zero initializer (flax convention: ``zeros`` is itself the ``init`` callable).

    Zero biases are compatible with most weight schemes (Goodfellow et al. 2016,
    Sec. 8.4). Do not use it for weights of hidden layers: it leaves the units
    symmetric.

    Args:
      key: unused (kept for the flax signature).
      shape: output shape.
      dtype: output dtype.

    Returns:
      ``jnp.zeros(shape, dtype)``.

    Example:
      >>> import jax
      >>> zeros(jax.random.key(0), (2,)).tolist()
      [0.0, 0.0]
    """
    del key
    return jnp.zeros(tuple(shape), dtype)


def bias_from_marginals(freqs: Any) -> Initializer:
    """Output bias whose softmax equals the class marginals: ``softmax(b) = freqs``.

    .. math:: b = \\log c - \\tfrac{1}{K} \\textstyle\\sum_j \\log c_j

    (any constant shift solves ``softmax(b) = c``; this one has mean zero).

    Args:
      freqs: the marginal class frequencies ``c`` of the training set, a 1-D array of
        positive numbers summing to 1 (within 1e-6).

    Returns:
      An ``init(key, shape, dtype)`` callable; ``shape`` must equal ``freqs.shape``.

    Example:
      >>> import jax
      >>> b = bias_from_marginals([0.7, 0.2, 0.1])(jax.random.key(0), (3,))
      >>> [round(float(p), 4) for p in jax.nn.softmax(b)]
      [0.7, 0.2, 0.1]

    References:
      Goodfellow et al. 2016, Sec. 8.4 ("set the bias ... to the marginal statistics of
      the output"; solve softmax(b) = c).
    """
    if freqs is None or isinstance(freqs, (str, bytes)):
        raise TypeError(f"freqs must be a 1-D array of class frequencies, got freqs={freqs!r}")
    c = np.asarray(freqs, dtype=np.float64)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"freqs must be a non-empty 1-D array, got freqs with shape {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ValueError(f"freqs must all be positive and finite, got freqs={c.tolist()}")
    if abs(c.sum() - 1.0) > 1e-6:
        raise ValueError(f"freqs must sum to 1 (within 1e-6), got sum(freqs)={c.sum()!r}")
    log_c = np.log(c)
    bias = log_c - log_c.mean()

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        del key
        if tuple(shape) != bias.shape:
            raise ValueError(
                f"shape must match freqs, got shape={tuple(shape)} for freqs of shape {bias.shape}"
            )
        return jnp.asarray(bias, dtype)

    return init


def save_params(params: Any, path: str | os.PathLike) -> None:
    """Write a params pytree to ``path`` with ``flax.serialization.to_bytes``.

    Args:
      params: any pytree of arrays (e.g. ``variables["params"]``).
      path: destination file; parent folders are created.

    Example:
      >>> import jax.numpy as jnp, tempfile, os
      >>> p = os.path.join(tempfile.mkdtemp(), "w.msgpack")
      >>> save_params({"w": jnp.ones(2)}, p)
      >>> from_pretrained({"w": jnp.zeros(2)}, p)["w"].tolist()
      [1.0, 1.0]
    """
    folder = os.path.dirname(os.fspath(path))
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "wb") as f:
        f.write(flax.serialization.to_bytes(params))


def _flat_state(state: Any) -> dict[str, Any]:
    """``{path: leaf}`` of a state dict (nested dicts), in sorted, deterministic order."""
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    return {jax.tree_util.keystr(path): leaf for path, leaf in flat}


def from_pretrained(params: Any, path: str | os.PathLike) -> Any:
    """Start from saved params: load ``path`` (written by :func:`save_params`) into ``params``.

    ``params`` is the template (e.g. a fresh ``model.init(...)["params"]``): the saved
    tree must have the same paths and leaf shapes, otherwise a ``ValueError`` names the
    first mismatching path. Leaves keep the template's dtype.

    Args:
      params: the template pytree.
      path: a file written by :func:`save_params` (``flax.serialization.to_bytes``).

    Returns:
      A pytree with the template's structure holding the saved values.

    Example:
      >>> import jax.numpy as jnp, tempfile, os
      >>> p = os.path.join(tempfile.mkdtemp(), "w.msgpack")
      >>> save_params({"w": jnp.arange(3.0)}, p)
      >>> from_pretrained({"w": jnp.zeros(3)}, p)["w"].tolist()
      [0.0, 1.0, 2.0]

    References:
      Goodfellow et al. 2016, Sec. 8.4 ("Initialize using a pretrained model").
    """
    with open(path, "rb") as f:
        saved_state = flax.serialization.msgpack_restore(f.read())
    template_state = flax.serialization.to_state_dict(params)
    saved = _flat_state(saved_state)
    wanted = _flat_state(template_state)
    for name in sorted(set(saved) | set(wanted)):
        if name not in saved:
            raise ValueError(f"saved params in {path} lack path {name} of the template params")
        if name not in wanted:
            raise ValueError(f"saved params in {path} have path {name} not in the template params")
        got, want = np.shape(saved[name]), np.shape(wanted[name])
        if got != want:
            raise ValueError(
                f"saved params in {path} differ in shape at path {name}: saved {got} vs "
                f"template {want}"
            )
    restored = flax.serialization.from_state_dict(params, saved_state)
    return jax.tree.map(lambda new, old: jnp.asarray(new, jnp.asarray(old).dtype), restored, params)
