"""A small optimizer benchmark set in the spirit of DeepOBS's small set.

Run the library's optimizers (the baselines):

    python -m benchmarks.optimizer_set [--quick]

or your own optimizer against the committed baselines, either any ``jaxopt_dl``
optimizer by name or any importable ``learning_rate -> GradientTransformation`` factory:

    python -m benchmarks.optimizer_set --optimizer nadam [--quick]
    python -m benchmarks.optimizer_set --optimizer mypackage.module:my_factory [--quick]

or, from Python, :func:`run_optimizer_set` with ``{name: factory}``.

Problems (Schneider, Balles & Hennig 2019, "DeepOBS: A Deep Learning Optimizer
Benchmark Suite", for the first; the others are this library's datasets):

* ``quadratic_deep``: ``0.5 (theta - x)^T Q (theta - x)`` in 100 dimensions, ``Q`` a
  random rotation of a diagonal with 90 eigenvalues drawn from U(0, 1) and 10 from
  U(30, 60); the "data" ``x`` are 1,000 draws of N(0, 0.6^2 I) (another 1,000 for
  validation), so minibatch gradients are noisy; ``theta`` starts at ones. Batch 128.
* ``mnist1d_mlp``: MLP(100, 100) on MNIST-1D; ``mnist1d_cnn``: CNN1D on MNIST-1D (3,600
  training / 400 validation sequences of the training part, batch 100).
* ``digits_resnet``: a small ResNet with batch norm on the 8x8 digits (batch 64).

Protocol: every optimizer is tuned on a log grid of learning rates by ONE vmapped
``jaxopt_dl.training.sweep`` per problem over the grid and the tuning seeds; the best rate
is the one with the lowest validation loss reached during the run (mean over the tuning
seeds). It is then rerun at that rate on other seeds (>= 10 in the full run), so the
runs that are judged never took part in the choice. Each problem's validation target is
fixed from the tuning runs of a reference optimizer (Adam): the loss that removes 95% of
the gap between the initial validation loss and the lowest one tuned Adam reaches.
Judged: steps to the target (the end of the first epoch at or below it; ``inf`` if
never), the same in seconds (steps times the measured seconds per step of one run), and
the final validation loss. Reported: medians with 95% bootstrap intervals, the fraction
of runs that reach the target with Wilson intervals, and Dolan and More's performance
profiles over all (problem, seed) runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
from typing import Callable, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jaxopt_dl as jdl  # noqa: E402
from benchmarks.reporting import (  # noqa: E402
    RESULTS,
    ROOT,
    bootstrap_interval,
    environment,
    replace_section,
    wilson_interval,
)

BASELINES = ("sgd", "momentum", "adagrad", "rmsprop", "adam", "lion")
"""The library's optimizers run as the baselines (``jaxopt_dl.<name>(learning_rate)``)."""
REFERENCE = "adam"
TARGET_FRACTION = 0.95


class Problem(NamedTuple):
    """One problem of the set.

    Attributes:
      name: its key.
      model: the flax model.
      train: ``(x, y)`` training arrays.
      val: ``(x, y)`` validation arrays (the target and the final loss are judged here).
      epochs: epochs per run.
      batch_size: examples per step.
      loss: the loss (``None``: softmax cross-entropy).
    """

    name: str
    model: nn.Module
    train: tuple
    val: tuple
    epochs: int
    batch_size: int
    loss: Optional[Callable] = None


# --------------------------------------------------------------------------
# The problems
# --------------------------------------------------------------------------


class Shift(nn.Module):
    """``theta - x`` per example, ``theta`` a vector of ones at the start."""

    dim: int = 100

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        theta = self.param("theta", nn.initializers.ones, (self.dim,))
        return theta - x


def quadratic_deep_hessian(dim: int = 100, seed: int = 42) -> np.ndarray:
    """DeepOBS ``quadratic_deep``'s kind of Hessian: ``R^T diag(lambda) R``.

    90% of the eigenvalues from U(0, 1), 10% from U(30, 60), ``R`` a Haar-random rotation
    (QR of a Gaussian matrix with the signs of R's diagonal fixed).

    Args:
      dim: dimension (a multiple of 10).
      seed: seed of the eigenvalues and the rotation.

    Returns:
      The ``(dim, dim)`` symmetric positive definite matrix.
    """
    rng = np.random.RandomState(seed)
    small = dim * 9 // 10
    eigenvalues = np.concatenate(
        [rng.uniform(0.0, 1.0, small), rng.uniform(30.0, 60.0, dim - small)]
    )
    q, r = np.linalg.qr(rng.normal(size=(dim, dim)))
    rotation = q * np.sign(np.diag(r))
    return rotation.T @ np.diag(eigenvalues) @ rotation


