"""Training targets: accuracy on digits, trainer overhead, sweep batching.

Run: ``python benchmarks/training.py [--quick]``. Writes ``benchmarks/out/training.json``
and appends a "## Training" section to ``benchmarks/RESULTS.md``.

* MLP + Adam on digits: >= 97% test accuracy in <= 20 epochs. Recipe: inputs
  standardized with ONE training mean/std for all pixels (``standardize="global"``;
  per-pixel scaling blows nearly blank border pixels up to ~50 standard deviations on
  test images and costs ~1 point), MLP(256, 128) with dropout 0.2, Adam with a linear
  warmup (5% of the steps) and cosine decay from 3e-3, batch 64. Checked on seeds 0-2
  (each seed: split, init and shuffles). The previous recipe (MLP(128, 64), Adam 1e-3,
  per-pixel scaling) is reported next to it.
* Adam with bfloat16 ``mu``/``nu`` (issue 8): test accuracy, final training loss and
  optimizer-state bytes against float32 moments, same seed.
* ResNet with batch norm: >= 98%.
* ``fit`` adds <= 10% over a minimal hand-written flax+optax jitted loop (same model,
  data, batches; steps/s; interleaved repetitions, medians).
* ``sweep`` of 16 settings costs <= 1.5 x (one run x 16 / 8), against 16 sequential runs,
  for a small MLP (batch 64) and a larger one (MLP(512, 512), batch 256). On a 2-core CPU
  a run that already keeps both cores busy cannot get 5.3x faster by batching, so the
  target is reachable only where the single run is overhead-bound; see RESULTS.md.
  ``benchmarks/sweep_devices.py`` adds the sweep split over 2 host devices against the
  same sweep on one device and 16 sequential runs.
* A ``fit`` epoch against a plain torch training loop (``torch.optim.Adam(fused=True)``)
  on the same MLP, CNN and ResNet (same layers, batch norm, batch size, shuffled
  batches), target <= 1.0x torch per epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import jaxopt_dl as jdl  # noqa: E402
from jaxopt_dl import training  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


MLP_EPOCHS, BATCH = 20, 64


def mlp_recipe(mu_dtype=None, nu_dtype=None):
    """The MLP recipe (`make demo`'s MLP line): see the module docstring."""
    steps = MLP_EPOCHS * (1437 // BATCH)
    schedule = jdl.warmup_cosine_decay_schedule(0.0, 3e-3, steps // 20, steps)
    tx = jdl.adam(schedule, mu_dtype=mu_dtype, nu_dtype=nu_dtype)
    return jdl.models.MLP(hidden=(256, 128), dropout_rate=0.2), tx


def accuracy_run(model, tx, epochs, seed=0, standardize="global"):
    (x, y), test = jdl.data.load_digits(seed=seed, standardize=standardize)
    state = training.create_train_state(model, tx, jax.random.key(seed), x[:1])
    start = time.perf_counter()
    state, history = training.fit(
        state, (x, y), epochs=epochs, batch_size=BATCH, seed=seed, progress=False
    )
    loss, acc = training.evaluate(state, test)
    state_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(state.opt_state))
    return {
        "test_accuracy": acc,
        "test_loss": loss,
        "final_train_loss": history.train_loss[-1],
        "epochs": epochs,
        "seconds": time.perf_counter() - start,
        "seed": seed,
        "opt_state_bytes": int(state_bytes),
    }


def accuracy_over_seeds(make, epochs, seeds, **kwargs):
    """``make() -> (model, tx)``; seed s sets the split, the init and the shuffles."""
    runs = [accuracy_run(*make(), epochs, seed=s, **kwargs) for s in seeds]
    accs = [r["test_accuracy"] for r in runs]
    return {
        "seeds": list(seeds),
        "test_accuracy": accs,
        "min": min(accs),
        "mean": float(np.mean(accs)),
        "seconds_per_run": float(np.mean([r["seconds"] for r in runs])),
    }


def hand_written_loop(model, x, y, epochs, batch_size, seed):
    """The minimal flax+optax loop: jitted step, host-side shuffled batches."""
    params = model.init(jax.random.key(seed), x[:1])["params"]
    opt = optax.adam(1e-3)
    opt_state = opt.init(params)

    @jax.jit
    def step(params, opt_state, xb, yb):
        def loss_fn(p):
            logits = model.apply({"params": p}, xb)
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    x, y = jnp.asarray(x), jnp.asarray(y)

    def run():
        nonlocal params, opt_state
        losses = []
        for epoch in range(epochs):
            perm = np.random.default_rng([seed, epoch]).permutation(len(x))
            for i in range(len(x) // batch_size):
                idx = perm[i * batch_size : (i + 1) * batch_size]
                params, opt_state, loss = step(params, opt_state, x[idx], y[idx])
                losses.append(loss)
        jax.block_until_ready(params)
        return len(losses)

    return run


def overhead(reps):
    (x, y), _ = jdl.data.load_digits()
    model = jdl.models.MLP()
    epochs, batch = 5, 64
    baseline = hand_written_loop(model, x, y, epochs, batch, 0)
    state0 = training.create_train_state(model, jdl.adam(1e-3), jax.random.key(0), x[:1])

    def trainer():
        state, history = training.fit(
            state0, (x, y), epochs=epochs, batch_size=batch, progress=False
        )
        jax.block_until_ready(state.params)
        return len(history.step_loss)

    baseline(), trainer()  # compile
    times = {"hand_written": [], "fit": []}
    steps = 0
    for _ in range(reps):
        for name, fn in (("hand_written", baseline), ("fit", trainer)):
            start = time.perf_counter()
            steps = fn()
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "steps": steps,
        "hand_written_steps_per_s": steps / med["hand_written"],
        "fit_steps_per_s": steps / med["fit"],
        "overhead": med["fit"] / med["hand_written"] - 1,
    }


def make_tx(learning_rate):
    return jdl.adam(learning_rate)


def sweep_cost(epochs, hidden, batch_size, rounds=3):
    """16 learning rates: one vmapped ``sweep`` vs 16 sequential (warm) ``fit`` runs.

    The sweep evaluates only after the last epoch (``eval_every_epoch=False``), like
    the ``fit`` runs it is compared with (no ``val_data``). Interleaved rounds, medians.
    """
    (x, y), test = jdl.data.load_digits(standardize="global")
    model = jdl.models.MLP(hidden=hidden)
    lrs = np.logspace(-4, -1, 16)
    state0 = training.create_train_state(model, make_tx(1e-3), jax.random.key(0), x[:1])

    def one():
        state, _ = training.fit(
            state0, (x, y), epochs=epochs, batch_size=batch_size, progress=False
        )
        jax.block_until_ready(state.params)

    def swept():
        return training.sweep(
            make_tx,
            {"learning_rate": lrs},
            [0],
            model,
            (x, y),
            epochs=epochs,
            batch_size=batch_size,
            val_data=test,
            eval_every_epoch=False,
        )

    one()
    start = time.perf_counter()
    result = swept()
    first = time.perf_counter() - start
    singles, sweeps = [], []
    for _ in range(rounds):
        start = time.perf_counter()
        one()
        singles.append(time.perf_counter() - start)
        start = time.perf_counter()
        swept()
        sweeps.append(time.perf_counter() - start)
    single, warm = statistics.median(singles), statistics.median(sweeps)
    return {
        "settings": 16,
        "hidden": list(hidden),
        "batch_size": batch_size,
        "epochs": epochs,
        "single_run_s": single,
        "sixteen_sequential_s": 16 * single,
        "sweep_s": warm,
        "sweep_with_compile_s": first,
        "speedup_vs_sequential": 16 * single / warm,
        "ratio_to_single_x16_over_8": warm / (single * 16 / 8),
        "best_lr": float(lrs[int(np.argmax(result.final_accuracy[:, 0]))]),
        "best_accuracy": float(result.final_accuracy.max()),
    }


# ------------------------------------------------ fit epoch vs a plain torch loop
def torch_model(name: str) -> nn.Module:
    """The torch twin of ``jdl.models`` ``MLP()``, ``CNN()`` and ``ResNet()`` (defaults)."""
    if name == "MLP":
        return nn.Sequential(
            nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10)
        )
    if name == "CNN":
        return nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * 2 * 2, 64),
            nn.ReLU(),
            nn.Linear(64, 10),
        )

    class Block(nn.Module):
        def __init__(self, c_in, c_out, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out, momentum=0.1, eps=1e-5)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out, momentum=0.1, eps=1e-5)
            self.project = None
            if stride != 1 or c_in != c_out:
                self.project = nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                    nn.BatchNorm2d(c_out, momentum=0.1, eps=1e-5),
                )

        def forward(self, x):
            y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(y + (x if self.project is None else self.project(x)))

    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 16, 3, padding=1, bias=False),
        nn.BatchNorm2d(16, momentum=0.1, eps=1e-5),
        nn.ReLU(),
        Block(16, 16, 1),
        Block(16, 32, 2),
        Block(32, 64, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


def epoch_vs_torch(name: str, epochs: int, reps: int, batch: int = BATCH) -> dict:
    """Seconds per epoch: ``fit`` (jdl.adam, default step) vs torch Adam(fused=True)."""
    (x, y), _ = jdl.data.load_digits(standardize="global")
    model = getattr(jdl.models, name)()
    state0 = training.create_train_state(model, jdl.adam(1e-3), jax.random.key(0), x[:1])

    def jdl_run():
        state, _ = training.fit(state0, (x, y), epochs=epochs, batch_size=batch, progress=False)
        jax.block_until_ready(state.params)

    torch.manual_seed(0)
    net = torch_model(name)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3, fused=True)
    xt, yt = torch.as_tensor(np.asarray(x)), torch.as_tensor(np.asarray(y), dtype=torch.long)

    def torch_run():
        net.train()
        for epoch in range(epochs):
            perm = torch.as_tensor(np.random.default_rng([0, epoch]).permutation(len(xt)))
            for i in range(len(xt) // batch):
                idx = perm[i * batch : (i + 1) * batch]
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(net(xt[idx]), yt[idx])
                loss.backward()
                opt.step()

    jdl_run(), torch_run()  # compile / warm up
    times = {"fit": [], "torch": []}
    for _ in range(reps):
        for key, fn in (("fit", jdl_run), ("torch", torch_run)):
            start = time.perf_counter()
            fn()
            times[key].append((time.perf_counter() - start) / epochs)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "model": name,
        "batch_size": batch,
        "steps_per_epoch": len(x) // batch,
        "fit_epoch_s": med["fit"],
        "torch_epoch_s": med["torch"],
        "ratio": med["fit"] / med["torch"],
        "fused_step": jdl.fused.fusable(state0.tx, state0.opt_state, state0.params),
        "load_avg": os.getloadavg()[0],
    }


