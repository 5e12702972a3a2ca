"""sweep: one vmapped program equals sequential fit runs of the same settings."""

import jax
import numpy as np
import pytest

import jaxopt_dl as jdl
from jaxopt_dl import training

(X, Y), (X_TEST, Y_TEST) = jdl.data.load_digits()
DATA = (X[:128], Y[:128])
VAL = (X_TEST[:64], Y_TEST[:64])
MODEL = jdl.models.MLP(hidden=(8,))


def make_tx(learning_rate, b1):
    return jdl.adam(learning_rate, b1=b1)


def test_sweep_equals_sequential_runs():
    hp = {"learning_rate": np.array([1e-3, 3e-2]), "b1": np.array([0.9, 0.5])}
    seeds = [0, 7]
    result = training.sweep(make_tx, hp, seeds, MODEL, DATA, epochs=2, batch_size=32, val_data=VAL)
    assert result.step_loss.shape == (2, 2, 8)
    assert result.val_accuracy.shape == (2, 2, 2)
    for i in range(2):
        tx = make_tx(float(hp["learning_rate"][i]), float(hp["b1"][i]))  # one compile per tx
        for j, seed in enumerate(seeds):
            state = training.create_train_state(MODEL, tx, jax.random.key(seed), DATA[0][:1])
            state, history = training.fit(
                state, DATA, VAL, epochs=2, batch_size=32, seed=seed, progress=False
            )
            np.testing.assert_allclose(result.step_loss[i, j], history.step_loss, rtol=1e-4)
            np.testing.assert_allclose(result.val_loss[i, j], history.val_loss, rtol=1e-4)
            np.testing.assert_allclose(result.final_accuracy[i, j], history.val_accuracy[-1])
            train_loss, _ = training.evaluate(state, DATA)
            np.testing.assert_allclose(result.train_loss[i, j, -1], train_loss, rtol=1e-4)


def test_sweep_rejects_ragged_hyperparameters():
    with pytest.raises(ValueError, match="hyperparams"):
        training.sweep(
            make_tx,
            {"learning_rate": np.ones(2), "b1": np.ones(3)},
            [0],
            MODEL,
            DATA,
            epochs=1,
            batch_size=32,
        )


def test_sweep_evaluating_only_at_the_end_gives_the_same_final_metrics():
    hp = {"learning_rate": np.array([1e-3, 3e-2]), "b1": np.array([0.9, 0.5])}
    every = training.sweep(make_tx, hp, [0], MODEL, DATA, epochs=2, batch_size=32, val_data=VAL)
    end = training.sweep(
        make_tx, hp, [0], MODEL, DATA, epochs=2, batch_size=32, val_data=VAL, eval_every_epoch=False
    )
    assert end.train_loss.shape == end.val_accuracy.shape == (2, 1, 1)
    np.testing.assert_allclose(end.step_loss, every.step_loss, rtol=1e-6)
    np.testing.assert_allclose(end.final_loss, every.final_loss, rtol=1e-6)
    np.testing.assert_allclose(end.train_loss[..., 0], every.train_loss[..., -1], rtol=1e-6)
