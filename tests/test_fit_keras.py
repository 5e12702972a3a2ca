"""fit as a Keras user meets it: History.history, metrics=, plot_history, CSVLogger,
TensorBoard, one epoch numbering, EarlyStopping's summary, the rate each epoch ran at,
the compiling notice through a pipe, and arguments checked before any work."""

import csv
import io
import os
import re
import struct
import subprocess
import sys

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


def make_state(tx=None, model=MLP):
    return training.create_train_state(model, tx or jdl.adam(1e-2), jax.random.key(0), X[:1])


def fit(**kwargs):
    options = dict(epochs=3, batch_size=64, progress=False)
    options.update(kwargs)
    state = options.pop("state", None) or make_state()
    return training.fit(state, SMALL, options.pop("val", (X_TEST, Y_TEST)), **options)


# --------------------------------------------------------------------------
# History.history and metrics=
# --------------------------------------------------------------------------


def test_history_dict_has_keras_names_and_is_the_attributes():
    _, history = fit()
    assert list(history.history) == [
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "learning_rate",
    ]
    assert history.history["loss"] is history.train_loss
    assert history.history["val_accuracy"] is history.val_accuracy
    assert all(len(v) == 3 for v in history.history.values())
    assert history.history["learning_rate"] == [pytest.approx(1e-2)] * 3


def huber(outputs, targets):
    return optax.huber_loss(outputs, jax.nn.one_hot(targets, 10)).mean(-1)


def top2(outputs, targets):
    top = jnp.argsort(outputs, -1)[:, -2:]
    return jnp.any(top == targets[:, None], -1).astype(jnp.float32)


def test_metrics_by_name_and_function_with_a_custom_loss():
    # Without metrics a custom loss reports only the loss (as Keras); asking for the
    # accuracy gives it, on the training steps and on the validation data.
    _, plain = fit(loss=huber, epochs=1)
    assert "accuracy" not in plain.history and "val_accuracy" not in plain.history
    state, history = fit(loss=huber, metrics=["accuracy", top2])
    assert list(history.history) == [
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "top2",
        "val_top2",
        "learning_rate",
    ]
    # the validation metrics of the final state, against NumPy on the predictions
    logits = np.asarray(training.predict(state, X_TEST))
    assert history.val_accuracy[-1] == pytest.approx(np.mean(logits.argmax(-1) == Y_TEST))
    top = np.argsort(logits, -1)[:, -2:]
    assert history.metrics["val_top2"][-1] == pytest.approx(
        np.mean(np.any(top == Y_TEST[:, None], -1))
    )
    assert history.metrics["top2"][-1] >= history.train_accuracy[-1]
    assert training.evaluate_metrics(state, (X_TEST, Y_TEST), loss=huber, metrics=[top2]) == {
        "loss": pytest.approx(history.val_loss[-1]),
        "top2": pytest.approx(history.metrics["val_top2"][-1]),
    }


def test_regression_metrics_by_name():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype(np.float32)
    y = (x @ rng.normal(size=8)).astype(np.float32)
    state = training.create_train_state(
        jdl.models.MLP(hidden=(16,), num_classes=1), jdl.adam(1e-2), jax.random.key(0), x[:1]
    )
    state, history = training.fit(
        state,
        (x, y),
        (x, y),
        epochs=2,
        batch_size=64,
        loss="mse",
        metrics=["mae"],
        progress=False,
    )
    outputs = np.asarray(training.predict(state, x))[:, 0]
    assert history.history["val_mae"][-1] == pytest.approx(np.mean(np.abs(outputs - y)), rel=1e-5)
    assert history.history["val_loss"][-1] == pytest.approx(np.mean((outputs - y) ** 2), rel=1e-5)


