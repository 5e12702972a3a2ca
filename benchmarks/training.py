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
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxopt_dl as jdl
from jaxopt_dl import training
from jaxopt_dl.training import sweep as sweep_module

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
    state, history = training.fit(state, (x, y), epochs=epochs, batch_size=BATCH, seed=seed,
                                  progress=False)
    loss, acc = training.evaluate(state, test)
    state_bytes = sum(leaf.nbytes for leaf in jax.tree.leaves(state.opt_state))
    return {"test_accuracy": acc, "test_loss": loss, "final_train_loss": history.train_loss[-1],
            "epochs": epochs, "seconds": time.perf_counter() - start, "seed": seed,
            "opt_state_bytes": int(state_bytes)}


def accuracy_over_seeds(make, epochs, seeds, **kwargs):
    """``make() -> (model, tx)``; seed s sets the split, the init and the shuffles."""
    runs = [accuracy_run(*make(), epochs, seed=s, **kwargs) for s in seeds]
    accs = [r["test_accuracy"] for r in runs]
    return {"seeds": list(seeds), "test_accuracy": accs, "min": min(accs),
            "mean": float(np.mean(accs)), "seconds_per_run": float(np.mean(
                [r["seconds"] for r in runs]))}


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
        state, history = training.fit(state0, (x, y), epochs=epochs, batch_size=batch,
                                      progress=False)
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
        state, _ = training.fit(state0, (x, y), epochs=epochs, batch_size=batch_size,
                                progress=False)
        jax.block_until_ready(state.params)

    def swept():
        return training.sweep(make_tx, {"learning_rate": lrs}, [0], model, (x, y),
                              epochs=epochs, batch_size=batch_size, val_data=test,
                              eval_every_epoch=False)

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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    results = {"device": jax.devices()[0].device_kind, "cpu_count": os.cpu_count()}
    seeds = (0,) if args.quick else (0, 1, 2)
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
        results["resnet_bn"].update(optimizer="adam, warmup-cosine peak 3e-3",
                                    epochs=resnet_epochs)
        print("resnet", results["resnet_bn"], flush=True)
    results["overhead"] = overhead(3 if args.quick else 5)
    print("overhead", results["overhead"], flush=True)
    epochs = 3 if args.quick else 5
    results["sweep"] = [sweep_cost(epochs, (128, 64), 64), sweep_cost(epochs, (512, 512), 256)]
    print("sweep", results["sweep"], flush=True)

    os.makedirs(os.path.join(HERE, "out"), exist_ok=True)
    with open(os.path.join(HERE, "out", "training.json"), "w") as f:
        json.dump(results, f, indent=1)
    write_markdown(results)


def _accs(run):
    return ", ".join(f"{a:.4f}" for a in run["test_accuracy"])


def write_markdown(r):
    m = r["mlp_adam"]
    rows = [
        (f"MLP(256,128)+dropout 0.2, Adam warmup-cosine 3e-3, {MLP_EPOCHS} epochs, global "
         f"standardization: test accuracy (seeds {m['seeds']})", ">= 0.97",
         f"{_accs(m)} (min {m['min']:.4f})", m["min"] >= 0.97),
        ("previous recipe: MLP(128,64), Adam 1e-3, per-pixel standardization (seed 0)",
         "(reference)", _accs(r["mlp_adam_old"]), None),
    ]
    f32, bf16 = r["bf16_moments"]["float32"], r["bf16_moments"]["bfloat16"]
    rows.append(("same MLP, Adam with bf16 mu/nu vs f32 (seed 0): test accuracy, final "
                 "train loss, Adam state bytes", "(cost)",
                 f"{bf16['test_accuracy']:.4f} vs {f32['test_accuracy']:.4f}; "
                 f"{bf16['final_train_loss']:.4f} vs {f32['final_train_loss']:.4f}; "
                 f"{bf16['opt_state_bytes']} vs {f32['opt_state_bytes']} B", None))
    if "resnet_bn" in r:
        res = r["resnet_bn"]
        rows.append((f"ResNet + BN ({res['optimizer']}, {res['epochs']} epochs, global "
                     "standardization): test accuracy", ">= 0.98", _accs(res),
                     res["min"] >= 0.98))
    o = r["overhead"]
    rows.append(("fit vs hand-written flax+optax loop (MLP, steps/s)", "<= +10%",
                 f"{o['fit_steps_per_s']:.0f} vs {o['hand_written_steps_per_s']:.0f} steps/s "
                 f"({o['overhead']:+.1%})", o["overhead"] <= 0.10))
    for s in r["sweep"]:
        rows.append((f"sweep of 16 lrs / (one run x 16 / 8): MLP{tuple(s['hidden'])}, batch "
                     f"{s['batch_size']}, {s['epochs']} epochs", "<= 1.5",
                     f"{s['ratio_to_single_x16_over_8']:.2f} (sweep {s['sweep_s']:.2f} s, one run "
                     f"{s['single_run_s']:.2f} s; {s['speedup_vs_sequential']:.1f}x faster than "
                     "16 sequential)", s["ratio_to_single_x16_over_8"] <= 1.5))
    lines = ["## Training", "",
             f"`python benchmarks/training.py` on {r['device']} ({r['cpu_count']} cores); "
             "compile time excluded from the speed rows.", "",
             "| target | required | measured | met |", "|---|---|---|---|"]
    met = {True: "yes", False: "NO", None: "-"}
    lines += [f"| {a} | {b} | {c} | {met[d]} |" for a, b, c, d in rows]
    section = "\n".join(lines) + "\n"
    path = os.path.join(HERE, "RESULTS.md")
    text = open(path).read() if os.path.exists(path) else "# Benchmark results\n"
    pattern = re.compile(r"## Training\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(section.rstrip("\n") + "\n", text) if pattern.search(text) else (
        text.rstrip("\n") + "\n\n" + section)
    with open(path, "w") as f:
        f.write(text)
    print(section)


if __name__ == "__main__":
    main()
