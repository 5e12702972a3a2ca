"""The learning-rate range test (jaxopt_dl.lr_finder): one vmapped program over a grid."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxopt_dl as jdl
from jaxopt_dl.lr_finder import suggest_learning_rate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def digits():
    (x, y), _ = jdl.data.load_digits(standardize="global")
    return x, y


def test_each_rate_is_an_independent_run_from_the_same_init(digits):
    """The vmapped grid equals running every rate alone with train_step, same batches."""
    x, y = digits
    model = jdl.models.MLP(hidden=(16,))
    res = jdl.lr_find(
        model, (x, y), jdl.adam, min_lr=1e-3, max_lr=1e-1, num=3, steps=12, batch_size=32, seed=3
    )
    indices = jdl.lr_finder._step_indices(len(x), 32, 12, seed=3)
    for lr, final, losses in zip(res.learning_rates, res.final_loss, res.losses):
        state = jdl.training.create_train_state(model, jdl.adam(lr), jax.random.key(3), x[:1])
        seen = []
        for idx in indices:
            state, metrics = jdl.training.train_step(state, (x[idx], y[idx]))
            seen.append(float(metrics["loss"]))
        sums = jdl.training.eval_step(state, (x, y))
        np.testing.assert_allclose(losses, seen, rtol=1e-4)
        np.testing.assert_allclose(final, float(sums["loss_sum"] / sums["weight"]), rtol=1e-4)


def test_large_rates_diverge_and_the_suggestion_is_below_the_best(digits):
    x, y = digits
    res = jdl.lr_find(
        jdl.models.MLP(hidden=(32,)), (x, y), jdl.sgd, min_lr=1e-3, max_lr=1e3, num=7, steps=30
    )
    assert res.diverged[-1] and not res.diverged[0]
    best = res.learning_rates[np.nanargmin(np.where(res.diverged, np.nan, res.final_loss))]
    assert res.suggestion == pytest.approx(best / 10)
    assert res.rule == "min_loss_div_10"
    assert set(res.suggestions) == set(jdl.lr_finder.RULES)
    data = json.loads(json.dumps(res.to_dict()))
    assert data["final_loss"][-1] is None or data["diverged"][-1]


def test_suggestion_rules_against_numpy():
    lrs = np.geomspace(1e-4, 1, 9)
    loss = np.array([2.3, 2.2, 1.9, 1.2, 0.5, 0.3, 0.4, np.nan, np.nan])
    assert suggest_learning_rate(lrs, loss) == pytest.approx(lrs[5] / 10)
    slope = np.gradient(loss[:6], np.log10(lrs[:6]))
    assert suggest_learning_rate(lrs, loss, "steepest") == pytest.approx(lrs[np.argmin(slope)])
    assert math.isnan(suggest_learning_rate(lrs[:2], [np.nan, 1.0]))
    with pytest.raises(ValueError, match="rule='valley'"):
        suggest_learning_rate(lrs, loss, "valley")


def test_sequential_ramp_is_geometric_and_stops_on_divergence(digits):
    x, y = digits
    res = jdl.lr_ramp(
        jdl.models.MLP(hidden=(16,)), (x, y), jdl.sgd, min_lr=1e-3, max_lr=1e4, num=60
    )
    ratios = res.learning_rates[1:] / res.learning_rates[:-1]
    np.testing.assert_allclose(ratios, (1e4 / 1e-3) ** (1 / 59), rtol=1e-9)
    assert len(res.losses) < 60  # stopped once the smoothed loss exceeded 4x its best
    assert res.seconds > 0


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(min_lr=0.0), "min_lr=0.0"),
        (dict(min_lr=1e-2, max_lr=1e-3), "max_lr=0.001"),
        (dict(num=1), "num=1"),
        (dict(steps=0), "steps=0"),
        (dict(rule="valley"), "rule='valley'"),
    ],
)
def test_bad_arguments(digits, kwargs, message):
    with pytest.raises(ValueError, match=message):
        jdl.lr_find(jdl.models.MLP(hidden=(4,)), digits, jdl.adam, **kwargs)


def test_cli_writes_plot_json_and_suggestion(tmp_path):
    out = tmp_path / "lrf"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxopt_dl",
            "lr-find",
            "--hidden",
            "16",
            "--num",
            "4",
            "--steps",
            "10",
            "--max-lr",
            "0.1",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "suggested learning rate" in proc.stdout
    data = json.loads((out / "lr_find.json").read_text())
    assert len(data["learning_rates"]) == 4 and data["rule"] == "min_loss_div_10"
    assert data["rule_description"] and data["config"]["optimizer"] == "adam"
    assert (out / "lr_find.png").stat().st_size > 0


def test_cli_refuses_an_unwritable_out_with_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    proc = subprocess.run(
        [sys.executable, "-m", "jaxopt_dl", "lr-find", "--out", str(blocker / "sub")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--out" in proc.stderr