def quadratic_loss(hessian: np.ndarray) -> Callable:
    """``(theta - x, _) -> 0.5 (theta - x)^T Q (theta - x)`` per example.

    Args:
      hessian: ``Q``.

    Returns:
      The loss for ``sweep(..., loss=...)``.
    """
    q = jnp.asarray(hessian, jnp.float32)

    def loss(outputs, targets):
        return 0.5 * jnp.einsum("bi,ij,bj->b", outputs, q, outputs)

    return loss


def problems(quick: bool) -> dict:
    """The four problems with their budgets.

    Args:
      quick: shorter runs.

    Returns:
      ``{name: Problem}``.
    """
    from sklearn.model_selection import train_test_split

    rng_train, rng_val = np.random.RandomState(42), np.random.RandomState(43)
    x_q = rng_train.normal(0.0, 0.6, (1000, 100)).astype(np.float32)
    x_qv = rng_val.normal(0.0, 0.6, (1000, 100)).astype(np.float32)
    dummy = np.zeros(1000, np.int32)

    (x1, y1), _ = jdl.data.load_mnist1d(standardize="global")
    x1t, x1v, y1t, y1v = train_test_split(x1, y1, test_size=0.1, random_state=0, stratify=y1)
    (xd, yd), _ = jdl.data.load_digits(standardize="global")
    xdt, xdv, ydt, ydv = train_test_split(xd, yd, test_size=0.1, random_state=0, stratify=yd)
    return {
        "quadratic_deep": Problem(
            "quadratic_deep",
            Shift(),
            (x_q, dummy),
            (x_qv, dummy),
            40 if quick else 100,
            128,
            quadratic_loss(quadratic_deep_hessian()),
        ),
        "mnist1d_mlp": Problem(
            "mnist1d_mlp",
            jdl.models.MLP(hidden=(100, 100)),
            (x1t, y1t),
            (x1v, y1v),
            10 if quick else 40,
            100,
        ),
        "mnist1d_cnn": Problem(
            "mnist1d_cnn", jdl.models.CNN1D(), (x1t, y1t), (x1v, y1v), 10 if quick else 40, 100
        ),
        "digits_resnet": Problem(
            "digits_resnet",
            jdl.models.ResNet(stage_sizes=(1, 1), width=8),
            (xdt, ydt),
            (xdv, ydv),
            5 if quick else 15,
            64,
        ),
    }


def grid(quick: bool) -> np.ndarray:
    """Learning rates tried: 1e-5 .. 10^0.5 by half decades (quick: by decades to 1).

    Args:
      quick: the coarse grid.

    Returns:
      The rates.
    """
    return np.logspace(-5, 0, 6) if quick else np.logspace(-5, 0.5, 12)


def seeds(quick: bool) -> tuple[list, list]:
    """``(tuning seeds, judged seeds)``, disjoint.

    Args:
      quick: fewer seeds.

    Returns:
      The two lists.
    """
    return ([1000], [0, 1, 2]) if quick else ([1000, 1001], list(range(10)))


# --------------------------------------------------------------------------
# Tuning and judging
# --------------------------------------------------------------------------


def _sweep(problem: Problem, factory: Callable, rates, run_seeds):
    return jdl.training.sweep(
        lambda learning_rate: factory(learning_rate),
        {"learning_rate": np.asarray(rates, np.float32)},
        run_seeds,
        problem.model,
        problem.train,
        epochs=problem.epochs,
        batch_size=problem.batch_size,
        val_data=problem.val,
        loss=problem.loss,
    )


def _clean(a: np.ndarray) -> np.ndarray:
    """NaN (a diverged run) -> inf, so that it never wins a minimum."""
    return np.where(np.isfinite(a), a, np.inf)


