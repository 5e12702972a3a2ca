"""Build, load and call the fused multi-leaf CPU update kernel (XLA FFI).

The kernel (``_kernels/fused_update.cc``) updates every float32 leaf of a tree in one
pass over memory on a few threads (``JAXOPT_DL_FUSED_THREADS``, default: all cores).
It is compiled with the system C++ compiler on first use into a cache directory
(``$JAXOPT_DL_CACHE``, else ``$XDG_CACHE_HOME/jaxopt_dl``, else ``~/.cache/jaxopt_dl``)
and registered with ``jax.ffi``. It is never required for correctness: when it cannot
be built, on GPU/TPU, on more than one device (sharded programs), or with
``JAXOPT_DL_NO_KERNEL=1``, callers use their pure-JAX path instead.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

_SOURCE = Path(__file__).with_name("_kernels") / "fused_update.cc"
_FLAGS = ("-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-std=c++17",
          "-shared", "-fPIC", "-pthread")
_TARGETS = {"adam": "JdlFusedAdam"}
CALL_LEAVES = 16
# Leaves from this size on are faster through XLA when the kernel cannot apply the update.
SMALL_LEAF = 2**16


def _cache_dir() -> Path:
    if os.environ.get("JAXOPT_DL_CACHE"):
        return Path(os.environ["JAXOPT_DL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "jaxopt_dl"


def _cpu_signature() -> str:
    """What ``-march=native`` depends on, so a cache shared between machines stays safe."""
    fallback = platform.processor() + platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), fallback)
    except OSError:  # no /proc (macOS, Windows): the processor name is the best we have
        return fallback


def _library_path() -> Path:
    key = hashlib.sha256()
    for part in (_SOURCE.read_bytes(), " ".join(_FLAGS).encode(), jax.__version__.encode(),
                 _cpu_signature().encode(), sys.platform.encode()):
        key.update(part)
    return _cache_dir() / f"fused_update_{key.hexdigest()[:16]}.so"


def _compile(target: Path) -> None:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        raise RuntimeError("no C++ compiler (g++/c++) found")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        cmd = [compiler, *_FLAGS, f"-I{jax.ffi.include_dir()}", str(_SOURCE), "-o", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"compiling the fused kernel failed:\n{result.stderr[-2000:]}")
        os.replace(tmp, target)  # atomic: concurrent builders never see a partial file
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@functools.lru_cache(maxsize=None)
def _load() -> bool:
    """Build (once, cached on disk) and register the kernel; False when unavailable."""
    if os.environ.get("JAXOPT_DL_NO_KERNEL", "") not in ("", "0"):
        return False
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64", "aarch64"):
        return False
    try:
        path = _library_path()
        if not path.exists():
            _compile(path)
        library = ctypes.cdll.LoadLibrary(str(path))
        for name, symbol in _TARGETS.items():
            jax.ffi.register_ffi_target(
                f"jaxopt_dl_fused_{name}", jax.ffi.pycapsule(getattr(library, symbol)),
                platform="cpu",
            )
    except Exception as error:  # noqa: BLE001 -- any failure means "use the fallback"
        warnings.warn(f"jaxopt_dl: fused CPU kernel unavailable, using pure JAX ({error})")
        return False
    return True


def kernel_available() -> bool:
    """True when the fused kernel can run in the program being traced now.

    That needs the CPU backend with a single device (so no sharding to preserve),
    and a successful build.
    """
    return jax.default_backend() == "cpu" and jax.device_count() == 1 and _load()


def eligible(*arrays) -> bool:
    """The kernel handles float32 arrays only (other dtypes take the pure-JAX path)."""
    return all(jnp.result_type(a) == jnp.float32 for a in arrays)


def fused_call(
    name: str,
    scalars: jax.Array,
    inputs: Sequence[Sequence[jax.Array]],
    aliases: Sequence[int],
    **attrs,
) -> list[list[jax.Array]]:
    """Kernel calls over all leaves, chained (at most ``CALL_LEAVES`` leaves each).

    Args:
      name: the kernel (``"adam"``).
      scalars: a float32 vector of the step's hyperparameters.
      inputs: per leaf, its input arrays (same size, float32).
      aliases: for each output slot ``k``, the input slot it overwrites in place, or
        None for a fresh buffer.
      **attrs: integer attributes of the kernel.

    Returns:
      Per leaf, its output arrays (shapes of the leaf).
    """
    # XLA's compile time grows faster than linearly in the operand count of one
    # custom call (400 leaves in one call: ~10 s, aliasing included), so the leaves go
    # in calls of at most CALL_LEAVES each. Each call passes the scalars through
    # (aliased) to the next: the chain keeps XLA from handing the calls to other
    # threads one by one (each hand-off costs a wake-up, on a busy machine milliseconds).
    n_in, width, outs = len(inputs[0]), len(aliases), []
    for start in range(0, len(inputs), CALL_LEAVES):
        chunk = inputs[start:start + CALL_LEAVES]
        operands, io_aliases = [scalars], {0: 0}
        results = [jax.ShapeDtypeStruct(scalars.shape, jnp.float32)]
        for leaf, arrays in enumerate(chunk):
            operands.extend(arrays)
            for k, slot in enumerate(aliases):
                if slot is not None:
                    io_aliases[1 + leaf * n_in + slot] = 1 + leaf * width + k
                results.append(jax.ShapeDtypeStruct(arrays[-1].shape, jnp.float32))
        flat = jax.ffi.ffi_call(
            f"jaxopt_dl_fused_{name}", results, input_output_aliases=io_aliases, vmap_method="sequential",
        )(*operands, **_int_attrs(attrs, flat=0, offset=0))
        scalars = flat[0]
        outs += [list(flat[1 + i * width:1 + (i + 1) * width]) for i in range(len(chunk))]
    return outs


def fused_call_flat(
    name: str,
    scalars: jax.Array,
    moments: Sequence[jax.Array],
    inputs: Sequence[Sequence[jax.Array]],
    aliases: Sequence[Optional[int]],
    **attrs,
) -> tuple[list[jax.Array], list[jax.Array]]:
    """Kernel calls over leaves whose state lives in flat buffers (one per moment).

    The leaves go in calls of at most ``CALL_LEAVES``; each call updates its stretch of
    the flat buffers in place (they are aliased through the chain of calls), so the
    buffers are never split or concatenated.

    Args:
      name: the kernel (``"adam"``).
      scalars: a float32 vector of the step's hyperparameters.
      moments: the flat float32 state buffers; leaf ``i`` owns the elements after
        those of leaves ``0..i-1``, in order.
      inputs: per leaf, its input arrays (same size, float32).
      aliases: the input slot each leaf's single output overwrites, or None.
      **attrs: integer attributes of the kernel.

    Returns:
      The new flat buffers and, per leaf, its output array.
    """
    moments, outs, offset = list(moments), [], 0
    n_in, n_mom = len(inputs[0]) if inputs else 0, len(moments)
    for start in range(0, len(inputs), CALL_LEAVES):
        chunk = inputs[start:start + CALL_LEAVES]
        io_aliases = {1 + k: k for k in range(n_mom)}
        if aliases[0] is not None:
            io_aliases.update({1 + n_mom + j * n_in + aliases[0]: n_mom + j
                               for j in range(len(chunk))})
        results = [jax.ShapeDtypeStruct(m.shape, jnp.float32) for m in moments] + [
            jax.ShapeDtypeStruct(arrays[-1].shape, jnp.float32) for arrays in chunk]
        flat = jax.ffi.ffi_call(
            f"jaxopt_dl_fused_{name}", results, input_output_aliases=io_aliases,
            vmap_method="sequential",
        )(scalars, *moments, *[a for arrays in chunk for a in arrays],
          **_int_attrs(attrs, flat=1, offset=offset))
        moments, outs = list(flat[:n_mom]), outs + list(flat[n_mom:])
        offset += sum(int(np.prod(arrays[-1].shape)) for arrays in chunk)
    return moments, outs


def _int_attrs(attrs: dict, **extra) -> dict:
    return {k: np.int64(v) for k, v in {**attrs, **extra}.items()}


def scalar_vector(values: Sequence, dtype=jnp.float32) -> jax.Array:
    """Stack Python numbers / traced scalars into the kernel's float32 scalar operand."""
    return jnp.stack([jnp.asarray(v, dtype).reshape(()) for v in values])

