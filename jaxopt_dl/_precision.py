"""Rounding float32 to bfloat16 or float16: to nearest, or stochastically from hashed bits.

Stochastic rounding rounds a value between two neighbours of the low-precision grid up
with probability equal to its distance from the lower one, in units of their spacing,
so ``E[round(x)] = x``: small updates to a bfloat16 moment or parameter accumulate on
average instead of vanishing (round to nearest drops every change under half a
spacing). The random bits come from a counter-based hash of integer words -- a seed, a
stream, the step count, the leaf's index, the element's index -- in 32-bit unsigned
arithmetic, so a run is deterministic, resumes bit-identically in a new process and
needs no key threading; the fused C++ step computes the same bits.

Depends on jax and numpy only.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["kahan_apply_updates", "stochastic_round"]

ROUNDINGS = ("nearest", "stochastic")
"""The rounding modes an optimizer state, ``apply_updates`` and ``TrainState`` accept."""

GOLDEN = 0x9E3779B9
"""The odd constant that starts the hash and spreads element indices."""

# Stream words: which quantity a state's bits are for, so that the moments of one step
# (and the parameters) round independently of each other.
STREAM_PARAMS = 0
STREAM_MU = 1
STREAM_NU = 2
STREAM_COMPENSATION = 3

_LOW_PRECISION = {
    np.dtype(jnp.bfloat16): 16,  # mantissa bits float32 has and bfloat16 lacks
    np.dtype(jnp.float16): 13,
}


def _u32(value: Any) -> jax.Array:
    """``value`` as uint32: integers wrap modulo 2^32 (an int32 count is bit-cast)."""
    value = jnp.asarray(value)
    if value.dtype == jnp.uint32:
        return value
    if value.dtype == jnp.int32:
        return jax.lax.bitcast_convert_type(value, jnp.uint32)
    if jnp.issubdtype(value.dtype, jnp.integer):
        return value.astype(jnp.uint32)
    raise TypeError(f"hash words must be integers, got dtype {value.dtype}")


def fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finalizer: a bijection of uint32 with full avalanche.

    Args:
      h: a uint32 array.
    """
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def stream_key(words: Sequence[Any]) -> jax.Array:
    """One uint32 from ``words``: start at ``GOLDEN``, then ``s = fmix32(s ^ w)`` per word.

    Args:
      words: integer scalars (Python ints, int32 or uint32 arrays; any may be traced).
    """
    s = jnp.uint32(GOLDEN)
    for w in words:
        s = fmix32(s ^ _u32(w))
    return s


def hash_bits(words: Sequence[Any], shape: Sequence[int]) -> jax.Array:
    """32 random bits per element: ``fmix32(stream_key(words) ^ (i * GOLDEN))``.

    ``i`` is the element's row-major flat index (uint32, modulo 2^32).

    Args:
      words: the integer words naming the stream (see :func:`stream_key`).
      shape: the array's shape.
    """
    size = int(np.prod(shape, dtype=np.int64))
    index = jax.lax.iota(jnp.uint32, size).reshape(tuple(shape))
    return fmix32(stream_key(words) ^ (index * jnp.uint32(GOLDEN)))


def _check_dtype(dtype: Any) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype not in _LOW_PRECISION:
        raise ValueError(f"dtype must be bfloat16 or float16, got dtype={dtype}")
    return dtype


def _round_bf16(bits32: jax.Array, u: jax.Array) -> jax.Array:
    """Magnitude-add the low 16 random bits, keep the high 16: bfloat16's bit pattern.

    Valid for every finite float32, subnormals included (bfloat16 shares float32's
    exponent range); a carry out of the mantissa moves to the next binade.
    """
    rounded = (bits32 + (u & jnp.uint32(0xFFFF))) >> 16
    return jax.lax.bitcast_convert_type(rounded.astype(jnp.uint16), jnp.bfloat16)


def _round_f16(bits32: jax.Array, u: jax.Array) -> jax.Array:
    """float16's bit pattern of a float32 magnitude ``bits32`` (sign cleared), rounded by ``u``.

    Normal range (biased float32 exponent >= 113, i.e. ``|x| >= 2^-14``): add the low 13
    random bits and drop 13 mantissa bits. Subnormal range: the magnitude as an integer
    ``m`` times ``2^-(s)`` units of float16's spacing ``2^-24``; ``k = (m + (u mod
    2^s)) >> s`` for ``s <= 31``, else ``k = [u < m >> (s - 32)]``; float16's bits are
    ``k`` (``k = 1024`` is the smallest normal).
    """
    exponent = (bits32 >> 23).astype(jnp.int32)
    normal = ((bits32 + (u & jnp.uint32(0x1FFF))) >> 13) - jnp.uint32(112 << 10)
    mantissa = (bits32 & jnp.uint32(0x7FFFFF)) | jnp.where(
        exponent > 0, jnp.uint32(0x800000), jnp.uint32(0)
    )
    shift = 126 - jnp.maximum(exponent, 1)
    small = jnp.clip(shift, 0, 31).astype(jnp.uint32)
    low = u & ((jnp.uint32(1) << small) - jnp.uint32(1))
    k_near = (mantissa + low) >> small
    big = jnp.clip(shift - 32, 0, 31).astype(jnp.uint32)
    k_far = jnp.where((shift - 32 < 24) & (u < (mantissa >> big)), jnp.uint32(1), jnp.uint32(0))
    subnormal = jnp.where(shift <= 31, k_near, k_far)
    half = jnp.where(exponent >= 113, normal, subnormal)
    return jax.lax.bitcast_convert_type(half.astype(jnp.uint16), jnp.float16)


