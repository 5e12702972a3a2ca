"""fit with checkpoints: an interrupted, resumed run equals the uninterrupted one bit for bit."""

import chex
import jax
import numpy as np
import pytest

import jaxopt_dl as jdl
from jaxopt_dl import checkpoint, training

(X, Y), (X_TEST, Y_TEST) = jdl.data.load_digits()
DATA, VAL = (X[:256], Y[:256]), (X_TEST[:128], Y_TEST[:128])
# Batch norm, dropout (the rng), clipping, decoupled weight decay and a schedule.
MODEL = jdl.models.MLP(hidden=(32,), use_batchnorm=True, dropout_rate=0.1)
TX = jdl.chain(
    jdl.clip_by_global_norm(1.0),
    jdl.adamw(jdl.warmup_cosine_decay_schedule(0.0, 1e-2, 8, 32), weight_decay=1e-2),
)
EPOCHS, BATCH = 4, 32


class Interrupt(Exception):
    pass


def interrupt_at(epoch):
    def callback(e, trainer):
        if e == epoch:
            raise Interrupt

    return training.LambdaCallback(on_epoch_end=callback)


def initial_state(seed=0):
    return training.create_train_state(MODEL, TX, jax.random.key(seed), X[:1])


def run(
    directory,
    callbacks=(),
    seed=0,
    patience=None,
    epochs=EPOCHS,
    min_delta=0.0,
    **checkpoint_options,
):
    callbacks = [*callbacks, training.ModelCheckpoint(directory, **checkpoint_options)]
    if patience is not None:
        stopping = training.EarlyStopping(patience, min_delta=min_delta)
        callbacks.append(stopping)
    return training.fit(
        initial_state(),
        DATA,
        VAL,
        epochs=epochs,
        batch_size=BATCH,
        seed=seed,
        progress=False,
        callbacks=callbacks,
    )


@pytest.mark.parametrize("backend,patience", [("msgpack", None), ("orbax", 3)])
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, backend, patience):
    kwargs = dict(backend=backend, patience=patience)
    full, full_history = run(str(tmp_path / "full"), **kwargs)
    directory = str(tmp_path / "interrupted")
    # Dies during epoch 2 (0-based), after the checkpoint of epoch 1 was written.
    with pytest.raises(Interrupt):
        run(directory, callbacks=[interrupt_at(2)], **kwargs)
    assert checkpoint.latest_step(directory) == 2
    resumed, history = run(directory, **kwargs)
    chex.assert_trees_all_equal(resumed, full)
    np.testing.assert_array_equal(history.step_loss, full_history.step_loss)
    assert history.val_loss == full_history.val_loss
    assert history.epoch == list(range(1, EPOCHS + 1))
    assert checkpoint.latest_step(directory) == EPOCHS
    # The final checkpoint holds the final state; a further call trains no more.
    again, _ = run(directory, **kwargs)
    chex.assert_trees_all_equal(again, full)


def test_checkpoint_every_and_resume_false(tmp_path):
    directory = str(tmp_path)
    run(directory, every=3)
    assert checkpoint.all_steps(directory) == [3, 4]
    with pytest.raises(ValueError) as error:  # before anything trains
        run(directory, resume=False, every=2, callbacks=[interrupt_at(0)])
    assert directory in str(error.value) and "[3, 4]" in str(error.value)
    assert "overwrite=True" in str(error.value)
    assert checkpoint.all_steps(directory) == [3, 4]
    _, history = run(directory, resume=False, overwrite=True, every=2)
    assert len(history.epoch) == EPOCHS  # started over
    assert checkpoint.all_steps(directory) == [2, 4]


def test_resume_says_where_it_resumed_and_trains_on_with_more_epochs(tmp_path, capsys):
    directory = str(tmp_path)
    run(directory, epochs=2)
    assert "resumed" not in capsys.readouterr().out
    state, history = run(directory, epochs=EPOCHS)
    lines = [line for line in capsys.readouterr().out.splitlines() if "resumed" in line]
    assert lines == [
        f"resumed from {directory}/step_2, epoch 2 of {EPOCHS} "
        "(training on: the checkpoint's run had 2 epochs)"
    ]
    full, full_history = run(str(tmp_path / "full"))
    assert history.epoch == full_history.epoch and len(history.epoch) == EPOCHS
    chex.assert_trees_all_equal(state, full)  # constant rate: 2 + 2 epochs == 4


def test_an_early_stopped_run_launched_again_trains_no_more(tmp_path, capsys):
    directory = str(tmp_path)
    # min_delta so large that only the first epoch improves: a stop after epoch 2.
    kwargs = dict(patience=1, min_delta=1e9)
    stopped, history = run(directory, **kwargs)
    assert history.stopped_early and len(history.epoch) == 2
    assert checkpoint.all_steps(directory) == [1, 2]
    capsys.readouterr()
    again, again_history = run(directory, **kwargs)
    assert capsys.readouterr().out.splitlines() == [
        f"resumed from {directory}/step_2, epoch 2 of {EPOCHS}: the run stopped at "
        "epoch 2; nothing left to train"
    ]
    assert again_history.epoch == history.epoch and again_history.stopped_early
    assert again_history.best_epoch == history.best_epoch is not None
    chex.assert_trees_all_equal(again, stopped)
    assert checkpoint.all_steps(directory) == [1, 2]


