"""Optimizer step speed on CPU: jaxopt_dl's default training step vs torch and optax.

One jitted, donated step per method, compiled ahead of time (trace + lower + compile,
timed from cold caches). Rounds are interleaved: every method once per round, in an order
shuffled per round, each timed after one untimed call; each number is the median over
rounds. Two floors bound any optimizer: "dispatch floor" (a jitted function returning its
donated buffers, those of the default adam step) and "compile floor" (one multiply per
output leaf of the plain adam step). "default step" is what
``TrainState.apply_gradients`` (hence ``fit``, ``sweep`` and the CLI) runs:
:func:`jaxopt_dl.fused.apply_gradients`, the fused kernel on CPU. "plain" is the optax
protocol, ``update`` then ``apply_updates``. Writes ``OUT/update_step.json`` and
``OUT/update_step.md`` and updates ``benchmarks/RESULTS.md``.

    python benchmarks/update_step.py [--quick] [--out DIR] [--rounds N]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import jaxopt_dl as jdl  # noqa: E402

LR = 1e-3
THREADS = os.cpu_count() or 1
# Arrays read + written per element by each algorithm's minimal single pass
# (bf16 moments count half).
TRAFFIC = {"adam": 7, "adam_bf16": 5, "sgdm": 5, "clip_adam": 8}
CLIP = 1.0


def trees() -> dict[str, list[tuple[int, ...]]]:
    return {
        "a: 1 x 2^24": [(2**24,)],
        "b: 10 x 1024^2 (MLP)": [s for _ in range(10) for s in ((1024, 1024), (1024,))],
        "c: 2000 x 1000": [(1000,)] * 2000,
        "1 x 2^16": [(2**16,)],
        "8 x 2^17": [(2**17,)] * 8,
    }


# ---------------------------------------------------------------- JAX methods
@dataclasses.dataclass(frozen=True)
class Method:
    algo: str  # the algorithm: its TRAFFIC and its optax twin
    step: Callable  # (params, grads, state) -> (params, state), jitted and donated
    init: Callable  # params -> state
    tx: Any = None  # the optimizer of a default step (checked with jdl.fused.fusable)
    steps: int = 1  # optimizer steps per call
    floor: bool = False  # a bound, not an optimizer: no GB/s
    flat: bool = False  # the params kept as one flat vector (``ravel_pytree``'s layout)


def _default_step(algo, opt, flat=False):
    def step(p, g, s):
        return jdl.fused.apply_gradients(opt, g, s, p)

    return Method(algo, step, opt.init, tx=opt, flat=flat)


def _train_state_step(algo, opt):
    """``TrainState.apply_gradients``, what ``fit`` runs each step."""

    def step(p, g, s):
        state = jdl.training.TrainState(
            step=jnp.zeros([], jnp.int32),
            apply_fn=None,
            params=p,
            tx=opt,
            opt_state=s,
            batch_stats={},
            rng=jax.random.PRNGKey(0),
            nonfinite_streak=jnp.zeros([], jnp.int32),
            nonfinite_total=jnp.zeros([], jnp.int32),
            nonfinite_leaf=jnp.full([], -1, jnp.int32),
        )
        new = state.apply_gradients(grads=g)
        return new.params, new.opt_state

    return Method(algo, step, opt.init, tx=opt)


SCAN_STEPS = 10


def _scanned_step(algo, opt):
    """``SCAN_STEPS`` default steps inside one program, as ``fit``'s epoch scan runs them."""

    def step(p, g, s):
        def body(carry, _):
            return jdl.fused.apply_gradients(opt, g, carry[1], carry[0]), None

        return jax.lax.scan(body, (p, s), None, length=SCAN_STEPS)[0]

    return Method(algo, step, opt.init, tx=opt, steps=SCAN_STEPS)


def _plain_step(algo, opt):
    def step(p, g, s):
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    return Method(algo, step, opt.init)


def _dispatch_floor(opt):
    """The same buffers in and out as ``opt``'s default step, and no work: jax's dispatch."""
    return Method("adam", lambda p, g, s: (p, s), opt.init, floor=True)


def _compile_floor(opt):
    """The cheapest program with the plain step's outputs: one multiply per output leaf."""

    def step(p, g, s):
        return jax.tree.map(lambda x: (x * 1.5).astype(x.dtype), (p, s))

    return Method("adam", step, opt.init, floor=True)


DISPATCH_FLOOR = "dispatch floor: jit returning the same buffers"
COMPILE_FLOOR = "compile floor: one multiply per output leaf"


CLIP_ADAM = "jdl clip + adam, TrainState.apply_gradients"
FLAT_TREE = "optax.flatten(jdl.adam), default step"
FLAT_PARAMS = "jdl.adam over one flat vector, default step"