def tune(problem: Problem, factory: Callable, quick: bool) -> dict:
    """ONE sweep over the grid and the tuning seeds; the rate with the lowest mean (over
    the tuning seeds) of the lowest validation loss of each run.

    Args:
      problem: the problem.
      factory: ``learning_rate -> GradientTransformation``.
      quick: grid and seeds of the quick mode.

    Returns:
      ``{"rates", "score", "best_rate", "best_index", "val_curve"}`` (the curve: mean over
      the tuning seeds at the best rate).
    """
    rates = grid(quick)
    result = _sweep(problem, factory, rates, seeds(quick)[0])
    val = _clean(result.val_loss)  # (rates, seeds, epochs)
    score = val.min(axis=2).mean(axis=1)
    best = int(np.argmin(score))
    return {
        "rates": rates.tolist(),
        "score": [float(s) for s in score],
        "best_rate": float(rates[best]),
        "best_index": best,
        "val_curve": val[best].mean(axis=0).tolist(),
    }


def initial_val_loss(problem: Problem, run_seeds) -> float:
    """Mean validation loss at initialization over ``run_seeds``.

    Args:
      problem: the problem.
      run_seeds: the seeds.

    Returns:
      The loss.
    """
    losses = []
    for s in run_seeds:
        state = jdl.training.create_train_state(
            problem.model, jdl.sgd(0.0), jax.random.key(s), problem.train[0][:1]
        )
        losses.append(jdl.training.evaluate(state, problem.val, loss=problem.loss)[0])
    return float(np.mean(losses))


def seconds_per_step(problem: Problem, factory: Callable, rate: float) -> float:
    """Wall seconds per step of one run: one epoch as ``fit`` runs it (a jitted
    ``lax.scan``), the fastest of three after compiling.

    Args:
      problem: the problem.
      factory: the optimizer factory.
      rate: the learning rate.

    Returns:
      Seconds per step.
    """
    x, y = (jnp.asarray(a) for a in problem.train)
    state = jdl.training.create_train_state(problem.model, factory(rate), jax.random.key(0), x[:1])
    indices, _ = jdl.training.epoch_indices(len(x), problem.batch_size, 0, 0)
    run = jax.jit(lambda s, i: jdl.training.scan_epoch(s, x, y, i, loss=problem.loss))
    jax.block_until_ready(run(state, indices))
    times = []
    for _ in range(3):
        start = time.perf_counter()
        jax.block_until_ready(run(state, indices))
        times.append(time.perf_counter() - start)
    return min(times) / len(indices)


def steps_per_epoch(problem: Problem) -> int:
    return len(problem.train[0]) // problem.batch_size


def judge(problem: Problem, factory: Callable, rate: float, target: float, quick: bool) -> dict:
    """Rerun at ``rate`` on the judged seeds (one sweep) and measure against ``target``.

    Args:
      problem: the problem.
      factory: the optimizer factory.
      rate: the tuned learning rate.
      target: the validation target.
      quick: seeds of the quick mode.

    Returns:
      Per-seed steps and seconds to the target and final validation losses, with
      medians and intervals.
    """
    run_seeds = seeds(quick)[1]
    result = _sweep(problem, factory, [rate], run_seeds)
    val = _clean(result.val_loss[0])  # (seeds, epochs)
    per_epoch = steps_per_epoch(problem)
    reached = val <= target
    steps = np.where(reached.any(axis=1), (reached.argmax(axis=1) + 1) * per_epoch, np.inf)
    per_step = seconds_per_step(problem, factory, rate)
    final = val[:, -1]
    hits = int(np.isfinite(steps).sum())
    return {
        "seeds": run_seeds,
        "steps_to_target": steps.tolist(),
        "seconds_to_target": (steps * per_step).tolist(),
        "seconds_per_step": per_step,
        "final_val_loss": final.tolist(),
        "reached": hits,
        "reached_interval": list(wilson_interval(hits, len(run_seeds))),
        "median_steps": float(np.median(steps)),
        "median_steps_interval": list(bootstrap_interval(steps, np.median)),
        "median_final_loss": float(np.median(final)),
        "median_final_loss_interval": list(bootstrap_interval(final, np.median)),
        "val_curve_median": np.median(val, axis=0).tolist(),
    }


