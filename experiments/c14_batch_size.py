"""Claim 14: minibatch size vs gradient noise and steps; growing the batch ~ decaying the lr.

Three parts on the digits with a 64-unit ReLU MLP:

1. Gradient noise: at the initial parameters, ``E||g_B - g||^2`` of a minibatch gradient
   (B examples drawn with replacement) around the full-batch gradient ``g``, for
   B = 1..256 (200 draws each, one vmapped program per B): it falls like 1/B.
2. Steps to converge: SGD (lr 0.05) with batch B, the full training loss recorded after
   every step (``jdl.training.train_step_fn`` inside a ``lax.scan``, vmapped over seeds):
   larger batches need fewer steps but, past a point, more examples.
3. Smith et al. 2018: halving the learning rate every K epochs at a fixed batch
   (``jdl.per_epoch(jdl.step_decay(...))``) versus doubling the batch every K epochs at a
   fixed learning rate (``jdl.step_doubling_batch_size``): the same loss curve per epoch,
   in fewer steps.

    python experiments/c14_batch_size.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c14_batch_size"
CLAIM = 14
TITLE = "Batch size vs gradient noise and steps; growing the batch ~ decaying the lr"
SEEDS = ("000", "001", "002")
NOISE_BATCHES = (1, 4, 16, 64, 256)
STEP_BATCHES = (8, 32, 128, 512)
LR_STEPS, TARGET = 0.05, 0.3
LR0, B0 = 0.2, 32
CRITERION = (
    "(1) the log-log slope of E||g_B - g||^2 against B (B = 1..256) is in [-1.15, -0.85]; "
    "(2) SGD lr 0.05: steps until the full training loss < 0.3 fall as B grows 8 -> 512 "
    "(strictly, mean of seeds) while the examples used (steps x B) grow from B = 32 to 512; "
    "(3) lr 0.2 halved every K epochs at batch 32 vs batch 32 doubled every K epochs at lr "
    "0.2: final training losses within a factor 1.5, test accuracies within 2 points, and "
    "the growing batch takes fewer steps"
)


def _loss_fn(state, params, x, y):
    logits = state.apply_fn({"params": params}, x, train=False)
    total, _, weight = jdl.training.cross_entropy(logits, y)
    return total / weight


def gradient_noise(state, x, y, draws, key, batches=NOISE_BATCHES):
    """Mean squared deviation of minibatch gradients from the full gradient, per B."""
    flat = lambda g: jnp.concatenate([l.ravel() for l in jax.tree.leaves(g)])  # noqa: E731
    full = flat(jax.grad(_loss_fn, 1)(state, state.params, x, y))
    out = []
    for b in batches:
        idx = jax.random.randint(jax.random.fold_in(key, b), (draws, b), 0, len(x))
        one = lambda i: jnp.sum((flat(jax.grad(_loss_fn, 1)(state, state.params, x[i], y[i]))  # noqa: E731
                                 - full) ** 2)
        out.append(float(jnp.mean(jax.jit(jax.vmap(one))(idx))))
    return np.asarray(out)


def loss_per_step(model, x, y, batch, steps, seeds):
    """Full training loss after every SGD step, ``(seeds, steps)``."""
    n = len(x)

    def one(seed):
        key = jax.random.key(seed)
        state = jdl.training.create_train_state(model, jdl.sgd(LR_STEPS), key, x[:1])
        idx = jax.random.randint(jax.random.fold_in(key, 1), (steps, batch), 0, n)

        def step(state, i):
            state, _ = jdl.training.train_step_fn(state, (x[i], y[i]))
            return state, _loss_fn(state, state.params, x, y)

        return jax.lax.scan(step, state, idx)[1]

    return np.asarray(jax.jit(jax.vmap(one))(jnp.asarray(seeds)))


def _first_below(curve, level):
    hit = np.nonzero(curve < level)[0]
    return float(hit[0] + 1) if hit.size else float("inf")


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    draws = _common.pick(quick, smoke, 400, 200, 20)
    steps = _common.pick(quick, smoke, 1500, 600, 40)
    seeds = _common.pick(quick, smoke, [0, 1, 2], [0, 1], [0])
    every = _common.pick(quick, smoke, 6, 3, 1)
    epochs = _common.pick(quick, smoke, 4, 4, 2) * every
    noise_batches = _common.pick(quick, smoke, NOISE_BATCHES, NOISE_BATCHES, (1, 16, 256))
    step_batches = _common.pick(quick, smoke, STEP_BATCHES, STEP_BATCHES, (32, 512))
    (x, y), test = jdl.data.load_digits()
    x, y = jnp.asarray(x), jnp.asarray(y)
    model = jdl.models.MLP(hidden=(64,))

    # 1. gradient noise at init
    state = jdl.training.create_train_state(model, jdl.sgd(0.1), jax.random.key(0), x[:1])
    noise = gradient_noise(state, x, y, draws, jax.random.key(1), noise_batches)
    slope = float(np.polyfit(np.log(noise_batches), np.log(noise), 1)[0])

    # 2. steps to converge vs batch size
    curves = {b: loss_per_step(model, x, y, b, steps, seeds).mean(axis=0) for b in step_batches}
    to_target = np.array([_first_below(curves[b], TARGET) for b in step_batches])
    examples = to_target * np.array(step_batches)
    steps_fall = bool(np.all(np.diff(to_target) < 0) and np.all(np.isfinite(to_target)))
    examples_grow = bool(examples[-1] > examples[1])

    # 3. decay the lr vs grow the batch
    runs = {}
    steps_per_epoch = len(x) // B0
    configs = {
        f"lr {LR0} halved every {every} epochs, batch {B0}": dict(
            tx=jdl.sgd(jdl.per_epoch(jdl.step_decay(LR0, 0.5, every), steps_per_epoch)),
            batch_size=B0),
        f"lr {LR0}, batch {B0} doubled every {every} epochs": dict(
            tx=jdl.sgd(LR0), batch_size_schedule=jdl.step_doubling_batch_size(B0, every)),
    }
    for name, cfg in configs.items():
        tx = cfg.pop("tx")
        hists = []
        for seed in seeds:
            st = jdl.training.create_train_state(model, tx, jax.random.key(seed), x[:1])
            hists.append(jdl.training.fit(st, (x, y), test, epochs=epochs, seed=seed,
                                          progress=False, **cfg)[1])
        runs[name] = dict(train=np.mean([h.train_loss for h in hists], axis=0),
                          val=np.mean([h.val_loss for h in hists], axis=0),
                          acc=float(np.mean([h.val_accuracy[-1] for h in hists])),
                          steps=int(sum(hists[0].steps_per_epoch)))
    decay, grow = runs.values()
    ratio = float(grow["train"][-1] / decay["train"][-1])
    same_curve = (1 / 1.5 <= ratio <= 1.5 and abs(grow["acc"] - decay["acc"]) <= 0.02
                  and grow["steps"] < decay["steps"])
    reproduced = bool(-1.15 <= slope <= -0.85 and steps_fall and examples_grow and same_curve)

    fig, axes = plt.subplots(1, 3, figsize=(18, 4.6))
    bs = np.array(noise_batches, float)
    axes[0].loglog(bs, noise, "o-", label="measured E||g_B - g||²")
    axes[0].loglog(bs, noise[0] / bs, "k:", label="1/B reference")
    axes[0].set_xlabel("batch size B")
    axes[0].set_ylabel("gradient noise E||g_B - g||²")
    axes[0].set_title(f"Gradient noise at init: slope {slope:.3f}")
    axes[0].legend(fontsize=8)
    for b, color in zip(step_batches, plt.cm.viridis(np.linspace(0, 0.9, len(step_batches)))):
        axes[1].semilogy(np.arange(1, steps + 1), curves[b], color=color, label=f"B = {b}")
    axes[1].axhline(TARGET, color="0.5", ls=":", label=f"loss {TARGET}")
    axes[1].set_xlabel("SGD step")
    axes[1].set_ylabel("full training loss")
    axes[1].set_title(f"Steps to converge, SGD lr {LR_STEPS}")
    axes[1].legend(fontsize=8)
    ep = np.arange(1, epochs + 1)
    for (name, r), color in zip(runs.items(), ("tab:blue", "tab:orange")):
        axes[2].semilogy(ep, r["train"], "o-", ms=3, color=color,
                         label=f"{name}: {r['steps']} steps (train)")
        axes[2].semilogy(ep, r["val"], "--", color=color, label="  test loss")
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel("loss (mean of seeds)")
    axes[2].set_title("Decay the lr or grow the batch")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [{"batch size": b, f"steps to loss < {TARGET}": to_target[i],
             "examples used": examples[i]} for i, b in enumerate(step_batches)]
    noise_rows = [{"batch size": b, "E||g_B - g||^2": noise[i], "x B": noise[i] * b}
                  for i, b in enumerate(noise_batches)]
    decay_rows = [{"schedule": name, "optimizer steps": r["steps"],
                   "final train loss": r["train"][-1], "final test loss": r["val"][-1],
                   "final test accuracy": r["acc"]} for name, r in runs.items()]
    measured = {"noise slope": slope, **{f"steps to target, B={b}": to_target[i]
                                        for i, b in enumerate(step_batches)},
                "decay: final train loss": decay["train"][-1],
                "grow: final train loss": grow["train"][-1],
                "decay: steps": decay["steps"], "grow: steps": grow["steps"],
                "decay: test acc": decay["acc"], "grow: test acc": grow["acc"]}
    setup = (f"digits ({len(x)} train), MLP(64) ReLU; noise: {draws} draws per B; steps: "
             f"{steps} SGD steps at lr {LR_STEPS}, seeds {list(seeds)}; schedules: {epochs} "
             f"epochs, K = {every}.")
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup),
                                extra_tables={"Gradient noise": noise_rows,
                                              "Decay the lr vs grow the batch": decay_rows})
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
