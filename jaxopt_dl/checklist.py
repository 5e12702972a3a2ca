"""The lectures' debugging checklist, automated for a classifier and a data set.

K. Bipin's "Deep Learning, Lecture 6 — Optimization" (Debugging Strategies, after
S. Ivanov's "37 Reasons why your Neural Network is not working" and A. Karpathy's "A
Recipe for Training Neural Networks") lists what to check when a network does not
train; "Deep Learning Note 2 — Part 2: Optimization" (notes on Andrew Ng's Deep
Learning Specialization) adds gradient checking. :func:`diagnose` runs those checks
on a model, an optimizer and a data set and returns a :class:`DiagnoseReport` (pass /
warn per item, what was measured, what to try next), which it can write as Markdown
with figures:

1. ``initial_loss`` -- the loss at initialization is ``log C`` for ``C`` balanced
   classes (the entropy of the label marginals when the output bias is initialized
   from them);
2. ``overfit_small_batch`` -- the model drives the loss of a handful of examples to
   zero ("Overfit to 10 samples, accuracy should be near 100%");
3. ``gradient_check`` -- autodiff agrees with centered differences on a subset;
4. ``update_ratio`` -- per layer ``||delta W|| / ||W||`` is near 1e-3 ("the magnitude
   of the updates to the parameters should be 1e-3");
5. ``activations`` -- hidden activations have a standard deviation "on the order of
   0.5 to 2.0" and few dead units (dead ReLUs);
6. ``learns`` -- a short training run lowers the loss and beats chance on held-out
   data ("make sure input is connected to output");
7. ``nonfinite`` -- the first NaN/Inf, with the step and the layer ("evaluate your
   network layer by layer and see where the NaNs appear").

The advice about the learning rate is one verdict shared by every item
(:func:`learning_rate_verdict`): "lower it" when the updates are far above 1e-3 of the
weights or a NaN/Inf appeared, "raise it" when every layer's updates are far below,
and no direction otherwise; no item contradicts another.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxopt_dl._core import GradientTransformation
from jaxopt_dl.diagnostics import gradient_check as _gradient_check
from jaxopt_dl.training.loop import epoch_indices
from jaxopt_dl.training.modules import check_linen
from jaxopt_dl.training.state import TrainState, create_train_state
from jaxopt_dl.training.steps import cross_entropy, train_step_fn

__all__ = [
    "CHECKS",
    "learning_rate_verdict",
    "CheckItem",
    "DiagnoseReport",
    "diagnose",
]

CHECKS = (
    "initial_loss",
    "overfit_small_batch",
    "gradient_check",
    "update_ratio",
    "activations",
    "learns",
    "nonfinite",
)
"""The items of the checklist, in the order :func:`diagnose` reports them."""

UPDATE_RATIO_BAND = (1e-4, 3e-2)
"""A per-layer median ``||delta W|| / ||W||`` (over the first :data:`EARLY_STEPS` steps
or over the whole short run) outside this band warns (target ~1e-3)."""
EARLY_STEPS = 10
"""The first steps of the short run, whose ratios show the learning rate before the
weights themselves have moved."""
ACTIVATION_STD_BAND = (0.1, 10.0)
"""A hidden activation std outside this band warns (lecture's healthy range 0.5-2)."""
MAX_DEAD_FRACTION = 0.25
"""A layer with more than this fraction of units never active on a batch warns."""
INITIAL_LOSS_TOLERANCE = 0.1
"""The initial loss warns beyond ``(1 +- tolerance) * expected``.

Logits of standard deviation ``sigma`` at initialization raise the expected loss above
``log C`` by about ``sigma^2 / 2 * (1 - 1/C)``; 10% of ``log 10`` allows ``sigma``
up to about 0.7, i.e. predictions still close to uniform. The models of
:mod:`jaxopt_dl.models` start their logits layer at ``output_scale=0.25`` times the
kernel initializer (He normal): logits of standard deviation about 0.4 on the
standardized digits, an initial loss within about 5% of ``log 10``. A He-normal logits
layer (``output_scale=1``: std about 1.5, loss about 3.3) warns, as it should: its
predictions start over-confident. (A much smaller scale would make the first Adam
updates of the logits layer large relative to its weights, which the update/weight
ratio item reports.)"""

_BIPIN = 'K. Bipin, "Deep Learning, Lecture 6 — Optimization" (Debugging Strategies)'
_NG = (
    '"Deep Learning Note 2 — Part 2: Optimization" (notes on Andrew Ng\'s Deep '
    "Learning Specialization, Course 2), Gradient check"
)
_PETERSEN = 'J. Petersen, "Optimization in Deep Learning" (parameter initialization)'
_KARPATHY = 'A. Karpathy, "A Recipe for Training Neural Networks" (2019), quoted by ' + _BIPIN


@dataclasses.dataclass(frozen=True)
class CheckItem:
    """One item of the checklist.

    Attributes:
      name: the item's key (one of :data:`CHECKS`).
      title: a one-line description.
      status: ``"pass"`` or ``"warn"``.
      measured: what was measured, in words and numbers.
      expected: what a healthy setup gives.
      advice: what to try next (empty when the item passes).
      source: the lecture (and original) the check comes from.
      values: the numbers behind ``measured`` (JSON-ready).
    """

    name: str
    title: str
    status: str
    measured: str
    expected: str
    advice: str
    source: str
    values: dict


@dataclasses.dataclass(frozen=True)
class DiagnoseReport:
    """The outcome of :func:`diagnose`.

    Attributes:
      items: one :class:`CheckItem` per entry of :data:`CHECKS`.
      figures: ``{name: path}`` of the figures written (empty without ``out``).
      setup: a description of the model, optimizer and data.
    """

    items: tuple
    figures: dict
    setup: dict

    def __getitem__(self, name: str) -> CheckItem:
        for item in self.items:
            if item.name == name:
                return item
        raise KeyError(f"no check named {name!r}; the checks are {CHECKS}")

    @property
    def warnings(self) -> list:
        """The names of the items that warn."""
        return [item.name for item in self.items if item.status == "warn"]

    @property
    def ok(self) -> bool:
        """True when every item passes."""
        return not self.warnings

    def to_dict(self) -> dict:
        """A JSON-ready dict of the report."""
        return {
            "setup": self.setup,
            "figures": self.figures,
            "ok": self.ok,
            "items": [dataclasses.asdict(item) for item in self.items],
        }

    def to_markdown(self) -> str:
        """The report as Markdown: a summary table, then one section per item."""
        lines = [
            "# Debugging checklist",
            "",
            "The checks of " + _BIPIN + " and of " + _NG + ", run on:",
            "",
        ]
        lines += [f"- **{k}**: {v}" for k, v in self.setup.items()]
        verdict = (
            "every item passes"
            if self.ok
            else f"{len(self.warnings)} of {len(self.items)} items warn: "
            + ", ".join(self.warnings)
        )
        lines += [
            "",
            f"**Result: {verdict}.**",
            "",
            "| item | status | measured | expected |",
            "|---|---|---|---|",
        ]
        for item in self.items:
            mark = "pass" if item.status == "pass" else "**WARN**"
            lines.append(f"| {item.title} | {mark} | {item.measured} | {item.expected} |")
        for item in self.items:
            lines += [
                "",
                f"## {item.title} — {item.status}",
                "",
                f"Measured: {item.measured}",
                "",
                f"Expected: {item.expected}",
                "",
            ]
            if item.advice:
                lines += [f"What to try next: {item.advice}", ""]
            lines.append(f"Source: {item.source}.")
            figure = self.figures.get(item.name)
            if figure:
                lines += ["", f"![{item.name}]({os.path.basename(figure)})"]
        return "\n".join(lines) + "\n"


def _item(name, title, ok, measured, expected_text, advice, source, **values) -> CheckItem:
    return CheckItem(
        name,
        title,
        "pass" if ok else "warn",
        measured,
        expected_text,
        "" if ok else advice,
        source,
        values,
    )


# --------------------------------------------------------------------------
# Measurements (jitted)
# --------------------------------------------------------------------------


def _kernel_paths(params: Any) -> list:
    """Paths and leaf indices of the weight matrices (ndim >= 2), in leaf order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return [
        (i, jax.tree_util.keystr(path, simple=True, separator="/"))
        for i, (path, leaf) in enumerate(flat)
        if jnp.ndim(leaf) >= 2
    ]


def _leaf_path(params: Any, index: int) -> str:
    flat, _ = jax.tree_util.tree_flatten_with_path(params)
    return jax.tree_util.keystr(flat[index][0], simple=True, separator="/")


@jax.jit
def _run(state: TrainState, x, y, indices):
    """Train on ``x[indices[t]]`` for every ``t``; per step: loss, finiteness, bad leaf,
    and the update/weight ratio of every weight matrix."""
    kernels = [i for i, leaf in enumerate(jax.tree.leaves(state.params)) if leaf.ndim >= 2]

    def norm(a):
        return jnp.sqrt(jnp.sum(jnp.square(a.astype(jnp.float32))))

    def step(state, idx):
        new, metrics = train_step_fn(state, (x[idx], y[idx]))
        old_leaves, new_leaves = jax.tree.leaves(state.params), jax.tree.leaves(new.params)
        ratios = jnp.stack(
            [norm(new_leaves[i] - old_leaves[i]) / (norm(old_leaves[i]) + 1e-12) for i in kernels]
        )
        return new, (metrics["loss"], metrics["finite"], new.nonfinite_leaf, ratios)

    return jax.lax.scan(step, state, indices)


@jax.jit
def _evaluate(state: TrainState, x, y):
    logits, collected = state.apply_fn(state.variables(), x, train=False, mutable=["intermediates"])
    loss_sum, correct, weight = cross_entropy(logits, y)
    return loss_sum / weight, correct / weight, collected.get("intermediates", {})


def _hidden_activations(intermediates: Any) -> dict:
    """``{layer: (batch, units) array}`` of the sown hidden activations (not the logits)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(intermediates)
    out = {}
    for path, value in flat:
        name = jax.tree_util.keystr(path, simple=True, separator="/")
        if "logits" in name:
            continue
        value = np.asarray(value, np.float64)
        out[name.removesuffix("/0")] = value.reshape(value.shape[0], -1)
    return out


def _activation_summary(acts: dict) -> dict:
    return {
        name: {
            "mean": float(a.mean()),
            "std": float(a.std()),
            "dead_fraction": float(np.mean(np.all(a <= 0, axis=0))),
        }
        for name, a in acts.items()
    }


# --------------------------------------------------------------------------
# The checklist
# --------------------------------------------------------------------------


def diagnose(
    model: Any,
    train_data: tuple,
    optimizer: GradientTransformation,
    *,
    val_data: Optional[tuple] = None,
    marginals_bias: Optional[bool] = None,
    overfit_examples: int = 10,
    overfit_steps: int = 200,
    train_steps: int = 150,
    batch_size: int = 64,
    gradient_check_examples: int = 8,
    seed: int = 0,
    out: Optional[str] = None,
) -> DiagnoseReport:
    """Run the debugging checklist of the lectures on a classifier and its data.

    Builds the training state as ``create_train_state(model, optimizer, key(seed),
    x[:1])`` and measures, without changing anything the caller holds: the initial
    loss; a run of ``overfit_steps`` full-batch steps on ``overfit_examples`` training
    examples; a float64 gradient check on ``gradient_check_examples`` examples
    (``jaxopt_dl.gradient_check``); a run of ``train_steps`` minibatch steps on the
    training data, which gives the per-layer update/weight ratios, the first
    non-finite value and the held-out accuracy; and the hidden activations (their
    mean, standard deviation and dead-unit fraction) at initialization and after that
    run. Each item passes or warns with what to try next (see :data:`CHECKS` and the
    module docstring; thresholds :data:`UPDATE_RATIO_BAND`,
    :data:`ACTIVATION_STD_BAND`, :data:`MAX_DEAD_FRACTION`,
    :data:`INITIAL_LOSS_TOLERANCE`).

    Activations are those the model sows into ``"intermediates"`` (the models of
    ``jaxopt_dl.models`` sow every hidden layer's output).

    Args:
      model: a Linen classifier, with or without a ``train`` argument (see
        :func:`jaxopt_dl.training.model_apply`).
      train_data: ``(x, y)`` with integer labels ``0..C-1``.
      optimizer: the optimizer to diagnose (a ``GradientTransformation``).
      val_data: held-out ``(x, y)`` for the ``learns`` item; default: a stratified 20%
        of ``train_data`` held out (the runs then train on the other 80%).
      marginals_bias: whether the output bias starts at the log label marginals (then
        the expected initial loss is the label entropy, not ``log C``); ``None``
        detects a nonzero ``params["logits"]["bias"]``.
      overfit_examples: examples of the small batch to overfit (the lecture: 1-10).
      overfit_steps: full-batch steps on the small batch.
      train_steps: minibatch steps of the short training run.
      batch_size: examples per step of the short run.
      gradient_check_examples: examples in the gradient check's loss.
      seed: seed of the initialization, the split and the minibatches.
      out: a folder to write ``report.md``, ``diagnose.json`` and the figures to, or
        None to write nothing.

    Returns:
      A :class:`DiagnoseReport`.

    Example:
      >>> import jaxopt_dl as jdl
      >>> (x, y), _ = jdl.data.load_digits(standardize="global")
      >>> report = jdl.diagnose(jdl.models.MLP(hidden=(32,)), (x, y), jdl.adam(1e-3),
      ...                       overfit_steps=100, train_steps=50)
      >>> [item.name for item in report.items][:2]
      ['initial_loss', 'overfit_small_batch']

    References:
      K. Bipin, "Deep Learning, Lecture 6 — Optimization" (How to Start; Debugging
      Strategies), after S. Ivanov, "37 Reasons why your Neural Network is not
      working" (2017), and A. Karpathy, "A Recipe for Training Neural Networks" (2019);
      "Deep Learning Note 2 — Part 2: Optimization" (Andrew Ng's course, Gradient
      check); J. Petersen, "Optimization in Deep Learning" (initialization).
    """
    for name, value in (
        ("overfit_examples", overfit_examples),
        ("overfit_steps", overfit_steps),
        ("train_steps", train_steps),
        ("batch_size", batch_size),
        ("gradient_check_examples", gradient_check_examples),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {name}={value!r}")
    check_linen(model)
    x, y = np.asarray(train_data[0]), np.asarray(train_data[1])
    if val_data is None:
        from sklearn.model_selection import train_test_split

        x, vx, y, vy = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    else:
        vx, vy = np.asarray(val_data[0]), np.asarray(val_data[1])
    state = create_train_state(model, optimizer, jax.random.key(seed), x[:1])
    probe = x[: min(len(x), 512)], y[: min(len(y), 512)]
    loss0, _, inter0 = _evaluate(state, *probe)
    num_classes = int(
        jax.eval_shape(
            lambda s: s.apply_fn(s.variables(), jnp.asarray(x[:1]), train=False), state
        ).shape[-1]
    )

    overfit_idx = np.tile(np.arange(min(overfit_examples, len(x))), (overfit_steps, 1))
    overfit_state, (overfit_loss, overfit_finite, overfit_leaf, _) = _run(state, x, y, overfit_idx)
    overfit_eval = _evaluate(overfit_state, x[overfit_idx[0]], y[overfit_idx[0]])

    steps_per_epoch = len(x) // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size must be at most {len(x)}, got batch_size={batch_size}")
    epochs = -(-train_steps // steps_per_epoch)
    run_idx = np.concatenate(
        [epoch_indices(len(x), batch_size, seed, e)[0] for e in range(epochs)]
    )[:train_steps]
    trained, (run_loss, run_finite, run_leaf, ratios) = _run(state, x, y, run_idx)
    val_loss, val_acc, _ = _evaluate(trained, vx, vy)
    _, _, inter1 = _evaluate(trained, *probe)

    verdict = learning_rate_verdict(
        np.asarray(ratios),
        np.concatenate([np.asarray(run_finite), np.asarray(overfit_finite)]),
    )
    items = [
        _check_initial_loss(float(loss0), num_classes, y, state.params, marginals_bias),
        _check_overfit(np.asarray(overfit_loss), overfit_eval, len(overfit_idx[0]), verdict),
        _check_gradients(state, x[:gradient_check_examples], y[:gradient_check_examples]),
        _check_update_ratio(
            np.asarray(ratios),
            np.asarray(run_finite),
            [p for _, p in _kernel_paths(state.params)],
            verdict,
        ),
        _check_activations(
            _activation_summary(_hidden_activations(inter0)),
            _activation_summary(_hidden_activations(inter1)),
            verdict,
        ),
        _check_learns(
            np.asarray(run_loss),
            float(loss0),
            float(val_loss),
            float(val_acc),
            num_classes,
            verdict,
        ),
        _check_nonfinite(
            state.params,
            [
                ("the small-batch run", np.asarray(overfit_finite), np.asarray(overfit_leaf)),
                ("the short training run", np.asarray(run_finite), np.asarray(run_leaf)),
            ],
        ),
    ]
    setup = {
        "model": type(model).__name__,
        "parameters": int(sum(np.size(p) for p in jax.tree.leaves(state.params))),
        "classes": num_classes,
        "training examples": len(x),
        "held-out examples": len(vx),
        "optimizer": _describe_optimizer(optimizer),
        "seed": seed,
    }
    figures = {}
    if out is not None:
        os.makedirs(out, exist_ok=True)
        figures = _figures(
            out,
            _hidden_activations(inter0),
            _hidden_activations(inter1),
            np.asarray(overfit_loss),
            np.asarray(run_loss),
            np.asarray(ratios),
            [p for _, p in _kernel_paths(state.params)],
        )
    report = DiagnoseReport(tuple(items), figures, setup)
    if out is not None:
        with open(os.path.join(out, "report.md"), "w") as f:
            f.write(report.to_markdown())
        with open(os.path.join(out, "diagnose.json"), "w") as f:
            json.dump(report.to_dict(), f, indent=1)
    return report


def _describe_optimizer(optimizer: GradientTransformation) -> str:
    from jaxopt_dl import _core

    description = _core.describe(optimizer)
    if description.name:
        args = ", ".join(
            f"{k}={v!r}" for k, v in description.hyperparams.items() if not callable(v)
        )
        return f"{description.name}({args})"
    return "a GradientTransformation"


def learning_rate_verdict(ratios: np.ndarray, finite: np.ndarray) -> Optional[str]:
    """The one direction every item's advice gives for the learning rate.

    Args:
      ratios: ``(steps, layers)`` update/weight ratios of the short run.
      finite: ``(steps,)`` whether each step of the runs was finite (all runs).

    Returns:
      ``"lower"`` when a NaN/Inf appeared or some layer's median ratio is above
      :data:`UPDATE_RATIO_BAND`; ``"raise"`` when every layer's median is below it;
      ``None`` otherwise.
    """
    low, high = UPDATE_RATIO_BAND
    kept = ratios[np.asarray(finite[: len(ratios)], bool)] if np.any(finite) else ratios
    medians = [float(np.median(kept[:EARLY_STEPS, i])) for i in range(kept.shape[1])] + [
        float(np.median(kept[:, i])) for i in range(kept.shape[1])
    ]
    if not np.all(finite) or any(not m <= high for m in medians):
        return "lower"
    if medians and all(m < low for m in medians):
        return "raise"
    return None


def _rate_advice(verdict: Optional[str]) -> str:
    """The learning-rate clause of an item's advice under the shared verdict."""
    if verdict == "lower":
        return "lower the learning rate (try 0.1x, or run `python -m jaxopt_dl lr-find`)"
    if verdict == "raise":
        return "raise the learning rate (try 10x, or run `python -m jaxopt_dl lr-find`)"
    return "check the learning rate (`python -m jaxopt_dl lr-find`)"


def _check_initial_loss(loss0, num_classes, y, params, marginals_bias) -> CheckItem:
    if marginals_bias is None:
        bias = params.get("logits", {}).get("bias") if hasattr(params, "get") else None
        marginals_bias = bias is not None and bool(np.any(np.asarray(bias) != 0))
    if marginals_bias:
        freqs = np.bincount(y, minlength=num_classes) / len(y)
        freqs = freqs[freqs > 0]
        expected = float(-(freqs * np.log(freqs)).sum())
        what = f"the label entropy {expected:.3f} (output bias from the label marginals)"
    else:
        expected = math.log(num_classes)
        what = f"log C = log {num_classes} = {expected:.3f}"
    ok = abs(loss0 - expected) <= INITIAL_LOSS_TOLERANCE * expected
    return _item(
        "initial_loss",
        "Initial loss",
        ok,
        f"{loss0:.3f} at initialization",
        f"{what}, within {INITIAL_LOSS_TOLERANCE:.0%}",
        "a much larger loss means over-confident initial logits: scale the last layer's "
        "initialization down (or zero it), check the input standardization and the "
        "weight initialization (Xavier/He); a much smaller one hints at labels leaking "
        "into the inputs or a wrong loss (softmax applied twice, wrong labels).",
        f"{_KARPATHY}; {_PETERSEN}",
        loss=loss0,
        expected=expected,
        marginals_bias=bool(marginals_bias),
    )


def _check_overfit(losses, evaluation, n, verdict) -> CheckItem:
    final_loss, accuracy = float(evaluation[0]), float(evaluation[1])
    ok = accuracy == 1.0 and final_loss < 0.1
    return _item(
        "overfit_small_batch",
        "Overfits a small batch",
        ok,
        f"after {len(losses)} steps on {n} examples: loss {final_loss:.4f}, "
        f"accuracy {accuracy:.0%}",
        "accuracy 100% and loss below 0.1",
        "the model cannot fit even a handful of examples: check that the labels belong "
        "to the inputs, that no layer is frozen or dead, that the loss gets logits "
        f"(not probabilities); {_rate_advice(verdict)}; turn off regularization "
        "(dropout, weight decay) for this test.",
        f'{_BIPIN}: "Overfit to 10 samples, accuracy should be near 100%"',
        loss=final_loss,
        accuracy=accuracy,
        examples=n,
        steps=len(losses),
    )


def _check_gradients(state: TrainState, x, y) -> CheckItem:
    x, y = np.asarray(x, np.float64), np.asarray(y)

    def loss(params):
        logits = state.apply_fn(state.variables(params), x, train=False)
        total, _, weight = cross_entropy(logits, y)
        return total / weight

    result = _gradient_check(loss, state.params, tolerance=1e-5)
    worst = max(result.errors, key=result.errors.get) if result.errors else "-"
    ok = result.max_relative_error <= 1e-5
    return _item(
        "gradient_check",
        "Gradient check",
        ok,
        f"largest relative error {result.max_relative_error:.1e} ({worst}) on {len(x)} examples",
        "at most 1e-5 (about 1e-7 is great, 1e-3 is wrong)",
        "autodiff disagrees with centered differences: a custom layer or loss may have "
        "a wrong gradient (a stop_gradient, a non-differentiable op, a float32-only "
        "operation); check the layer named above in isolation.",
        _NG,
        max_relative_error=result.max_relative_error,
        errors=result.errors,
    )


def _check_update_ratio(ratios, finite, paths, verdict) -> CheckItem:
    kept = ratios[finite] if finite.any() else ratios
    early = kept[:EARLY_STEPS]
    medians = {p: float(np.median(kept[:, i])) for i, p in enumerate(paths)}
    early_medians = {p: float(np.median(early[:, i])) for i, p in enumerate(paths)}
    low, high = UPDATE_RATIO_BAND
    values = list(medians.values()) + list(early_medians.values())
    ok = all(low <= r <= high for r in values)
    text = ", ".join(f"{p} {early_medians[p]:.1e} / {medians[p]:.1e}" for p in paths)
    if any(not v <= high for v in values):  # a NaN ratio: the weights blew up
        advice = (
            f"updates far above 1e-3 of the weights: {_rate_advice(verdict)}, or clip gradients."
        )
    elif verdict == "lower":  # small updates, but a NaN/Inf: the rate is not what to raise
        advice = (
            "updates far below 1e-3 of the weights in some layers, but a NaN/Inf appeared: "
            "fix that first (see the NaN/Inf item), then check for frozen layers or dead "
            "units feeding the layer."
        )
    else:
        advice = (
            f"updates far below 1e-3 of the weights: {_rate_advice(verdict)}, and check "
            "for frozen layers or dead units feeding the layer."
        )
    return _item(
        "update_ratio",
        "Update/weight ratio per layer",
        ok,
        f"median over the first {len(early)} steps / over the whole short run: {text}",
        f"about 1e-3 (warn outside {low:.0e} to {high:.0e})",
        advice,
        f'{_BIPIN}: "the magnitude of the updates to the parameters should be 1e-3"',
        early_medians=early_medians,
        medians=medians,
    )


def _check_activations(before, after, verdict) -> CheckItem:
    low, high = ACTIVATION_STD_BAND
    problems = []
    for when, stats in (("at init", before), ("after training", after)):
        for name, s in stats.items():
            if not low <= s["std"] <= high:
                problems.append(f"{name} std {s['std']:.2g} {when}")
            if s["dead_fraction"] > MAX_DEAD_FRACTION:
                problems.append(f"{name} {s['dead_fraction']:.0%} dead units {when}")
    text = (
        "; ".join(
            f"{name}: std {before[name]['std']:.2f} -> {after[name]['std']:.2f}, dead "
            f"{before[name]['dead_fraction']:.0%} -> {after[name]['dead_fraction']:.0%}"
            for name in before
        )
        or "no hidden activations recorded"
    )
    return _item(
        "activations",
        "Activation statistics and dead units",
        not problems,
        text + ("" if not problems else f" (problems: {'; '.join(problems)})"),
        f"std of order 0.5-2 (warn outside {low}-{high}), at most "
        f"{MAX_DEAD_FRACTION:.0%} dead units per layer",
        "dead or saturated units stop the gradient: use He initialization with ReLU, "
        "zero (not negative) biases, "
        + ("a smaller learning rate (large steps kill ReLUs), " if verdict == "lower" else "")
        + "batch norm, or leaky ReLU/ELU.",
        f'{_BIPIN}: "A good standard deviation for the activations is on the order of '
        f'0.5 to 2.0"; {_PETERSEN}',
        before=before,
        after=after,
    )


def _check_learns(losses, loss0, val_loss, val_acc, num_classes, verdict) -> CheckItem:
    tail = losses[-max(1, len(losses) // 10) :]
    final = float(np.mean(tail)) if np.isfinite(tail).all() else float("nan")
    chance = 1 / num_classes
    ok = final < 0.9 * loss0 and val_acc >= 2 * chance
    return _item(
        "learns",
        "Learns something that generalizes",
        ok,
        f"training loss {loss0:.3f} -> {final:.3f} in {len(losses)} steps; held-out "
        f"accuracy {val_acc:.1%} (loss {val_loss:.3f})",
        f"training loss below 90% of its initial value and held-out accuracy at least "
        f"twice chance ({2 * chance:.0%})",
        "the training loss does not fall or nothing carries over to held-out data: check "
        "that inputs and labels are shuffled together and aligned (shifted labels look "
        f"like this), that the inputs are standardized; {_rate_advice(verdict)}.",
        f'{_BIPIN}: "Make sure input is connected to output"',
        initial_loss=loss0,
        final_loss=final,
        val_loss=val_loss,
        val_accuracy=val_acc,
    )


def _check_nonfinite(params, runs) -> CheckItem:
    found = []
    for what, finite, leaf in runs:
        bad = np.flatnonzero(~finite)
        if len(bad):
            step = int(bad[0])
            index = int(leaf[step])
            where = _leaf_path(params, index) if index >= 0 else "the loss"
            found.append(f"step {step + 1} of {what}, first in {where}")
    return _item(
        "nonfinite",
        "No NaN/Inf",
        not found,
        "; ".join(found) or "every loss and gradient finite",
        "no NaN/Inf in any loss or gradient",
        "lower the learning rate (especially with NaNs in the first 100 steps), clip "
        "gradients, and look for a division by zero or a log of zero or of a negative "
        "number in the layer named above.",
        f'{_BIPIN}: "Overcoming NaNs"',
        first=found,
    )


def _figures(out, acts0, acts1, overfit_loss, run_loss, ratios, paths) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = {}
    if acts0:
        fig, axes = plt.subplots(1, len(acts0), figsize=(4 * len(acts0), 3), squeeze=False)
        for ax, name in zip(axes[0], acts0):
            ax.hist(acts0[name].ravel(), bins=50, alpha=0.6, label="init")
            ax.hist(acts1[name].ravel(), bins=50, alpha=0.6, label="after short run")
            ax.set_title(name, fontsize=8)
            ax.set_yscale("log")
        axes[0][0].legend(fontsize=7)
        figures["activations"] = _save(fig, out, "activations.png")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(np.arange(1, len(overfit_loss) + 1), overfit_loss, label="small batch")
    ax.plot(np.arange(1, len(run_loss) + 1), run_loss, label="short training run")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend(fontsize=7)
    figures["overfit_small_batch"] = figures["learns"] = _save(fig, out, "loss.png")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = np.arange(1, len(ratios) + 1)
    for i, path in enumerate(paths):
        ax.plot(steps, np.where(ratios[:, i] > 0, ratios[:, i], np.nan), label=path)
    ax.axhline(1e-3, color="gray", ls=":", label="1e-3")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("||update|| / ||weight||")
    ax.legend(fontsize=7)
    figures["update_ratio"] = _save(fig, out, "update_ratio.png")
    return figures


def _save(fig, out, name) -> str:
    import matplotlib.pyplot as plt

    path = os.path.join(out, name)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
