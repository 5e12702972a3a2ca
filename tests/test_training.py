"""Tests of jaxopt_dl.training: state, steps, fit, history."""

import json

import chex
import jax
import numpy as np
import optax
import pytest

import jaxopt_dl as jdl
from jaxopt_dl import training
from jaxopt_dl.training import callbacks as callbacks_module
from jaxopt_dl.training import loop

(X, Y), (X_TEST, Y_TEST) = jdl.data.load_digits()
SMALL = (X[:256], Y[:256])
MLP = jdl.models.MLP(hidden=(32,))
# One optimizer object shared by the tests: the jitted steps cache on it (it is static).
ADAM = jdl.adam(1e-2)
BN_MLP = jdl.models.MLP(hidden=(16,), use_batchnorm=True)


def make_state(model=MLP, tx=ADAM, seed=0):
    return training.create_train_state(model, tx, jax.random.key(seed), X[:1])


def assert_trees_equal(a, b):
    chex.assert_trees_all_equal(a, b)


# --------------------------------------------------------------------------
# State and steps
# --------------------------------------------------------------------------


def test_batch_stats_updated_in_training_and_used_in_eval():
    model = BN_MLP
    state = make_state(model)
    assert "bn_0" in state.batch_stats
    batch = (X[:64], Y[:64])
    new, _ = training.train_step(state, batch)
    mean = new.batch_stats["bn_0"]["mean"]
    # Running average moved towards the batch mean of the pre-activations (momentum 0.9).
    pre = X[:64] @ state.params["dense_0"]["kernel"]
    np.testing.assert_allclose(mean, 0.1 * pre.mean(0), rtol=1e-4, atol=1e-6)
    # eval uses the running averages: equal to a manual train=False apply.
    out = training.eval_step(new, (X_TEST, Y_TEST))
    logits = model.apply({"params": new.params, "batch_stats": new.batch_stats}, X_TEST)
    ref = optax.softmax_cross_entropy_with_integer_labels(logits, Y_TEST).sum()
    np.testing.assert_allclose(out["loss_sum"], ref, rtol=1e-5)
    stale = training.eval_step(new.replace(batch_stats=state.batch_stats), (X_TEST, Y_TEST))
    assert abs(float(stale["loss_sum"]) - float(ref)) > 1e-3


def test_train_step_matches_hand_written_optax_step(accurate_optax):
    """optax's Adam with the accurate bias correction jaxopt_dl computes (see conftest)."""
    state = make_state()
    batch = (X[:64], Y[:64])
    new, metrics = training.train_step(state, batch)

    def loss_fn(params):
        logits = MLP.apply({"params": params}, X[:64])
        return optax.softmax_cross_entropy_with_integer_labels(logits, Y[:64]).mean()

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    opt = optax.adam(1e-2)
    updates, _ = opt.update(grads, opt.init(state.params), state.params)
    chex.assert_trees_all_close(new.params, optax.apply_updates(state.params, updates), rtol=2e-5)
    np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-6)
    assert int(new.step) == 1


