"""Load and call the fused CPU step kernel (``fused_update.cc``, an XLA FFI library).

The kernel is compiled when the package is installed (``setup.py`` builds it against
``jax.ffi.include_dir()`` as the extension ``jaxopt_dl.fused._fused_update``), so a
wheel carries it and no compiler ever runs in a user's process. It is registered with
``jax.ffi`` on first use. It is never required for correctness: when it was not built
(no compiler at install time, an unsupported platform), on GPU/TPU, in a program that
spans several devices, with ``JAXOPT_DL_NO_KERNEL=1``, or when the library is present
but cannot be loaded (one warning), callers take the plain optax path instead. ``JAXOPT_DL_FUSED_THREADS`` caps its threads (default: all cores).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import importlib.util
import os
import warnings
from typing import Iterator, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

_EXTENSION = "jaxopt_dl.fused._fused_update"
# The handlers of this source's kernel; a library built from an older source lacks them
# (and is then not used).
_TARGETS = {"adam": "JdlFusedAdamV2", "momentum": "JdlFusedMomentumV2"}
# XLA's compile time grows faster than linearly in the operand count of one custom
# call (400 leaves in one call: ~10 s), so the leaves go in calls of at most this many.
CALL_LEAVES = 16
# Values per leaf in the scalar operand: l2_on, l2, decay_on, decay.
PER_LEAF = 4
# Values before the rule's: apply, clip, keep, norm, max_norm, l2_first.
PROLOGUE = 6

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
    try:
        library = ctypes.cdll.LoadLibrary(path)
        handlers = {name: getattr(library, symbol) for name, symbol in _TARGETS.items()}
    except (OSError, AttributeError) as error:
        warnings.warn(
            f"the fused optimizer kernel {path} cannot be loaded ({error}); "
            "every step takes the plain optax path",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    for name, handler in handlers.items():
        jax.ffi.register_ffi_target(_target(name), jax.ffi.pycapsule(handler), platform="cpu")
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


def call(
    name: str, scalars: jax.Array, leaves: Sequence[Sequence[jax.Array]], leaf_values: int
) -> list[list]:
    """The kernel ``name`` over all leaves: chained calls of at most ``CALL_LEAVES`` leaves.

    Each leaf's outputs overwrite its inputs in place (parameter, then moments): the
    caller donates them under ``jax.jit`` and no copy is made. Each call passes the
    scalars through to the next, so XLA runs the calls one after another on one thread
    instead of handing each to another thread.

    Args:
      name: the kernel (``"adam"`` or ``"momentum"``).
      scalars: the float32 vector of the step's values (``fused_update.cc`` gives the
        layout): the prologue's and the rule's, then ``PER_LEAF`` values per leaf.
      leaves: per leaf ``(p, g, *moments)``: float32 ``p`` and ``g``, float32 or
        bfloat16 moments, all of one shape.
      leaf_values: where the first leaf's values start in ``scalars``.

    Returns:
      Per leaf ``[p', *moments']``.
    """
    n_in = len(leaves[0])
    per_entry = scalars.shape[-1]
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
        )(
            scalars,
            *[x for arrays in chunk for x in arrays],
            per_entry=np.int64(per_entry),
            leaf_values=np.int64(leaf_values + PER_LEAF * start),
        )
        scalars = flat[0]
        width = n_in - 1
        outs += [list(flat[1 + i * width : 1 + (i + 1) * width]) for i in range(len(chunk))]
    return outs


def scalar_vector(values: Sequence) -> jax.Array:
    """Stack numbers and traced scalars (each exact in float32) into the scalar operand."""
    return jnp.stack([jnp.asarray(v, jnp.float32).reshape(()) for v in values])


def _reference(name: str, scalars: jax.Array, leaves: Sequence, leaf_values: int) -> list:
    """The kernel's arithmetic in ``jax.numpy`` (its derivative rule; see :func:`step`)."""
    s = scalars
    apply, clip, keep = s[0] != 0, s[1] != 0, s[2] != 0
    norm, max_norm, l2_first = s[3], s[4], s[5] != 0
    r = s[PROLOGUE:]
    outs = []
    for i, (p, g, *moments) in enumerate(leaves):
        leaf = s[leaf_values + PER_LEAF * i : leaf_values + PER_LEAF * (i + 1)]
        l2_on, l2, decay_on, decay = leaf[0] != 0, leaf[1], leaf[2] != 0, leaf[3]
        g = jnp.where(l2_on & l2_first, g + l2 * p, g)
        g = jnp.where(clip & ~keep, (g / norm) * max_norm, g)
        g = jnp.where(l2_on & ~l2_first, g + l2 * p, g)

        def stored(x, like):
            return x.astype(like.dtype).astype(jnp.float32)

        if name == "adam":
            mu, nu = moments
            b1 = r[1] if mu.dtype == jnp.bfloat16 else r[0]
            b2 = r[4] if nu.dtype == jnp.bfloat16 else r[3]
            m = stored(g * r[2] + b1 * mu.astype(jnp.float32), mu)
            v = stored((g * g) * r[5] + b2 * nu.astype(jnp.float32), nu)
            d = (m * r[6]) / (jnp.sqrt(v * r[7] + r[9]) + r[8])
            d = jnp.where(decay_on, d + decay * p, d)
            new = [p + d * r[10], m.astype(mu.dtype), v.astype(nu.dtype)]
        else:
            (trace,) = moments
            beta = r[1] if trace.dtype == jnp.bfloat16 else r[0]
            t = g + beta * trace.astype(jnp.float32)
            u = jnp.where(r[4] != 0, g + r[2] * t, t)
            new = [p + u * r[3], t.astype(trace.dtype)]
        outs.append([jnp.where(apply, a, b) for a, b in zip(new, [p, *moments])])
    return outs


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 3))
def step(name: str, scalars: jax.Array, leaves: Sequence, leaf_values: int) -> list:
    """:func:`call`, differentiable: its derivatives are those of the same arithmetic in
    ``jax.numpy``, so ``jax.grad``, ``jax.jvp`` and ``jax.vjp`` go through a fused step.

    Args:
      name: the kernel.
      scalars: the scalar operand.
      leaves: per leaf ``(p, g, *moments)``.
      leaf_values: where the first leaf's values start in ``scalars``.

    Returns:
      Per leaf ``[p', *moments']``.
    """
    return call(name, scalars, leaves, leaf_values)


@step.defjvp
def _step_jvp(name, leaf_values, primals, tangents):
    out = step(name, *primals, leaf_values)
    _, tangents_out = jax.jvp(
        lambda s, leaves: _reference(name, s, leaves, leaf_values), primals, tangents
    )
    return out, tangents_out