def sweep_devices(quick: bool) -> dict:
    script = os.path.join(HERE, "sweep_devices.py")
    proc = subprocess.run(
        [sys.executable, script, *(["--quick"] * quick)], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one seed, no ResNet accuracy run, fewer repetitions (a few minutes)",
    )
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    results = {
        "device": jax.devices()[0].device_kind,
        "cpu_count": os.cpu_count(),
        "load_avg_at_start": os.getloadavg()[0],
    }
    results["epoch_vs_torch"] = [
        epoch_vs_torch(name, 1 if args.quick else 3, 2 if args.quick else 5)
        for name in ("MLP", "CNN", "ResNet")
    ]
    print("epoch vs torch", results["epoch_vs_torch"], flush=True)
    seeds = (0,) if args.quick else (0, 1, 2)
    results["quick"] = args.quick
    results["mlp_adam"] = accuracy_over_seeds(mlp_recipe, MLP_EPOCHS, seeds)
    print("mlp", results["mlp_adam"], flush=True)
    old = lambda: (jdl.models.MLP(), jdl.adam(1e-3))  # noqa: E731
    results["mlp_adam_old"] = accuracy_over_seeds(old, MLP_EPOCHS, (0,), standardize=True)
    print("mlp (previous recipe)", results["mlp_adam_old"], flush=True)
    results["bf16_moments"] = {
        "float32": accuracy_run(*mlp_recipe(), MLP_EPOCHS),
        "bfloat16": accuracy_run(*mlp_recipe(jnp.bfloat16, jnp.bfloat16), MLP_EPOCHS),
    }
    print("bf16 moments", results["bf16_moments"], flush=True)
    if not args.quick:
        resnet_epochs = 12
        steps = resnet_epochs * (1437 // BATCH)

        def resnet():
            tx = jdl.adam(jdl.warmup_cosine_decay_schedule(0.0, 3e-3, 50, steps))
            return jdl.models.ResNet(), tx

        results["resnet_bn"] = accuracy_over_seeds(resnet, resnet_epochs, (0,))
        results["resnet_bn"].update(optimizer="adam, warmup-cosine peak 3e-3", epochs=resnet_epochs)
        print("resnet", results["resnet_bn"], flush=True)
    results["overhead"] = overhead(3 if args.quick else 5)
    print("overhead", results["overhead"], flush=True)
    epochs = 3 if args.quick else 5
    results["sweep"] = [sweep_cost(epochs, (128, 64), 64), sweep_cost(epochs, (512, 512), 256)]
    print("sweep", results["sweep"], flush=True)
    results["sweep_devices"] = sweep_devices(args.quick)
    print("sweep over devices", results["sweep_devices"], flush=True)
    results["load_avg_at_end"] = os.getloadavg()[0]

    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "training.json"), "w") as f:
        json.dump(results, f, indent=1)
    write_markdown(results)


