"""Save and restore the full training state, atomically, with msgpack or orbax.

The state is any pytree: params, batch statistics, optimizer state, step, RNG keys
(typed ``jax.random.key`` or raw ``PRNGKey``), the data-order position -- whatever the
training loop needs to resume bit-exactly -- plus a small JSON-able metadata dict.

Layout: ``directory/step_<N>/`` holds ``metadata.json`` (step, backend, the tree's
signature, the user's metadata) and the arrays, either ``state.msgpack``
(``flax.serialization``) or ``state/`` (orbax-checkpoint's ``StandardCheckpointHandler``,
which also writes sharded arrays from several hosts).

Atomic writes: a checkpoint is written into ``directory/.step_<N>.partial``, every
file and folder fsynced, then renamed to ``step_<N>`` (one atomic ``rename``) and the
parent folder fsynced. A crash at any moment leaves either the new checkpoint
complete or no trace of it; the earlier ones stay restorable. Old checkpoints beyond
``keep`` are renamed away before they are deleted, for the same reason.

Restoring needs a template with the tree's structure (e.g. a freshly initialized
state); a checkpoint whose structure, shapes or dtypes differ from the template's
raises ``ValueError`` naming the first differing path -- never a partial load.

Example:
  >>> import tempfile, jax.numpy as jnp, jaxopt_dl as jdl
  >>> from jaxopt_dl import checkpoint
  >>> params = {"w": jnp.ones(3)}
  >>> tx = jdl.adam(1e-3)
  >>> state = {"params": params, "opt_state": tx.init(params), "step": 7}
  >>> directory = tempfile.mkdtemp()
  >>> _ = checkpoint.save_checkpoint(directory, state, step=7, metadata={"epoch": 1})
  >>> checkpoint.latest_step(directory)
  7
  >>> restored = checkpoint.restore_checkpoint(directory, state)
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any, Optional

import jax
import numpy as np
from flax import serialization

from jaxopt_dl import _core

__all__ = [
    "BACKENDS",
    "save_checkpoint",
    "restore_checkpoint",
    "latest_step",
    "all_steps",
    "checkpoint_metadata",
]

BACKENDS = ("msgpack", "orbax")
_STEP_DIR = re.compile(r"^step_(\d+)$")
_METADATA = "metadata.json"
_MSGPACK = "state.msgpack"
_ORBAX = "state"
_FORMAT_VERSION = 1


# --------------------------------------------------------------------------
# The tree's signature: (path, shape, dtype) per leaf, plus the container types
# --------------------------------------------------------------------------


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _dtype_name(x: Any) -> str:
    return str(x.dtype) if _is_key(x) else str(np.asarray(x).dtype)


def _signature(tree: Any) -> dict:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return {
        "leaves": [
            [jax.tree_util.keystr(path), list(np.shape(x)), _dtype_name(x)] for path, x in leaves
        ],
        "treedef": str(treedef),
    }


def _check_signature(saved: dict, template: dict, where: str) -> None:
    """Raise ``ValueError`` naming the first path where checkpoint and template differ."""
    for (path, shape, dtype), (t_path, t_shape, t_dtype) in zip(
        saved["leaves"], template["leaves"]
    ):
        if path != t_path:
            raise ValueError(
                f"checkpoint {where} does not match the template's structure: first "
                f"differing path is {path or '<root>'} in the checkpoint vs "
                f"{t_path or '<root>'} in the template"
            )
        if shape != t_shape:
            raise ValueError(
                f"checkpoint {where} does not match the template at path {path or '<root>'}: "
                f"shape {tuple(shape)} in the checkpoint vs {tuple(t_shape)} in the template"
            )
        if dtype != t_dtype:
            raise ValueError(
                f"checkpoint {where} does not match the template at path {path or '<root>'}: "
                f"dtype {dtype} in the checkpoint vs {t_dtype} in the template"
            )
    n_saved, n_template = len(saved["leaves"]), len(template["leaves"])
    if n_saved != n_template:
        longer, side = (saved, "checkpoint") if n_saved > n_template else (template, "template")
        path = longer["leaves"][min(n_saved, n_template)][0]
        raise ValueError(
            f"checkpoint {where} does not match the template's structure: path "
            f"{path or '<root>'} exists only in the {side} ({n_saved} leaves in the "
            f"checkpoint vs {n_template} in the template)"
        )
    if saved["treedef"] != template["treedef"]:
        raise ValueError(
            f"checkpoint {where} does not match the template's structure (same paths, "
            f"different container types): {saved['treedef']} in the checkpoint vs "
            f"{template['treedef']} in the template"
        )


def _to_storable(x: Any) -> Any:
    """Typed PRNG keys are stored as their raw key data."""
    return jax.random.key_data(x) if _is_key(x) else x


def _from_stored(value: Any, like: Any) -> Any:
    """Give a loaded array the template leaf's kind: key, jax.Array, NumPy array or scalar."""
    if _is_key(like):
        data = value if isinstance(value, jax.Array) else np.asarray(value)
        key = jax.random.wrap_key_data(data, impl=jax.random.key_impl(like))
        return jax.device_put(key, like.sharding) if isinstance(like, jax.Array) else key
    if isinstance(like, jax.Array):
        if isinstance(value, jax.Array) and value.sharding == like.sharding:
            return value
        return jax.device_put(np.asarray(value), like.sharding)
    if isinstance(like, (bool, int, float, complex)):
        return type(like)(np.asarray(value).item())
    if isinstance(like, np.generic):
        return np.asarray(value).astype(like.dtype)[()]
    return np.asarray(value)