def round_with_bits(x: jax.Array, dtype: Any, bits: jax.Array) -> jax.Array:
    """Stochastically round ``x`` to ``dtype`` (bfloat16 or float16) with given random bits.

    ``x`` is widened to float32 first (exact for bfloat16/float16/float32 inputs). NaN
    stays NaN, ``+-inf`` stays ``+-inf``, ``+-0`` and every value ``dtype`` represents
    are unchanged; a finite value beyond ``dtype``'s largest finite value saturates
    there (never inf).

    Args:
      x: a float32 (or narrower) array.
      dtype: ``jnp.bfloat16`` or ``jnp.float16``.
      bits: uint32 random bits with ``x``'s shape.
    """
    dtype = _check_dtype(dtype)
    x = jnp.asarray(x)
    if x.dtype == dtype:
        return x
    x = x.astype(jnp.float32)
    raw = jax.lax.bitcast_convert_type(x, jnp.uint32)
    largest = jnp.asarray(jnp.finfo(dtype).max, jnp.float32)
    magnitude = jnp.minimum(
        raw & jnp.uint32(0x7FFFFFFF), jax.lax.bitcast_convert_type(largest, jnp.uint32)
    )
    if dtype == jnp.bfloat16:
        rounded = _round_bf16(magnitude, bits)
    else:
        rounded = _round_f16(magnitude, bits)
    rounded = jnp.where(jnp.isfinite(x), rounded, jnp.abs(x).astype(dtype))
    return jnp.where(raw >> 31 == 1, -rounded, rounded)


def key_words(key: Any, name: str = "key") -> list:
    """The hash words of a PRNG key (its raw data) or of an integer seed (array).

    Args:
      key: a JAX PRNG key, an int, an integer array, or ``None`` (seed 0).
      name: the argument's name, used in the message.
    """
    if key is None:
        return [jnp.uint32(0)]
    if isinstance(key, (bool, np.bool_)):
        raise TypeError(f"{name} must be a PRNG key or an integer seed, got {name}={key!r}")
    if isinstance(key, (int, np.integer)):
        return [jnp.asarray(key % 2**32, jnp.uint32)]
    if isinstance(key, (jax.Array, np.ndarray)):
        if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            key = jax.random.key_data(key)
        if jnp.issubdtype(key.dtype, jnp.integer):
            return list(jnp.ravel(_u32(key)))
    raise TypeError(f"{name} must be a PRNG key or an integer seed, got {name}={key!r}")


def round_to(
    x: jax.Array, dtype: Any, rounding: str = "nearest", words: Optional[Sequence[Any]] = None
) -> jax.Array:
    """``x`` cast to ``dtype``: to nearest, or stochastically from ``hash_bits(words)``.

    Stochastic rounding applies only where it changes something: from float32 to
    bfloat16 or float16; any other cast is the plain (nearest) one.

    Args:
      x: an array.
      dtype: the target dtype.
      rounding: ``"nearest"`` or ``"stochastic"``.
      words: the hash words of ``x``'s bits (required for ``"stochastic"``).
    """
    x = jnp.asarray(x)
    dtype = np.dtype(dtype)
    if (
        rounding == "nearest"
        or dtype not in _LOW_PRECISION
        or x.dtype == dtype
        or not jnp.issubdtype(x.dtype, jnp.floating)
    ):
        return x.astype(dtype)
    return round_with_bits(x, dtype, hash_bits(words, x.shape))


def tree_round_to(
    tree: Any, dtypes: Any, rounding: str, words: Optional[Sequence[Any]] = None
) -> Any:
    """:func:`round_to` over a tree; the leaf's index in ``jax.tree.leaves`` order ends ``words``.

    Args:
      tree: a tree of arrays (``None`` leaves stay ``None``).
      dtypes: one dtype for every leaf, or a tree of arrays whose dtypes are the targets.
      rounding: ``"nearest"`` or ``"stochastic"``.
      words: the hash words shared by every leaf (e.g. seed, stream, count).
    """
    leaves, treedef = jax.tree.flatten(tree, is_leaf=lambda x: x is None)
    if isinstance(dtypes, (type, np.dtype, str)) or dtypes is jnp.bfloat16:
        targets = [dtypes] * len(leaves)
    else:
        targets = [
            None if t is None else jnp.asarray(t).dtype
            for t in jax.tree.leaves(dtypes, is_leaf=lambda x: x is None)
        ]
    out = [
        None if x is None else round_to(x, t, rounding, [*(words or ()), i])
        for i, (x, t) in enumerate(zip(leaves, targets))
    ]
    return jax.tree.unflatten(treedef, out)


