"""The main job: python -m jaxopt_dl train ..."""

import json
import subprocess
import sys

import pytest

from jaxopt_dl.__main__ import OPTIMIZERS, main


def test_train_writes_metrics_curves_and_params(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--model", "mlp", "--optimizer", "nesterov", "--momentum", "0.9",
               "--lr", "0.05", "--epochs", "1", "--batch-size", "32", "--schedule", "cosine",
               "--clip-norm", "5.0", "--out", str(out), "--no-progress"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.8 < metrics["test_accuracy"] <= 1.0
    assert metrics["config"]["optimizer"] == "nesterov"
    assert len(metrics["history"]["step_loss"]) == 1437 // 32
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "params.msgpack").stat().st_size > 0
    assert str(out / "metrics.json") in capsys.readouterr().out


def test_bad_optimizer_name_exits_2_with_one_line_listing_choices():
    proc = subprocess.run(
        [sys.executable, "-m", "jaxopt_dl", "train", "--optimizer", "adamz"],
        capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert all(name in lines[0] for name in OPTIMIZERS)


@pytest.mark.parametrize("argv, needle", [
    (["--model", "vgg"], "resnet"),
    (["--epochs", "0"], "epochs"),
    (["--lr", "-1"], "learning_rate"),
    (["--optimizer", "adam", "--b1", "1.5"], "b1"),
    (["--dropout", "1.5"], "dropout"),
])
def test_bad_values_exit_2_with_one_line(argv, needle, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        sys.exit(main(["train", "--epochs", "1", "--out", str(tmp_path), "--no-progress", *argv]))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_nonfinite_loss_stops_and_keeps_last_finite_params(tmp_path, capsys):
    rc = main(["train", "--optimizer", "sgd", "--lr", "1e30", "--epochs", "2",
               "--batch-size", "256", "--max-nonfinite", "1", "--out", str(tmp_path),
               "--no-progress"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "non-finite loss at step" in err and "gradient of" in err
    assert (tmp_path / "params.msgpack").exists()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert "step" in metrics["error"]