@pytest.mark.parametrize("k", [2, 4])
def test_gradient_accumulation_equals_one_large_batch(k):
    state = make_state(tx=jdl.sgd(0.5, momentum=0.9))
    batch = (X[:128], Y[:128])
    one, m1 = training.train_step(state, batch)
    acc, mk = training.train_step(state, batch, grad_accum_steps=k)
    chex.assert_trees_all_close(acc.params, one.params, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(mk["loss"], m1["loss"], rtol=1e-6)
    assert int(acc.step) == 1


def test_gradient_accumulation_rejects_indivisible_batch():
    with pytest.raises(ValueError, match="grad_accum_steps"):
        training.train_step(make_state(), (X[:10], Y[:10]), grad_accum_steps=3)


def test_plateau_receives_the_loss_as_value():
    tx = jdl.chain(jdl.adam(1e-2), jdl.reduce_on_plateau(patience=0))
    state, metrics = training.train_step(make_state(tx=tx), (X[:64], Y[:64]))
    np.testing.assert_allclose(state.opt_state[1].best_value, metrics["loss"], rtol=1e-6)


def test_nonfinite_step_is_skipped_bit_exactly():
    state = make_state(BN_MLP)
    x = X[:32].copy()
    x[3, 5] = np.nan
    new, metrics = training.train_step(state, (x, Y[:32]))
    assert not bool(metrics["finite"])
    for field in ("params", "opt_state", "batch_stats", "step"):
        assert_trees_equal(getattr(new, field), getattr(state, field))
    assert (int(new.nonfinite_streak), int(new.nonfinite_total)) == (1, 1)

    def loss_fn(params):
        logits, _ = new.apply_fn(
            {"params": params, "batch_stats": state.batch_stats},
            x,
            train=True,
            mutable=["batch_stats"],
        )
        return optax.softmax_cross_entropy_with_integer_labels(logits, Y[:32]).mean()

    first_bad = jdl.diagnostics.first_nonfinite(jax.grad(loss_fn)(state.params))
    assert callbacks_module.param_paths(state.params)[int(new.nonfinite_leaf)] == first_bad
    recovered, metrics = training.train_step(new, (X[:32], Y[:32]))
    assert bool(metrics["finite"]) and int(recovered.nonfinite_streak) == 0
    assert int(recovered.nonfinite_total) == 1


def test_fit_stops_after_consecutive_nonfinite_steps_naming_step_and_layer():
    batch, bad_from = 32, 5
    x, y = X[:256].copy(), Y[:256]
    x[bad_from * batch :, 0] = np.nan  # every batch from step 5 on has a NaN input
    state = make_state()
    with pytest.raises(training.NonFiniteError, match="step 5") as info:
        training.fit(
            state,
            (x, y),
            epochs=2,
            batch_size=batch,
            progress=False,
            callbacks=[training.NonFiniteGuard(2)],
            config=training.FitConfig(shuffle=False),
        )
    error = info.value
    assert error.step == bad_from
    # relu passes a zero gradient at NaN pre-activations, so only dense_0's kernel
    # (gradient x^T delta) sees the NaN input.
    assert error.layer == "dense_0/kernel"
    assert "dense_0/kernel" in str(error)
    # The kept state is the one after the 5 finite steps.
    ref = state
    for i in range(bad_from):
        batch_slice = slice(i * batch, (i + 1) * batch)
        ref, _ = training.train_step(ref, (x[batch_slice], y[batch_slice]))
    # (The epoch's lax.scan and single jitted steps may differ in the last ulp.)
    chex.assert_trees_all_close(error.state.params, ref.params, rtol=1e-5, atol=1e-7)
    assert np.all(np.isfinite(error.history.step_loss[:bad_from]))
    assert np.isnan(error.history.step_loss[bad_from])


def test_fit_skips_nonfinite_steps_bit_exactly_and_counts_them():
    # Steps 3..7 of the epoch have a NaN input; fewer than max_consecutive_nonfinite in a
    # row, so fit skips them: the state must equal bit for bit the state after the first
    # 3 steps (the same epoch program with 3 steps), with the 5 skips counted.
    batch = 32
    x, y = X[:256].copy(), Y[:256]
    x[3 * batch :, 7] = np.nan
    state = make_state(BN_MLP)
    in_order = training.FitConfig(shuffle=False)
    skipped, history = training.fit(
        state,
        (x, y),
        epochs=1,
        batch_size=batch,
        progress=False,
        callbacks=[training.NonFiniteGuard(6)],
        config=in_order,
    )
    clean, _ = training.fit(
        state,
        (x[: 3 * batch], y[: 3 * batch]),
        epochs=1,
        batch_size=batch,
        progress=False,
        config=in_order,
    )
    for field in ("params", "opt_state", "batch_stats", "step", "rng"):
        assert_trees_equal(getattr(skipped, field), getattr(clean, field))
    assert (int(skipped.nonfinite_streak), int(skipped.nonfinite_total)) == (5, 5)
    assert history.nonfinite_steps == 5
    assert np.isnan(history.step_loss[3:]).all() and np.isfinite(history.step_loss[:3]).all()


# --------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------


def test_epoch_indices_are_deterministic_fresh_permutations():
    a0, _ = training.epoch_indices(100, 10, seed=3, epoch=0)
    a0_again, _ = training.epoch_indices(100, 10, seed=3, epoch=0)
    a1, _ = training.epoch_indices(100, 10, seed=3, epoch=1)
    b0, _ = training.epoch_indices(100, 10, seed=4, epoch=0)
    np.testing.assert_array_equal(a0, a0_again)
    assert sorted(a0.ravel()) == list(range(100))
    assert not np.array_equal(a0, a1) and not np.array_equal(a0, b0)
    last_partial, _ = training.epoch_indices(105, 10, seed=3, epoch=0)
    assert last_partial.shape == (10, 10)


def test_fit_is_deterministic_per_seed():
    runs = [
        training.fit(make_state(), SMALL, epochs=2, batch_size=64, seed=s, progress=False)
        for s in (0, 0, 1)
    ]
    assert runs[0][1].step_loss == runs[1][1].step_loss
    assert runs[0][1].step_loss != runs[2][1].step_loss
    # The first epoch's batches are those of epoch_indices(seed=0, epoch=0).
    idx, _ = training.epoch_indices(256, 64, seed=0, epoch=0)
    _, metrics = training.train_step(make_state(), (SMALL[0][idx[0]], SMALL[1][idx[0]]))
    assert runs[0][1].step_loss[0] == pytest.approx(float(metrics["loss"]), rel=1e-6)


def test_early_stopping_restores_best_params():
    rng = np.random.default_rng(0)
    noisy_val = (X_TEST[:100], rng.permutation(Y_TEST[:100]))  # random labels: val loss rises
    snapshots = {}

    def remember(epoch, trainer):
        snapshots[epoch] = trainer.state.params

    state, history = training.fit(
        make_state(),
        SMALL,
        noisy_val,
        epochs=30,
        batch_size=64,
        progress=False,
        callbacks=[training.EarlyStopping(2), training.LambdaCallback(on_epoch_end=remember)],
    )
    assert history.stopped_early and len(history.epoch) < 30
    best = int(np.argmin(history.val_loss))  # the index of the best epoch
    assert history.best_epoch == best + 1  # its number, as the log line shows it
    assert len(history.epoch) == best + 1 + 2
    assert_trees_equal(state.params, snapshots[best])


def test_batch_size_schedule_compiles_once_per_size(monkeypatch):
    counted = jax.jit(
        chex.assert_max_traces(training.scan_epoch, n=2), static_argnames=loop._EPOCH_STATIC
    )
    monkeypatch.setattr(loop, "_train_epoch", counted)
    schedule = jdl.step_doubling_batch_size(32, every=2)
    config = training.FitConfig(batch_size_schedule=schedule)
    _, history = training.fit(make_state(), SMALL, epochs=4, progress=False, config=config)
    assert history.batch_size == [32, 32, 64, 64]
    assert history.steps_per_epoch == [8, 8, 4, 4]
    assert len(history.step_loss) == 24
    # A third batch size would be a third trace: assert_max_traces raises then.
    with pytest.raises(AssertionError, match="trace"):
        training.fit(make_state(), SMALL, epochs=1, batch_size=16, progress=False)


def test_history_records_learning_rate_diagnostics_and_serializes(tmp_path):
    schedule = jdl.exponential_decay(1e-2, transition_steps=2, decay_rate=0.5)
    tx = jdl.adam(schedule)
    state, history = training.fit(
        make_state(tx=tx),
        SMALL,
        (X_TEST, Y_TEST),
        epochs=2,
        batch_size=64,
        progress=False,
        config=training.FitConfig(diagnostics=True),
    )
    np.testing.assert_allclose(history.step_learning_rate, schedule(np.arange(8)), rtol=1e-6)
    # Per epoch: the rate the epoch's last step applied (not the next step's, which
    # current_learning_rate of the final state reports).
    np.testing.assert_allclose(history.learning_rate, schedule(np.array([3, 7])), rtol=1e-6)
    np.testing.assert_allclose(
        jdl.current_learning_rate(state.opt_state, tx), schedule(8), rtol=1e-6
    )
    assert len(history.val_accuracy) == 2 and len(history.diagnostics) == 2
    diag = history.diagnostics[0]
    assert diag["grad_norm/global"] > 0 and diag["nonfinite/grads"] == 0
    assert "activation/dense_0_out/0/std" in diag
    text = json.dumps(history.to_dict())
    assert json.loads(text)["batch_size"] == [64, 64]
    training.plot_history(history, str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_fit_rejects_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        training.fit(make_state(), SMALL, epochs=1, progress=False)
    with pytest.raises(ValueError, match="val_data"):
        training.fit(
            make_state(),
            SMALL,
            epochs=1,
            batch_size=8,
            progress=False,
            callbacks=[training.EarlyStopping(1)],
        )
    with pytest.raises(ValueError, match="batch_size"):
        training.fit(make_state(), SMALL, epochs=1, batch_size=1000, progress=False)


def test_mlp_adam_reaches_accuracy_on_digits():
    state, _ = training.fit(
        make_state(jdl.models.MLP(), jdl.adam(1e-3)),
        (X, Y),
        epochs=10,
        batch_size=64,
        seed=0,
        progress=False,
    )
    _, accuracy = training.evaluate(state, (X_TEST, Y_TEST))
    assert accuracy >= 0.95
