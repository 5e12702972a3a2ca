"""The training state: params, optimizer state, batch-norm running averages and an rng key."""

from __future__ import annotations

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training import train_state

from jaxopt_dl import _precision, fused
from jaxopt_dl._core import GradientTransformation, apply_updates
from jaxopt_dl.training.modules import model_apply

__all__ = ["TrainState", "create_train_state", "optimizer_update"]


def loss_arguments(tx: GradientTransformation, value: Optional[Any]) -> dict:
    """``{"value": value}`` for optimizers that accept extra arguments, else ``{}``.

    ``reduce_on_plateau`` needs the loss; every ``jdl.chain`` accepts it.

    Args:
      tx: the optimizer.
      value: the loss of the batch, or ``None`` to pass nothing.

    Returns:
      The keyword arguments for ``tx.update``.
    """
    if value is not None and isinstance(tx, optax.GradientTransformationExtraArgs):
        return {"value": value}
    return {}


def optimizer_update(
    tx: GradientTransformation, grads: Any, opt_state: Any, params: Any, value: Optional[Any]
) -> tuple[Any, Any]:
    """``tx.update`` that feeds ``value=`` (the loss) to optimizers that accept it.

    Args:
      tx: the optimizer.
      grads: the gradient tree.
      opt_state: ``tx``'s state.
      params: the current params.
      value: the loss of the batch, or ``None`` to pass nothing.

    Returns:
      ``(updates, new_opt_state)``.
    """
    return tx.update(grads, opt_state, params, **loss_arguments(tx, value))


