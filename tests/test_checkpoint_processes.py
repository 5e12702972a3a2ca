"""Checkpoints the way users meet them: saved in one process, restored in another.

Every public optimizer and the wrappers (schedules, reduce_on_plateau, MultiSteps,
inject_hyperparams, multi_transform, the fused CPU step) with both backends; ``fit``; and
the command line, including a SIGKILL mid-run and damaged checkpoints.
"""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

from jaxopt_dl import checkpoint
from jaxopt_dl.__main__ import main

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "tests" / "scripts"
sys.path.insert(0, str(SCRIPTS))
import optimizer_checkpoint  # noqa: E402  (a script beside the tests, found through sys.path)

CASES = list(optimizer_checkpoint.cases())


def _env():
    pythonpath = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=pythonpath, JAX_PLATFORMS="cpu")


def python(*args, expect=0):
    """Run ``python ARGS`` with the repository root as cwd; check its exit status."""
    proc = subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == expect, proc.stderr[-4000:]
    return proc


def assert_same_bits(expected, actual, names):
    for name in names:
        a, b = expected[name], actual[name]
        assert (a.dtype, a.shape) == (b.dtype, b.shape), name
        assert a.tobytes() == b.tobytes(), name


# --------------------------------------------------------------------------
# Optimizer states: process 1 steps 3 times and saves, process 2 restores
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def optimizer_runs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("optimizers")
    python(SCRIPTS / "optimizer_checkpoint.py", "save", directory)
    python(SCRIPTS / "optimizer_checkpoint.py", "restore", directory)
    return directory


def test_every_public_optimizer_factory_is_a_case():
    factories = optimizer_checkpoint.optimizer_factories()
    assert {"sgd", "momentum", "adam", "adamw", "nadam", "lamb", "lion", "adafactor"} <= set(
        factories
    )
    assert set(factories) <= set(CASES)