def test_resume_rejects_other_seed_and_other_model(tmp_path):
    directory = str(tmp_path)
    run(directory)
    with pytest.raises(checkpoint.SettingsChangedError, match="seed 0 -> 1"):
        run(directory, seed=1)
    other = training.create_train_state(jdl.models.MLP(hidden=(16,)), TX, jax.random.key(0), X[:1])
    with pytest.raises(ValueError, match="template"):
        training.fit(
            other, DATA, epochs=EPOCHS, batch_size=BATCH, progress=False, checkpoint_dir=directory
        )


def test_resume_with_other_settings_is_refused_unless_allowed(tmp_path):
    directory = str(tmp_path)
    run(directory, epochs=2, settings={"lr": 0.003, "model": "mlp"})
    with pytest.raises(checkpoint.SettingsChangedError) as error:
        run(directory, settings={"lr": 0.01, "model": "mlp"}, callbacks=[interrupt_at(0)])
    assert error.value.changes == {"lr": (0.003, 0.01)}
    assert "lr 0.003 -> 0.01" in str(error.value) and "\n" not in str(error.value)
    assert checkpoint.all_steps(directory) == [1, 2]
    callback = training.ModelCheckpoint(
        directory, settings={"lr": 0.01, "model": "mlp"}, allow_changed_settings=True
    )
    training.fit(
        initial_state(),
        DATA,
        VAL,
        epochs=3,
        batch_size=BATCH,
        progress=False,
        callbacks=[callback],
    )
    assert callback.resumed["settings"] == {"lr": 0.003, "model": "mlp"}
    assert callback.resumed["changes"] == {"lr": (0.003, 0.01)}
    assert checkpoint.checkpoint_metadata(directory)["metadata"]["settings"]["lr"] == 0.01


@pytest.mark.parametrize("monitor,mode", [("val_accuracy", "auto"), ("val_loss", "min")])
def test_save_best_only_saves_the_epochs_that_improve(tmp_path, monitor, mode):
    directory = str(tmp_path)
    state, history = run(
        directory, epochs=6, monitor=monitor, mode=mode, save_best_only=True, keep=None
    )
    values = getattr(history, monitor)
    sign = -1 if monitor == "val_accuracy" else 1
    improved = [e + 1 for e, v in enumerate(values) if all(sign * v < sign * w for w in values[:e])]
    assert checkpoint.all_steps(directory) == improved
    assert len(improved) >= 2


def test_save_best_only_needs_validation_before_training(tmp_path):
    callback = training.ModelCheckpoint(str(tmp_path), save_best_only=True)
    with pytest.raises(ValueError, match="val_data"):
        training.fit(initial_state(), DATA, epochs=1, batch_size=BATCH, callbacks=[callback])
    assert checkpoint.all_steps(str(tmp_path)) == []


@pytest.mark.parametrize(
    "name,value,error",
    [
        ("every", 0, ValueError),
        ("every", 1.5, ValueError),
        ("backend", "zip", ValueError),
        ("keep", 0, ValueError),
        ("keep", 2.5, ValueError),
        ("mode", "best", ValueError),
        ("save_best_only", "yes", TypeError),
        ("resume", None, TypeError),
        ("settings", {"f": print}, ValueError),
    ],
)
def test_bad_checkpoint_arguments_are_refused_at_construction(tmp_path, name, value, error):
    with pytest.raises(error) as raised:
        training.ModelCheckpoint(str(tmp_path), **{name: value})
    assert f"{name}={value!r}" in str(raised.value)


def test_fsdp_needs_a_mesh():
    with pytest.raises(ValueError, match="mesh"):
        training.FitConfig(fsdp=True)


def _flip_the_middle_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _largest_array_file(step_folder):
    return max(step_folder.glob("orbax/**/d/*"), key=lambda f: f.stat().st_size)


@pytest.mark.parametrize(
    "damage",
    [
        lambda f: f.unlink(),
        lambda f: f.write_bytes(f.read_bytes()[: f.stat().st_size // 2]),
        _flip_the_middle_byte,
    ],
    ids=["missing", "truncated", "flipped"],
)
def test_fit_falls_back_from_a_damaged_newest_orbax_checkpoint(tmp_path, damage):
    directory = tmp_path / "checkpoints"
    full, full_history = run(str(tmp_path / "full"), backend="orbax")
    with pytest.raises(Interrupt):
        run(str(directory), callbacks=[interrupt_at(2)], backend="orbax")
    assert checkpoint.all_steps(str(directory)) == [1, 2]
    damage(_largest_array_file(directory / "step_2"))
    with pytest.warns(UserWarning) as caught:
        resumed, history = run(str(directory), backend="orbax")
    messages = [str(w.message) for w in caught if "checkpoint" in str(w.message)]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert str(directory / "step_2") in messages[0] and "using step_1" in messages[0]
    chex.assert_trees_all_equal(resumed, full)
    assert history.val_loss == full_history.val_loss
    assert checkpoint.latest_step(str(directory)) == EPOCHS