@pytest.mark.parametrize(
    "metrics, error, text",
    [
        (["acc"], ValueError, "'acc'"),
        ("accuracy", TypeError, "metrics='accuracy'"),
        ([3], TypeError, "got 3"),
        (["accuracy", "accuracy"], ValueError, "twice"),
        (["loss"], ValueError, "'loss'"),
    ],
)
def test_bad_metrics_are_refused_before_anything_is_written(tmp_path, metrics, error, text):
    path = tmp_path / "log.csv"
    with pytest.raises(error, match=re.escape(text)):
        fit(metrics=metrics, callbacks=[training.CSVLogger(str(path))])
    assert not path.exists()


# --------------------------------------------------------------------------
# One numbering of epochs; EarlyStopping says what it did
# --------------------------------------------------------------------------


def test_log_history_csv_and_early_stopping_name_the_same_epoch(tmp_path):
    out = io.StringIO()
    path = tmp_path / "log.csv"
    # a large rate overfits the small set fast, so the validation loss turns up
    state, history = fit(
        state=make_state(jdl.adam(3e-2)),
        epochs=40,
        callbacks=[
            training.ProgressLogger(stream=out),
            training.EarlyStopping(patience=3, stream=out),
            training.CSVLogger(str(path)),
        ],
    )
    assert history.stopped_early
    lines = out.getvalue().splitlines()
    epoch_lines = [line for line in lines if re.match(r"Epoch \d+/40 - ", line)]
    logged = {
        int(re.match(r"Epoch (\d+)/", line)[1]): float(re.search(r"val_loss (\S+)", line)[1])
        for line in epoch_lines
    }
    best_logged = min(logged, key=logged.get)
    assert history.best_epoch == best_logged
    assert history.epoch == list(range(1, len(epoch_lines) + 1))
    rows = list(csv.DictReader(open(path)))
    assert [int(r["epoch"]) for r in rows] == history.epoch
    best_row = min(rows, key=lambda r: float(r["val_loss"]))
    assert int(best_row["epoch"]) == history.best_epoch
    summary = lines[-1]
    assert summary == (
        f"EarlyStopping: stopped after epoch {history.epoch[-1]} (val_loss did not improve "
        f"for 3 epochs); restored the params of epoch {history.best_epoch} "
        f"(val_loss {history.val_loss[history.best_epoch - 1]:.4g})"
    )
    # the restored params are those of that epoch: they give its validation loss
    val_loss, _ = training.evaluate(state, (X_TEST, Y_TEST))
    assert val_loss == pytest.approx(history.val_loss[history.best_epoch - 1], rel=1e-6)


def test_early_stopping_counts_an_all_skipped_epoch_as_no_improvement():
    x, y = SMALL

    def batches(epoch):  # epoch index 1 feeds only NaN inputs: every step is skipped
        bad = np.full_like(x, np.nan) if epoch == 1 else x
        return [(bad[i : i + 64], y[i : i + 64]) for i in range(0, 256, 64)]

    stopper = training.EarlyStopping(patience=2, monitor="loss", stream=io.StringIO())
    state = make_state()
    _, history = training.fit(
        state,
        batches,
        epochs=3,
        progress=False,
        callbacks=[stopper, training.NonFiniteGuard(10)],
    )
    assert history.train_loss[1] is None and history.nonfinite_steps == 4
    assert history.best_epoch == 3 and not history.stopped_early
    # two such epochs in a row exhaust the patience: a stop, not an error
    stopper = training.EarlyStopping(patience=2, monitor="loss", stream=io.StringIO())
    _, history = training.fit(
        make_state(),
        lambda epoch: batches(1 if epoch else 0),
        epochs=5,
        progress=False,
        callbacks=[stopper, training.NonFiniteGuard(100)],
    )
    assert history.stopped_early and history.epoch == [1, 2, 3] and history.best_epoch == 1


# --------------------------------------------------------------------------
# plot_history, CSVLogger, TensorBoard
# --------------------------------------------------------------------------