class TrainState(train_state.TrainState):
    """``flax.training.train_state.TrainState`` plus batch-norm state, an rng and NaN bookkeeping.

    A pytree (``flax.struct`` dataclass): it jits, vmaps (``sweep``), shards and
    serializes with ``flax.serialization`` like any flax state. No two leaves share a
    buffer, so a step can be jitted with the state donated
    (``jax.jit(step, donate_argnums=0)``).

    Attributes:
      step: the number of optimizer updates applied so far.
      apply_fn: ``apply_fn(variables, x, train=..., mutable=..., rngs=...)``, the
        model's ``apply`` taking ``train=`` (:class:`~jaxopt_dl.training.modules.ModelApply`;
        not a pytree leaf).
      params: the model parameters.
      tx: the optimizer (not a pytree leaf).
      opt_state: the optimizer state, ``tx.init(params)``.
      batch_stats: the model's ``"batch_stats"`` collection (running averages of batch
        norm); ``{}`` for models without batch norm.
      rng: key split every step for dropout.
      nonfinite_streak: consecutive steps skipped because the loss or a gradient was
        NaN/Inf (reset by a finite step).
      nonfinite_total: all skipped steps.
      nonfinite_leaf: index (in ``jax.tree.leaves(params)`` order) of the first
        gradient leaf that was non-finite at the latest skipped step; ``-1`` if none.
      rounding: how bfloat16/float16 params take their updates: ``"nearest"`` or
        ``"stochastic"`` (see :func:`jaxopt_dl.apply_updates`; not a pytree leaf).
      rounding_seed: the integer seed of stochastic rounding's bits, hashed with the
        step, so a resumed run continues bit for bit (not a pytree leaf).
    """

    batch_stats: Any
    rng: jax.Array
    nonfinite_streak: jax.Array
    nonfinite_total: jax.Array
    nonfinite_leaf: jax.Array
    rounding: str = struct.field(pytree_node=False, default="nearest")
    rounding_seed: int = struct.field(pytree_node=False, default=0)

    def apply_gradients(
        self,
        *,
        grads: Any,
        value: Optional[Any] = None,
        where: Optional[jax.typing.ArrayLike] = None,
        **kwargs: Any,
    ) -> "TrainState":
        """One optimizer step through :func:`jaxopt_dl.fused.apply_gradients` (fused on CPU).

        Args:
          grads: gradient of the loss with respect to ``params``.
          value: the batch's loss, passed as ``value=`` to optimizers that accept extra
            arguments (``reduce_on_plateau``).
          where: a boolean scalar: ``False`` skips the step (``step``, params and
            optimizer state unchanged bit for bit, in place when donated); default
            ``None``: always step.
          **kwargs: other fields to replace (e.g. ``batch_stats``).

        Returns:
          The state with ``step + 1``, the new params and optimizer state.
        """
        if self.rounding == "stochastic":
            updates, opt_state = optimizer_update(
                self.tx, grads, self.opt_state, self.params, value
            )
            key = jnp.stack(
                [
                    jnp.uint32(self.rounding_seed % 2**32),
                    jnp.uint32(_precision.STREAM_PARAMS),
                    jax.lax.bitcast_convert_type(jnp.asarray(self.step, jnp.int32), jnp.uint32),
                ]
            )
            params = apply_updates(self.params, updates, rounding="stochastic", key=key)
            return self.replace(step=self.step + 1, params=params, opt_state=opt_state, **kwargs)
        params, opt_state = fused.apply_gradients(
            self.tx,
            grads,
            self.opt_state,
            self.params,
            where=where,
            **loss_arguments(self.tx, value),
        )
        step = self.step + 1 if where is None else jnp.where(where, self.step + 1, self.step)
        return self.replace(step=step, params=params, opt_state=opt_state, **kwargs)

    def variables(self, params: Optional[Any] = None) -> dict:
        """The ``variables`` dict ``model.apply`` expects (evaluation mode).

        Args:
          params: use these params instead of the state's (e.g. a perturbed copy).

        Returns:
          ``{"params": ...}``, plus ``"batch_stats"`` for models with batch norm.
        """
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
    rounding: str = "nearest",
    rounding_seed: int = 0,
) -> TrainState:
    """Initialize a model and its optimizer into a :class:`TrainState`.

    ``model.init(key, sample_x)`` in evaluation mode gives the params and, with batch norm, the
    ``batch_stats``; the rest of the key seeds dropout. Pure and traceable: ``sweep``
    vmaps it over seeds.

    Any Linen module works: one with a ``train`` (or ``training``, or Flax's
    ``deterministic``) argument is switched by it; one without is called without it
    (see :mod:`jaxopt_dl.training.modules`). The state's ``apply_fn`` always takes
    ``train=``. An NNX module raises ``TypeError`` naming
    ``flax.nnx.bridge.to_linen``, which turns it into a Linen module.

    Args:
      model: a Linen module (``flax.linen.Module``).
      tx: the optimizer (any optax-compatible ``GradientTransformation``).
      key: a PRNG key.
      sample_x: a batch of inputs of the training shape (its values are not used).
      params: start from these params instead of the random init (e.g. from
        ``initializers.from_pretrained``); ``batch_stats`` still come from ``init``.
        Pass bfloat16 params (and ``rounding="stochastic"``) to train in bfloat16
        without a float32 master copy.
      rounding: how low-precision params take their updates, ``"nearest"`` (default)
        or ``"stochastic"`` (unbiased; :func:`jaxopt_dl.apply_updates`). ``fit`` and
        every step follow the state's choice.
      rounding_seed: an integer seed for ``"stochastic"`` (default 0).

    Returns:
      A :class:`TrainState` at step 0.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_dl as jdl
      >>> state = jdl.training.create_train_state(
      ...     jdl.models.MLP(hidden=(8,)), jdl.adam(1e-3), jax.random.key(0), jnp.zeros((1, 64)))
      >>> int(state.step), state.batch_stats
      (0, {})
    """
    _precision.check_rounding(rounding)
    if isinstance(rounding_seed, bool) or not isinstance(rounding_seed, int):
        raise TypeError(f"rounding_seed must be an int, got rounding_seed={rounding_seed!r}")
    apply = model_apply(model)
    init_key, rng = jax.random.split(key)
    # "params" alone decides the params; the "dropout" stream serves modules whose
    # dropout is always on.
    variables = apply.init(
        {"params": init_key, "dropout": jax.random.fold_in(init_key, 1)}, jnp.asarray(sample_x)
    )
    if params is None:
        params = variables["params"]
    # Each counter gets its own int32 (not weakly typed) array: the state's types never
    # change after a step (jitted steps compile once) and no two leaves share a buffer
    # (donation).
    return TrainState.create(
        apply_fn=apply,
        params=params,
        tx=tx,
        batch_stats=variables.get("batch_stats", {}),
        rng=rng,
        nonfinite_streak=jnp.zeros([], jnp.int32),
        nonfinite_total=jnp.zeros([], jnp.int32),
        nonfinite_leaf=jnp.full([], -1, jnp.int32),
        rounding=rounding,
        rounding_seed=rounding_seed,
    ).replace(step=jnp.zeros([], jnp.int32))
