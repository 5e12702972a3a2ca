"""One epoch as one program: the per-epoch batch indices and the ``lax.scan`` over them.

Shared by :func:`~jaxopt_dl.training.fit` (jitted per epoch) and
:func:`~jaxopt_dl.training.sweep` (inside its vmapped program), so both train exactly
the same way. The training set stays on the device; each step gathers its batch there
from the host-drawn index array, so nothing syncs with the host inside an epoch.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxopt_dl import distributed
from jaxopt_dl.training.state import TrainState
from jaxopt_dl.training.steps import train_step_fn

__all__ = ["epoch_indices", "train_state_shardings", "scan_epoch", "Sampler"]

Sampler = Callable[[int, np.random.Generator], Union[np.ndarray, tuple]]


def epoch_indices(
    num_examples: int,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    sampler: Optional[Sampler] = None,
) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The ``(steps, batch_size)`` example indices (and weights) of one epoch.

    Deterministic in ``(seed, epoch)``: the generator is ``default_rng([seed, epoch])``.
    The last partial batch is dropped (the dropped examples differ every epoch because
    the permutation does).

    Args:
      num_examples: size of the training set.
      batch_size: examples per step.
      seed: run seed.
      epoch: epoch index.
      shuffle: permute (else take the examples in order); ignored with a ``sampler``.
      sampler: ``sampler(epoch, rng) -> indices`` or ``(indices, weights)`` (1-D).

    Returns:
      ``(indices, weights)``, ``weights`` ``None`` unless the sampler gave some.

    Raises:
      ValueError: if not even one full batch fits.

    Example:
      >>> idx, _ = epoch_indices(10, 3, seed=0, epoch=0)
      >>> idx.shape, len(set(idx.ravel().tolist()))
      ((3, 3), 9)
    """
    rng = np.random.default_rng([seed, epoch])
    weights = None
    if sampler is not None:
        drawn = sampler(epoch, rng)
        indices, weights = drawn if isinstance(drawn, tuple) else (drawn, None)
    elif shuffle:
        indices = rng.permutation(num_examples)
    else:
        indices = np.arange(num_examples)
    steps = len(indices) // batch_size
    if steps == 0:
        raise ValueError(
            f"batch_size must be at most the number of examples per epoch ({len(indices)}), "
            f"got batch_size={batch_size}"
        )
    shape = (steps, batch_size)
    indices = np.asarray(indices[: steps * batch_size], np.int32).reshape(shape)
    if weights is not None:
        weights = np.asarray(weights[: steps * batch_size], np.float32).reshape(shape)
    return indices, weights


def train_state_shardings(
    state: TrainState, mesh: Mesh, fsdp: bool = False, axis: str = "data"
) -> TrainState:
    """Shardings of a :class:`TrainState` on ``mesh`` for data-parallel or FSDP training.

    Data parallel (``fsdp=False``): everything replicated. FSDP: the params sharded by
    :func:`jaxopt_dl.distributed.fsdp_sharding` over ``axis`` and every param-shaped
    subtree of the optimizer state (moments, accumulators) sharded like its params
    (:func:`jaxopt_dl.distributed.follow_params`); the rest (step, rng, batch
    statistics, counters, scalar optimizer state) replicated. Reads only shapes, so it
    also works on the traced state inside ``jit``.

    Args:
      state: the state (or its traced value).
      mesh: the device mesh.
      fsdp: shard the params and their optimizer state.
      axis: the mesh axis to shard over.

    Returns:
      A :class:`TrainState`-shaped tree of ``NamedSharding``.

    Example:
      >>> import jax, jax.numpy as jnp, jaxopt_dl as jdl
      >>> from jaxopt_dl import distributed, training
      >>> state = training.create_train_state(
      ...     jdl.models.MLP(hidden=(8,)), jdl.adam(1e-3), jax.random.key(0), jnp.zeros((1, 64)))
      >>> mesh = distributed.make_mesh(data=jax.device_count())
      >>> shardings = training.train_state_shardings(state, mesh, fsdp=True)
      >>> state = jax.device_put(state, shardings)
    """
    replicated = distributed.replicated_sharding(mesh)
    shardings = jax.tree.map(lambda _: replicated, state)
    if not fsdp:
        return shardings
    params = distributed.fsdp_sharding(state.params, mesh, axis)
    opt_state = distributed.follow_params(state.opt_state, state.params, params, mesh)
    return shardings.replace(params=params, opt_state=opt_state)


def scan_epoch(
    state: TrainState,
    x: Any,
    y: Any,
    indices: jax.Array,
    weights: Optional[jax.Array] = None,
    *,
    grad_accum_steps: int = 1,
    max_consecutive_nonfinite: Optional[int] = None,
    loss: Any = None,
    feed_loss: bool = True,
    metrics: Any = None,
    mesh: Optional[Mesh] = None,
    fsdp: bool = False,
    on_step: Optional[Callable[[jax.Array, dict], None]] = None,
) -> tuple[TrainState, dict]:
    """Run the steps of one epoch as a ``lax.scan`` of :func:`train_step_fn` (traceable).

    Step ``i`` trains on ``(x[indices[i]], y[indices[i]], weights[i])``.

    Args:
      state: the :class:`TrainState`.
      x: training inputs (on the device).
      y: training targets.
      indices: ``(steps, batch_size)`` example indices (see :func:`epoch_indices`).
      weights: ``(steps, batch_size)`` per-example weights (default ones).
      grad_accum_steps: micro-batches per step.
      max_consecutive_nonfinite: freeze after this many non-finite steps in a row.
      loss: the loss (see :func:`~jaxopt_dl.training.resolve_loss`).
      feed_loss: let ``reduce_on_plateau`` states see each batch's loss.
      metrics: ``((name, fn), ...)`` from :func:`~jaxopt_dl.training.resolve_metrics`
        (``None``: the default of the loss).
      mesh: split each batch over the mesh's ``"data"`` axis and lay the state out by
        :func:`train_state_shardings`.
      fsdp: with ``mesh``, shard the params and their optimizer state.
      on_step: ``on_step(step_index, metrics)`` called on the host after every step
        (through ``jax.debug.callback``; ``None``: no host call inside the epoch).

    Returns:
      ``(state, metrics)``, each metric stacked over the steps.
    """
    if weights is None:
        weights = jnp.ones(jnp.shape(indices), jnp.float32)

    def body(state, step_inputs):
        i, idx, w = step_inputs
        batch = (x[idx], y[idx], w)
        if mesh is not None:
            batch = jax.lax.with_sharding_constraint(
                batch, distributed.data_parallel_sharding(mesh)
            )
        state, step_metrics = train_step_fn(
            state, batch, grad_accum_steps, max_consecutive_nonfinite, loss, feed_loss, metrics
        )
        if mesh is not None:
            state = jax.lax.with_sharding_constraint(
                state, train_state_shardings(state, mesh, fsdp)
            )
        if on_step is not None:
            jax.debug.callback(on_step, i, step_metrics)
        return state, step_metrics

    steps = jnp.arange(jnp.shape(indices)[0])
    return jax.lax.scan(body, state, (steps, indices, weights))