def test_plot_history_returns_the_figure_and_marks_the_best_epoch(tmp_path):
    from matplotlib.figure import Figure

    _, history = fit(
        epochs=6, callbacks=[training.EarlyStopping(patience=10, stream=io.StringIO())]
    )
    path = tmp_path / "curves.png"
    fig = training.plot_history(history, str(path))
    assert isinstance(fig, Figure) and path.stat().st_size > 0
    assert len(fig.axes) == 3  # loss, accuracy, learning rate
    for ax in fig.axes:
        marks = [line for line in ax.get_lines() if line.get_label().startswith("best epoch")]
        assert len(marks) == 1
        assert list(marks[0].get_xdata()) == [history.best_epoch] * 2
    assert training.plot_history(history) is not None  # no path: nothing saved


def test_csv_logger_rows_are_the_history_and_append_continues(tmp_path):
    path = tmp_path / "log.csv"
    _, history = fit(callbacks=[training.CSVLogger(str(path))])
    rows = list(csv.DictReader(open(path)))
    assert list(rows[0]) == [
        "epoch",
        "loss",
        "accuracy",
        "val_loss",
        "val_accuracy",
        "learning_rate",
    ]
    for key, values in history.history.items():
        assert [float(r[key]) for r in rows] == pytest.approx(values, rel=1e-6)
    fit(epochs=2, callbacks=[training.CSVLogger(str(path), append=True)])
    assert [r["epoch"] for r in csv.DictReader(open(path))] == ["1", "2", "3", "1", "2"]
    fit(epochs=1, callbacks=[training.CSVLogger(str(path))])  # overwrites
    assert len(list(csv.DictReader(open(path)))) == 1


def _read_events(folder):
    """The scalars of TensorBoard event files, read with tensorboardX's protobuf."""
    from tensorboardX.proto import event_pb2

    scalars = {}
    for name in sorted(os.listdir(folder)):
        data = open(os.path.join(folder, name), "rb").read()
        offset = 0
        while offset < len(data):  # TFRecord: length, crc, payload, crc
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            payload = data[offset + 12 : offset + 12 + length]
            offset += 12 + length + 4
            event = event_pb2.Event.FromString(payload)
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_tensorboard_writes_what_history_holds(tmp_path):
    pytest.importorskip("tensorboardX", reason="the optional [tensorboard] extra")
    _, history = fit(callbacks=[training.TensorBoard(str(tmp_path))])
    scalars = _read_events(tmp_path)
    for key, values in history.history.items():
        steps, logged = zip(*scalars[key])
        assert list(steps) == history.epoch
        assert list(logged) == pytest.approx(values, rel=1e-6)
    steps, losses = zip(*scalars["batch_loss"])
    assert list(steps) == list(range(1, len(history.step_loss) + 1))
    assert list(losses) == pytest.approx(history.step_loss, rel=1e-6)


# --------------------------------------------------------------------------
# The rate an epoch ran at
# --------------------------------------------------------------------------


