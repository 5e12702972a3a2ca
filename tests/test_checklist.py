"""The automated debugging checklist (jaxopt_dl.checklist): it passes a healthy MLP on
the digits and flags deliberately broken setups."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jaxopt_dl as jdl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def digits():
    (x, y), _ = jdl.data.load_digits(standardize="global")
    return x, y


def _small(**kwargs):
    return jdl.models.MLP(hidden=(64,), **kwargs)


def test_healthy_mlp_passes_and_the_report_is_written(digits, tmp_path):
    report = jdl.diagnose(jdl.models.MLP(), digits, jdl.adam(1e-3), out=str(tmp_path))
    assert report.ok, report.to_markdown()
    assert [item.name for item in report.items] == list(jdl.checklist.CHECKS)
    text = (tmp_path / "report.md").read_text()
    assert "K. Bipin" in text and "every item passes" in text
    data = json.loads((tmp_path / "diagnose.json").read_text())
    assert data["ok"] and len(data["items"]) == len(jdl.checklist.CHECKS)
    for path in report.figures.values():
        assert os.path.getsize(path) > 0
    assert report["initial_loss"].values["expected"] == pytest.approx(np.log(10))


def test_shifted_labels_are_flagged(digits):
    x, y = digits
    report = jdl.diagnose(_small(), (x, np.roll(y, 1)), jdl.adam(1e-3))
    assert report["learns"].status == "warn"
    assert "labels" in report["learns"].advice
    assert report["learns"].values["val_accuracy"] < 0.2


def test_dead_relu_init_is_flagged(digits):
    dead = _small(bias_init=lambda key, shape, dtype=jnp.float32: jnp.full(shape, -10.0, dtype))
    report = jdl.diagnose(dead, digits, jdl.adam(1e-3))
    for name in ("activations", "overfit_small_batch", "learns"):
        assert report[name].status == "warn", name
    assert report["activations"].values["before"]["dense_0_out"]["dead_fraction"] == 1.0


@pytest.mark.parametrize(
    "hidden,optimizer,diverges",
    [
        ((128, 64), jdl.sgd(20.0), True),
        ((64,), jdl.adam(3.0), False),
    ],
    ids=["sgd20", "adam3"],
)
def test_too_large_learning_rate_is_flagged(digits, hidden, optimizer, diverges):
    report = jdl.diagnose(jdl.models.MLP(hidden=hidden), digits, optimizer)
    assert report["update_ratio"].status == "warn"
    assert "lower the learning rate" in report["update_ratio"].advice
    assert report["learns"].status == "warn"
    item = report["nonfinite"]
    assert (item.status == "warn") == diverges
    if diverges:  # the first NaN/Inf is located: the step and the layer
        assert item.values["first"] and "step" in item.measured and "dense_" in item.measured


def test_over_confident_init_fails_the_initial_loss(digits):
    loud = _small(kernel_init=jdl.initializers.small_random(stddev=1.0), output_scale=1.0)
    report = jdl.diagnose(loud, digits, jdl.adam(1e-3), train_steps=20, overfit_steps=20)
    item = report["initial_loss"]
    assert item.status == "warn" and item.values["loss"] > 3 * np.log(10)


def test_the_default_init_passes_the_initial_loss_honestly_and_a_he_head_does_not(digits):
    # The models' logits layer starts at 0.25 x kernel_init: near-uniform predictions, the
    # initial loss within 6% of log 10 -- inside the 10% tolerance.
    report = jdl.diagnose(
        jdl.models.MLP(), digits, jdl.adam(1e-3), train_steps=10, overfit_steps=10
    )
    item = report["initial_loss"]
    assert item.status == "pass"
    assert abs(item.values["loss"] - np.log(10)) < 0.06 * np.log(10)
    assert jdl.checklist.INITIAL_LOSS_TOLERANCE == 0.1
    # A He-normal logits layer (output_scale=1) gives logits of std ~1.5 and a loss
    # of ~log 10 + sigma^2 / 2 ~ 3.3: over-confident, and the check says so.
    he_head = jdl.models.MLP(output_scale=1.0)
    item = jdl.diagnose(he_head, digits, jdl.adam(1e-3), train_steps=10, overfit_steps=10)[
        "initial_loss"
    ]
    assert item.status == "warn" and item.values["loss"] > 1.2 * np.log(10)
    assert "scale the last layer's initialization down" in item.advice


RAISE = re.compile(r"(larger|raise|higher|increase)[^.;]*learning rate")
LOWER = re.compile(r"(lower|smaller|decrease|reduce)[^.;]*learning rate")


@pytest.mark.parametrize(
    "optimizer, direction",
    [(jdl.sgd(5.0), "lower"), (jdl.adam(5.0), "lower"), (jdl.sgd(1e-5), "raise")],
    ids=["sgd5", "adam5", "sgd1e-5"],
)
def test_the_advice_never_contradicts_itself_about_the_learning_rate(digits, optimizer, direction):
    report = jdl.diagnose(jdl.models.MLP(), digits, optimizer, train_steps=60, overfit_steps=60)
    advice = [item.advice for item in report.items if item.advice]
    lowers = [text for text in advice if LOWER.search(text)]
    raises = [text for text in advice if RAISE.search(text)]
    assert report["update_ratio"].status == "warn"
    if direction == "lower":
        assert lowers and not raises, advice
    else:
        assert raises and not lowers, advice


def test_marginals_bias_expects_the_label_entropy(digits):
    x, y = digits
    fractions = np.array([0.3, 0.2, 0.1, 0.1, 0.08, 0.07, 0.05, 0.04, 0.03, 0.03])
    xs, ys = jdl.data.imbalanced(x, y, fractions)
    freqs = np.bincount(ys, minlength=10) / len(ys)
    model = _small(
        output_bias_init=jdl.initializers.bias_from_marginals(freqs),
        kernel_init=jdl.initializers.small_random(0.01),
    )
    report = jdl.diagnose(
        model, (xs, ys), jdl.adam(1e-3), val_data=(xs, ys), train_steps=10, overfit_steps=10
    )
    item = report["initial_loss"]
    assert item.values["marginals_bias"]
    assert item.values["expected"] == pytest.approx(scipy.stats.entropy(freqs), rel=1e-6)
    assert item.status == "pass" and abs(item.values["loss"] - item.values["expected"]) < 0.05


class _WrongGradient(nn.Module):
    """An MLP whose hidden activation has a hand-written backward pass that is off by 2x."""

    @nn.compact
    def __call__(self, x, train=False):
        @jax.custom_vjp
        def act(h):
            return jnp.tanh(h)

        act.defvjp(lambda h: (jnp.tanh(h), h), lambda h, g: (2 * g * (1 - jnp.tanh(h) ** 2),))
        h = act(nn.Dense(16)(x))
        self.sow("intermediates", "dense_out", h)
        return nn.Dense(10, name="logits")(h)


def test_wrong_gradient_is_flagged(digits):
    report = jdl.diagnose(
        _WrongGradient(), digits, jdl.adam(1e-3), train_steps=10, overfit_steps=10
    )
    item = report["gradient_check"]
    assert item.status == "warn" and item.values["max_relative_error"] > 0.1
    assert "Dense_0" in item.measured


def test_bad_arguments(digits):
    with pytest.raises(ValueError, match="overfit_steps=0"):
        jdl.diagnose(_small(), digits, jdl.adam(1e-3), overfit_steps=0)


def test_cli_writes_the_report(tmp_path):
    out = tmp_path / "diag"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxopt_dl",
            "diagnose",
            "--hidden",
            "32",
            "--steps",
            "40",
            "--overfit-steps",
            "300",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr  # every item passes: exit 0
    assert "Initial loss" in proc.stdout and "report.md" in proc.stdout
    assert "| Initial loss |" in (out / "report.md").read_text()
    assert (out / "update_ratio.png").exists()
