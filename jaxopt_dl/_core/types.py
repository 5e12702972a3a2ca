"""The types every transform uses: optax's own, so jaxopt_dl and optax compose both ways."""

from __future__ import annotations

from typing import Callable, Union

import jax
import optax

GradientTransformation = optax.GradientTransformation
"""optax's ``(init, update)`` pair -- the same type, so jaxopt_dl and optax compose both ways.

``init(params) -> state``; ``update(updates, state, params=None) -> (updates, state)``.
"""
GradientTransformationExtraArgs = optax.GradientTransformationExtraArgs
"""optax's transform whose ``update`` also takes keyword arguments (e.g. ``value=loss``)."""
EmptyState = optax.EmptyState
"""optax's state of a stateless transform (an empty NamedTuple)."""
OptState = optax.OptState
Params = optax.Params
Updates = optax.Updates
Schedule = Callable[[jax.typing.ArrayLike], jax.typing.ArrayLike]
"""A function ``step -> value`` (jit- and vmap-compatible), e.g. a learning-rate schedule."""
ScalarOrSchedule = Union[float, jax.Array, Schedule]
"""A hyperparameter given as a number, an array (possibly traced) or a :data:`Schedule`."""
