"""Meshes and shardings for data-parallel and FSDP training, on one host or several.

Only JAX's own machinery is used (``jax.sharding`` meshes, ``jax.jit`` sharding
propagation, ``jax.distributed`` for several hosts); there is no home-made
communication. The optimizers need nothing special: their state is a pytree of
arrays shaped like the params.

* Data parallel: params and optimizer state replicated, the batch split along its
  leading axis over the ``"data"`` mesh axis; XLA inserts the gradient all-reduce.
* FSDP (fully sharded data parallel): additionally each large param -- and so its
  optimizer state -- is split along one axis over the ``"data"`` mesh axis; XLA
  all-gathers a param where the forward pass needs it.

Optimizer state follows the params: under a mesh with explicit axes
(``make_mesh(..., explicit=True)`` and ``jax.set_mesh``) ``jax.jit(tx.init)(params)``
already shards each moment like its param; with automatic axes (the default here,
what XLA's propagation needs for FSDP matmuls) use :func:`sharded_init`, which
passes the matching ``out_shardings``.

Several hosts: call ``jax.distributed.initialize(...)`` in every process first; the
mesh then spans every process's devices, :func:`shard_batch` takes each process's
share of the batch and :func:`shard_params` builds global arrays from values every
process holds.

Example:
  >>> import jax, jax.numpy as jnp, jaxopt_dl as jdl
  >>> from jaxopt_dl import distributed
  >>> mesh = distributed.make_mesh(data=jax.device_count())
  >>> params = distributed.shard_params({"w": jnp.ones((4, 2))},
  ...                                   distributed.replicated_sharding(mesh))
  >>> tx = jdl.adam(1e-3)
  >>> state = distributed.sharded_init(tx, params)
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxopt_dl import _core

__all__ = [
    "make_mesh",
    "replicated_sharding",
    "data_parallel_sharding",
    "fsdp_sharding",
    "shard_batch",
    "shard_params",
    "state_shardings",
    "follow_params",
    "sharded_init",
]


def make_mesh(
    data: Optional[int] = None,
    model: int = 1,
    *,
    devices: Optional[Sequence[jax.Device]] = None,
    explicit: bool = False,
) -> Mesh:
    """A 2-D device mesh with axes ``("data", "model")``.

    Args:
      data: size of the data axis (default: all devices divided by ``model``).
      model: size of the model axis.
      devices: the devices to use (default: ``jax.devices()``, every process's).
      explicit: explicit sharding axes (shardings are part of the array types and
        ``jax.jit(tx.init)`` shards the state like the params by itself; use it with
        ``jax.set_mesh(mesh)``) instead of automatic ones (XLA propagates shardings).

    Returns:
      A ``jax.sharding.Mesh`` of shape ``(data, model)``.

    Raises:
      ValueError: when ``data * model`` differs from the number of devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    _core.check_positive("model", model)
    if data is None:
        data = len(devices) // model
    _core.check_positive("data", data)
    if data * model != len(devices):
        raise ValueError(
            f"data * model must equal the number of devices ({len(devices)}), "
            f"got data={data}, model={model}"
        )
    axis_type = AxisType.Explicit if explicit else AxisType.Auto
    return jax.make_mesh(
        (data, model), ("data", "model"), axis_types=(axis_type, axis_type), devices=devices
    )


def replicated_sharding(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array.

    Args:
      mesh: the device mesh (e.g. from :func:`make_mesh`).
    """
    return NamedSharding(mesh, PartitionSpec())


def data_parallel_sharding(mesh: Mesh, axis: str = "data") -> NamedSharding:
    """The batch sharding: the leading (example) axis split over ``axis``.

    Args:
      mesh: the device mesh (e.g. from :func:`make_mesh`).
      axis: name of the mesh axis the examples are split over (default ``"data"``).
    """
    return NamedSharding(mesh, PartitionSpec(axis))


def fsdp_sharding(params: Any, mesh: Mesh, axis: str = "data", min_size: int = 1024) -> Any:
    """FSDP shardings: each large param split along its largest axis that ``axis`` divides.

    Args:
      params: a tree of arrays (or ``jax.ShapeDtypeStruct``).
      mesh: the device mesh.
      axis: the mesh axis to shard over.
      min_size: params with fewer entries (biases, scales) stay replicated: gathering
        them costs more than storing them.

    Returns:
      A tree of ``NamedSharding`` with the structure of ``params``. A param none of
      whose axes is divisible by the mesh axis size is replicated.
    """
    _core.check_nonnegative("min_size", min_size)
    if axis not in mesh.axis_names:
        raise ValueError(f"axis must be one of the mesh axes {mesh.axis_names}, got axis={axis!r}")
    count = mesh.shape[axis]

    def leaf_sharding(x):
        shape = tuple(np.shape(x))
        if int(np.prod(shape, dtype=np.int64)) < min_size:
            return replicated_sharding(mesh)
        candidates = [i for i, n in enumerate(shape) if n % count == 0]
        if not candidates:
            return replicated_sharding(mesh)
        dim = max(candidates, key=lambda i: (shape[i], -i))
        spec = [None] * len(shape)
        spec[dim] = axis
        return NamedSharding(mesh, PartitionSpec(*spec))

    return jax.tree.map(leaf_sharding, params)


def shard_batch(batch: Any, mesh: Mesh, axis: str = "data") -> Any:
    """Split a batch over ``axis``: every leaf's leading axis is the example axis.

    Each process passes its own share of the global batch (in one process: the
    whole batch); the result is a global ``jax.Array`` whose leading size is the
    sum over processes. Built with ``jax.make_array_from_process_local_data``.

    Args:
      batch: a pytree of host arrays (NumPy or JAX), all with the same leading size.
      mesh: the device mesh (e.g. from :func:`make_mesh`).
      axis: name of the mesh axis the examples are split over (default ``"data"``).

    Raises:
      ValueError: when a leaf's leading size is not divisible by the number of
        devices of this process along ``axis``.
    """
    sharding = data_parallel_sharding(mesh, axis)
    local_devices = mesh.shape[axis] // jax.process_count()

    def put(path, x):
        x = np.asarray(x)
        if x.ndim == 0 or x.shape[0] % max(local_devices, 1):
            raise ValueError(
                f"batch leaf {jax.tree_util.keystr(path) or '<root>'} has shape {x.shape}; "
                f"its leading axis must be divisible by {local_devices} (the devices of "
                f"this process along {axis!r})"
            )
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree_util.tree_map_with_path(put, batch)


def shard_params(params: Any, shardings: Any) -> Any:
    """Place params (the same values in every process) as global arrays with ``shardings``.

    Args:
      params: a tree of arrays, identical in every process (e.g. from the same seed).
      shardings: one ``Sharding`` for every leaf, or a tree of them.

    Returns:
      The params as ``jax.Array``s laid out as ``shardings`` say; each process
      fills only its own devices' shards.
    """
    if isinstance(shardings, jax.sharding.Sharding):
        shardings = jax.tree.map(lambda _: shardings, params)

    def put(x, sharding):
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(put, params, shardings)


def state_shardings(tx: _core.GradientTransformation, params: Any) -> Any:
    """The shardings the optimizer state should have: each param-shaped subtree like the params.

    Every subtree of the state with the params' tree structure and leaf shapes (a
    moment ``mu``, ``nu``, an accumulator...) gets the params' shardings; every other
    leaf (step counts, learning rates, plateau statistics) is replicated.

    Args:
      tx: the optimizer.
      params: the sharded params (``jax.Array``s with a ``NamedSharding``).

    Returns:
      A tree of ``NamedSharding`` with the structure of ``tx.init(params)``.
    """
    param_leaves = jax.tree.leaves(params)
    state_shapes = jax.eval_shape(tx.init, params)
    if not param_leaves:
        return jax.tree.map(lambda _: None, state_shapes)
    param_shardings = jax.tree.map(lambda x: x.sharding, params)
    return follow_params(state_shapes, params, param_shardings, param_leaves[0].sharding.mesh)


def follow_params(tree: Any, params: Any, param_shardings: Any, mesh: Mesh) -> Any:
    """Shardings for ``tree``: each subtree shaped like ``params`` gets ``param_shardings``.

    A subtree "shaped like the params" has the params' tree structure and leaf shapes
    (an optimizer moment, an accumulator, a copy of the best params); every other leaf
    is replicated over ``mesh``. Only shapes are read, so ``tree`` and ``params`` may be
    arrays, ``jax.ShapeDtypeStruct``s or tracers (inside ``jit``, for
    ``jax.lax.with_sharding_constraint``).

    Args:
      tree: e.g. an optimizer state.
      params: the params (for their structure and shapes).
      param_shardings: a tree of shardings with the structure of ``params``.
      mesh: the mesh the other leaves are replicated over.

    Returns:
      A tree of ``Sharding`` with the structure of ``tree``.
    """
    param_leaves, param_def = jax.tree.flatten(params)
    param_shapes = [np.shape(x) for x in param_leaves]

    def is_params_like(node):
        leaves, treedef = jax.tree.flatten(node)
        return treedef == param_def and [np.shape(x) for x in leaves] == param_shapes

    def assign(node):
        return param_shardings if is_params_like(node) else replicated_sharding(mesh)

    return jax.tree.map(assign, tree, is_leaf=is_params_like)


def sharded_init(tx: _core.GradientTransformation, params: Any) -> Any:
    """``tx.init(params)`` jitted so that the state is sharded like the params it belongs to.

    Args:
      tx: the optimizer (any optax-compatible transform).
      params: the (already sharded) parameters; each state leaf shaped like a param
        gets that param's sharding, the others are replicated.
    """
    return jax.jit(tx.init, out_shardings=state_shardings(tx, params))(params)