def test_epoch_lr_is_the_rate_its_last_step_applied():
    steps = 4  # 256 examples, batches of 64
    schedule = optax.piecewise_constant_schedule(0.1, {steps: 0.1})  # 0.1, then 0.01
    out = io.StringIO()
    config = training.FitConfig(shuffle=False)
    state0 = make_state(jdl.sgd(schedule))
    state1, history = training.fit(
        state0,
        SMALL,
        epochs=1,
        batch_size=64,
        callbacks=[training.ProgressLogger(out)],
        config=config,
    )
    _, history2 = training.fit(
        state0,
        SMALL,
        epochs=2,
        batch_size=64,
        callbacks=[training.ProgressLogger(out)],
        config=config,
    )
    # recover the last step's rate from its parameter change: replay the first 3 steps,
    # take the gradient of the 4th batch, compare with what fit's 4th step did
    state = state0
    for i in range(steps - 1):
        state, _ = training.train_step(state, (X[64 * i : 64 * (i + 1)], Y[64 * i : 64 * (i + 1)]))
    xb, yb = X[192:256], Y[192:256]

    def loss(params):
        logits = state.apply_fn({"params": params}, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    grads = jax.grad(loss)(state.params)
    change = jax.tree.map(lambda a, b: a - b, state1.params, state.params)
    applied = float(optax.tree_utils.tree_l2_norm(change) / optax.tree_utils.tree_l2_norm(grads))
    assert applied == pytest.approx(0.1, rel=1e-3)
    assert history.learning_rate == [pytest.approx(applied, rel=1e-3)]
    assert history2.learning_rate == [pytest.approx(0.1), pytest.approx(0.01)]
    lines = [line for line in out.getvalue().splitlines() if " - lr " in line]
    assert [line.split(" - lr ")[1] for line in lines] == ["1.0e-01", "1.0e-01", "1.0e-02"]
    fig = training.plot_history(history2)
    (dots,) = [line for line in fig.axes[-1].get_lines() if line.get_label() == "lr, epoch"]
    assert list(dots.get_xdata()) == [1, 2]
    assert list(dots.get_ydata()) == pytest.approx([0.1, 0.01])


# --------------------------------------------------------------------------
# The compiling notice through a pipe
# --------------------------------------------------------------------------


def test_a_pipe_gets_the_compiling_notice_as_one_plain_line():
    script = (
        "import jax, jaxopt_dl as jdl\n"
        "from jaxopt_dl import training\n"
        "(x, y), _ = jdl.data.load_digits()\n"
        "s = training.create_train_state(jdl.models.MLP(hidden=(8,)), jdl.adam(1e-2), "
        "jax.random.key(0), x[:1])\n"
        "training.fit(s, (x[:256], y[:256]), epochs=2, batch_size=64)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Epoch 1/2: compiling..."
    assert [line.split(" - ")[0] for line in lines[1:]] == ["Epoch 1/2", "Epoch 2/2"]
    assert "\r" not in done.stdout and "\x1b" not in done.stdout and done.stderr == ""


def test_a_terminal_sees_the_notice_replaced_by_the_epoch_line():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    out = Terminal()
    fit(epochs=1, callbacks=[training.ProgressLogger(stream=out, bar=False)], val=None)
    text = out.getvalue()
    assert text.startswith("Epoch 1/1: compiling...\r\x1b[KEpoch 1/1 - ")
    assert text.count("\n") == 1


# --------------------------------------------------------------------------
# Arguments checked before any work
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, text",
    [
        (lambda cb: fit(epochs=2.5, callbacks=cb), ValueError, "epochs=2.5"),
        (lambda cb: fit(batch_size=32.5, callbacks=cb), ValueError, "batch_size=32.5"),
        (lambda cb: fit(epochs="3", callbacks=cb), TypeError, "epochs='3'"),
        (lambda cb: training.EarlyStopping(patience=1.5), ValueError, "patience=1.5"),
        (lambda cb: training.EarlyStopping(2, min_delta=None), TypeError, "min_delta=None"),
        (lambda cb: training.EarlyStopping(2, min_delta=-1), ValueError, "min_delta=-1"),
        (lambda cb: training.ModelCheckpoint("unused", every=1.5), ValueError, "every=1.5"),
        (lambda cb: training.NonFiniteGuard(2.5), ValueError, "max_consecutive=2.5"),
        (lambda cb: training.FitConfig(grad_accum_steps=1.5), ValueError, "grad_accum_steps=1.5"),
        (lambda cb: training.FitConfig(eval_batch_size=0), ValueError, "eval_batch_size=0"),
        (lambda cb: training.CSVLogger("x.csv", separator=";;"), ValueError, "separator=';;'"),
    ],
)
def test_bad_arguments_name_themselves_before_any_work(tmp_path, make, error, text):
    path = tmp_path / "log.csv"
    with pytest.raises(error, match=re.escape(text)):
        make([training.CSVLogger(str(path))])
    assert not path.exists()  # nothing trained, nothing written
    assert not os.path.exists("unused")
