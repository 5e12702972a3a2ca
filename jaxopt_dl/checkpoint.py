"""Save and restore the full training state on orbax's CheckpointManager.

The state is any pytree: params, batch statistics, optimizer state, step, RNG keys
(typed ``jax.random.key`` or raw ``PRNGKey``), the data-order position -- whatever the
training loop needs to resume bit-exactly -- plus a small JSON-able metadata dict.

orbax-checkpoint's ``CheckpointManager`` does the filing: one folder
``directory/step_<N>/`` per checkpoint, written under a temporary name and renamed
when complete (a crash, even ``SIGKILL``, leaves the earlier checkpoints whole);
old checkpoints renamed into ``.deleted/`` before they are deleted, so a crash never
leaves half a checkpoint; several hosts coordinated. A folder holds the arrays, in
``orbax/`` (orbax's ``StandardCheckpointHandler``, which writes sharded arrays from
several hosts) or in one file ``msgpack/state.msgpack`` (``flax.serialization``:
small, portable), and, in orbax's step metadata, this module's record: backend, the
tree's signature, a SHA-256 checksum of the arrays (of the msgpack file; of every
array's bytes for orbax) and the user's metadata.

What this module adds to orbax:

- The template check. A checkpoint restores into a template (e.g. a freshly built
  state) when the two trees have the same paths, container kinds, shapes and dtypes --
  nothing that changes from one process to the next (functions, object addresses).
  Otherwise ``ValueError``, one line naming the first differing path and what differs.
  A namedtuple's kind is ``namedtuple`` (its field names are in the paths), so a state
  written with optax's classes restores into look-alike classes and back.
- The newest step is never lost. ``keep`` keeps the newest checkpoints by step (not by
  the order they were written), and writing a step older than those already in the
  folder raises ``ValueError`` naming the folder and its steps, unless
  ``overwrite=True`` says to delete the newer ones and start over.
- Damage detection, with both backends. The newest checkpoint whose record or array
  files are missing, unreadable or fail their checksum is skipped with a one-line
  warning naming the bad file; when no checkpoint is good,
  :class:`CorruptCheckpointError` (a ``ValueError``), one line.
- Interrupts wait. ``SIGINT`` (Ctrl-C) arriving while a checkpoint is written takes
  effect once it is complete.

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

import contextlib
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import shutil
import signal
import threading
import types
import warnings
from typing import Any, Callable, Optional

import jax
import numpy as np
from flax import serialization

from jaxopt_dl import _core

__all__ = [
    "BACKENDS",
    "CorruptCheckpointError",
    "SettingsChangedError",
    "all_steps",
    "changed_settings",
    "check_keep",
    "checkpoint_metadata",
    "describe_changes",
    "latest_step",
    "remove_checkpoints",
    "restore_checkpoint",
    "save_checkpoint",
]

BACKENDS = ("msgpack", "orbax")
_MSGPACK = "state.msgpack"
_STEP_METADATA = "_CHECKPOINT_METADATA"
_TRASH = ".deleted"
_FORMAT_VERSION = 2
_MAX_MESSAGE = 300


class CorruptCheckpointError(ValueError):
    """A checkpoint's record or files are damaged (with ``step=None``: every checkpoint's)."""


class SettingsChangedError(ValueError):
    """A resume whose settings differ from those recorded in the checkpoint.

    Args:
      message: the one-line message.
      changes: ``{setting: (recorded value, new value)}`` of every differing setting.

    Attributes:
      changes: the ``changes`` given.
    """

    def __init__(self, message: str, changes: dict):
        super().__init__(message)
        self.changes = changes


def changed_settings(recorded: dict, new: dict) -> dict:
    """``{setting: (recorded, new)}`` for every setting whose value differs.

    Values are compared as JSON reads them back (a tuple equals a list); a setting
    present on one side only differs (its other value is ``None``).

    Args:
      recorded: the settings recorded in a checkpoint.
      new: the settings of the run now.

    Returns:
      The differing settings, in the order of ``new`` (then the recorded-only ones).
    """
    new = json.loads(json.dumps(new))
    names = list(new) + [name for name in recorded if name not in new]
    return {
        name: (recorded.get(name), new.get(name))
        for name in names
        if name not in recorded or name not in new or recorded[name] != new[name]
    }


def describe_changes(changes: dict) -> str:
    """``"lr 0.003 -> 0.01, optimizer adam -> sgd"``: one line for :func:`changed_settings`.

    Args:
      changes: from :func:`changed_settings`.

    Returns:
      The text.
    """

    def show(value: Any) -> str:
        return "(unset)" if value is None else json.dumps(value).strip('"')

    return ", ".join(f"{name} {show(old)} -> {show(new)}" for name, (old, new) in changes.items())


# --------------------------------------------------------------------------
# The tree's signature: path, container kind, shape and dtype of every node
# --------------------------------------------------------------------------


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _dtype_name(x: Any) -> str:
    return str(x.dtype) if _is_key(x) else str(np.asarray(x).dtype)


def _kind(node: Any) -> str:
    if node is None:
        return "None"
    if isinstance(node, tuple) and hasattr(type(node), "_fields"):
        return "namedtuple"
    return type(node).__name__


def _signature(tree: Any) -> list:
    """``[path, kind, shape, dtype]`` for every node in depth-first order.

    Containers (empty ones too) have kind, no shape and no dtype; leaves have kind
    ``"array"``. Nothing in it depends on the process (no function or address).
    """
    entries = []

    def visit(path: tuple, node: Any) -> None:
        where = jax.tree_util.keystr(path)
        structure = jax.tree.structure(node)
        if structure.num_nodes == 1 and structure.num_leaves == 1:
            entries.append([where, "array", list(np.shape(node)), _dtype_name(node)])
            return
        entries.append([where, _kind(node), None, None])
        children, _ = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)
        for key, child in children:
            visit(path + key, child)

    visit((), tree)
    return entries


def _short(path: str) -> str:
    path = path or "<root>"
    return path if len(path) <= 120 else f"{path[:58]}...{path[-58:]}"


def _one_line(text: str, limit: int = _MAX_MESSAGE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _difference(saved: list, template: list) -> Optional[str]:
    """What differs at the first differing node, or None when the trees match."""
    template_paths = {entry[0] for entry in template}
    for ours, theirs in itertools.zip_longest(saved, template):
        if ours == theirs:
            continue
        if theirs is None or (ours is not None and ours[0] not in template_paths):
            return f"{_short(ours[0])} is in the checkpoint but missing from the template"
        if ours is None or ours[0] != theirs[0]:
            return f"{_short(theirs[0])} is missing from the checkpoint"
        index = next(i for i in (1, 2, 3) if ours[i] != theirs[i])
        what = {1: "container kind", 2: "shape", 3: "dtype"}[index]
        show = tuple if index == 2 else str
        return (
            f"{_short(ours[0])}: {what} {show(ours[index])} in the checkpoint vs "
            f"{show(theirs[index])} in the template"
        )
    return None


def _check_signature(saved: list, template: list, name: str) -> None:
    """Raise ``ValueError``, one line naming the first node where checkpoint and template differ."""
    difference = _difference(saved, template)
    if difference is not None:
        raise ValueError(_one_line(f"checkpoint {name} does not match the template: {difference}"))


# --------------------------------------------------------------------------
# Leaves as stored: typed keys as key data, empty arrays left out (orbax refuses them)
# --------------------------------------------------------------------------


def _to_storable(x: Any) -> Any:
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


def _stored_leaves(leaves: list) -> dict:
    storable = {_leaf_key(i): _to_storable(x) for i, x in enumerate(leaves)}
    return {k: v for k, v in storable.items() if np.size(v) > 0}


def _with_empty_leaves(stored: dict, template_leaves: list) -> list:
    def empty(like):
        return np.zeros(np.shape(like), np.asarray(like).dtype)

    return [
        stored[_leaf_key(i)] if _leaf_key(i) in stored else empty(_to_storable(like))
        for i, like in enumerate(template_leaves)
    ]


# --------------------------------------------------------------------------
# orbax, imported on first use (0.7 s), and the msgpack backend as its handler
# --------------------------------------------------------------------------


@functools.cache
def _orbax() -> types.SimpleNamespace:
    """orbax-checkpoint, and the msgpack backend as an orbax handler of one file."""
    import orbax.checkpoint as ocp

    class MsgpackHandler(ocp.CheckpointHandler):
        """Writes the serialized bytes as ``state.msgpack`` (primary host); reads them back.

        :func:`restore_checkpoint` reads the file itself, with its checksum (``_record``).
        """

        def save(self, directory, args):
            if jax.process_index() == 0:
                with open(directory / _MSGPACK, "wb") as f:
                    f.write(args.data)
                    f.flush()
                    os.fsync(f.fileno())  # on disk before orbax renames the folder

        def restore(self, directory, args=None):
            return (directory / _MSGPACK).read_bytes()

    @ocp.args.register_with_handler(MsgpackHandler, for_save=True)
    @dataclasses.dataclass
    class MsgpackSave(ocp.args.CheckpointArgs):
        data: bytes

    # orbax registers an item's handler by its save and its restore arguments.
    @ocp.args.register_with_handler(MsgpackHandler, for_restore=True)
    @dataclasses.dataclass
    class MsgpackRestore(ocp.args.CheckpointArgs):
        """Restoring a msgpack item takes no arguments."""

    return types.SimpleNamespace(ocp=ocp, MsgpackHandler=MsgpackHandler, MsgpackSave=MsgpackSave)


# --------------------------------------------------------------------------
# The manager, the record and damage detection
# --------------------------------------------------------------------------


def _manager(directory: str, keep: Optional[int] = None, write: bool = False):
    orbax = _orbax()
    options = orbax.ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        step_prefix="step",
        enable_async_checkpointing=False,
        create=write,
        cleanup_tmp_directories=write,
        save_root_metadata=False,
        todelete_subdir=_TRASH,
    )
    handlers = {"msgpack": orbax.MsgpackHandler(), "orbax": orbax.ocp.StandardCheckpointHandler()}
    return orbax.ocp.CheckpointManager(
        os.path.abspath(directory), options=options, item_handlers=handlers
    )


def _step_name(step: int) -> str:
    return f"step_{step}"


def _damaged(directory: str, step: int, file: str, reason: Any) -> CorruptCheckpointError:
    path = os.path.join(directory, _step_name(step), file)
    return CorruptCheckpointError(_one_line(f"damaged checkpoint file {path}: {reason}", 240))


def _record(directory: str, step: int) -> dict:
    """The step's record, with the msgpack bytes checked against their checksum.

    The record is read from orbax's step metadata file directly: orbax's reader logs
    an error and returns nothing for a damaged file, where this names it in one line.
    """
    folder = os.path.join(directory, _step_name(step))
    try:
        with open(os.path.join(folder, _STEP_METADATA)) as f:
            record = json.load(f).get("custom_metadata") or {}
    except (OSError, ValueError, AttributeError) as error:
        raise _damaged(directory, step, _STEP_METADATA, error) from error
    if record.get("format_version") != _FORMAT_VERSION or record.get("backend") not in BACKENDS:
        raise _damaged(directory, step, _STEP_METADATA, "no jaxopt_dl record in it")
    if record["backend"] == "msgpack":
        file = os.path.join("msgpack", _MSGPACK)
        try:
            with open(os.path.join(folder, file), "rb") as f:
                data = f.read()
        except OSError as error:
            raise _damaged(directory, step, file, error) from error
        if hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise _damaged(directory, step, file, _MISMATCH)
        record["data"] = data
    return record


_MISMATCH = "checksum mismatch (truncated or corrupted)"


def _digest(arrays: dict) -> Optional[str]:
    """SHA-256 of the stored arrays (key, dtype, shape and bytes of each, by key).

    None when an array is not fully addressable from this process (spread over several
    hosts): no host sees all of its bytes.
    """
    digest = hashlib.sha256()
    for key in sorted(arrays):
        value = arrays[key]
        if isinstance(value, jax.Array) and not value.is_fully_addressable:
            return None
        array = np.ascontiguousarray(np.asarray(jax.device_get(value)))
        digest.update(f"{key}:{array.dtype.name}:{array.shape};".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _check_digest(directory: str, step: int, record: dict, arrays: dict) -> None:
    """Raise :class:`CorruptCheckpointError` when orbax arrays differ from their checksum."""
    expected = record.get("sha256")
    if record["backend"] == "orbax" and expected is not None and _digest(arrays) != expected:
        raise _damaged(directory, step, "orbax", _MISMATCH)


def _restore_orbax(manager, step: int, targets: Optional[dict] = None) -> dict:
    ocp = _orbax().ocp
    args = ocp.args.Composite(orbax=ocp.args.StandardRestore(targets))
    return manager.restore(step, args=args)["orbax"]


def _checked(manager, directory: str, step: int) -> dict:
    """The step's record once its arrays are known intact (read and checked for orbax)."""
    record = _record(directory, step)
    if record["backend"] == "orbax" and record.get("sha256") is not None:
        try:
            arrays = _restore_orbax(manager, step)
        except Exception as error:  # unreadable arrays are damage, whatever raised
            raise _damaged(directory, step, "orbax", error) from error
        _check_digest(directory, step, record, arrays)
    return record


