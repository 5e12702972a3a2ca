"""Checkpoints: exact round trips, mismatch errors, crash safety and bit-exact resume."""

import functools
import os
import pathlib
import random
import re
import shutil
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxopt_dl as jdl
from jaxopt_dl import checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[1]
BACKENDS = checkpoint.BACKENDS


def raw(tree):
    """Typed keys as their key data, so trees compare with chex."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if checkpoint._is_key(x) else x, tree)


def make_tx():
    schedule = jdl.warmup_cosine_decay_schedule(0.0, 1e-2, warmup_steps=3, decay_steps=30)
    return jdl.chain(jdl.clip_by_global_norm(1.0), jdl.adamw(schedule, weight_decay=1e-2))


def mixed_state():
    params = {
        "dense": {"kernel": jnp.arange(12.0).reshape(3, 4), "bias": jnp.zeros(4, jnp.bfloat16)},
        "half": jnp.linspace(-1, 1, 5).astype(jnp.float16),
        "empty": jnp.zeros((0, 3)),
    }
    return {
        "params": params,
        "batch_stats": {"mean": jnp.ones(4), "var": jnp.full(4, 2.0)},
        "opt_state": make_tx().init(params),
        "step": 11,
        "key": jax.random.key(5),
        "legacy_key": jax.random.PRNGKey(6),
        "order": np.random.default_rng(0).permutation(10),
        "nothing": (),
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip_is_exact_and_keeps_leaf_kinds(backend, tmp_path):
    state = mixed_state()
    checkpoint.save_checkpoint(tmp_path, state, 11, backend=backend, metadata={"epoch": 2})
    restored = checkpoint.restore_checkpoint(tmp_path, state)
    chex.assert_trees_all_equal(raw(restored), raw(state))
    dtypes = lambda tree: jax.tree.map(lambda x: np.asarray(x).dtype, raw(tree))  # noqa: E731
    assert dtypes(restored) == dtypes(state)
    assert jax.tree.structure(restored) == jax.tree.structure(state)
    assert isinstance(restored["step"], int)
    assert checkpoint._is_key(restored["key"])
    assert isinstance(restored["order"], np.ndarray)
    assert checkpoint.checkpoint_metadata(tmp_path)["metadata"] == {"epoch": 2}


def test_keep_latest_and_steps(tmp_path):
    state = {"w": jnp.zeros(3)}
    assert checkpoint.latest_step(tmp_path) is None
    for step in (1, 3, 5, 7):
        checkpoint.save_checkpoint(tmp_path, {"w": jnp.full(3, float(step))}, step, keep=2)
    assert checkpoint.all_steps(tmp_path) == [5, 7]
    assert checkpoint.latest_step(tmp_path) == 7
    older = checkpoint.restore_checkpoint(tmp_path, state, step=5)
    np.testing.assert_array_equal(older["w"], np.full(3, 5.0))
    checkpoint.save_checkpoint(tmp_path, {"w": jnp.full(3, -1.0)}, 7, keep=2)
    np.testing.assert_array_equal(checkpoint.restore_checkpoint(tmp_path, state)["w"], -np.ones(3))
    assert sorted(os.listdir(tmp_path)) == ["step_5", "step_7"]  # nothing half-written left
    with pytest.raises(FileNotFoundError, match="step=4"):
        checkpoint.restore_checkpoint(tmp_path, state, step=4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_keep_keeps_the_newest_by_step_whatever_the_order_written(backend, tmp_path):
    early, folder = tmp_path / "early", tmp_path / "run"
    checkpoint.save_checkpoint(early, {"w": jnp.full(2, 9)}, 9, backend=backend)
    for step in (2, 4):
        checkpoint.save_checkpoint(folder, {"w": jnp.full(2, step)}, step, backend=backend)
    shutil.move(early / "step_9", folder / "step_9")  # step 9 was written first
    checkpoint.save_checkpoint(folder, {"w": jnp.full(2, 10)}, 10, keep=2, backend=backend)
    assert checkpoint.all_steps(folder) == [9, 10]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_older_step_into_a_folder_with_newer_ones_is_refused(backend, tmp_path):
    for step in (5, 6, 7):
        checkpoint.save_checkpoint(tmp_path, {"w": jnp.full(2, step)}, step, backend=backend)
    with pytest.raises(ValueError) as error:
        checkpoint.save_checkpoint(tmp_path, {"w": jnp.zeros(2)}, 1, keep=3, backend=backend)
    message = str(error.value)
    assert str(tmp_path) in message and "[5, 6, 7]" in message and "overwrite=True" in message
    assert checkpoint.all_steps(tmp_path) == [5, 6, 7]
    assert checkpoint.latest_step(tmp_path) == 7
    checkpoint.save_checkpoint(tmp_path, {"w": jnp.ones(2)}, 1, keep=3, overwrite=True)
    assert checkpoint.all_steps(tmp_path) == [1]
    restored = checkpoint.restore_checkpoint(tmp_path, {"w": jnp.zeros(2)})
    np.testing.assert_array_equal(restored["w"], np.ones(2))


def _other_optimizer(state):
    return {**state, "opt_state": jdl.adam(1e-3).init(state["params"])}


def _reshaped_kernel(state):
    params = {**state["params"], "dense": {**state["params"]["dense"], "kernel": jnp.zeros((4, 3))}}
    return {**state, "params": params}


def _bf16_kernel(state):
    params = {
        **state["params"],
        "dense": {**state["params"]["dense"], "kernel": jnp.zeros((3, 4), jnp.bfloat16)},
    }
    return {**state, "params": params}


def _extra_param(state):
    return {**state, "zz": jnp.zeros(1)}


def _missing_last(state):
    return {k: v for k, v in state.items() if k != "step"}


def _missing_param(state):
    return {**state, "batch_stats": {"mean": state["batch_stats"]["mean"]}}


def _list_for_tuple(state):
    return {**state, "opt_state": list(state["opt_state"])}


def _namedtuple_for_tuple(state):
    clip, adamw = state["opt_state"]
    return {**state, "opt_state": (clip, (tuple(adamw[0]), *adamw[1:]))}


PREFIX = r"^checkpoint step_1 does not match the template: "
MISMATCHES = [
    (_other_optimizer, r"\['opt_state'\]\[0\]\.count is missing from the checkpoint$"),
    (
        _reshaped_kernel,
        (
            r"\['params'\]\['dense'\]\['kernel'\]: shape \(3, 4\) in the checkpoint "
            r"vs \(4, 3\) in the template$"
        ),
    ),
    (
        _bf16_kernel,
        (
            r"\['params'\]\['dense'\]\['kernel'\]: dtype float32 in the checkpoint vs "
            r"bfloat16 in the template$"
        ),
    ),
    (_extra_param, r"\['zz'\] is missing from the checkpoint$"),
    (_missing_last, r"\['step'\] is in the checkpoint but missing from the template$"),
    (
        _missing_param,
        (
            r"\['batch_stats'\]\['var'\] is in the checkpoint but missing from the "
            r"template$"
        ),
    ),
    (
        _list_for_tuple,
        (
            r"\['opt_state'\]: container kind tuple in the checkpoint vs list in the "
            r"template$"
        ),
    ),
    (
        _namedtuple_for_tuple,
        (
            r"\['opt_state'\]\[1\]\[0\]: container kind namedtuple in the "
            r"checkpoint vs tuple in the template$"
        ),
    ),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("change,message", MISMATCHES, ids=[m[0].__name__ for m in MISMATCHES])
def test_mismatched_template_raises_one_line_naming_the_path(backend, change, message, tmp_path):
    state = mixed_state()
    checkpoint.save_checkpoint(tmp_path, state, 1, backend=backend)
    with pytest.raises(ValueError, match=PREFIX + message) as error:
        checkpoint.restore_checkpoint(tmp_path, change(state))
    assert "\n" not in str(error.value) and len(str(error.value)) <= 300


def test_mismatch_deep_in_a_long_path_is_one_short_line(tmp_path):
    def nest(leaf):
        tree = leaf
        for depth in range(40):
            tree = {f"level_{depth}_of_a_deeply_nested_model": tree}
        return tree

    checkpoint.save_checkpoint(tmp_path, nest(jnp.zeros(3)), 1)
    message = r"level_0_of_a_deeply_nested_model'\]: shape \(3,\) in the checkpoint"
    with pytest.raises(ValueError, match=message) as error:
        checkpoint.restore_checkpoint(tmp_path, nest(jnp.zeros(4)))
    assert "\n" not in str(error.value) and len(str(error.value)) <= 300


def test_bad_arguments(tmp_path):
    state = {"w": jnp.zeros(2)}
    with pytest.raises(ValueError, match="backend"):
        checkpoint.save_checkpoint(tmp_path, state, 0, backend="pickle")
    with pytest.raises(ValueError, match="step"):
        checkpoint.save_checkpoint(tmp_path, state, -1)
    with pytest.raises(ValueError, match="keep=0"):
        checkpoint.save_checkpoint(tmp_path, state, 0, keep=0)
    with pytest.raises(TypeError, match="overwrite='yes'"):
        checkpoint.save_checkpoint(tmp_path, state, 0, overwrite="yes")
    with pytest.raises(ValueError, match="metadata"):
        checkpoint.save_checkpoint(tmp_path, state, 0, metadata={"x": object()})
    with pytest.raises(FileNotFoundError):
        checkpoint.restore_checkpoint(tmp_path, state)
    checkpoint.save_checkpoint(tmp_path, state, 0)
    with pytest.raises(ValueError, match="backend='orbax'"):
        checkpoint.restore_checkpoint(tmp_path, state, backend="orbax")


# --------------------------------------------------------------------------
# Damaged checkpoints: fall back to the newest good one, or one error line
# --------------------------------------------------------------------------


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _empty_data_files(path):
    for data in path.glob("**/d/*"):
        data.write_bytes(b"")


def _largest_data_file(path):
    return max(path.glob("**/d/*"), key=lambda f: f.stat().st_size)


def _remove_array_file(path):
    _largest_data_file(path).unlink()


def _truncate_array_file(path):
    _truncate(_largest_data_file(path))


def _flip_a_byte_of_array_data(path):
    _flip_a_byte(_largest_data_file(path))


def _arrays_of_another_checkpoint(path):
    """Intact arrays of the same shapes but other values in place of these (a botched
    copy): orbax reads them without complaint, only the checksum sees it."""
    other = path.parents[1] / "other"
    state = {"w": jnp.full((64, 8), 99.0), "step": jnp.asarray(99)}
    checkpoint.save_checkpoint(other, state, 1, backend="orbax")
    shutil.rmtree(path)
    shutil.copytree(other / "step_1" / "orbax", path)
    shutil.rmtree(other)


DAMAGES = [  # backend, damage, the file it damages (in a step folder)
    ("msgpack", _truncate, "msgpack/state.msgpack"),
    ("msgpack", _flip_a_byte, "msgpack/state.msgpack"),
    ("msgpack", _truncate, "_CHECKPOINT_METADATA"),
    ("orbax", _flip_a_byte, "_CHECKPOINT_METADATA"),
    ("orbax", _empty_data_files, "orbax"),
    ("orbax", _remove_array_file, "orbax"),
    ("orbax", _truncate_array_file, "orbax"),
    ("orbax", _flip_a_byte_of_array_data, "orbax"),
    ("orbax", _arrays_of_another_checkpoint, "orbax"),
]


@pytest.mark.parametrize(
    "backend,damage,file", DAMAGES, ids=[f"{b}-{d.__name__}-{f}" for b, d, f in DAMAGES]
)
def test_damaged_newest_checkpoint_falls_back_with_one_warning(backend, damage, file, tmp_path):
    def state(value):
        return {"w": jnp.full((64, 8), value), "step": jnp.asarray(int(value))}

    for step in (1, 2):
        checkpoint.save_checkpoint(tmp_path, state(float(step)), step, backend=backend)
    bad = tmp_path / "step_2" / file
    damage(bad)

    with pytest.warns(UserWarning) as caught:
        restored = checkpoint.restore_checkpoint(tmp_path, state(0.0))
    chex.assert_trees_all_equal(restored, state(1.0))
    # orbax's internals may add a RuntimeWarning (a coroutine left un-awaited on damaged
    # data); the library says one line.
    ours = [w for w in caught if issubclass(w.category, UserWarning)]
    assert len(ours) == 1
    message = str(ours[0].message)
    assert str(bad) in message and "using step_1" in message and "\n" not in message
    with pytest.raises(checkpoint.CorruptCheckpointError, match=re.escape(str(bad))):
        checkpoint.restore_checkpoint(tmp_path, state(0.0), step=2)
    with pytest.warns(UserWarning, match=re.escape(str(bad))):
        assert checkpoint.latest_step(tmp_path) == 1
    with pytest.warns(UserWarning, match=re.escape(str(bad))):
        assert checkpoint.checkpoint_metadata(tmp_path)["step"] == 1

    damage(tmp_path / "step_1" / file)
    with pytest.raises(checkpoint.CorruptCheckpointError, match="^no good checkpoint") as error:
        checkpoint.restore_checkpoint(tmp_path, state(0.0))
    assert "\n" not in str(error.value) and len(str(error.value)) <= 300
    assert isinstance(error.value, ValueError)


# --------------------------------------------------------------------------
# A crash during save leaves the previous checkpoint restorable
# --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_killed_writer_leaves_a_restorable_checkpoint(backend, tmp_path):
    sys.path.insert(0, str(ROOT / "tests" / "scripts"))
    from checkpoint_writer import state_at

    pythonpath = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=pythonpath, JAX_PLATFORMS="cpu")
    rng = random.Random(backend)
    interrupted_saves = 0
    last = 0
    for attempt in range(10):
        if attempt >= 3 and interrupted_saves:
            break
        writer = subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "tests" / "scripts" / "checkpoint_writer.py"),
                str(tmp_path),
                backend,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert writer.stdout.readline().startswith("saved"), "writer failed to save"
            time.sleep(rng.uniform(0.05, 1.0))
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=60)
        leftovers = [n for n in os.listdir(tmp_path) if not re.fullmatch(r"step_\d+", n)]
        interrupted_saves += bool(leftovers)
        step = checkpoint.latest_step(tmp_path)
        assert step is not None and step > last
        for saved in checkpoint.all_steps(tmp_path):
            template = state_at(0)
            restored = checkpoint.restore_checkpoint(tmp_path, template, saved)
            expected = state_at(saved)
            chex.assert_trees_all_equal(restored, expected)
            assert checkpoint.checkpoint_metadata(tmp_path, saved)["metadata"] == {"step": saved}
        last = step
    assert interrupted_saves >= 1, "no kill landed inside a save"


# --------------------------------------------------------------------------
# Bit-exact resume of a training loop
# --------------------------------------------------------------------------

SEED, BATCH, EXAMPLES, TOTAL_STEPS, INTERRUPT_AT = 0, 16, 96, 20, 13
STEPS_PER_EPOCH = EXAMPLES // BATCH


def dataset():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(EXAMPLES, 8)).astype(np.float32)
    y = (x @ rng.normal(size=(8, 3)) > 0).astype(np.float32)
    return x, y


def init_train_state(seed):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    params = {
        "hidden": {"kernel": jax.random.normal(k1, (8, 32)) / 8**0.5, "bias": jnp.zeros(32)},
        "out": {"kernel": jax.random.normal(k2, (32, 3)) / 32**0.5, "bias": jnp.zeros(3)},
    }
    return {
        "params": params,
        "batch_stats": {"mean": jnp.zeros(32), "var": jnp.ones(32)},
        "opt_state": make_tx().init(params),
        "step": jnp.zeros([], jnp.int32),
        "key": k3,
    }


def make_train_step(tx):
    def loss_fn(params, batch_stats, x, y, key):
        h = x @ params["hidden"]["kernel"] + params["hidden"]["bias"]
        mean, var = h.mean(0), h.var(0)
        h = jax.nn.relu((h - mean) / jnp.sqrt(var + 1e-5))
        keep = jax.random.bernoulli(key, 0.9, h.shape)
        h = jnp.where(keep, h / 0.9, 0.0)
        logits = h @ params["out"]["kernel"] + params["out"]["bias"]
        loss = jnp.mean(jnp.maximum(logits, 0) - logits * y + jnp.log1p(jnp.exp(-jnp.abs(logits))))
        stats = {
            "mean": 0.9 * batch_stats["mean"] + 0.1 * mean,
            "var": 0.9 * batch_stats["var"] + 0.1 * var,
        }
        return loss, stats

    @jax.jit
    def train_step(state, x, y):
        key, dropout_key = jax.random.split(state["key"])
        grads, stats = jax.grad(loss_fn, has_aux=True)(
            state["params"], state["batch_stats"], x, y, dropout_key
        )
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        return {
            "params": jdl.apply_updates(state["params"], updates),
            "batch_stats": stats,
            "opt_state": opt_state,
            "step": state["step"] + 1,
            "key": key,
        }

    return train_step


def batch_at(data, epoch, position):
    order = np.random.default_rng([SEED, epoch]).permutation(EXAMPLES)
    index = order[position * BATCH : (position + 1) * BATCH]
    return data[0][index], data[1][index]


def train(state, train_step, data, start, stop, on_step=None):
    for step in range(start, stop):
        epoch, position = divmod(step, STEPS_PER_EPOCH)
        state = train_step(state, *batch_at(data, epoch, position))
        if on_step:
            on_step(step + 1, state)
    return state


@functools.lru_cache(maxsize=None)
def uninterrupted_run():
    return train(init_train_state(SEED), make_train_step(make_tx()), dataset(), 0, TOTAL_STEPS)


@pytest.mark.parametrize("backend", BACKENDS)
def test_interrupted_and_resumed_run_is_bit_identical(backend, tmp_path):
    data = dataset()
    uninterrupted = uninterrupted_run()

    def save(step, state):
        epoch, position = divmod(step, STEPS_PER_EPOCH)
        checkpoint.save_checkpoint(
            tmp_path, state, step, backend=backend, metadata={"epoch": epoch, "position": position}
        )

    train(init_train_state(SEED), make_train_step(make_tx()), data, 0, INTERRUPT_AT, save)

    # a fresh optimizer, step function and template; the run resumes from the files alone
    template = init_train_state(SEED + 1)
    restored = checkpoint.restore_checkpoint(tmp_path, template)
    meta = checkpoint.checkpoint_metadata(tmp_path)["metadata"]
    start = meta["epoch"] * STEPS_PER_EPOCH + meta["position"]
    assert start == INTERRUPT_AT == int(restored["step"])
    resumed = train(restored, make_train_step(make_tx()), data, start, TOTAL_STEPS)
    chex.assert_trees_all_equal(raw(resumed), raw(uninterrupted))
    initial = raw(init_train_state(SEED))["params"]["out"]["kernel"]
    assert not np.array_equal(raw(resumed)["params"]["out"]["kernel"], initial)