def run_problem(problem: Problem, optimizers: dict, quick: bool, target: Optional[float]) -> dict:
    """Tune and judge every optimizer on one problem.

    Args:
      problem: the problem.
      optimizers: ``{name: learning_rate -> GradientTransformation}``.
      quick: quick mode.
      target: the fixed validation target; ``None`` derives it from the tuning runs of
        :data:`REFERENCE` (which must then be among ``optimizers``).

    Returns:
      The problem's record.
    """
    tuned = {}
    for name, factory in optimizers.items():
        start = time.perf_counter()
        tuned[name] = tune(problem, factory, quick)
        tuned[name]["seconds"] = time.perf_counter() - start
        print(f"  {problem.name}: tuned {name} -> {tuned[name]['best_rate']:.2g}", flush=True)
    initial = initial_val_loss(problem, seeds(quick)[0])
    if target is None:
        best = min(tuned[REFERENCE]["val_curve"])
        target = best + (1.0 - TARGET_FRACTION) * (initial - best)
    judged = {}
    for name, factory in optimizers.items():
        judged[name] = judge(problem, factory, tuned[name]["best_rate"], target, quick)
        print(
            f"  {problem.name}: {name} reached {judged[name]['reached']}/"
            f"{len(judged[name]['seeds'])}, median steps {judged[name]['median_steps']}",
            flush=True,
        )
    return {
        "epochs": problem.epochs,
        "batch_size": problem.batch_size,
        "steps_per_epoch": steps_per_epoch(problem),
        "initial_val_loss": initial,
        "target": target,
        "tuning": tuned,
        "judged": judged,
    }


def run_optimizer_set(
    optimizers: dict,
    quick: bool = False,
    targets: Optional[dict] = None,
    only: Optional[list] = None,
) -> dict:
    """Tune and judge ``optimizers`` on every problem of the set.

    Args:
      optimizers: ``{name: learning_rate -> GradientTransformation}`` (e.g.
        ``{"mine": lambda learning_rate: my_optimizer(learning_rate)}``); the factory
        must accept a traced learning rate (it is vmapped over the grid).
      quick: quick mode (fewer epochs, rates and seeds; not binding).
      targets: ``{problem: validation target}``; ``None`` derives them from Adam's
        tuning runs (Adam must then be among ``optimizers``). To compare with the
        committed baselines, pass theirs (``--optimizer`` on the command line does).
      only: run only these problems.

    Returns:
      The record: ``{"mode", "protocol", "problems": {name: ...}, "environment"}``.
    """
    record = {
        "mode": "quick" if quick else "full",
        "protocol": {
            "learning_rates": grid(quick).tolist(),
            "tuning_seeds": seeds(quick)[0],
            "judged_seeds": seeds(quick)[1],
            "reference": REFERENCE,
            "target_fraction": TARGET_FRACTION,
            "intervals": "95%: bootstrap of the median over seeds; Wilson for fractions",
        },
        "environment": environment(),
        "problems": {},
    }
    for name, problem in problems(quick).items():
        if only and name not in only:
            continue
        start = time.perf_counter()
        target = None if targets is None else targets[name]
        record["problems"][name] = run_problem(problem, optimizers, quick, target)
        record["problems"][name]["seconds"] = time.perf_counter() - start
        print(f"{name} done in {time.perf_counter() - start:.0f}s", flush=True)
    return record


# --------------------------------------------------------------------------
# Performance profiles, table, figure
# --------------------------------------------------------------------------


def merge(*records: dict) -> dict:
    """One record with the optimizers of several (same mode and problems).

    Args:
      *records: records of :func:`run_optimizer_set`.

    Returns:
      The merged record (the first's targets and protocol).
    """
    merged = json.loads(json.dumps(records[0]))
    for other in records[1:]:
        if other["mode"] != merged["mode"]:
            raise ValueError(f"cannot merge a {other['mode']} record into a {merged['mode']} one")
        for name, problem in other["problems"].items():
            for part in ("tuning", "judged"):
                merged["problems"][name][part].update(problem[part])
    return merged