def _first_good(steps: list, load: Callable[[int], Any]) -> Optional[tuple]:
    """``(step, load(step))`` for the first step whose files ``load`` reads intact.

    Each damaged one skipped (``load`` raised :class:`CorruptCheckpointError`) is
    reported by a one-line warning; when all are damaged, one ``CorruptCheckpointError``
    and no warning. None when ``steps`` is empty.
    """
    damage = []
    for step in steps:
        try:
            found = step, load(step)
        except CorruptCheckpointError as error:
            damage.append(error)
            continue
        for error in damage:
            warnings.warn(f"{error}; using step_{step} instead", stacklevel=3)
        return found
    if damage:
        raise CorruptCheckpointError(
            _one_line(f"no good checkpoint: all {len(damage)} damaged, the newest: {damage[0]}")
        )
    return None


def all_steps(directory: str) -> list[int]:
    """The steps of the committed checkpoints in ``directory``, ascending.

    Args:
      directory: the checkpoint folder.

    Returns:
      Every committed step (damaged ones included), ascending; ``[]`` when the
      folder does not exist.
    """
    if not os.path.isdir(directory):
        return []
    with _manager(directory) as manager:
        return sorted(manager.all_steps())


def latest_step(directory: str) -> Optional[int]:
    """The step of the newest good checkpoint in ``directory``.

    A newer checkpoint whose record or arrays are missing, unreadable or fail their
    checksum is skipped with a one-line warning naming the file (the arrays of an orbax
    checkpoint are read to check them).

    Args:
      directory: the checkpoint folder.

    Returns:
      The step, or None when there is no checkpoint.

    Raises:
      CorruptCheckpointError: when there are checkpoints but none is good.
    """
    if not os.path.isdir(directory):
        return None
    with _manager(directory) as manager:
        steps = sorted(manager.all_steps(), reverse=True)
        found = _first_good(steps, lambda step: _checked(manager, directory, step))
    return None if found is None else found[0]