@pytest.mark.parametrize("backend", checkpoint.BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_optimizer_state_restored_in_a_new_process_is_bit_exact(optimizer_runs, case, backend):
    saved = np.load(optimizer_runs / case / "saved.npz")
    restored = np.load(optimizer_runs / case / f"{backend}.npz")
    assert sorted(saved.files) == sorted(restored.files)
    state = [n for n in saved.files if n.startswith("state_")]
    assert_same_bits(saved, restored, state)
    # One more step from the restored state == one more step in the first process.
    continued = [n for n in saved.files if n.startswith("next_")]
    assert_same_bits(saved, restored, continued)
    assert any(not np.array_equal(saved[f"state_{n[5:]}"], saved[n]) for n in continued)


# --------------------------------------------------------------------------
# fit: 1 epoch in one process, resumed to 2 in another == 2 uninterrupted
# --------------------------------------------------------------------------


def test_fit_resumed_in_a_new_process_equals_the_uninterrupted_run(tmp_path):
    directory = tmp_path / "checkpoints"
    python(SCRIPTS / "fit_checkpoint.py", 1, tmp_path / "first", directory)
    python(SCRIPTS / "fit_checkpoint.py", 2, tmp_path / "resumed", directory)
    python(SCRIPTS / "fit_checkpoint.py", 2, tmp_path / "full")
    assert checkpoint.all_steps(directory) == [1, 2]
    full, resumed = np.load(tmp_path / "full.npz"), np.load(tmp_path / "resumed.npz")
    assert sorted(full.files) == sorted(resumed.files)
    assert_same_bits(full, resumed, full.files)
    first = np.load(tmp_path / "first.npz")
    assert any(first[n].tobytes() != full[n].tobytes() for n in full.files)
    history = json.loads((tmp_path / "resumed.json").read_text())
    assert history == json.loads((tmp_path / "full.json").read_text())
    assert len(history["epoch"]) == 2


# --------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------

TRAIN = [
    "train",
    "--dataset",
    "digits",
    "--model",
    "mlp",
    "--hidden",
    "16",
    "--batch-size",
    "256",
    "--no-progress",
]
CLI = ["-m", "jaxopt_dl", *TRAIN]
KILL_EPOCHS = 30


def train_here(*args):
    """The command line's ``main`` in this process (the uninterrupted references)."""
    assert main([*TRAIN, *map(str, args)]) == 0


def results(out):
    """params.msgpack's bytes and metrics.json without wall-clock fields and paths."""
    metrics = json.loads((out / "metrics.json").read_text())
    metrics.pop("train_seconds")
    metrics["history"].pop("epoch_time")
    for name in ("out", "checkpoint_dir"):
        metrics["config"].pop(name)
    return (out / "params.msgpack").read_bytes(), metrics


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """The uninterrupted 2-epoch run's results."""
    out = tmp_path_factory.mktemp("cli") / "full"
    train_here("--epochs", 2, "--out", out)
    return results(out)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    """1 epoch, then ``--epochs 2`` in a new process: (checkpoint folder, results, stdout)."""
    root = tmp_path_factory.mktemp("cli")
    directory = root / "checkpoints"
    python(*CLI, "--epochs", 1, "--checkpoint-dir", directory, "--out", root / "first")
    run = python(*CLI, "--epochs", 2, "--checkpoint-dir", directory, "--out", root / "resumed")
    return directory, results(root / "resumed"), run.stdout


def test_cli_resumed_in_a_new_process_equals_the_uninterrupted_run(two_epochs, resumed):
    directory, (params, metrics), stdout = resumed
    assert checkpoint.all_steps(directory) == [1, 2]
    assert params == two_epochs[0]
    assert {**metrics, "resume": None} == {**two_epochs[1], "resume": None}
    assert len(metrics["history"]["epoch"]) == 2
    lines = [line for line in stdout.splitlines() if line.startswith("resumed")]
    assert lines == [
        f"resumed from {directory}/step_1, epoch 1 of 2 "
        "(training on: the checkpoint's run had 1 epoch)"
    ]
    assert metrics["resume"]["path"] == f"{directory}/step_1"
    assert metrics["resume"]["changes"] == {}
    assert "(2 epochs, 1 of them in this run, in " in stdout


@pytest.mark.parametrize(
    "change,named",
    [
        (["--lr", "0.01"], "--lr 0.001 -> 0.01"),
        (["--optimizer", "sgd"], "--optimizer adam -> sgd"),
        (["--b1", "0.8"], "--b1 0.9 -> 0.8"),
        (["--hidden", "8"], "--hidden [16] -> [8]"),
        (["--batch-size", "128"], "--batch-size 256 -> 128"),
        (["--seed", "1"], "--seed 0 -> 1"),
        (["--val-fraction", "0.2"], "--val-fraction 0.1 -> 0.2"),
        (["--schedule", "cosine"], "--schedule constant -> cosine"),
    ],
)
def test_cli_resume_with_a_changed_setting_exits_2_naming_it(resumed, tmp_path, change, named):
    directory = tmp_path / "checkpoints"
    shutil.copytree(resumed[0], directory)
    run = python(
        *CLI,
        "--epochs",
        3,
        "--checkpoint-dir",
        directory,
        "--out",
        tmp_path / "out",
        *change,
        expect=2,
    )
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and named in lines[0] and "--allow-changed-settings" in lines[0]
    assert "Traceback" not in run.stderr and "Epoch" not in run.stdout
    assert checkpoint.all_steps(directory) == [1, 2]
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_cli_allow_changed_settings_continues_and_records_both(resumed, tmp_path):
    directory = tmp_path / "checkpoints"
    shutil.copytree(resumed[0], directory)
    out = tmp_path / "out"
    run = python(
        *CLI,
        "--epochs",
        3,
        "--checkpoint-dir",
        directory,
        "--out",
        out,
        "--lr",
        "0.01",
        "--allow-changed-settings",
    )
    assert (
        f"resumed from {directory}/step_2, epoch 2 of 3 with changed settings "
        "(--lr 0.001 -> 0.01) (training on: the checkpoint's run had 2 epochs)"
    ) in run.stdout.splitlines()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["lr"] == 0.01
    assert metrics["resume"]["settings"]["--lr"] == 0.001
    assert metrics["resume"]["changes"] == {"--lr": [0.001, 0.01]}
    assert checkpoint.checkpoint_metadata(directory)["metadata"]["settings"]["--lr"] == 0.01


def test_cli_an_early_stopped_run_launched_again_does_nothing_more(tmp_path):
    directory, out = tmp_path / "checkpoints", tmp_path / "out"
    # --lr 1.0 makes the validation loss rise within a few epochs: an early stop.
    argv = [*CLI, "--epochs", 15, "--lr", "1.0", "--early-stopping", 1]
    argv += ["--checkpoint-dir", directory, "--out", out]
    python(*argv)
    params, metrics = results(out)
    assert metrics["history"]["stopped_early"]
    stopped_at = len(metrics["history"]["epoch"])
    assert stopped_at < 15
    steps = checkpoint.all_steps(directory)
    again = python(*argv)
    assert again.stdout.splitlines()[0] == (
        f"resumed from {directory}/step_{stopped_at}, epoch {stopped_at} of 15: the run "
        f"stopped at epoch {stopped_at}; nothing left to train"
    )
    assert "Epoch" not in again.stdout
    assert checkpoint.all_steps(directory) == steps
    params_again, metrics_again = results(out)
    assert params_again == params
    assert metrics_again["history"] == metrics["history"]
    assert metrics_again["test_accuracy"] == metrics["test_accuracy"]


SIGINT_EPOCHS = 400


def test_cli_sigint_prints_one_line_exits_130_and_the_same_command_resumes(tmp_path):
    directory = tmp_path / "checkpoints"
    argv = [*CLI, "--epochs", SIGINT_EPOCHS, "--checkpoint-dir", directory]
    argv += ["--out", tmp_path / "out"]
    run = subprocess.Popen(
        [sys.executable, *map(str, argv)],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        while not (directory / "step_2").exists() and run.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint after 600 s"
            time.sleep(0.002)
        run.send_signal(signal.SIGINT)
        stdout, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, stderr[-4000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-4000:]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the newest checkpoint intact: no fallback warning
        step = checkpoint.latest_step(directory)
        assert checkpoint.all_steps(directory)[-1] == step
    match = re.fullmatch(
        r"interrupted at epoch (\d+); run the same command to resume from (.+)", lines[0]
    )
    assert match, lines[0]
    assert match[2] == f"{directory}/step_{step}"
    assert int(match[1]) in (step, step + 1)  # the epoch running when the signal came
    assert 2 <= step < SIGINT_EPOCHS
    assert checkpoint.checkpoint_metadata(directory)["metadata"]["epoch"] == step
    assert not (tmp_path / "out" / "metrics.json").exists()

    again = python(*argv)  # the same command
    assert again.stdout.splitlines()[0].startswith(
        f"resumed from {directory}/step_{step}, epoch {step} of {SIGINT_EPOCHS}"
    )
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert len(metrics["history"]["epoch"]) == SIGINT_EPOCHS


def test_cli_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path):
    directory = tmp_path / "checkpoints"
    argv = [
        *CLI,
        "--epochs",
        str(KILL_EPOCHS),
        "--checkpoint-dir",
        str(directory),
        "--out",
        str(tmp_path / "killed"),
    ]
    run = subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        while not (directory / "step_1").exists() and run.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint after 600 s"
            time.sleep(0.002)
        run.send_signal(signal.SIGKILL)
    finally:
        run.wait(timeout=60)
        stderr = run.stderr.read()
        run.stderr.close()
    assert run.returncode == -signal.SIGKILL, stderr[-4000:]
    killed_at = checkpoint.latest_step(directory)
    assert 1 <= killed_at < KILL_EPOCHS
    assert not (tmp_path / "killed" / "metrics.json").exists()

    python(*argv)  # the same command again
    train_here("--epochs", KILL_EPOCHS, "--out", tmp_path / "full")
    params, metrics = results(tmp_path / "killed")
    assert params == results(tmp_path / "full")[0]
    assert metrics.pop("resume")["epoch"] == killed_at
    assert metrics == results(tmp_path / "full")[1]
    assert len(metrics["history"]["epoch"]) == KILL_EPOCHS


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_cli_falls_back_from_a_corrupted_newest_checkpoint(two_epochs, resumed, tmp_path):
    directory = tmp_path / "checkpoints"
    shutil.copytree(resumed[0], directory)
    bad = directory / "step_2" / "msgpack" / "state.msgpack"
    _flip_a_byte(bad)
    with pytest.warns(UserWarning) as caught:
        train_here("--epochs", 2, "--checkpoint-dir", directory, "--out", tmp_path / "out")
    messages = [str(w.message) for w in caught if "checkpoint" in str(w.message)]
    assert len(messages) == 1 and "\n" not in messages[0]
    assert str(bad) in messages[0] and "step_1" in messages[0]
    params, metrics = results(tmp_path / "out")
    assert metrics.pop("resume")["path"] == f"{directory}/step_1"
    assert (params, metrics) == two_epochs


def test_cli_without_a_good_checkpoint_exits_2_with_one_line(resumed, tmp_path, capsys):
    directory = tmp_path / "checkpoints"
    shutil.copytree(resumed[0], directory)
    (directory / "step_2" / "_CHECKPOINT_METADATA").write_text("{")
    step_1 = directory / "step_1" / "msgpack" / "state.msgpack"
    step_1.write_bytes(step_1.read_bytes()[:100])
    capsys.readouterr()
    code = main(
        [
            *TRAIN,
            "--epochs",
            "2",
            "--checkpoint-dir",
            str(directory),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "no good checkpoint" in lines[0] and "step_2" in lines[0]
