"""``train --dataset mnist1d`` with the 1-D models, run as a user runs it: a new process, piped."""

import json
import os
import subprocess
import sys
from pathlib import Path

import flax.serialization
import jax
import numpy as np
import pytest

import jaxopt_dl as jdl

ROOT = Path(__file__).resolve().parents[1]


def cli(*argv):
    return subprocess.run(
        [sys.executable, "-m", "jaxopt_dl", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
        check=False,
    )


@pytest.mark.parametrize("model", ["cnn1d", "gru"])
def test_train_on_mnist1d_writes_a_record_of_the_dataset_and_a_learned_model(model, tmp_path):
    out = tmp_path / model
    result = cli(
        "train",
        "--dataset",
        "mnist1d",
        "--model",
        model,
        "--epochs",
        "2",
        "--lr",
        "0.01",
        "--batch-size",
        "100",
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "metrics.json").read_text())
    assert record["config"]["dataset"] == "mnist1d" and record["config"]["model"] == model
    # 3,600 training sequences after the 10% validation split, batches of 100
    assert record["history"]["steps_per_epoch"] == [36, 36]
    assert len(record["history"]["step_loss"]) == 72
    # better than chance on the 1,000 test sequences
    assert record["test_accuracy"] > 0.2
    # the saved params are the model's: they restore into a fresh CNN1D / GRU
    model = {"cnn1d": jdl.models.CNN1D(), "gru": jdl.models.GRU()}[model]
    template = model.init(jax.random.key(0), np.zeros((1, 40), np.float32), train=False)
    params = flax.serialization.msgpack_restore((out / "params.msgpack").read_bytes())
    assert jax.tree.structure(params) == jax.tree.structure(template["params"])
    assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(params))


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--model", "cnn"], "--model cnn reads square images"),
        (["--model", "resnet"], "--model resnet reads square images"),
        (["--model", "gru", "--batchnorm"], "--batchnorm does not apply to --model gru"),
    ],
)
def test_models_that_do_not_fit_mnist1d_exit_2_with_one_line(argv, needle, tmp_path):
    result = cli("train", "--dataset", "mnist1d", *argv, "--out", str(tmp_path))
    assert result.returncode == 2
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