def check_rounding(rounding: Any, rounding_seed: Any = None) -> None:
    """Check a ``rounding`` mode and its ``rounding_seed`` where they enter.

    Args:
      rounding: must be ``"nearest"`` or ``"stochastic"`` (else ``ValueError``).
      rounding_seed: ``None`` (seed 0), an int, an integer array or a PRNG key (else
        ``TypeError``).
    """
    if not isinstance(rounding, str) or rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got rounding={rounding!r}")
    if rounding_seed is not None:
        key_words(rounding_seed, "rounding_seed")


def stochastic_round(x: jax.typing.ArrayLike, dtype: Any, key: Any) -> jax.Array:
    """Round ``x`` to ``dtype`` (bfloat16 or float16) up or down at random, unbiased.

    A value between two neighbours ``lo < x < hi`` of ``dtype``'s grid becomes ``hi``
    with probability ``(x - lo) / (hi - lo)`` and ``lo`` otherwise, so

    .. math:: \\mathbb{E}[\\mathrm{round}(x)] = x

    (exactly for bfloat16 and for float16's normal range; for float16 subnormals below
    ``2^-32`` to within ``2^-32`` of a spacing). Values ``dtype`` represents, ``+-0``,
    ``+-inf`` and NaN are unchanged; a finite value beyond ``dtype``'s largest finite
    value saturates there instead of becoming inf. The bits are a counter-based hash of
    ``key`` and each element's index, so the same key gives the same result on every
    backend and in the fused step; split or fold the key for new draws.

    Args:
      x: a float32 array (bfloat16 and float16 inputs are widened exactly first).
      dtype: ``jnp.bfloat16`` or ``jnp.float16``.
      key: a JAX PRNG key (``jax.random.key`` or ``jax.random.PRNGKey``) or an integer
        seed.

    Returns:
      ``x`` rounded to ``dtype``, with ``x``'s shape.

    Raises:
      ValueError: a ``dtype`` other than bfloat16 or float16.
      TypeError: a ``key`` that is neither a PRNG key nor an integer, or a non-float ``x``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_dl as jdl
      >>> x = jnp.full(4096, 1.0 + 2.0**-10)  # a quarter of bfloat16's spacing above 1
      >>> r = jdl.stochastic_round(x, jnp.bfloat16, jax.random.key(0))
      >>> float(jnp.mean(r.astype(jnp.float32))) - 1.0  # close to 2**-10 ~ 0.00098
      0.0009...
    """
    dtype = _check_dtype(dtype)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"x must be a floating-point array, got x.dtype={x.dtype}")
    if np.dtype(x.dtype).itemsize > 4:
        raise TypeError(f"x must be float32 or narrower, got x.dtype={x.dtype}")
    return round_with_bits(x, dtype, hash_bits(key_words(key), x.shape))


def kahan_apply_updates(params: Any, updates: Any, compensation: Any = None) -> tuple[Any, Any]:
    """``params + updates`` with Kahan compensation: the deterministic alternative.

    Each low-precision parameter keeps a buffer of the same dtype holding what its last
    rounding lost; the next update adds it back, so small updates accumulate exactly
    (up to the buffer's own precision) instead of vanishing:

    .. math::
        y = u + c, \\quad p' = \\mathrm{round}(p + y), \\quad c' = y - (p' - p)

    (sums in float32, ``p'`` and ``c'`` rounded to nearest in the param's dtype). It
    costs one more buffer per parameter (2 bytes for bfloat16) and no random bits; the
    stochastic rounding of :func:`jaxopt_dl.apply_updates` costs no memory.

    Args:
      params: a tree of parameters (float32 leaves are updated as ``p + u``).
      updates: a tree like ``params``.
      compensation: the buffers from the previous call, or ``None`` (zeros) at the
        first.

    Returns:
      ``(new_params, new_compensation)``.

    Example:
      >>> import jax.numpy as jnp, jaxopt_dl as jdl
      >>> w, c = jnp.ones(3, jnp.bfloat16), None
      >>> for _ in range(100):
      ...     w, c = jdl.kahan_apply_updates(w, jnp.full(3, 1e-3), c)
      >>> round(float(w[0]) + float(c[0]), 3)
      1.1
    """
    if compensation is None:
        compensation = jax.tree.map(jnp.zeros_like, params)

    def one(p, u, c):
        p = jnp.asarray(p)
        y = jnp.asarray(u).astype(jnp.float32) + jnp.asarray(c).astype(jnp.float32)
        new_p = (p.astype(jnp.float32) + y).astype(p.dtype)
        new_c = y - (new_p.astype(jnp.float32) - p.astype(jnp.float32))
        return new_p, new_c.astype(jnp.asarray(c).dtype)

    p_leaves, treedef = jax.tree.flatten(params)
    pairs = [
        one(p, u, c)
        for p, u, c in zip(
            p_leaves, treedef.flatten_up_to(updates), treedef.flatten_up_to(compensation)
        )
    ]
    return (
        jax.tree.unflatten(treedef, [p for p, _ in pairs]),
        jax.tree.unflatten(treedef, [c for _, c in pairs]),
    )
