"""Composition: ``identity``, ``chain`` and ``apply_updates``."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxopt_dl import _precision
from jaxopt_dl._core import description as desc_lib
from jaxopt_dl._core.factory import accepted_keywords, block
from jaxopt_dl._core.treemath import widen
from jaxopt_dl._core.types import (
    GradientTransformation,
    GradientTransformationExtraArgs,
    Params,
    Updates,
)
from jaxopt_dl._core.validation import check_tree_matches


@block(kernel="identity", signature_of=optax.identity)
def identity():
    """Pass updates through unchanged: optax.identity, its state (``EmptyState``) and numbers."""
    return optax.identity()


def chain(*transforms: GradientTransformation) -> GradientTransformationExtraArgs:
    """Apply transforms in sequence; the state is the tuple of their states (as optax.chain).

    Any optax transform can appear in a jaxopt_dl chain and vice versa; extra keyword
    arguments to ``update`` (e.g. ``value=loss`` for reduce-on-plateau) reach the
    transforms that accept them, and only those: a transform whose ``update`` names
    its keywords (without ``**kwargs``) gets just the ones it names.

    Args:
      *transforms: the transforms, applied in order (jaxopt_dl's or optax's).

    Example:
      >>> import jaxopt_dl as jdl
      >>> tx = jdl.chain(jdl.clip_by_global_norm(1.0), jdl.scale_by_adam(), jdl.scale(-1e-3))
    """
    description = desc_lib.sequence_description(tuple(map(desc_lib.describe, transforms)))
    transforms = tuple(optax.with_extra_args_support(t) for t in transforms)
    accepts = tuple(accepted_keywords(t.update) for t in transforms)

    def init_fn(params):
        return tuple(t.init(params) for t in transforms)

    def update_fn(updates, state, params=None, **extra_args):
        if len(state) != len(transforms):
            raise ValueError(
                f"chain has {len(transforms)} transforms but the state has {len(state)} entries"
            )
        new_state = []
        for t, s, names in zip(transforms, state, accepts):
            extra = extra_args
            if names is not None:
                extra = {key: extra_args[key] for key in names & extra_args.keys()}
            updates, s = t.update(updates, s, params, **extra)
            new_state.append(s)
        return updates, tuple(new_state)

    update_fn.description = description
    return GradientTransformationExtraArgs(init_fn, update_fn)


def apply_updates(
    params: Params, updates: Updates, *, rounding: str = "nearest", key: Any = None
) -> Params:
    """``params + updates``, each result in its param's dtype (bf16/fp16 stay bf16/fp16).

    With ``rounding="stochastic"`` a bfloat16/float16 parameter is updated in float32
    and rounded up or down at random, unbiased (:func:`jaxopt_dl.stochastic_round`), so
    updates smaller than half the parameter's spacing still move it on average: low
    precision parameters train without a float32 master copy. The bits hash ``key`` and
    each leaf's index and element, so pass a new key (e.g. ``fold_in(key, step)``)
    every step. float32 parameters are added as with ``"nearest"``.

    Args:
      params: a tree of parameters.
      updates: a tree with the same structure and shapes.
      rounding: ``"nearest"`` (default; the ordinary cast) or ``"stochastic"``.
      key: a PRNG key or an integer seed (an int or an integer array); required for
        ``"stochastic"``.

    Returns:
      The updated parameters, each leaf in the dtype of its parameter.

    Raises:
      ValueError: naming the first path where the trees or leaf shapes differ (checked
        when traced, so it costs nothing in a jitted step); an unknown ``rounding``, or
        ``"stochastic"`` without a ``key``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_dl as jdl
      >>> w = jnp.ones(4096, jnp.bfloat16)
      >>> u = jnp.full(4096, 1e-3)  # below half of bfloat16's spacing at 1 (2**-8)
      >>> float(jnp.mean(jdl.apply_updates(w, u).astype(jnp.float32)))  # nearest: lost
      1.0
      >>> w2 = jdl.apply_updates(w, u, rounding="stochastic", key=jax.random.key(0))
      >>> round(float(jnp.mean(w2.astype(jnp.float32))), 3)
      1.001
    """
    _precision.check_rounding(rounding)
    check_tree_matches(updates, params, "params")
    if rounding == "nearest":
        return jax.tree.map(
            lambda p, u: None if p is None else jnp.asarray(p + u).astype(jnp.asarray(p).dtype),
            params,
            updates,
            is_leaf=lambda x: x is None,
        )
    if key is None:
        raise ValueError(
            "apply_updates(rounding='stochastic') needs key= (a PRNG key or an integer seed)"
        )
    words = _precision.key_words(key)
    sums = jax.tree.map(
        lambda p, u: None if p is None else widen(jnp.asarray(p)) + widen(jnp.asarray(u)),
        params,
        updates,
        is_leaf=lambda x: x is None,
    )
    return _precision.tree_round_to(sums, params, "stochastic", words)