def _methods():
    adam = jdl.adam(LR)
    clip_adam = jdl.chain(jdl.clip_by_global_norm(CLIP), jdl.adam(LR))
    adam_bf16 = jdl.adam(LR, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)
    sgdm = jdl.sgd(LR, momentum=0.9)
    return {
        "jdl.adam, default step": _default_step("adam", adam),
        f"jdl.adam, default step in a scan (per step of {SCAN_STEPS})": _scanned_step("adam", adam),
        "jdl.adam bf16 moments, default step": _default_step("adam_bf16", adam_bf16),
        "jdl.adam, plain": _plain_step("adam", adam),
        "jdl.adam bf16 moments, plain": _plain_step("adam_bf16", adam_bf16),
        "optax.adam": _plain_step("adam", optax.adam(LR)),
        CLIP_ADAM: _train_state_step("clip_adam", clip_adam),
        "jdl clip + adam, plain": _plain_step("clip_adam", clip_adam),
        "optax clip + adam": _plain_step(
            "clip_adam", optax.chain(optax.clip_by_global_norm(CLIP), optax.adam(LR))
        ),
        FLAT_TREE: _default_step("adam", optax.flatten(adam)),
        FLAT_PARAMS: _default_step("adam", adam, flat=True),
        "jdl.sgd momentum, default step": _default_step("sgdm", sgdm),
        "optax.sgd momentum": _plain_step("sgdm", optax.sgd(LR, momentum=0.9)),
        DISPATCH_FLOOR: _dispatch_floor(adam),
        COMPILE_FLOOR: _compile_floor(adam),
    }


JAX_METHODS = _methods()
TORCH_CLIP = "torch clip_grad_norm_ + Adam fused"
TORCH_METHODS = {
    "torch Adam fused": {"fused": True},
    TORCH_CLIP: {"fused": True, "clip": CLIP},
    "torch Adam foreach": {"foreach": True},
}
OPTAX_TWIN = {
    "adam": "optax.adam",
    "adam_bf16": "optax.adam",
    "sgdm": "optax.sgd momentum",
    "clip_adam": "optax clip + adam",
}


class JaxRunner:
    def __init__(self, method, shapes, seed=0):
        key = jax.random.PRNGKey(seed)
        self.p = [
            jax.random.normal(jax.random.fold_in(key, i), s, jnp.float32) * 0.1
            for i, s in enumerate(shapes)
        ]
        self.g = [jnp.full(s, 1e-3, jnp.float32) for s in shapes]
        if method.flat:
            self.p, self.g = ([jnp.concatenate([x.ravel() for x in t])] for t in (self.p, self.g))
        self.s = method.init(self.p)
        self.state_bytes = sum(x.nbytes for x in jax.tree.leaves(self.s) if x.ndim > 0)
        self.algo, self.steps, self.floor = method.algo, method.steps, method.floor
        self.fused = method.tx is not None and jdl.fused.fusable(method.tx, self.s, self.p)
        self.fn, self.compile_s = compiled(method.step, self.p, self.g, self.s)

    def __call__(self):
        self.p, self.s = self.fn(self.p, self.g, self.s)
        jax.block_until_ready(self.p)


def compiled(step, *args):
    """``step`` jitted with params and state donated, compiled for ``args``, and seconds
    of trace + lower + compile from cold caches (every input is kept, used or not)."""
    jax.clear_caches()
    t0 = time.perf_counter()
    fn = jax.jit(step, donate_argnums=(0, 2), keep_unused=True).trace(*args).lower().compile()
    return fn, time.perf_counter() - t0


class TorchRunner:
    steps, floor, fused, compile_s = 1, False, None, None

    def __init__(self, kwargs, shapes, seed=0):
        kwargs = dict(kwargs)
        self.clip = kwargs.pop("clip", None)
        self.algo = "adam" if self.clip is None else "clip_adam"
        gen = torch.Generator().manual_seed(seed)
        self.params = [torch.nn.Parameter(torch.randn(s, generator=gen) * 0.1) for s in shapes]
        for p in self.params:
            p.grad = torch.full_like(p, 1e-3)
        self.opt = torch.optim.Adam(self.params, lr=LR, **kwargs)
        self()  # creates the state
        self.state_bytes = sum(
            t.numel() * t.element_size()
            for st in self.opt.state.values()
            for t in st.values()
            if t.dim() > 0
        )

    def __call__(self):
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip, foreach=True)
        self.opt.step()


