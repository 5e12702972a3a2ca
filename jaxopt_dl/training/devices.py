"""Split a batch of independent runs over the host's devices (both cores for ``sweep``).

XLA:CPU runs a vmapped sweep's small batched matrix products on one core. With several
host devices each device runs its share of the settings as its own program, on its
own thread. A process gets two CPU devices when ``XLA_FLAGS`` contains
``--xla_force_host_platform_device_count=2`` before jax starts, e.g.::

    XLA_FLAGS=--xla_force_host_platform_device_count=2 python train.py

or, in Python, ``os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"``
before the first ``import jax``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from jaxopt_dl.fused import local_program

_AXIS = "runs"


def over_host_devices(fn: Callable) -> Callable:
    """``fn(batched, *shared)`` with the runs (axis 0 of ``batched``) split over devices.

    ``fn`` maps a tree whose leaves have a leading axis of runs, plus arguments every
    run shares, to outputs with the same leading axis (a ``vmap`` over runs). On a CPU
    backend with several devices the runs are padded to a multiple of the device count
    (repeating the last run), each device computes its share (``shard_map``, where the
    fused optimizer kernel may run) and the padding is dropped; otherwise ``fn`` is
    returned unchanged. Call the result under ``jax.jit``.

    Args:
      fn: the vmapped function over runs.

    Returns:
      A function with ``fn``'s signature and results.
    """
    devices = jax.devices()
    if len(devices) == 1 or jax.default_backend() != "cpu":
        return fn
    mesh = Mesh(np.array(devices), (_AXIS,))

    def local(batched, *shared):
        with local_program():
            return fn(batched, *shared)

    def split(batched, *shared):
        runs = jax.tree.leaves(batched)[0].shape[0]
        pad = -runs % len(devices)
        padded = jax.tree.map(
            lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]), batched
        )
        run = jax.shard_map(
            local,
            mesh=mesh,
            in_specs=(PartitionSpec(_AXIS),) + (PartitionSpec(),) * len(shared),
            out_specs=PartitionSpec(_AXIS),
            check_vma=False,
        )
        return jax.tree.map(lambda y: y[:runs], run(padded, *shared))

    return split
