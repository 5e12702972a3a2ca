"""The command line: python -m jaxopt_dl train / lr-find / diagnose ..."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxopt_dl as jdl
from jaxopt_dl.cli import COMMANDS, build_parser, main
from jaxopt_dl.cli.registry import INITS, MODELS, OPTIMIZERS, optimizer_factory, resolve_config
from jaxopt_dl.cli.train import build_optimizer

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN = 1437  # load_digits' training split
NUMBER = r"\d+(\.\d+)?(e[-+]?\d+)?"


def cli(*argv, env=None):
    """Run the CLI in a new process with its output piped (not a terminal)."""
    return subprocess.run(
        [sys.executable, "-m", "jaxopt_dl", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_train_writes_metrics_curves_and_params(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            "--model",
            "mlp",
            "--optimizer",
            "nesterov",
            "--momentum",
            "0.9",
            "--lr",
            "0.05",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--schedule",
            "cosine",
            "--clip-norm",
            "5.0",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.8 < metrics["test_accuracy"] <= 1.0
    assert metrics["config"]["optimizer"] == "nesterov"
    assert metrics["config"]["optimizer_arguments"] == {
        "beta": 0.9,
        "form": "velocity",
        "nesterov": True,
    }
    n_val = math.ceil(0.1 * N_TRAIN)  # stratified hold-out of --val-fraction 0.1
    assert len(metrics["history"]["step_loss"]) == (N_TRAIN - n_val) // 32
    assert len(metrics["history"]["val_loss"]) == 1
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "params.msgpack").stat().st_size > 0
    assert str(out / "metrics.json") in capsys.readouterr().out


def test_one_line_per_epoch_through_a_pipe_and_a_complete_record(tmp_path):
    proc = cli("train", "--epochs", "2", "--batch-size", "128", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    notice, *lines = proc.stdout.splitlines()
    assert notice == "Epoch 1/2: compiling..."  # one plain line while the first epoch compiles
    for epoch in (1, 2):
        assert re.fullmatch(
            rf"Epoch {epoch}/2 - {NUMBER}s - loss {NUMBER} - acc {NUMBER} - "
            rf"val_loss {NUMBER} - val_acc {NUMBER} - lr 1\.0e-03",
            lines[epoch - 1],
        ), lines
    assert re.match(rf"Test - loss {NUMBER} - acc {NUMBER} ", lines[2])
    assert len(lines) == 4 and "\r" not in proc.stderr and "step/s" not in proc.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    config = metrics["config"]
    assert config["val_fraction"] == 0.1 and config["hidden"] == [128, 64]
    assert config["optimizer_arguments"] == {
        "b1": 0.9,
        "b2": 0.999,
        "eps": 1e-8,
        "mu_dtype": None,
        "nu_dtype": None,
    }
    assert config["batchnorm"] is False and config["resume"] is None
    assert set(metrics["versions"]) == {"jaxopt_dl", "jax", "optax", "flax"}
    assert metrics["versions"]["jax"] == jax.__version__
    assert "cpu" in metrics["device"]
    assert 0 < metrics["test_loss"] and 0.5 < metrics["test_accuracy"] <= 1
    assert metrics["history"]["learning_rate"] == pytest.approx([1e-3, 1e-3])


def test_help_shows_a_default_for_every_flag_in_plain_text():
    parser = build_parser()
    (subparsers,) = [a for a in parser._actions if a.dest == "command"]
    assert set(subparsers.choices) == set(COMMANDS)
    texts = [parser.description]
    for name, sub in subparsers.choices.items():
        texts.append(sub.description)
        for action in sub._actions:
            if action.dest == "help":
                continue
            assert action.help and action.help.endswith(")") and "(default: " in action.help, (
                name,
                action.dest,
            )
            texts.append(action.help)
    for text in texts:
        assert not re.search(r"``|:func:|:class:|seed 0\d\d|contract|\.\./", text), text


def test_bad_optimizer_name_exits_2_with_one_line_listing_choices():
    proc = cli("train", "--optimizer", "adamz")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert all(name in lines[0] for name in OPTIMIZERS)


def subparsers():
    (action,) = [a for a in build_parser()._actions if a.dest == "command"]
    return action.choices


def test_every_command_shares_the_registries_and_the_shared_flag_definitions():
    flags = {
        name: {a.option_strings[0]: a for a in sub._actions if a.option_strings}
        for name, sub in subparsers().items()
    }
    shared = [
        "--model",
        "--hidden",
        "--init",
        "--optimizer",
        "--momentum",
        "--b1",
        "--batch-size",
        "--seed",
    ]
    for name, own in flags.items():
        assert list(own["--optimizer"].choices) == list(OPTIMIZERS), name
        assert list(own["--model"].choices) == list(MODELS), name
        assert list(own["--init"].choices) == list(INITS), name
        for flag in shared:
            reference = flags["train"][flag]
            assert (own[flag].help, own[flag].default, own[flag].type) == (
                reference.help,
                reference.default,
                reference.type,
            ), (name, flag)
    assert flags["diagnose"]["--lr"].default == flags["train"]["--lr"].default
    assert "--lr" not in flags["lr-find"]
    assert len({own["--out"].default for own in flags.values()}) == len(flags)


@pytest.mark.parametrize("command", ["train", "lr-find", "diagnose"])
@pytest.mark.parametrize("out", ["parent_is_a_file/run", "/proc/jaxopt_dl_run"])
def test_unwritable_out_exits_2_with_one_line_before_jax_starts(tmp_path, out, command):
    (tmp_path / "parent_is_a_file").write_text("")
    # With an unknown platform, starting JAX would fail: exit 2 shows it never started.
    proc = cli(command, "--out", str(tmp_path / out), env={"JAX_PLATFORMS": "no_such_platform"})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--model", "vgg"], "resnet"),
        (["--epochs", "0"], "epochs"),
        (["--val-fraction", "1"], "val-fraction"),
        (["--lr", "-1"], "--lr must be non-negative, got -1.0"),
        (["--optimizer", "adam", "--b1", "1.5"], "--b1 must be in [0, 1), got 1.5"),
        (["--optimizer", "momentum", "--momentum", "1.5"], "--momentum must be in [0, 1), got 1.5"),
        (["--optimizer", "sgd", "--momentum", "1.5"], "--momentum must be in [0, 1), got 1.5"),
        (["--optimizer", "adam", "--eps", "-1"], "--eps must be non-negative, got -1.0"),
        (
            ["--schedule", "step", "--decay-rate", "1.5"],
            "--decay-rate must be in [0.0, 1.0], got 1.5",
        ),
        (
            ["--schedule", "plateau", "--decay-rate", "1.5"],
            "--decay-rate must be in [0, 1), got 1.5",
        ),
        (["--schedule", "onecycle", "--div-factor", "-2"], "--div-factor"),
        (["--schedule", "onecycle", "--warmup-steps", "5"], "--warmup-steps does not apply"),
        (
            ["--schedule", "cosine", "--pct-start", "0.2"],
            "--pct-start does not apply to --schedule",
        ),
        (["--schedule", "step", "--plateau-patience", "2"], "--plateau-patience does not apply"),
        (
            ["--optimizer", "sgd", "--mu-dtype", "bfloat16"],
            "--mu-dtype does not apply to --optimizer sgd",
        ),
        (["--optimizer", "adam", "--mu-dtype", "float8"], "--mu-dtype"),
        (["--warmup-steps", "-1"], "--warmup-steps"),
        (["--dropout", "1.5"], "dropout"),
        (
            ["--optimizer", "adam", "--momentum", "0.9"],
            "--momentum does not apply to --optimizer adam",
        ),
        (["--optimizer", "sgd", "--b2", "0.9"], "--b2 does not apply to --optimizer sgd"),
        (
            ["--schedule", "cosine", "--decay-rate", "0.1"],
            "--decay-rate does not apply to --schedule cosine",
        ),
        (["--model", "cnn", "--hidden", "8"], "--hidden does not apply to --model cnn"),
        (["--init", "he_normal", "--sparse-k", "3"], "--sparse-k does not apply"),
        (["--val-fraction", "0", "--early-stopping", "2"], "--early-stopping needs validation"),
    ],
)
def test_bad_values_exit_2_with_one_line(argv, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        sys.exit(main(["train", "--epochs", "1", "--out", str(tmp_path), "--no-progress", *argv]))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


@pytest.mark.parametrize("command", ["lr-find", "diagnose"])
@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--model", "vgg"], "resnet"),
        (["--optimizer", "adamz"], "noisy_sgd"),
        (["--batch-size", "0"], "batch-size"),
        (["--steps", "0"], "steps"),
        (
            ["--optimizer", "adam", "--momentum", "0.9"],
            "--momentum does not apply to --optimizer adam",
        ),
        (["--model", "cnn", "--hidden", "8"], "--hidden does not apply to --model cnn"),
        (["--init", "he_normal", "--sparse-k", "3"], "--sparse-k does not apply"),
    ],
)
def test_lr_find_and_diagnose_refuse_bad_flags_like_train(command, argv, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        sys.exit(main([command, "--out", str(tmp_path), *argv]))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_a_value_error_of_lr_find_exits_2_with_one_line(tmp_path, capsys):
    # Checked where it enters (jdl.lr_find), reported by the shared ValueError path.
    assert (
        main(
            [
                "lr-find",
                "--min-lr",
                "0.1",
                "--max-lr",
                "0.01",
                "--hidden",
                "4",
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m jaxopt_dl lr-find: error:")
    assert "max_lr" in err[0] or "min_lr" in err[0]


def test_lr_find_builds_the_optimizer_and_model_of_the_shared_registries(tmp_path):
    out = tmp_path / "lrf"
    assert (
        main(
            [
                "lr-find",
                "--optimizer",
                "momentum",
                "--momentum",
                "0.5",
                "--momentum-form",
                "trace",
                "--hidden",
                "8",
                "--num",
                "2",
                "--steps",
                "3",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    config = json.loads((out / "lr_find.json").read_text())["config"]
    assert config["optimizer_arguments"] == {"beta": 0.5, "form": "trace"}
    assert config["hidden"] == [8] and config["model"] == "mlp"
    # The factory of the record reproduces optax's trace-form momentum at any rate.
    factory = optimizer_factory(config, seed=0)
    params, grads = {"w": jnp.array([1.0, -2.0])}, {"w": jnp.array([0.3, -0.1])}
    tx, ref = factory(0.1), optax.sgd(0.1, momentum=0.5)
    state, ref_state = tx.init(params), ref.init(params)
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
        expected, ref_state = ref.update(grads, ref_state, params)
    np.testing.assert_allclose(updates["w"], expected["w"], rtol=1e-6)


def test_checkpoint_that_does_not_match_exits_2_with_one_line(tmp_path, capsys):
    common = [
        "train",
        "--epochs",
        "1",
        "--batch-size",
        "256",
        "--no-progress",
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
    ]
    assert main([*common, "--hidden", "16", "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    assert main([*common, "--hidden", "32", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--hidden [16] -> [32]" in err[0]


def config_for(*argv):
    return resolve_config(build_parser().parse_args(["train", *argv]))


@pytest.mark.parametrize(
    "argv, reference",
    [
        # lion's own (decoupled) weight decay, not an L2 term on top of it.
        (["--optimizer", "lion", "--weight-decay", "0.1"], optax.lion(1e-3, weight_decay=0.1)),
        (["--optimizer", "lion"], optax.lion(1e-3)),
        (["--optimizer", "adamw", "--weight-decay", "0.1"], optax.adamw(1e-3, weight_decay=0.1)),
        # Without a decay of its own the optimizer gets an L2 term added to the gradient.
        (
            ["--optimizer", "adam", "--weight-decay", "0.1"],
            optax.chain(optax.add_decayed_weights(0.1), optax.adam(1e-3)),
        ),
    ],
)
def test_weight_decay_is_the_optimizers_own_where_it_has_one(argv, reference):
    tx, _ = build_optimizer(config_for(*argv), steps_per_epoch=10, seed=0)
    params = {"w": jnp.array([1.0, -2.0, 0.5])}
    grads = {"w": jnp.array([0.3, 0.1, -0.2])}
    ours, ref_state, state = params, reference.init(params), tx.init(params)
    expected = params
    for _ in range(3):
        updates, state = tx.update(grads, state, ours)
        ours = jdl.apply_updates(ours, updates)
        ref_updates, ref_state = reference.update(grads, ref_state, expected)
        expected = optax.apply_updates(expected, ref_updates)
    np.testing.assert_allclose(ours["w"], expected["w"], rtol=1e-6)


def test_nonfinite_loss_stops_and_keeps_last_finite_params(tmp_path, capsys):
    rc = main(
        [
            "train",
            "--optimizer",
            "sgd",
            "--lr",
            "1e30",
            "--epochs",
            "2",
            "--batch-size",
            "256",
            "--max-nonfinite",
            "1",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "non-finite loss at step" in err and "gradient of" in err
    assert (tmp_path / "params.msgpack").exists()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "step" in metrics["error"]


@pytest.mark.parametrize("name", [n for n, e in jdl.registry.OPTIMIZERS.items() if not e.wraps])
def test_every_registry_optimizer_builds_from_the_command_line(name):
    config = config_for("--optimizer", name, "--lr", "0.01")
    tx = optimizer_factory(config, seed=0)(0.01)
    assert jdl.describe(tx).name == name


def test_opt_arg_reaches_any_argument_and_names_unknown_ones():
    config = config_for(
        "--optimizer",
        "radam",
        "--opt-arg",
        "decoupled_weight_decay=True",
        "--opt-arg",
        "weight_decay=0.01",
        "--b2",
        "0.99",
    )
    assert config["optimizer_arguments"] == {
        "b1": 0.9,
        "b2": 0.99,
        "eps": 1e-8,
        "decoupled_weight_decay": True,
        "weight_decay": 0.01,
    }
    hyperparams = jdl.describe(optimizer_factory(config, seed=0)(0.01)).hyperparams
    assert hyperparams["decoupled_weight_decay"] is True and hyperparams["b2"] == 0.99
    proc = cli("train", "--optimizer", "yogi", "--opt-arg", "nesterov=True")
    assert proc.returncode == 2
    assert "--opt-arg nesterov=... is not an argument of --optimizer yogi" in proc.stderr
