"""fit as a loop with callbacks: losses beyond cross-entropy, streamed batches, hooks, donation."""

import io
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_dl as jdl
from jaxopt_dl import training

(X, Y), (X_TEST, Y_TEST) = jdl.data.load_digits()
SMALL = (X[:256], Y[:256])
MLP = jdl.models.MLP(hidden=(32,))
ADAM = jdl.adam(1e-2)
IN_ORDER = training.FitConfig(shuffle=False)


def make_state(model=MLP, tx=ADAM, x=X, seed=0):
    return training.create_train_state(model, tx, jax.random.key(seed), x[:1])


# --------------------------------------------------------------------------
# loss=
# --------------------------------------------------------------------------

RNG = np.random.default_rng(0)
XR = RNG.normal(size=(256, 8)).astype(np.float32)
YR = (XR @ RNG.normal(size=8) + 0.1 * RNG.normal(size=256)).astype(np.float32)
REGRESSOR = jdl.models.MLP(hidden=(16,), num_classes=1)


def huber(outputs, targets):
    return optax.huber_loss(outputs[:, 0], targets)


@pytest.mark.parametrize(
    "loss, reference",
    [
        ("mse", lambda out, t: jnp.mean((out[:, 0] - t) ** 2)),
        (huber, lambda out, t: jnp.mean(optax.huber_loss(out[:, 0], t))),
    ],
)
def test_regression_fit_matches_a_hand_written_jitted_loop(loss, reference):
    state = make_state(REGRESSOR, jdl.adam(1e-2), XR)
    epochs, batch = 5, 32
    trained, history = training.fit(
        state, (XR, YR), epochs=epochs, batch_size=batch, loss=loss, progress=False, config=IN_ORDER
    )

    opt = optax.adam(1e-2)

    @jax.jit
    def step(params, opt_state, xb, yb):
        value, grads = jax.value_and_grad(
            lambda p: reference(REGRESSOR.apply({"params": p}, xb), yb)
        )(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    params, opt_state, losses = state.params, opt.init(state.params), []
    for _ in range(epochs):
        for start in range(0, len(XR), batch):
            params, opt_state, value = step(
                params, opt_state, XR[start : start + batch], YR[start : start + batch]
            )
            losses.append(float(value))
    np.testing.assert_allclose(history.step_loss, losses, rtol=2e-4, atol=1e-6)
    chex.assert_trees_all_close(trained.params, params, rtol=2e-4, atol=1e-5)
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.train_accuracy == []  # no accuracy for a regression loss
    val_loss, accuracy = training.evaluate(trained, (XR, YR), loss=loss)
    assert accuracy is None
    np.testing.assert_allclose(
        val_loss, reference(REGRESSOR.apply({"params": params}, XR), YR), rtol=2e-4
    )


def test_bad_loss_is_rejected_naming_it():
    with pytest.raises(ValueError, match="loss.*'hinge'"):
        training.fit(make_state(), SMALL, epochs=1, batch_size=64, loss="hinge", progress=False)
    with pytest.raises(TypeError, match="loss"):
        training.fit(make_state(), SMALL, epochs=1, batch_size=64, loss=3, progress=False)


# --------------------------------------------------------------------------
# Streamed batches
# --------------------------------------------------------------------------


def batches_of(data, size):
    return [(data[0][i : i + size], data[1][i : i + size]) for i in range(0, len(data[0]), size)]


def test_streamed_batches_train_like_the_in_memory_epoch_program():
    arrays, arrays_history = training.fit(
        make_state(), SMALL, epochs=2, batch_size=64, progress=False, config=IN_ORDER
    )
    listed, listed_history = training.fit(
        make_state(), batches_of(SMALL, 64), epochs=2, progress=False
    )
    per_epoch, _ = training.fit(
        make_state(), lambda epoch: iter(batches_of(SMALL, 64)), epochs=2, progress=False
    )
    # One scan per epoch vs one jitted step per batch: equal up to float32 rounding.
    np.testing.assert_allclose(listed_history.step_loss, arrays_history.step_loss, rtol=1e-5)
    chex.assert_trees_all_close(listed.params, arrays.params, rtol=1e-5, atol=1e-6)
    chex.assert_trees_all_equal(per_epoch.params, listed.params)
    assert listed_history.steps_per_epoch == [4, 4]


def test_streamed_batches_reject_what_does_not_apply():
    with pytest.raises(ValueError, match="batch_size"):
        training.fit(make_state(), batches_of(SMALL, 64), epochs=1, batch_size=64, progress=False)
    with pytest.raises(ValueError, match="one-shot iterator"):
        training.fit(make_state(), iter(batches_of(SMALL, 64)), epochs=2, progress=False)
    with pytest.raises(ValueError, match="no batches"):
        training.fit(make_state(), [], epochs=1, progress=False)


# --------------------------------------------------------------------------
# Callbacks
# --------------------------------------------------------------------------


class Recorder(training.Callback):
    per_batch = True

    def __init__(self):
        self.calls, self.batch_losses = [], []

    def on_train_begin(self, logs=None):
        self.calls.append("train_begin")

    def on_epoch_begin(self, epoch, logs=None):
        self.calls.append(f"epoch_begin {epoch} steps={logs['steps']}")

    def on_batch_end(self, step, logs=None):
        self.batch_losses.append(float(logs["loss"]))

    def on_epoch_end(self, epoch, logs=None):
        self.calls.append(f"epoch_end {epoch} {sorted(logs)}")

    def on_train_end(self, logs=None):
        self.calls.append("train_end")


@pytest.mark.parametrize("streamed", [False, True])
def test_hooks_run_in_keras_order_and_batches_report_their_loss(streamed):
    recorder = Recorder()
    data = batches_of(SMALL, 64) if streamed else SMALL
    _, history = training.fit(
        make_state(),
        data,
        (X_TEST, Y_TEST),
        epochs=2,
        batch_size=None if streamed else 64,
        progress=False,
        callbacks=[recorder],
    )
    keys = ["accuracy", "loss", "lr", "val_accuracy", "val_loss"]
    assert recorder.calls == [
        "train_begin",
        "epoch_begin 0 steps=4",
        f"epoch_end 0 {keys}",
        "epoch_begin 1 steps=4",
        f"epoch_end 1 {keys}",
        "train_end",
    ]
    np.testing.assert_allclose(recorder.batch_losses, history.step_loss, rtol=1e-6)


def test_lambda_callback_stops_the_run_and_plain_functions_are_refused():
    stop_after_1 = training.LambdaCallback(on_epoch_end=lambda epoch, trainer: epoch == 1)
    _, history = training.fit(
        make_state(), SMALL, epochs=5, batch_size=64, progress=False, callbacks=[stop_after_1]
    )
    assert history.epoch == [1, 2]  # numbers of the epochs run (index 0 and 1)
    with pytest.raises(TypeError, match="LambdaCallback"):
        training.fit(
            make_state(),
            SMALL,
            epochs=1,
            batch_size=64,
            progress=False,
            callbacks=[lambda epoch, state, history: None],
        )


def test_progress_logger_writes_one_line_per_epoch_off_a_terminal():
    out, bar = io.StringIO(), io.StringIO()
    training.fit(
        make_state(),
        SMALL,
        (X_TEST, Y_TEST),
        epochs=2,
        batch_size=64,
        callbacks=[training.ProgressLogger(stream=out, bar_stream=bar)],
    )
    notice, *lines = out.getvalue().splitlines()
    assert notice == "Epoch 1/2: compiling..."  # one plain line while the first epoch compiles
    number = r"\d+(\.\d+)?(e-?\d+)?"
    for epoch, line in enumerate(lines, 1):
        assert re.fullmatch(
            rf"Epoch {epoch}/2 - {number}s - loss {number} - acc {number} - "
            rf"val_loss {number} - val_acc {number} - lr 1\.0e-02",
            line,
        ), line
    assert len(lines) == 2 and bar.getvalue() == ""  # no bar off a terminal


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_logger_draws_a_bar_within_the_epoch_on_a_terminal(monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    advanced = []

    class Counting(training.ProgressLogger):
        def on_batch_end(self, step, logs=None):
            advanced.append(self._bar.n)
            super().on_batch_end(step, logs)

    out, bar = io.StringIO(), Terminal()
    training.fit(
        make_state(),
        SMALL,
        epochs=2,
        batch_size=64,
        callbacks=[Counting(stream=out, bar_stream=bar)],
    )
    assert advanced == [0, 1, 2, 3] * 2  # the bar advanced once per step, live
    assert "Epoch 1:" in bar.getvalue() and "Epoch 2:" in bar.getvalue()
    assert "/4 [" in bar.getvalue()
    assert [line.split(" - ")[0] for line in out.getvalue().splitlines()] == [
        "Epoch 1/2: compiling...",  # the epoch lines' stream is not a terminal: a plain line
        "Epoch 1/2",
        "Epoch 2/2",
    ]


def test_early_stopping_rejects_bad_arguments():
    with pytest.raises(ValueError, match="patience"):
        training.EarlyStopping(0)
    with pytest.raises(ValueError, match="mode"):
        training.EarlyStopping(2, mode="up")


# --------------------------------------------------------------------------
# Donation
# --------------------------------------------------------------------------


def buffer_pointers(tree):
    return [
        leaf.unsafe_buffer_pointer()
        for leaf in jax.tree.leaves(tree)
        if isinstance(leaf, jax.Array) and not jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)
    ]


@pytest.mark.parametrize("tx", [jdl.adam(1e-2), jdl.sgd(0.1, momentum=0.9)])
def test_train_state_shares_no_buffers(tx):
    pointers = buffer_pointers(make_state(jdl.models.MLP(hidden=(16,), use_batchnorm=True), tx))
    assert len(pointers) == len(set(pointers))


def test_a_donated_jitted_step_equals_eager():
    # SGD with momentum: Adam's first step divides by |g| + eps and turns the rounding
    # differences of fused vs op-by-op gradients near zero into O(1) relative ones.
    state = make_state(jdl.models.MLP(hidden=(16,), use_batchnorm=True), jdl.sgd(0.1, momentum=0.9))
    batch = (X[:64], Y[:64])
    eager, eager_metrics = training.train_step_fn(state, batch)
    step = jax.jit(training.train_step_fn, donate_argnums=0)
    compiled, metrics = step(jax.tree.map(jnp.copy, state), batch)
    chex.assert_trees_all_close(compiled.params, eager.params, rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(compiled.opt_state, eager.opt_state, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(metrics["loss"], eager_metrics["loss"], rtol=1e-6)
    again, _ = step(compiled, batch)  # the output state donates again
    assert int(again.step) == 2


def test_sweep_state_donates_under_vmap():
    keys = jax.random.split(jax.random.key(0), 3)
    states = jax.vmap(lambda k: training.create_train_state(MLP, ADAM, k, X[:1]))(keys)
    step = jax.jit(jax.vmap(training.train_step_fn, in_axes=(0, None)), donate_argnums=0)

    def member(tree, i):
        return jax.tree.map(lambda a: a[i], tree)

    eager = [training.train_step_fn(member(states, i), (X[:32], Y[:32]))[0] for i in range(3)]
    new, _ = step(states, (X[:32], Y[:32]))
    for i in range(3):
        chex.assert_trees_all_close(member(new.params, i), eager[i].params, rtol=1e-5, atol=1e-7)


# --------------------------------------------------------------------------
# Plateau feeding
# --------------------------------------------------------------------------


def plateau_state(opt_state):
    (node,) = [
        n
        for n in jax.tree.leaves(
            opt_state, is_leaf=lambda n: isinstance(n, jdl.ReduceLROnPlateauState)
        )
        if isinstance(n, jdl.ReduceLROnPlateauState)
    ]
    return node


def test_plateau_feeder_feeds_the_validation_loss_once_per_epoch():
    plateau = jdl.reduce_on_plateau(factor=0.5, patience=0)
    tx = jdl.chain(jdl.adam(1e-2), plateau)
    rng = np.random.default_rng(0)
    noisy_val = (X_TEST[:100], rng.permutation(Y_TEST[:100]))  # random labels: val loss rises
    state, history = training.fit(
        make_state(tx=tx),
        SMALL,
        noisy_val,
        epochs=6,
        batch_size=64,
        progress=False,
        callbacks=[training.PlateauFeeder(plateau)],
    )
    # Reference: the plateau rule applied to the recorded validation losses, one per epoch
    # (the steps themselves fed nothing).
    reference = plateau.init(None)
    for value in history.val_loss:
        _, reference = plateau.update({}, reference, value=value)
    chex.assert_trees_all_close(plateau_state(state.opt_state), reference)
    assert float(reference.scale) < 1  # the run did lower the rate
    # Without the feeder every step feeds its batch loss.
    stepped, _ = training.fit(
        make_state(tx=tx), SMALL, noisy_val, epochs=1, batch_size=64, progress=False
    )
    assert float(plateau_state(stepped.opt_state).best_value) < np.inf
    with pytest.raises(ValueError, match="val_data"):
        training.fit(
            make_state(tx=tx),
            SMALL,
            epochs=1,
            batch_size=64,
            progress=False,
            callbacks=[training.PlateauFeeder(plateau)],
        )


# --------------------------------------------------------------------------
# Learning rate per parameter group
# --------------------------------------------------------------------------


def test_a_rate_per_parameter_group_is_recorded_as_a_dict(monkeypatch, tmp_path):
    # current_learning_rate reports {group: rate} for several groups; fit records that dict
    # per step and per epoch, prints it and plots one line per group.
    from jaxopt_dl.training import steps

    def per_group(opt_state, optimizer):
        return {"body": jnp.asarray(0.1), "head": jnp.asarray(0.01)}

    monkeypatch.setattr(steps, "current_learning_rate", per_group)
    out = io.StringIO()
    _, history = training.fit(
        make_state(tx=jdl.sgd(0.1)),
        SMALL,
        epochs=1,
        batch_size=64,
        callbacks=[training.ProgressLogger(stream=out)],
    )
    assert history.step_learning_rate == [pytest.approx({"body": 0.1, "head": 0.01})] * 4
    assert history.learning_rate == [pytest.approx({"body": 0.1, "head": 0.01})]
    assert out.getvalue().rstrip().endswith("lr body=1.0e-01 head=1.0e-02")
    restored = training.History.from_dict(history.to_dict())
    assert restored.step_learning_rate == history.step_learning_rate
    training.plot_history(history, str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