def profile(record: dict, metric: str) -> dict:
    """Dolan and More's performance profile over all (problem, seed) runs.

    ``rho_s(tau)`` is the fraction of runs on which optimizer ``s`` is within a factor
    ``tau`` of the best optimizer on that run (same problem, same seed); a run that never
    reaches the target counts as never within any factor. Runs no optimizer solved are
    left out. The losses of the set are positive, so their ratios are meaningful.

    Args:
      record: a (merged) record.
      metric: ``"steps_to_target"`` or ``"final_val_loss"``.

    Returns:
      ``{"tau": [...], "rho": {optimizer: [...]}, "runs": n}``.
    """
    names = list(next(iter(record["problems"].values()))["judged"])
    rows = []
    for problem in record["problems"].values():
        rows.append(np.array([problem["judged"][n][metric] for n in names], np.float64))
    values = np.concatenate(rows, axis=1)  # (optimizers, runs)
    values = _clean(values)
    best = values.min(axis=0)
    keep = np.isfinite(best)
    ratios = values[:, keep] / best[keep]
    tau = np.logspace(0, 1.5, 200)
    rho = {n: [float(np.mean(ratios[i] <= t)) for t in tau] for i, n in enumerate(names)}
    return {"tau": tau.tolist(), "rho": rho, "runs": int(keep.sum())}


def conclusion(record: dict) -> str:
    """One generated sentence: who is fastest most often and who reaches the target most.

    Args:
      record: a (merged) record.

    Returns:
      The sentence.
    """
    prof = profile(record, "steps_to_target")
    first = {n: r[0] for n, r in prof["rho"].items()}
    solved = {n: r[-1] for n, r in prof["rho"].items()}
    fastest = max(first, key=first.get)
    robust = max(solved, key=solved.get)
    return (
        f"{fastest} is fastest to the target on {first[fastest]:.0%} of {prof['runs']} runs; "
        f"{robust} reaches it within 30x of the fastest on {solved[robust]:.0%}"
    )


