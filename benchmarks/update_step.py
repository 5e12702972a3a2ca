"""Optimizer step speed on CPU: jaxopt_dl's default training step vs torch and optax.

One jitted, donated step per method; rounds are interleaved (every method once per
round) and each number is the median over rounds. "default step" is what
``TrainState.apply_gradients`` (hence ``fit``, ``sweep`` and the CLI) runs:
:func:`jaxopt_dl.fused.apply_gradients`, the fused kernel on CPU. "plain" is the optax
protocol, ``update`` then ``apply_updates``. Writes ``OUT/update_step.json`` and
``OUT/update_step.md`` and updates ``benchmarks/RESULTS.md``.

    python benchmarks/update_step.py [--quick] [--out DIR] [--rounds N]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import jaxopt_dl as jdl  # noqa: E402
from jaxopt_dl import _core  # noqa: E402

LR = 1e-3
THREADS = os.cpu_count() or 1
# Arrays read + written per element by each algorithm's minimal single pass
# (bf16 moments count half).
TRAFFIC = {"adam": 7, "adam_bf16": 5, "sgdm": 5}


def trees() -> dict[str, list[tuple[int, ...]]]:
    return {
        "a: 1 x 2^24": [(2**24,)],
        "b: 10 x 1024^2 (MLP)": [s for _ in range(10) for s in ((1024, 1024), (1024,))],
        "c: 2000 x 1000": [(1000,)] * 2000,
        "1 x 2^16": [(2**16,)],
        "8 x 2^17": [(2**17,)] * 8,
    }


def described(alias, reference, **hyperparams):
    """``alias(**hyperparams)``, carrying the metadata the fused step recognizes.

    Until the aliases attach it themselves (their states becoming optax's own), the
    optax transform with the same numbers stands in, with the same metadata.
    """
    tx = alias(**hyperparams)
    if _core.metadata(tx).get("optimizer"):
        return tx
    return _core.with_metadata(
        reference(**hyperparams), optimizer=alias.__name__, hyperparams=hyperparams
    )


# ---------------------------------------------------------------- JAX methods
def _default_step(opt):
    def step(p, g, s):
        return jdl.fused.apply_gradients(opt, g, s, p)

    return step, opt.init


SCAN_STEPS = 10


def _scanned_step(opt):
    """``SCAN_STEPS`` default steps inside one program, as ``fit``'s epoch scan runs them."""

    def step(p, g, s):
        def body(carry, _):
            return jdl.fused.apply_gradients(opt, g, carry[1], carry[0]), None

        return jax.lax.scan(body, (p, s), None, length=SCAN_STEPS)[0]

    return step, opt.init


def _plain_step(opt):
    def step(p, g, s):
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    return step, opt.init


def _methods():
    adam = described(jdl.adam, optax.adam, learning_rate=LR)
    bf16 = dict(learning_rate=LR, mu_dtype=jnp.bfloat16)
    adam_bf16 = jdl.adam(**bf16, nu_dtype=jnp.bfloat16)
    if not _core.metadata(adam_bf16).get("optimizer"):  # stand-in: optax has no nu_dtype
        adam_bf16 = described(jdl.adam, optax.adam, **bf16)
    sgdm = described(jdl.sgd, optax.sgd, learning_rate=LR, momentum=0.9)
    return {  # name -> (algorithm, step function, init function)
        "jdl.adam, default step": ("adam", *_default_step(adam)),
        f"jdl.adam, default step in a scan (per step of {SCAN_STEPS})": (
            "adam",
            *_scanned_step(adam),
        ),
        "jdl.adam bf16 moments, default step": ("adam_bf16", *_default_step(adam_bf16)),
        "jdl.adam, plain": ("adam", *_plain_step(jdl.adam(LR))),
        "jdl.adam bf16 moments, plain": (
            "adam_bf16",
            *_plain_step(jdl.adam(LR, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16)),
        ),
        "optax.adam": ("adam", *_plain_step(optax.adam(LR))),
        "jdl.sgd momentum, default step": ("sgdm", *_default_step(sgdm)),
        "optax.sgd momentum": ("sgdm", *_plain_step(optax.sgd(LR, momentum=0.9))),
    }


JAX_METHODS = _methods()
TORCH_METHODS = {"torch Adam fused": {"fused": True}, "torch Adam foreach": {"foreach": True}}
OPTAX_TWIN = {"adam": "optax.adam", "adam_bf16": "optax.adam", "sgdm": "optax.sgd momentum"}


class JaxRunner:
    def __init__(self, step, init, shapes, seed=0):
        key = jax.random.PRNGKey(seed)
        self.p = [
            jax.random.normal(jax.random.fold_in(key, i), s, jnp.float32) * 0.1
            for i, s in enumerate(shapes)
        ]
        self.g = [jnp.full(s, 1e-3, jnp.float32) for s in shapes]
        self.s = init(self.p)
        self.state_bytes = sum(x.nbytes for x in jax.tree.leaves(self.s) if x.ndim > 0)
        self.fn = jax.jit(step, donate_argnums=(0, 2))

    def __call__(self):
        self.p, self.s = self.fn(self.p, self.g, self.s)
        jax.block_until_ready(self.p)


class TorchRunner:
    def __init__(self, kwargs, shapes, seed=0):
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
        self.opt.step()


def measure(shapes, rounds, iters, progress, torch_methods):
    n = sum(int(np.prod(s)) for s in shapes)
    runners, compile_s, results = {}, {}, {}
    for name, (_, step, init) in JAX_METHODS.items():
        r = JaxRunner(step, init, shapes)
        t0 = time.perf_counter()
        r()
        compile_s[name] = time.perf_counter() - t0
        runners[name] = r
        progress.update(1)
    for name, kwargs in torch_methods.items():
        t0 = time.perf_counter()
        runners[name] = TorchRunner(kwargs, shapes)
        compile_s[name] = time.perf_counter() - t0
        progress.update(1)
    times = {name: [] for name in runners}
    for _ in range(rounds):  # interleaved: every method once per round
        for name, run in runners.items():
            t0 = time.perf_counter()
            for _ in range(iters):
                run()
            steps = SCAN_STEPS if "in a scan" in name else 1
            times[name].append((time.perf_counter() - t0) / iters / steps)
        progress.update(1)
    for name, ts in times.items():
        med = statistics.median(ts)
        algo = JAX_METHODS[name][0] if name in JAX_METHODS else "adam"
        results[name] = {
            "ms": med * 1e3,
            "min_ms": min(ts) * 1e3,
            "gb_per_s": TRAFFIC[algo] * 4 * n / med / 1e9,
            "compile_s": max(compile_s[name] - med, 0.0) if name in JAX_METHODS else None,
            "state_bytes_per_param": runners[name].state_bytes / n,
        }
    for name in results:
        twin = OPTAX_TWIN[JAX_METHODS[name][0]] if name in JAX_METHODS else "optax.adam"
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


def markdown(report):
    m = report["machine"]
    lines = [
        f"### update step, {'quick' if report['quick'] else 'full'} run, {m['date']}",
        "",
        f"{m['cpu']}, {m['cores']} cores, jax {m['jax']}, optax {m['optax']}, torch "
        f"{m['torch']} ({m['torch_threads']} threads); median of {report['rounds']} "
        f"interleaved rounds x {report['iters']} steps; load average at start "
        f"{m['load_avg_at_start']:.1f} (shared machine: absolute times move 20-30%, "
        "compare ratios); fused kernel available: " + str(report["kernel"]) + ". "
        '"default step": `jdl.fused.apply_gradients`, what '
        '`TrainState.apply_gradients` runs; "plain": `update` + `apply_updates`; '
        '"x optax": against optax\'s same algorithm.'
        + ("" if m.get("gpu") else " No GPU was available to this run, so there is no GPU table."),
        "",
    ]
    for tree, r in report["trees"].items():
        lines += [
            f"**tree {tree}** ({r['leaves']} leaves, {r['params'] / 1e6:.2f}M params; "
            f"load average when done {r.get('load_avg_at_end', float('nan')):.1f})",
            "",
            "| method | ms | x optax (same algorithm) | x torch fused | GB/s | compile s "
            "| state B/param |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, v in r["methods"].items():
            comp = "—" if v["compile_s"] is None else f"{v['compile_s']:.2f}"
            lines.append(
                f"| {name} | {v['ms']:.2f} | {v['x_optax']:.2f} | {v['x_torch_fused']:.2f}"
                f" | {v['gb_per_s']:.1f} | {comp} | {v['state_bytes_per_param']:.1f} |"
            )
        lines.append("")
    return "\n".join(lines + ["**Targets (issue 17)**", ""] + targets(report))


def targets(report) -> list[str]:
    """The issue's targets, each with the measured ratio."""
    t = report["trees"]

    def ms(tree, method):
        return t[tree]["methods"][method]["ms"]

    rows = []
    for tree in ("a: 1 x 2^24", "b: 10 x 1024^2 (MLP)", "c: 2000 x 1000"):
        r = ms(tree, "jdl.adam, default step") / ms(tree, "torch Adam fused")
        rows.append(("1: default step / torch fused, " + tree, "<= 1.0", r, r <= 1.0))
    for tree in ("1 x 2^16", "8 x 2^17"):
        r = ms(tree, "jdl.adam, default step") / ms(tree, "torch Adam fused")
        rows.append(("2: default step / torch fused, " + tree, "<= 1.2", r, r <= 1.2))
        r = ms(tree, "jdl.adam, default step") / ms(tree, "optax.adam")
        rows.append(("2: default step / optax.adam, " + tree, "<= 1.0", r, r <= 1.0))
    for tree in ("a: 1 x 2^24", "b: 10 x 1024^2 (MLP)"):
        for path in ("default step", "plain"):
            r = ms(tree, f"jdl.adam bf16 moments, {path}") / ms(tree, f"jdl.adam, {path}")
            rows.append((f"3: bf16 / f32 moments, {path}, {tree}", "<= 0.8", r, r <= 0.8))
    c = t["c: 2000 x 1000"]["methods"]["jdl.adam, plain"]["compile_s"]
    rows.append(("4: compile s, plain jdl.adam, tree c", "<= 3", c, c <= 3))
    lines = ["| target | required | measured | met |", "|---|---|---|---|"]
    lines += [
        f"| {name} | {req} | {val:.2f} | {'yes' if ok else 'NO'} |" for name, req, val, ok in rows
    ]
    return lines + [""]


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
        help="measure only the trees whose name contains this (no RESULTS.md)",
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
            jax.clear_caches()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "update_step.json").write_text(json.dumps(report, indent=1))
    table = markdown(report) if args.only is None else json.dumps(report["trees"], indent=1)
    (out / "update_step.md").write_text(table + "\n")
    if args.only is None:
        update_results_md(Path(__file__).with_name("RESULTS.md"), table, args.quick)
    print(table)


if __name__ == "__main__":
    main()
