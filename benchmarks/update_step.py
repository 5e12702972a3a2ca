"""Optimizer update-step speed: jaxopt_dl vs optax vs torch on three trees (CPU).

One jitted, donated step (update + apply_updates) per method; rounds are interleaved
(every method once per round) and each number is the median over rounds. Writes
``OUT/update_step.json`` and ``OUT/update_step.md`` and updates ``benchmarks/RESULTS.md``.

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

LR = 1e-3
THREADS = os.cpu_count() or 1
# Arrays read + written per element by each algorithm's minimal single pass.
TRAFFIC = {"adam": 7, "sgdm": 5, "rmsprop": 5, "adagrad": 5, "copy": 7}


def trees(quick: bool) -> dict[str, list[tuple[int, ...]]]:
    width = 256 if quick else 1024
    return {
        "a: 1 leaf" : [(2**20 if quick else 2**24,)],
        "b: 20 leaves (MLP)": [s for _ in range(10) for s in ((width, width), (width,))],
        "c: many x 1000": [(1000,)] * (200 if quick else 2000),
    }


# ---------------------------------------------------------------- JAX methods
def _step(opt, fused_apply=False):
    def step(p, g, s):
        if fused_apply:
            return opt.update(g, s, p, return_params=True)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    return step


def _copy_bound(p, g, s):
    m, v = s
    return jax.tree.map(lambda a, b: a + b, p, g), (
        jax.tree.map(lambda a, b: a + b, m, g), jax.tree.map(lambda a, b: a + b, v, g))


JAX_METHODS = {  # name -> (algorithm, step function, init function)
    "jdl.fused_adam (step)": ("adam", *(lambda o: (_step(o, True), o.init))(jdl.fused_adam(LR))),
    "jdl.fused_adam flat_state (step)": ("adam", *(lambda o: (_step(o, True), o.init))(
        jdl.fused_adam(LR, flat_state=True))),
    "jdl.fused_adam": ("adam", *(lambda o: (_step(o), o.init))(jdl.fused_adam(LR))),
    "jdl.adam": ("adam", *(lambda o: (_step(o), o.init))(jdl.adam(LR))),
    "jdl.adam bf16 moments": ("adam", *(lambda o: (_step(o), o.init))(
        jdl.adam(LR, mu_dtype=jnp.bfloat16, nu_dtype=jnp.bfloat16))),
    "optax.adam": ("adam", *(lambda o: (_step(o), o.init))(optax.adam(LR))),
    "optax.flatten(adam)": ("adam", *(lambda o: (_step(o), o.init))(optax.flatten(optax.adam(LR)))),
    "jdl.sgd momentum": ("sgdm", *(lambda o: (_step(o), o.init))(jdl.sgd(LR, momentum=0.9))),
    "optax.sgd momentum": ("sgdm", *(lambda o: (_step(o), o.init))(optax.sgd(LR, momentum=0.9))),
    "jdl.rmsprop": ("rmsprop", *(lambda o: (_step(o), o.init))(jdl.rmsprop(LR))),
    "optax.rmsprop": ("rmsprop", *(lambda o: (_step(o), o.init))(optax.rmsprop(LR))),
    "jdl.adagrad": ("adagrad", *(lambda o: (_step(o), o.init))(jdl.adagrad(LR))),
    "optax.adagrad": ("adagrad", *(lambda o: (_step(o), o.init))(optax.adagrad(LR))),
    "XLA copy-bound (p,g,m,v -> p,m,v)": ("copy", _copy_bound, lambda p: (
        jax.tree.map(jnp.zeros_like, p), jax.tree.map(jnp.zeros_like, p))),
}
TORCH_METHODS = {"torch Adam foreach": {"foreach": True}, "torch Adam fused": {"fused": True}}


class JaxRunner:
    def __init__(self, step, init, shapes, seed=0):
        key = jax.random.PRNGKey(seed)
        self.p = [jax.random.normal(jax.random.fold_in(key, i), s, jnp.float32) * 0.1
                  for i, s in enumerate(shapes)]
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
            t.numel() * t.element_size() for st in self.opt.state.values() for t in st.values()
            if t.dim() > 0)

    def __call__(self):
        self.opt.step()


def measure(tree_name, shapes, rounds, iters, progress):
    n = sum(int(np.prod(s)) for s in shapes)
    runners, compile_s, results = {}, {}, {}
    for name, (_, step, init) in JAX_METHODS.items():
        r = JaxRunner(step, init, shapes)
        t0 = time.perf_counter()
        r()
        compile_s[name] = time.perf_counter() - t0
        runners[name] = r
        progress.update(1)
    for name, kwargs in TORCH_METHODS.items():
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
            times[name].append((time.perf_counter() - t0) / iters)
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
        results[name]["x_optax"] = results[name]["ms"] / results["optax.adam"]["ms"] \
            if JAX_METHODS.get(name, ("adam",))[0] == "adam" else \
            results[name]["ms"] / results[_optax_twin(name)]["ms"]
        results[name]["x_torch_fused"] = results[name]["ms"] / results["torch Adam fused"]["ms"]
    return {"leaves": len(shapes), "params": n, "methods": results,
            "load_avg_at_end": os.getloadavg()[0]}


def _optax_twin(name):
    algo = JAX_METHODS[name][0]
    return {"sgdm": "optax.sgd momentum", "rmsprop": "optax.rmsprop", "adagrad": "optax.adagrad",
            "copy": "optax.adam"}[algo]


def machine():
    cpu = platform.processor()
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1)
    except (OSError, AttributeError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "jax": jax.__version__, "optax": optax.__version__,
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "load_avg_at_start": os.getloadavg()[0],
            "gpu": any(d.platform == "gpu" for d in jax.devices())}


def markdown(report):
    m = report["machine"]
    lines = [f"### update step, {'quick' if report['quick'] else 'full'} run, {m['date']}", "",
             f"{m['cpu']}, {m['cores']} cores, jax {m['jax']}, optax {m['optax']}, torch "
             f"{m['torch']} ({m['torch_threads']} threads); median of {report['rounds']} "
             f"interleaved rounds x {report['iters']} steps; load average at start "
             f"{m['load_avg_at_start']:.1f} (shared machine: absolute times move 20-30%, "
             "compare ratios). \"(step)\": `update(..., return_params=True)`, the kernel also "
             "applies the update." + ("" if m.get("gpu") else " No GPU was available to this run, "
                                      "so there is no GPU table."), ""]
    for tree, r in report["trees"].items():
        lines += [f"**tree {tree}** ({r['leaves']} leaves, {r['params'] / 1e6:.2f}M params; "
                  f"load average when done {r.get('load_avg_at_end', float('nan')):.1f})", "",
                  "| method | ms | x optax (same algorithm) | x torch fused | GB/s | compile s "
                  "| state B/param |", "|---|---|---|---|---|---|---|"]
        for name, v in r["methods"].items():
            comp = "—" if v["compile_s"] is None else f"{v['compile_s']:.2f}"
            lines.append(f"| {name} | {v['ms']:.2f} | {v['x_optax']:.2f} | {v['x_torch_fused']:.2f}"
                         f" | {v['gb_per_s']:.1f} | {comp} | {v['state_bytes_per_param']:.1f} |")
        lines.append("")
    return "\n".join(lines)


def update_results_md(path: Path, table: str, quick: bool):
    tag = "quick" if quick else "full"
    begin, end = f"<!-- update_step:{tag}:begin -->", f"<!-- update_step:{tag}:end -->"
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    block = f"{begin}\n{table}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small trees, few rounds (~2-3 min)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("out")))
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    rounds = args.rounds or (5 if args.quick else 7)
    iters = 3 if args.quick else 5
    all_trees = trees(args.quick)
    total = len(all_trees) * (len(JAX_METHODS) + len(TORCH_METHODS) + rounds)
    report = {"quick": args.quick, "rounds": rounds, "iters": iters, "machine": machine(), "trees": {}}
    with tqdm(total=total, desc="update_step") as progress:
        for tree, shapes in all_trees.items():
            progress.set_postfix_str(tree)
            report["trees"][tree] = measure(tree, shapes, rounds, iters, progress)
            jax.clear_caches()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "update_step.json").write_text(json.dumps(report, indent=1))
    table = markdown(report)
    (out / "update_step.md").write_text(table + "\n")
    update_results_md(Path(__file__).with_name("RESULTS.md"), table, args.quick)
    print(table)


if __name__ == "__main__":
    main()