def figure(record: dict, path: str) -> None:
    """The two performance profiles (steps to target, final validation loss), stamped
    with the mode and the conclusion.

    Args:
      record: a (merged) record.
      path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, metric, label in zip(
        axes,
        ("steps_to_target", "final_val_loss"),
        ("steps to the validation target", "final validation loss"),
    ):
        prof = profile(record, metric)
        for name, rho in prof["rho"].items():
            ax.step(prof["tau"], rho, where="post", label=name)
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("tau (ratio to the best optimizer on the run)")
        ax.set_ylabel("fraction of runs within tau")
        ax.set_title(f"{label} ({prof['runs']} runs)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    mode = record["mode"]
    fig.suptitle(
        f"[{mode}{' - not binding' if mode == 'quick' else ''}] Performance profiles: "
        f"{conclusion(record)}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(value: float, digits: int = 3) -> str:
    return "never" if not math.isfinite(value) else f"{value:.{digits}g}"


def markdown(record: dict, figure_path: Optional[str] = None) -> str:
    """The table of a (merged) record.

    Args:
      record: the record.
      figure_path: the profile figure, relative to the page, if any.

    Returns:
      Markdown.
    """
    mode = record["mode"]
    protocol = record["protocol"]
    lines = [
        f"Mode: **{mode}**"
        + (" (short runs, few rates and seeds: not binding)" if mode == "quick" else "")
        + f". Learning rates {_fmt(protocol['learning_rates'][0])} to "
        f"{_fmt(protocol['learning_rates'][-1])} ({len(protocol['learning_rates'])} on a log "
        f"grid), tuned on seeds {protocol['tuning_seeds']}, judged on "
        f"{len(protocol['judged_seeds'])} other seeds. Target: "
        f"{protocol['target_fraction']:.0%} of the way from the initial validation loss to "
        f"the lowest one tuned {protocol['reference']} reaches. Medians with "
        f"{protocol['intervals']}.",
        "",
        f"**{conclusion(record)}.**",
        "",
    ]
    if figure_path:
        lines += [f"![Performance profiles]({figure_path})", ""]
    for name, problem in record["problems"].items():
        lines += [
            f"**{name}**: {problem['epochs']} epochs of {problem['steps_per_epoch']} steps "
            f"(batch {problem['batch_size']}); initial validation loss "
            f"{_fmt(problem['initial_val_loss'], 4)}, target {_fmt(problem['target'], 4)}.",
            "",
            "| Optimizer | Learning rate | Reached target | Steps to target | Seconds to "
            "target | Final validation loss |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for opt, judged in problem["judged"].items():
            n = len(judged["seeds"])
            lo, hi = judged["reached_interval"]
            s_lo, s_hi = judged["median_steps_interval"]
            f_lo, f_hi = judged["median_final_loss_interval"]
            seconds = judged["median_steps"] * judged["seconds_per_step"]
            tuning = problem["tuning"][opt]
            edge = " (grid edge)" if tuning["best_index"] in (0, len(tuning["rates"]) - 1) else ""
            lines.append(
                f"| {opt} | {tuning['best_rate']:.2g}{edge} | "
                f"{judged['reached']}/{n} ({lo:.0%}–{hi:.0%}) | "
                f"{_fmt(judged['median_steps'])} ({_fmt(s_lo)}–{_fmt(s_hi)}) | "
                f"{_fmt(seconds, 2)} | "
                f"{_fmt(judged['median_final_loss'], 4)} ({_fmt(f_lo, 4)}–{_fmt(f_hi, 4)}) |"
            )
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def factory_named(spec: str) -> Callable:
    """``learning_rate -> GradientTransformation`` from a ``jaxopt_dl`` optimizer name or
    ``module:function``.

    Args:
      spec: e.g. ``"nadam"`` or ``"mypackage.optim:make"``.

    Returns:
      The factory.

    Raises:
      ValueError: an unknown name.
    """
    if ":" in spec:
        module, attribute = spec.split(":", 1)
        return getattr(importlib.import_module(module), attribute)
    factory = getattr(jdl, spec, None)
    if not callable(factory):
        raise ValueError(
            f"--optimizer must name a jaxopt_dl optimizer or module:function, got {spec!r}"
        )
    return lambda learning_rate: factory(learning_rate)


def _paths(folder: str, quick: bool, name: Optional[str]) -> dict:
    suffix = (f".{name}" if name else "") + (".quick" if quick else "")
    return {
        kind: os.path.join(folder, f"optimizer_set{suffix}.{kind}")
        for kind in ("json", "md", "png")
    }


def write_docs(record: dict) -> None:
    """The figure ``docs/optimizer_set.png`` and the section of ``docs/benchmarks.md``.

    Args:
      record: the baselines' record.
    """
    figure(record, os.path.join(ROOT, "docs", "optimizer_set.png"))
    replace_section(
        os.path.join(ROOT, "docs", "benchmarks.md"),
        "optimizer_set",
        markdown(record, "optimizer_set.png"),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, coarse grid, 3 seeds")
    parser.add_argument(
        "--optimizer",
        default=None,
        help="judge this optimizer (a jaxopt_dl name or module:function) against the "
        "committed baselines of the same mode, at their targets",
    )
    parser.add_argument("--problems", nargs="*", default=None, help="run only these problems")
    parser.add_argument(
        "--out",
        default=RESULTS,
        help="folder of the results (the baselines are read from benchmarks/results)",
    )
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    baseline_paths = _paths(RESULTS, args.quick, None)
    if args.optimizer is None:
        optimizers = {name: factory_named(name) for name in BASELINES}
        record = run_optimizer_set(optimizers, args.quick, only=args.problems)
        # a run of some problems never replaces the baselines of all of them
        paths = _paths(args.out, args.quick, "subset" if args.problems else None)
        shown = record
    else:
        with open(baseline_paths["json"]) as f:
            baseline = json.load(f)
        targets = {name: p["target"] for name, p in baseline["problems"].items()}
        record = run_optimizer_set(
            {args.optimizer: factory_named(args.optimizer)}, args.quick, targets, args.problems
        )
        for name in list(baseline["problems"]):
            if name not in record["problems"]:
                del baseline["problems"][name]
        paths = _paths(args.out, args.quick, args.optimizer.replace(":", "_").replace(".", "_"))
        shown = merge(baseline, record)
    with open(paths["json"], "w") as f:
        json.dump(record, f, indent=1)
    figure(shown, paths["png"])
    table = markdown(shown, os.path.basename(paths["png"]))
    with open(paths["md"], "w") as f:
        f.write(table)
    full_exists = os.path.exists(_paths(RESULTS, False, None)["json"])
    if args.optimizer is None and args.problems is None and args.out == RESULTS:
        if not args.quick or not full_exists:  # a quick run shows only until a full one exists
            write_docs(shown)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