def _load(manager, directory: str, step: Optional[int], load: Callable[[int], Any]) -> tuple:
    """``(step, load(step))`` for ``step``, or for the newest good checkpoint when None."""
    steps = sorted(manager.all_steps(), reverse=True)
    if step is None:
        found = _first_good(steps, load)
        if found is None:
            raise FileNotFoundError(f"no checkpoint in directory={directory!r}")
        return found
    if int(step) not in steps:
        raise FileNotFoundError(
            f"no checkpoint for step={step} in directory={directory!r}; "
            f"available steps: {sorted(steps)}"
        )
    return int(step), load(int(step))


def checkpoint_metadata(directory: str, step: Optional[int] = None) -> dict:
    """The record saved with a checkpoint.

    Args:
      directory: the checkpoint folder.
      step: which checkpoint (default: the newest good one, see :func:`latest_step`;
        a given step's arrays are not read).

    Returns:
      ``{"step": int, "backend": str, "metadata": <the user's dict>, "signature": ...}``.

    Raises:
      FileNotFoundError: when there is no (such) checkpoint.
      CorruptCheckpointError: when the checkpoint (every checkpoint, for
        ``step=None``) is damaged.
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no checkpoint in directory={directory!r}")
    with _manager(directory) as manager:
        # The newest good one is the step latest_step names; a given step's record is
        # read without reading its arrays again.
        if step is None:
            _, record = _load(manager, directory, step, lambda s: _checked(manager, directory, s))
        else:
            _, record = _load(manager, directory, step, lambda s: _record(directory, s))
    record.pop("data", None)
    return record


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
    overwrite: bool = False,
) -> str:
    """Atomically save ``state`` as ``directory/step_<step>``; keep the newest ``keep`` by step.

    ``SIGINT`` (Ctrl-C) arriving while the checkpoint is written takes effect (as
    ``KeyboardInterrupt``) once it is complete.

    Args:
      directory: the checkpoint folder (created if missing).
      state: any pytree of arrays and Python/NumPy scalars (typed PRNG keys included).
      step: the training step, a non-negative integer; saving a step again replaces it
        (deleted first, then written: a crash in between loses that step only).
      backend: ``"msgpack"`` (``flax.serialization``, one file; the arrays must be
        addressable from the primary host) or ``"orbax"`` (orbax's
        ``StandardCheckpointHandler``; needed for arrays spread over several hosts;
        arrays spread over several hosts are written without a checksum).
      keep: how many checkpoints to keep (the newest by step); ``None`` keeps all.
      metadata: a JSON-able dict saved alongside (epoch, data-order position, config...).
      overwrite: delete the checkpoints of steps newer than ``step`` (start over);
        without it their presence is an error.

    Returns:
      The path of the new checkpoint.

    Raises:
      ValueError: for an unknown ``backend``, a negative ``step``, ``keep < 1``,
        metadata that JSON cannot encode, or checkpoints of newer steps in
        ``directory`` without ``overwrite``.
    """
    _core.check_choice("backend", backend, BACKENDS)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got step={step!r}")
    check_keep(keep)
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, got overwrite={overwrite!r}")
    step = int(step)
    record = {
        "format_version": _FORMAT_VERSION,
        "step": step,
        "backend": backend,
        "metadata": {} if metadata is None else metadata,
        "signature": _signature(state),
    }
    try:
        json.dumps(record)
    except TypeError as error:
        raise ValueError(
            f"metadata must be JSON-serializable, got metadata={metadata!r}"
        ) from error
    newer = [s for s in all_steps(directory) if s > step]
    if newer and not overwrite:
        raise ValueError(
            _one_line(
                f"directory={directory!r} holds checkpoints of newer steps {newer} than "
                f"step={step}: a resume would skip this one; pass overwrite=True to delete "
                "them and start over, or use another directory"
            )
        )
    arrays = _stored_leaves(jax.tree.leaves(state))
    if backend == "msgpack":
        host = {k: np.asarray(jax.device_get(v)) for k, v in arrays.items()}
        data = serialization.msgpack_serialize(host)
        record["sha256"] = hashlib.sha256(data).hexdigest()
        args = _orbax().MsgpackSave(data)
    else:
        arrays = {k: v if isinstance(v, jax.Array) else np.asarray(v) for k, v in arrays.items()}
        record["sha256"] = _digest(arrays)
        args = _orbax().ocp.args.StandardSave(arrays)
    with _interrupts_deferred(), _manager(directory, write=True) as manager:
        _empty_trash(directory)
        for old in [s for s in manager.all_steps() if s >= step]:
            manager.delete(old)
        manager.save(
            step,
            args=_orbax().ocp.args.Composite(**{backend: args}),
            custom_metadata=record,
            force=True,
        )
        manager.wait_until_finished()
        if keep is not None:
            for old in sorted(manager.all_steps())[:-keep]:
                manager.delete(old)
        _empty_trash(directory)
    return os.path.join(directory, _step_name(step))


def check_keep(keep: Optional[int]) -> None:
    """Check the ``keep`` argument of :func:`save_checkpoint`.

    Args:
      keep: a positive integer or None.

    Raises:
      ValueError: naming the value otherwise.
    """
    if keep is not None and (
        isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1
    ):
        raise ValueError(f"keep must be a positive integer or None, got keep={keep!r}")


@contextlib.contextmanager
def _interrupts_deferred():
    """Hold ``SIGINT`` back until the block is done, then deliver it.

    Only in the main thread, and only when Python's handler is in place.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is None:
        yield
        return
    received = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            signal.raise_signal(signal.SIGINT)