def _accs(run):
    return ", ".join(f"{a:.4f}" for a in run["test_accuracy"])


def write_markdown(r):
    m = r["mlp_adam"]
    rows = [
        (
            f"MLP(256,128)+dropout 0.2, Adam warmup-cosine 3e-3, {MLP_EPOCHS} epochs, global "
            f"standardization: test accuracy (seeds {m['seeds']})",
            ">= 0.97",
            f"{_accs(m)} (min {m['min']:.4f})",
            m["min"] >= 0.97,
        ),
        (
            "previous recipe: MLP(128,64), Adam 1e-3, per-pixel standardization (seed 0)",
            "(reference)",
            _accs(r["mlp_adam_old"]),
            None,
        ),
    ]
    f32, bf16 = r["bf16_moments"]["float32"], r["bf16_moments"]["bfloat16"]
    rows.append(
        (
            "same MLP, Adam with bf16 mu/nu vs f32 (seed 0): test accuracy, final "
            "train loss, Adam state bytes",
            "(cost)",
            f"{bf16['test_accuracy']:.4f} vs {f32['test_accuracy']:.4f}; "
            f"{bf16['final_train_loss']:.4f} vs {f32['final_train_loss']:.4f}; "
            f"{bf16['opt_state_bytes']} vs {f32['opt_state_bytes']} B",
            None,
        )
    )
    if "resnet_bn" in r:
        res = r["resnet_bn"]
        rows.append(
            (
                f"ResNet + BN ({res['optimizer']}, {res['epochs']} epochs, global "
                "standardization): test accuracy",
                ">= 0.98",
                _accs(res),
                res["min"] >= 0.98,
            )
        )
    o = r["overhead"]
    rows.append(
        (
            "fit vs hand-written flax+optax loop (MLP, steps/s)",
            "<= +10%",
            f"{o['fit_steps_per_s']:.0f} vs {o['hand_written_steps_per_s']:.0f} steps/s "
            f"({o['overhead']:+.1%})",
            o["overhead"] <= 0.10,
        )
    )
    for s in r["sweep"]:
        rows.append(
            (
                f"sweep of 16 lrs / (one run x 16 / 8): MLP{tuple(s['hidden'])}, batch "
                f"{s['batch_size']}, {s['epochs']} epochs",
                "<= 1.5",
                f"{s['ratio_to_single_x16_over_8']:.2f} (sweep {s['sweep_s']:.2f} s, one run "
                f"{s['single_run_s']:.2f} s; {s['speedup_vs_sequential']:.1f}x faster than "
                "16 sequential)",
                s["ratio_to_single_x16_over_8"] <= 1.5,
            )
        )
    for e in r["epoch_vs_torch"]:
        rows.append(
            (
                f"fit epoch / plain torch loop epoch (Adam, fused=True): {e['model']}, batch "
                f"{e['batch_size']}, {e['steps_per_epoch']} steps",
                "<= 1.0",
                f"{e['ratio']:.2f} ({e['fit_epoch_s'] * 1e3:.1f} vs "
                f"{e['torch_epoch_s'] * 1e3:.1f} ms; fused step: {e['fused_step']})",
                e["ratio"] <= 1.0,
            )
        )
    for s in r["sweep_devices"]["rows"]:
        ceiling = r["cpu_count"] / s["sweep_cores_used"]  # the most 2 devices can add
        met = s["speedup_2_devices_vs_1"] >= 1.7
        rows.append(
            (
                f"sweep of 16 lrs on 2 host devices vs 1 device vs 16 sequential runs: "
                f"MLP{tuple(s['hidden'])}, batch {s['batch_size']}, {s['epochs']} epochs",
                ">= 1.7 (2 vs 1 device)",
                f"{s['speedup_2_devices_vs_1']:.2f}x (2 devices "
                f"{s['sweep_2_devices_s']:.2f} s on {s['sweep_2_devices_cores_used']:.1f} "
                f"cores, 1 device {s['sweep_s']:.2f} s on {s['sweep_cores_used']:.1f} cores, "
                f"16 sequential {s['sixteen_sequential_s']:.2f} s)",
                met
                if met or ceiling >= 1.7
                else f"NO (bound: one device keeps "
                f"{s['sweep_cores_used']:.1f} of {r['cpu_count']} cores busy, at most "
                f"{ceiling:.2f}x left)",
            )
        )
    lines = [
        "## Training",
        "",
        f"`python benchmarks/training.py{' --quick' if r.get('quick') else ''}` on "
        f"{r['device']} ({r['cpu_count']} cores); compile time excluded from the speed rows; "
        f"load average {r['load_avg_at_start']:.1f} at start, {r['load_avg_at_end']:.1f} at "
        "the end (shared machine: compare ratios).",
        "",
        "| target | required | measured | met |",
        "|---|---|---|---|",
    ]
    met = {True: "yes", False: "NO", None: "-"}
    lines += [f"| {a} | {b} | {c} | {met.get(d, d)} |" for a, b, c, d in rows]
    section = "\n".join(lines) + "\n"
    path = os.path.join(HERE, "RESULTS.md")
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    pattern = re.compile(r"## Training\n.*?(?=\n## |\n<!-- |\Z)", re.S)
    text = (
        pattern.sub(section.rstrip("\n") + "\n", text)
        if pattern.search(text)
        else (text.rstrip("\n") + "\n\n" + section)
    )
    with open(path, "w") as f:
        f.write(text)
    print(section)


if __name__ == "__main__":
    main()
