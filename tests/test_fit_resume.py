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


def run(directory, callbacks=(), seed=0, patience=None, **checkpoint_options):
    callbacks = [*callbacks, training.ModelCheckpoint(directory, **checkpoint_options)]
    if patience is not None:
        callbacks.append(training.EarlyStopping(patience))
    return training.fit(
        initial_state(),
        DATA,
        VAL,
        epochs=EPOCHS,
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
    _, history = run(directory, resume=False, every=2)
    assert len(history.epoch) == EPOCHS  # started over
    assert checkpoint.all_steps(directory) == [2, 3, 4]


def test_resume_rejects_other_seed_and_other_model(tmp_path):
    directory = str(tmp_path)
    run(directory)
    with pytest.raises(ValueError, match="seed"):
        run(directory, seed=1)
    other = training.create_train_state(jdl.models.MLP(hidden=(16,)), TX, jax.random.key(0), X[:1])
    with pytest.raises(ValueError, match="template"):
        training.fit(
            other, DATA, epochs=EPOCHS, batch_size=BATCH, progress=False, checkpoint_dir=directory
        )


@pytest.mark.parametrize("name,value", [("every", 0)])
def test_bad_checkpoint_arguments(tmp_path, name, value):
    with pytest.raises(ValueError, match=name):
        training.ModelCheckpoint(str(tmp_path), **{name: value})


def test_fsdp_needs_a_mesh():
    with pytest.raises(ValueError, match="mesh"):
        training.FitConfig(fsdp=True)