def runners(shapes, progress, torch_methods):
    """Every method ready to run on ``shapes``; a default step must take the fused kernel
    wherever it is available."""
    out = {}
    for name, method in JAX_METHODS.items():
        out[name] = JaxRunner(method, shapes)
        if method.tx is not None and jdl.fused.kernel_available() and not out[name].fused:
            raise RuntimeError(f"{name}: not fusable although the kernel is available")
        progress.update(1)
    for name, kwargs in torch_methods.items():
        out[name] = TorchRunner(kwargs, shapes)
        progress.update(1)
    return out


def interleaved(runs, rounds, iters, progress):
    """Seconds per optimizer step of each runner, one per round. Each round runs every
    runner in an order shuffled by the round's seed (so none always follows torch, whose
    threads spin after each call), once untimed, then ``iters`` times timed."""
    times = {name: [] for name in runs}
    for i in range(rounds):
        order = list(runs)
        random.Random(i).shuffle(order)
        for name in order:
            run = runs[name]
            run()
            t0 = time.perf_counter()
            for _ in range(iters):
                run()
            times[name].append((time.perf_counter() - t0) / iters / run.steps)
        progress.update(1)
    return times


def measure(shapes, rounds, iters, progress, torch_methods):
    n = sum(int(np.prod(s)) for s in shapes)
    runs = runners(shapes, progress, torch_methods)
    results = {}
    for name, ts in interleaved(runs, rounds, iters, progress).items():
        med, run = statistics.median(ts), runs[name]
        results[name] = {
            "ms": med * 1e3,
            "min_ms": min(ts) * 1e3,
            "gb_per_s": None if run.floor else TRAFFIC[run.algo] * 4 * n / med / 1e9,
            "compile_s": run.compile_s,
            "state_bytes_per_param": run.state_bytes / n,
            "fused": run.fused,
        }
    for name in results:
        twin = OPTAX_TWIN[runs[name].algo]
        results[name]["x_optax"] = results[name]["ms"] / results[twin]["ms"]
        results[name]["x_torch_fused"] = results[name]["ms"] / results["torch Adam fused"]["ms"]
    return {
        "leaves": len(shapes),
        "params": n,
        "methods": results,
        "load_avg_at_end": os.getloadavg()[0],
    }


def machine():
    cpu = platform.processor()
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "optax": optax.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "load_avg_at_start": os.getloadavg()[0],
        "gpu": any(d.platform == "gpu" for d in jax.devices()),
    }


def _cell(value, fmt=".2f"):
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format(value, fmt)


def markdown(report):
    """The tables of every measured tree, then the targets when every tree was measured."""
    m = report["machine"]
    lines = [
        f"### update step, {'quick' if report['quick'] else 'full'} run, {m['date']}",
        "",
        f"{m['cpu']}, {m['cores']} cores, jax {m['jax']}, optax {m['optax']}, torch "
        f"{m['torch']} ({m['torch_threads']} threads); median of {report['rounds']} "
        f"interleaved rounds x {report['iters']} steps, each after one untimed call, in an "
        f"order shuffled per round; load average at start {m['load_avg_at_start']:.1f} "
        "(shared machine: absolute times move 20-30%, compare ratios); fused kernel "
        "available: " + str(report["kernel"]) + ". "
        '"default step": `jdl.fused.apply_gradients`, what '
        '`TrainState.apply_gradients` runs; "plain": `update` + `apply_updates`; '
        '"x optax": against optax\'s same algorithm; "compile s": trace + lower + compile; '
        '"fused": the default step takes the fused kernel; the floors bound any optimizer '
        "step: jax's dispatch of the default adam step's buffers, and the compile of one "
        "multiply per output leaf of the plain adam step."
        + ("" if m.get("gpu") else " No GPU was available to this run, so there is no GPU table."),
        "",
    ]
    for tree, r in report["trees"].items():
        lines += [
            f"**tree {tree}** ({r['leaves']} leaves, {r['params'] / 1e6:.2f}M params; "
            f"load average when done {r.get('load_avg_at_end', float('nan')):.1f})",
            "",
            "| method | ms | x optax (same algorithm) | x torch fused | GB/s | compile s "
            "| state B/param | fused |",
            "|---|---|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {v['ms']:.2f} | {v['x_optax']:.2f} | {v['x_torch_fused']:.2f}"
            f" | {_cell(v['gb_per_s'], '.1f')} | {_cell(v['compile_s'])}"
            f" | {v['state_bytes_per_param']:.1f} | {_cell(v['fused'])} |"
            for name, v in r["methods"].items()
        ]
        lines.append("")
    if set(trees()) <= set(report["trees"]):
        lines += ["**Targets**", ""] + targets(report)
    return "\n".join(lines)


