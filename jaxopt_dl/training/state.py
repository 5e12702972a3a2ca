"""The training state: params, optimizer state, batch-norm running averages and an rng key."""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.training import train_state

from jaxopt_dl import fused
from jaxopt_dl._core import GradientTransformation

__all__ = ["TrainState", "create_train_state"]


class TrainState(train_state.TrainState):
    """``flax.training.train_state.TrainState`` plus batch-norm state, an rng and NaN bookkeeping.

    A pytree (``flax.struct`` dataclass): it jits, vmaps (``sweep``), shards and
    serializes with ``flax.serialization`` like any flax state.

    Attributes:
      batch_stats: the model's ``"batch_stats"`` collection (running averages of batch
        norm); ``{}`` for models without batch norm.
      rng: key split every step for dropout.
      nonfinite_streak: consecutive steps skipped because the loss or a gradient was
        NaN/Inf (reset by a finite step).
      nonfinite_total: all skipped steps.
      nonfinite_leaf: index (in ``jax.tree.leaves(params)`` order) of the first
        gradient leaf that was non-finite at the latest skipped step; ``-1`` if none.
    """

    batch_stats: Any
    rng: jax.Array
    nonfinite_streak: jax.Array
    nonfinite_total: jax.Array
    nonfinite_leaf: jax.Array

    def apply_gradients(self, *, grads: Any, **kwargs: Any) -> "TrainState":
        """One optimizer step through :func:`jaxopt_dl.fused.apply_gradients` (fused on CPU).

        Args:
          grads: gradients, a tree like ``params``.
          **kwargs: other fields to replace.

        Returns:
          The state with ``step + 1``, the new params and optimizer state.
        """
        params, opt_state = fused.apply_gradients(self.tx, grads, self.opt_state, self.params)
        return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **kwargs)

    def variables(self, params: Optional[Any] = None) -> dict:
        """The ``variables`` dict ``model.apply`` expects (``params`` overrides the state's)."""
        variables = {"params": self.params if params is None else params}
        if self.batch_stats:
            variables["batch_stats"] = self.batch_stats
        return variables


def create_train_state(
    model: nn.Module,
    tx: GradientTransformation,
    key: jax.Array,
    sample_x: jax.typing.ArrayLike,
    *,
    params: Optional[Any] = None,
) -> TrainState:
    """Initialize a model and its optimizer into a :class:`TrainState`.

    ``model.init(key, sample_x, train=False)`` gives the params and, with batch norm, the
    ``batch_stats``; the rest of the key seeds dropout. Pure and traceable: ``sweep``
    vmaps it over seeds.

    Args:
      model: a flax module called as ``model.apply(variables, x, train=...)``.
      tx: the optimizer (any optax-compatible ``GradientTransformation``).
      key: a PRNG key.
      sample_x: a batch of inputs of the training shape (its values are not used).
      params: start from these params instead of the random init (e.g. from
        ``initializers.from_pretrained``); ``batch_stats`` still come from ``init``.

    Returns:
      A :class:`TrainState` at step 0.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_dl as jdl
      >>> state = jdl.training.create_train_state(
      ...     jdl.models.MLP(hidden=(8,)), jdl.adam(1e-3), jax.random.key(0), jnp.zeros((1, 64)))
      >>> int(state.step), state.batch_stats
      (0, {})
    """
    init_key, rng = jax.random.split(key)
    variables = model.init(init_key, jnp.asarray(sample_x), train=False)
    if params is None:
        params = variables["params"]
    zero = jnp.zeros([], jnp.int32)
    # An int32 (not weakly typed) step, so the state's types never change after a step
    # and jitted steps compile once.
    return TrainState.create(
        apply_fn=model.apply,
        params=params,
        tx=tx,
        batch_stats=variables.get("batch_stats", {}),
        rng=rng,
        nonfinite_streak=zero,
        nonfinite_total=zero,
        nonfinite_leaf=jnp.full([], -1, jnp.int32),
    ).replace(step=zero)
