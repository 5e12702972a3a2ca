"""Load and call the fused CPU step kernel (``fused_update.cc``, an XLA FFI library).

The kernel is compiled when the package is installed (``setup.py`` builds it against
``jax.ffi.include_dir()`` as the extension ``jaxopt_dl.fused._fused_update``), so a
wheel carries it and no compiler ever runs in a user's process. It is registered with
``jax.ffi`` on first use. It is never required for correctness: when it was not built
(no compiler at install time, an unsupported platform), on GPU/TPU, in a program that
spans several devices, or with ``JAXOPT_DL_NO_KERNEL=1``, callers take the plain
optax path instead. ``JAXOPT_DL_FUSED_THREADS`` caps its threads (default: all cores).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import importlib.util
import os
from typing import Iterator, Optional, Sequence

import jax
import jax.numpy as jnp

_EXTENSION = "jaxopt_dl.fused._fused_update"
_TARGETS = {"adam": "JdlFusedAdam", "momentum": "JdlFusedMomentum"}
# XLA's compile time grows faster than linearly in the operand count of one custom
# call (400 leaves in one call: ~10 s), so the leaves go in calls of at most this many.
CALL_LEAVES = 16

# True while tracing a program that runs on one device of several (a shard_map body).
_LOCAL_PROGRAM = contextvars.ContextVar("jaxopt_dl_fused_local_program", default=False)


def library_path() -> Optional[str]:
    """Where the installed kernel library is, or None when it was not built."""
    spec = importlib.util.find_spec(_EXTENSION)
    return spec.origin if spec is not None else None


@functools.lru_cache(maxsize=None)
def _register() -> bool:
    """Load the installed library and register its targets once; False when unavailable."""
    if os.environ.get("JAXOPT_DL_NO_KERNEL", "") not in ("", "0"):
        return False
    path = library_path()
    if path is None:
        return False
    library = ctypes.cdll.LoadLibrary(path)
    for name, symbol in _TARGETS.items():
        jax.ffi.register_ffi_target(
            _target(name), jax.ffi.pycapsule(getattr(library, symbol)), platform="cpu"
        )
    return True


def _target(name: str) -> str:
    return f"jaxopt_dl_fused_{name}"


@contextlib.contextmanager
def local_program() -> Iterator[None]:
    """Trace inside this context a program that each device runs on its own data.

    A ``shard_map`` body is such a program: the kernel may run in it even when the
    process has several devices.
    """
    token = _LOCAL_PROGRAM.set(True)
    try:
        yield
    finally:
        _LOCAL_PROGRAM.reset(token)


def kernel_available() -> bool:
    """True when the fused kernel can run in the program being traced now.

    That needs the CPU backend, a program on one device (a single-device process, or
    a :func:`local_program`), and the installed library.
    """
    if jax.default_backend() != "cpu":
        return False
    if jax.device_count() != 1 and not _LOCAL_PROGRAM.get():
        return False
    return _register()


def call(name: str, scalars: jax.Array, leaves: Sequence[Sequence[jax.Array]]) -> list[list]:
    """The kernel ``name`` over all leaves: chained calls of at most ``CALL_LEAVES`` leaves.

    Each leaf's outputs overwrite its inputs in place (parameter, then moments): the
    caller donates them under ``jax.jit`` and no copy is made. Each call passes the
    scalars through to the next, so XLA runs the calls one after another on one thread
    instead of handing each to another thread.

    Args:
      name: the kernel (``"adam"`` or ``"momentum"``).
      scalars: the float32 vector of the step's hyperparameters.
      leaves: per leaf ``(p, g, *moments)``: float32 ``p`` and ``g``, float32 or
        bfloat16 moments, all of one shape.

    Returns:
      Per leaf ``[p', *moments']``.
    """
    n_in = len(leaves[0])
    outs = []
    for start in range(0, len(leaves), CALL_LEAVES):
        chunk = leaves[start : start + CALL_LEAVES]
        results = [jax.ShapeDtypeStruct(scalars.shape, jnp.float32)]
        aliases = {0: 0}
        for i, arrays in enumerate(chunk):
            for k, x in enumerate(arrays):
                if k == 1:  # the gradient is read only
                    continue
                aliases[1 + i * n_in + k] = len(results)
                results.append(jax.ShapeDtypeStruct(x.shape, x.dtype))
        flat = jax.ffi.ffi_call(
            _target(name), results, input_output_aliases=aliases, vmap_method="broadcast_all"
        )(scalars, *[x for arrays in chunk for x in arrays])
        scalars = flat[0]
        width = n_in - 1
        outs += [list(flat[1 + i * width : 1 + (i + 1) * width]) for i in range(len(chunk))]
    return outs


def scalar_vector(values: Sequence) -> jax.Array:
    """Stack Python numbers and traced scalars into the kernel's float32 scalar operand."""
    return jnp.stack([jnp.asarray(v, jnp.float32).reshape(()) for v in values])


def as_bf16_factor(value) -> jax.Array:
    """``value`` as XLA multiplies it into a bfloat16 moment.

    A Python number is weakly typed, so it takes the moment's dtype (rounded to
    bfloat16); an array keeps its own float32 value.
    """
    if isinstance(value, (int, float)):
        return jnp.asarray(value, jnp.bfloat16).astype(jnp.float32)
    return jnp.asarray(value, jnp.float32)