def _leaf_key(index: int) -> str:
    return f"{index:06d}"


# --------------------------------------------------------------------------
# Files: fsync and atomic rename
# --------------------------------------------------------------------------


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: str) -> None:
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            _fsync_path(os.path.join(folder, name))
        _fsync_path(folder)


def _write_file(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _remove_atomically(directory: str, name: str) -> None:
    """Rename ``name`` away (atomic), then delete it: a crash never leaves half a checkpoint."""
    trash = os.path.join(directory, f".{name}.deleting")
    if os.path.exists(trash):
        shutil.rmtree(trash)
    os.rename(os.path.join(directory, name), trash)
    _fsync_path(directory)
    shutil.rmtree(trash)


def _is_primary() -> bool:
    return jax.process_index() == 0


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def all_steps(directory: str) -> list[int]:
    """The steps of the complete checkpoints in ``directory``, ascending."""
    if not os.path.isdir(directory):
        return []
    steps = []
    for name in os.listdir(directory):
        match = _STEP_DIR.match(name)
        if match and os.path.isfile(os.path.join(directory, name, _METADATA)):
            steps.append(int(match.group(1)))
    return sorted(steps)


def latest_step(directory: str) -> Optional[int]:
    """The step of the newest complete checkpoint in ``directory``, or None if there is none."""
    steps = all_steps(directory)
    return steps[-1] if steps else None


def _step_dir(directory: str, step: Optional[int]) -> tuple[int, str]:
    if step is None:
        step = latest_step(directory)
        if step is None:
            raise FileNotFoundError(f"no checkpoint in directory={directory!r}")
    path = os.path.join(directory, f"step_{int(step)}")
    if not os.path.isfile(os.path.join(path, _METADATA)):
        raise FileNotFoundError(
            f"no checkpoint for step={step} in directory={directory!r}; "
            f"available steps: {all_steps(directory)}"
        )
    return int(step), path


def checkpoint_metadata(directory: str, step: Optional[int] = None) -> dict:
    """The metadata saved with a checkpoint (latest when ``step`` is None).

    Returns:
      ``{"step": int, "backend": str, "metadata": <the user's dict>, "signature": ...}``.
    """
    _, path = _step_dir(directory, step)
    with open(os.path.join(path, _METADATA)) as f:
        return json.load(f)


# --------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------


def _orbax():
    import orbax.checkpoint as ocp

    return ocp


def _stored_leaves(leaves: list) -> dict:
    """The leaves that hold data, by index; empty arrays are rebuilt from the signature
    (orbax refuses to write them)."""
    storable = {_leaf_key(i): _to_storable(x) for i, x in enumerate(leaves)}
    return {k: v for k, v in storable.items() if np.size(v) > 0}


def _save_arrays(path: str, leaves: list, backend: str) -> None:
    arrays = _stored_leaves(leaves)
    if backend == "msgpack":
        if _is_primary():
            host = {k: np.asarray(jax.device_get(v)) for k, v in arrays.items()}
            _write_file(os.path.join(path, _MSGPACK), serialization.msgpack_serialize(host))
        return
    ocp = _orbax()
    arrays = {k: v if isinstance(v, jax.Array) else np.asarray(v) for k, v in arrays.items()}
    with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as checkpointer:
        checkpointer.save(os.path.join(path, _ORBAX), args=ocp.args.StandardSave(arrays))


def _restore_arrays(path: str, template_leaves: list, backend: str) -> list:
    if backend == "msgpack":
        with open(os.path.join(path, _MSGPACK), "rb") as f:
            stored = serialization.msgpack_restore(f.read())
    else:
        ocp = _orbax()
        targets = {}
        for key, storable in _stored_leaves(template_leaves).items():
            like = template_leaves[int(key)]
            if isinstance(like, jax.Array) and not _is_key(like):
                targets[key] = jax.ShapeDtypeStruct(
                    storable.shape, storable.dtype, sharding=like.sharding
                )
            else:
                targets[key] = np.zeros(np.shape(storable), np.asarray(storable).dtype)
        with ocp.Checkpointer(ocp.StandardCheckpointHandler()) as checkpointer:
            stored = checkpointer.restore(
                os.path.join(path, _ORBAX), args=ocp.args.StandardRestore(targets)
            )
    empty = lambda like: np.zeros(np.shape(like), np.asarray(like).dtype)  # noqa: E731
    return [
        stored.get(_leaf_key(i)) if _leaf_key(i) in stored else empty(_to_storable(like))
        for i, like in enumerate(template_leaves)
    ]


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def save_checkpoint(
    directory: str,
    state: Any,
    step: int,
    *,
    backend: str = "msgpack",
    keep: Optional[int] = 3,
    metadata: Optional[dict] = None,
) -> str:
    """Atomically save ``state`` as ``directory/step_<step>``; keep the newest ``keep``.

    Args:
      directory: the checkpoint folder (created if missing).
      state: any pytree of arrays and Python/NumPy scalars (typed PRNG keys included).
      step: the training step, a non-negative integer; saving a step again replaces it.
      backend: ``"msgpack"`` (``flax.serialization``, one file) or ``"orbax"``
        (orbax-checkpoint; needed for arrays spread over several hosts).
      keep: how many checkpoints to keep (the newest by step); ``None`` keeps all.
      metadata: a JSON-able dict saved alongside (epoch, data-order position, config...).

    Returns:
      The path of the new checkpoint.

    Raises:
      ValueError: for an unknown ``backend``, a negative ``step``, ``keep < 1`` or
        metadata that JSON cannot encode.
    """
    _core.check_choice("backend", backend, BACKENDS)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got step={step!r}")
    if keep is not None and (not isinstance(keep, (int, np.integer)) or keep < 1):
        raise ValueError(f"keep must be a positive integer or None, got keep={keep!r}")
    step = int(step)
    leaves = jax.tree.leaves(state)
    record = {
        "format_version": _FORMAT_VERSION,
        "step": step,
        "backend": backend,
        "metadata": {} if metadata is None else metadata,
        "signature": _signature(state),
    }
    try:
        encoded = json.dumps(record, indent=1).encode()
    except TypeError as error:
        raise ValueError(
            f"metadata must be JSON-serializable, got metadata={metadata!r}"
        ) from error

    name = f"step_{step}"
    partial = os.path.join(directory, f".{name}.partial")
    if _is_primary():
        os.makedirs(directory, exist_ok=True)
        if os.path.exists(partial):
            shutil.rmtree(partial)
        os.makedirs(partial)
    _sync(f"jaxopt_dl.checkpoint.begin.{step}")
    _save_arrays(partial, leaves, backend)
    _sync(f"jaxopt_dl.checkpoint.arrays.{step}")
    final = os.path.join(directory, name)
    if _is_primary():
        _write_file(os.path.join(partial, _METADATA), encoded)
        _fsync_tree(partial)
        if os.path.exists(final):
            _remove_atomically(directory, name)
        os.rename(partial, final)
        _fsync_path(directory)
        if keep is not None:
            for old in all_steps(directory)[:-keep]:
                _remove_atomically(directory, f"step_{old}")
    _sync(f"jaxopt_dl.checkpoint.commit.{step}")
    return final


def restore_checkpoint(
    directory: str,
    template: Any,
    step: Optional[int] = None,
    *,
    backend: Optional[str] = None,
) -> Any:
    """Restore a checkpoint into the structure of ``template``.

    Each restored leaf takes the kind of the template's leaf: a ``jax.Array`` is
    placed with the template leaf's sharding, a typed PRNG key is rebuilt with its
    implementation, a Python scalar stays a Python scalar.

    Args:
      directory: the checkpoint folder.
      template: a tree with the saved state's structure, shapes and dtypes (e.g. the
        freshly initialized training state); its values are not used.
      step: which checkpoint (default: the latest).
      backend: the expected backend; default: whichever saved it.

    Returns:
      The restored state, with ``template``'s tree structure.

    Raises:
      FileNotFoundError: when there is no (such) checkpoint.
      ValueError: when the checkpoint's structure, a shape or a dtype differs from the
        template's (the message names the first differing path), or ``backend``
        differs from the one that saved it.
    """
    step, path = _step_dir(directory, step)
    record = checkpoint_metadata(directory, step)
    if backend is not None:
        _core.check_choice("backend", backend, BACKENDS)
        if backend != record["backend"]:
            raise ValueError(
                f"checkpoint step_{step} was saved with backend={record['backend']!r}, "
                f"got backend={backend!r}"
            )
    _check_signature(record["signature"], _signature(template), f"step_{step}")
    template_leaves, treedef = jax.tree.flatten(template)
    stored = _restore_arrays(path, template_leaves, record["backend"])
    return jax.tree.unflatten(
        treedef, [_from_stored(v, like) for v, like in zip(stored, template_leaves)]
    )