def _target(name, limit, value, floor=None, unit=""):
    """A targets-table row: met when ``value <= limit``; a floor (what no optimizer step
    can beat) at or above the limit bounds the target."""
    measured = f"{value:.2f}{unit}" + ("" if floor is None else f" (floor {floor:.2f}{unit})")
    met = "yes" if value <= limit else "NO"
    if value > limit and floor is not None and floor >= limit:
        met += f" (bound: floor {floor:.2f}{unit} ≥ {limit}{unit})"
    return f"| {name} | <= {limit}{unit} | {measured} | {met} |"


def targets(report) -> list[str]:
    """The issue's targets, each with the measured ratio (and its floor where one bounds it)."""
    t = report["trees"]

    def get(tree, method, key="ms"):
        return t[tree]["methods"][method][key]

    def ratio(tree, method, against):
        return get(tree, method) / get(tree, against)

    default, torch_fused = "jdl.adam, default step", "torch Adam fused"
    rows = []
    for tree in ("a: 1 x 2^24", "b: 10 x 1024^2 (MLP)", "c: 2000 x 1000"):
        floor = ratio(tree, DISPATCH_FLOOR, torch_fused)
        value = ratio(tree, default, torch_fused)
        rows.append(_target("1: default step / torch fused, " + tree, 1.0, value, floor))
    for tree in ("1 x 2^16", "8 x 2^17"):
        value = ratio(tree, default, torch_fused)
        rows.append(_target("2: default step / torch fused, " + tree, 1.2, value))
        value = ratio(tree, default, "optax.adam")
        rows.append(_target("2: default step / optax.adam, " + tree, 1.0, value))
    for tree in ("a: 1 x 2^24", "b: 10 x 1024^2 (MLP)"):
        for path in ("default step", "plain"):
            value = ratio(tree, f"jdl.adam bf16 moments, {path}", f"jdl.adam, {path}")
            rows.append(_target(f"3: bf16 / f32 moments, {path}, {tree}", 0.8, value))
    tree = "c: 2000 x 1000"
    value = get(tree, "jdl.adam, plain", "compile_s")
    floor = get(tree, COMPILE_FLOOR, "compile_s")
    rows.append(_target("4: compile, plain jdl.adam, tree c", 3, value, floor, " s"))
    for tree in ("a: 1 x 2^24", "b: 10 x 1024^2 (MLP)"):
        value = ratio(tree, CLIP_ADAM, default)
        rows.append(_target("5: clip + adam / bare default adam, " + tree, 1.2, value))
        value = ratio(tree, CLIP_ADAM, TORCH_CLIP)
        rows.append(_target("5: clip + adam / torch clip + fused, " + tree, 1.0, value))
    tree = "c: 2000 x 1000"
    for method in (FLAT_PARAMS, FLAT_TREE):
        value = ratio(tree, method, torch_fused)
        rows.append(_target(f"6: {method} / torch fused, {tree}", 1.0, value))
        value = get(tree, method, "compile_s")
        rows.append(_target(f"6: compile, {method}, {tree}", 5, value, unit=" s"))
    return ["| target | required | measured | met |", "|---|---|---|---|", *rows, ""]


def update_results_md(path: Path, table: str, quick: bool):
    tag = "quick" if quick else "full"
    begin, end = f"<!-- update_step:{tag}:begin -->", f"<!-- update_step:{tag}:end -->"
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    block = f"{begin}\n{table}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="5 rounds of 2 steps, no torch foreach (a few minutes)"
    )
    parser.add_argument("--out", default=str(Path(__file__).with_name("out")))
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument(
        "--only",
        default=None,
        help="measure only the trees whose name contains this (no targets, no RESULTS.md)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    rounds = args.rounds or (5 if args.quick else 7)
    iters = 2 if args.quick else 5
    torch_methods = {k: v for k, v in TORCH_METHODS.items() if not (args.quick and "foreach" in k)}
    all_trees = {k: v for k, v in trees().items() if args.only is None or args.only in k}
    total = len(all_trees) * (len(JAX_METHODS) + len(torch_methods) + rounds)
    report = {
        "quick": args.quick,
        "rounds": rounds,
        "iters": iters,
        "machine": machine(),
        "kernel": jdl.fused.kernel_available(),
        "trees": {},
    }
    with tqdm(total=total, desc="update_step") as progress:
        for tree, shapes in all_trees.items():
            progress.set_postfix_str(tree)
            report["trees"][tree] = measure(shapes, rounds, iters, progress, torch_methods)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "update_step.json").write_text(json.dumps(report, indent=1))
    table = markdown(report)
    (out / "update_step.md").write_text(table + "\n")
    if args.only is None:
        update_results_md(Path(__file__).with_name("RESULTS.md"), table, args.quick)
    print(table)


if __name__ == "__main__":
    main()
