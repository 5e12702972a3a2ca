"""Any Flax Linen module as a model of the training tools.

The training tools call a model as ``apply_fn(variables, x, train=..., ...)``: ``train``
switches batch statistics and dropout on. An ordinary Linen module need not take that
argument: :func:`model_apply` reads the module's ``__call__`` signature once and wraps
``module.apply`` so that

* a module with a ``train`` (or Keras's ``training``) argument gets it;
* a module with Flax's ``deterministic`` argument gets ``deterministic=not train``;
* a module with none of them is called without it. If such a module holds batch norm
  that normalizes with the batch statistics, evaluation computes them too (the running
  averages are not updated outside training).

NNX modules are reached through Flax's bridge: ``flax.nnx.bridge.to_linen(Class,
*constructor_args)`` is a Linen module (see :func:`check_linen`).
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Optional

import flax.linen as nn

__all__ = ["ModelApply", "model_apply", "check_linen"]

_MODE_ARGUMENTS = ("train", "training", "deterministic")


def check_linen(model: Any, name: str = "model") -> None:
    """Raise one line saying what to do unless ``model`` is a Linen module.

    Args:
      model: the model given.
      name: the argument's name, used in the message.

    Raises:
      TypeError: an NNX module (the message names ``flax.nnx.bridge.to_linen``) or
        anything else that is not a ``flax.linen.Module``.
    """
    if isinstance(model, nn.Module):
        return
    try:
        from flax import nnx

        is_nnx = isinstance(model, nnx.Module)
    except ImportError:  # pragma: no cover - flax without nnx
        is_nnx = False
    kind = type(model).__name__
    if is_nnx:
        raise TypeError(
            f"{name} must be a Linen module, got the NNX module {kind}: pass "
            f"flax.nnx.bridge.to_linen({kind}, *its constructor arguments except rngs) instead"
        )
    raise TypeError(f"{name} must be a flax.linen.Module, got {name}={model!r}")


def _mode_argument(model: nn.Module) -> Optional[str]:
    """The argument of ``model.__call__`` that switches training on, or ``None``."""
    call = type(model).__call__
    nnx_class = getattr(model, "nnx_class", None)
    if nnx_class is not None:  # flax.nnx.bridge.ToLinen forwards keywords to the NNX call
        call = nnx_class.__call__
    parameters = inspect.signature(call).parameters
    for argument in _MODE_ARGUMENTS:
        if argument in parameters:
            return argument
    return None


@dataclasses.dataclass(frozen=True)
class ModelApply:
    """``module.apply`` that takes ``train=`` whatever the module's own argument is.

    Equal for equal modules (a frozen dataclass), so jitted steps that hold it as a
    static field compile once per model.

    Attributes:
      module: the Linen module.
      mode_argument: the module's ``train``/``training``/``deterministic`` argument, or
        ``None`` when it has none.
    """

    module: nn.Module
    mode_argument: Optional[str]

    def mode_kwargs(self, train: bool) -> dict:
        """The keyword arguments that put the module in training or evaluation mode.

        Args:
          train: training mode.

        Returns:
          ``{}`` for a module without a mode argument.
        """
        if self.mode_argument is None:
            return {}
        if self.mode_argument == "deterministic":
            return {"deterministic": not train}
        return {self.mode_argument: train}

    def init(self, rngs: Any, x: Any) -> Any:
        """``module.init`` in evaluation mode.

        Args:
          rngs: a key or a ``{collection: key}`` dict.
          x: a sample batch.

        Returns:
          The variables.
        """
        return self.module.init(rngs, x, **self.mode_kwargs(False))

    def __call__(
        self, variables: Any, x: Any, train: bool = False, mutable: Any = False, **kwargs: Any
    ) -> Any:
        """``module.apply(variables, x, <mode>, mutable=mutable, **kwargs)``.

        Args:
          variables: the variables.
          x: the inputs.
          train: training mode.
          mutable: the collections ``apply`` may change (as in ``module.apply``).
          **kwargs: passed to ``module.apply`` (e.g. ``rngs``).

        Returns:
          What ``module.apply`` returns: the outputs, or ``(outputs, updated)`` when
          ``mutable`` names collections.
        """
        kwargs.update(self.mode_kwargs(train))
        extra = (
            self.mode_argument is None
            and not train
            and "batch_stats" in variables
            and (mutable is False or "batch_stats" not in list(mutable))
        )
        if not extra:
            return self.module.apply(variables, x, mutable=mutable, **kwargs)
        # A module without a mode argument whose batch norm uses batch statistics
        # updates them on every call: let it, and keep the running averages unchanged.
        wanted = [] if mutable is False else list(mutable)
        outputs, updated = self.module.apply(
            variables, x, mutable=wanted + ["batch_stats"], **kwargs
        )
        if mutable is False:
            return outputs
        return outputs, {k: v for k, v in updated.items() if k != "batch_stats"}


def model_apply(model: Any) -> ModelApply:
    """The :class:`ModelApply` of a Linen module (see the module docstring).

    Args:
      model: a ``flax.linen.Module``.

    Returns:
      The wrapper.

    Raises:
      TypeError: ``model`` is not a Linen module (see :func:`check_linen`).

    Example:
      >>> import flax.linen as nn, jax, jax.numpy as jnp
      >>> class Plain(nn.Module):
      ...     @nn.compact
      ...     def __call__(self, x):
      ...         return nn.Dense(3)(x)
      >>> apply = model_apply(Plain())
      >>> variables = apply.init(jax.random.key(0), jnp.ones((2, 4)))
      >>> apply(variables, jnp.ones((2, 4)), train=True).shape
      (2, 3)
    """
    check_linen(model)
    return ModelApply(model, _mode_argument(model))