def remove_checkpoints(directory: str) -> None:
    """Delete every checkpoint in ``directory`` (other files there stay).

    Args:
      directory: the checkpoint folder (nothing happens when it does not exist).
    """
    if not os.path.isdir(directory):
        return
    with _interrupts_deferred(), _manager(directory, write=True) as manager:
        for step in manager.all_steps():
            manager.delete(step)
        _empty_trash(directory)


def _empty_trash(directory: str) -> None:
    """Delete the checkpoints orbax renamed away (the rename is atomic, this deletion is not)."""
    trash = os.path.join(directory, _TRASH)
    if jax.process_index() == 0 and os.path.exists(trash):
        shutil.rmtree(trash)


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
    implementation, a Python scalar stays a Python scalar. With ``step=None`` a
    damaged newer checkpoint is skipped with a one-line warning naming the bad file.

    Args:
      directory: the checkpoint folder.
      template: a tree with the saved state's paths, container kinds, shapes and
        dtypes (e.g. the freshly initialized training state, built in any process);
        its values are not used.
      step: which checkpoint (default: the newest good one).
      backend: the expected backend; default: whichever saved it.

    Returns:
      The restored state, with ``template``'s tree structure.

    Raises:
      FileNotFoundError: when there is no (such) checkpoint.
      CorruptCheckpointError: when the checkpoint (every checkpoint, for
        ``step=None``) is damaged.
      ValueError: when the checkpoint's paths, container kinds, shapes or dtypes
        differ from the template's (one line naming the first differing path), or
        ``backend`` differs from the one that saved it.
    """
    if backend is not None:
        _core.check_choice("backend", backend, BACKENDS)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no checkpoint in directory={directory!r}")
    signature = _signature(template)
    template_leaves, treedef = jax.tree.flatten(template)

    def load(found: int) -> list:
        record = _record(directory, found)
        if backend is not None and backend != record["backend"]:
            raise ValueError(
                f"checkpoint step_{found} was saved with backend={record['backend']!r}, "
                f"got backend={backend!r}"
            )
        _check_signature(record["signature"], signature, _step_name(found))
        try:
            stored = _read_arrays(manager, found, record, template_leaves)
        except Exception as error:  # unreadable arrays are damage, whatever raised
            raise _damaged(directory, found, record["backend"], error) from error
        _check_digest(directory, found, record, stored)
        return _with_empty_leaves(stored, template_leaves)

    with _manager(directory) as manager:
        _, stored = _load(manager, directory, step, load)
    return jax.tree.unflatten(
        treedef, [_from_stored(v, like) for v, like in zip(stored, template_leaves)]
    )


def _read_arrays(manager, step: int, record: dict, template_leaves: list) -> dict:
    """The stored (non-empty) arrays by leaf key."""
    if record["backend"] == "msgpack":
        return serialization.msgpack_restore(record["data"])
    targets = {}
    for key, storable in _stored_leaves(template_leaves).items():
        like = template_leaves[int(key)]
        if isinstance(like, jax.Array) and not _is_key(like):
            targets[key] = jax.ShapeDtypeStruct(
                storable.shape, storable.dtype, sharding=like.sharding
            )
        else:
            targets[key] = np.zeros(np.shape(storable), np.asarray(storable).dtype)
    return _restore_orbax(manager, step, targets)
