"""Claim 6: gradient clipping keeps training of an exploding-gradient RNN stable.

J. Petersen, "Optimization in Deep Learning" (after Goodfellow, Bengio & Courville,
*Deep Learning*, Sec. 8.2.4 and 10.11.1):

    "Many layers can lead to very steep gradients regions, because of the multiplication
    of several large weights. This can lead to overshooting [...] So we can clip them when
    they are too large. Gradient cliffs are particularly a problem when dealing with long
    sequences with recurrent neural networks."

Setup: the tanh ``jdl.models.RNN`` of claim 8 with recurrent weights orthogonal x 1.2 (its
backward pass grows by up to 1.2 per time step), sequences of 30 N(0, 1) inputs, target
the first input (a long-range dependency), mean squared error, SGD batch 32 with fresh
sequences every step, with and without ``jdl.clip_by_global_norm`` in front. On separate
tuning seeds: plain SGD's learning rate, then the clip threshold at the 95th percentile
of its gradient norms (clipping acts at the cliffs, not on every step), then the clipped
arm's learning rate. On fresh seeds, over the whole grid: the largest learning rate at
which each arm still ends useful (validation MSE below half of predicting 0), paired
over seeds (the same initial weights and batches in both arms). One compiled program
per arm: ``vmap`` over learning rates and seeds, ``lax.scan`` over steps.

    python experiments/c06_clipping_cliff.py [--quick] [--out DIR]
"""

from __future__ import annotations

import _common
import jax
import jax.numpy as jnp
import numpy as np
from _common import plt

import jaxopt_dl as jdl

NAME = "c06_clipping_cliff"
CLAIM = 6
ENTRY = _common.criteria("c06")
TITLE = ENTRY["title"]
SEEDS = ("000",)
CRITERION = ENTRY["criterion"]
HIDDEN, LENGTH, BATCH, SCALE = 32, 30, 32, 1.2
LRS = 2.0 ** np.arange(-9, 3)
EVAL_EVERY, N_TUNE = 10, 5
PERCENTILE = 95  # the clip threshold: this percentile of the unclipped gradient norms
USEFUL = 0.5  # a run is useful when it ends below half the MSE of predicting 0 (= 1)
BAR_OCTAVES, DIVERGED = 1.0, 10.0


def clipped(threshold: float):
    """``lr -> clip_by_global_norm(threshold) then SGD(lr)``."""
    return lambda lr: jdl.chain(jdl.clip_by_global_norm(threshold), jdl.sgd(lr))


def largest_useful(final_val: np.ndarray) -> np.ndarray:
    """Per seed, the largest grid lr whose final validation MSE is below ``USEFUL``.

    A seed useful at no lr of the grid counts as half the smallest one.
    """
    useful = final_val < USEFUL  # (lr, seed)
    idx = np.where(useful.any(0), len(LRS) - 1 - np.argmax(useful[::-1], axis=0), -1)
    return np.where(idx >= 0, LRS[np.maximum(idx, 0)], LRS[0] / 2)


def model() -> jdl.models.RNN:
    return jdl.models.RNN(
        hidden=HIDDEN, num_classes=1, recurrent_init=jdl.initializers.orthogonal(SCALE)
    )


def sequences(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """``n`` input sequences ``(n, LENGTH, 1)`` and their targets, the first input."""
    x = jax.random.normal(key, (n, LENGTH, 1))
    return x, x[:, 0, 0]


def mse(params, x, y) -> jax.Array:
    return jnp.mean((model().apply({"params": params}, x)[:, 0] - y) ** 2)


def train_arm(make_opt, seeds: jax.Array, steps: int, val, test):
    """Per (lr, seed): batch losses, gradient norms, validation curve and test loss."""
    x0 = jnp.zeros((1, LENGTH, 1))

    def one(lr, seed):
        k_init, k_data = jax.random.split(jax.random.key(seed))
        params = model().init(k_init, x0)["params"]
        opt = make_opt(lr)

        def step(carry, k):
            p, state = carry
            loss, g = jax.value_and_grad(mse)(p, *sequences(k, BATCH))
            updates, state = opt.update(g, state, p)
            return (jdl.apply_updates(p, updates), state), (loss, jdl.global_norm(g))

        def block(carry, ks):
            carry, (loss, gnorm) = jax.lax.scan(step, carry, ks)
            return carry, (loss, gnorm, mse(carry[0], *val))

        keys = jax.random.split(k_data, steps).reshape(steps // EVAL_EVERY, EVAL_EVERY)
        (p, _), (loss, gnorm, val_curve) = jax.lax.scan(block, (params, opt.init(params)), keys)
        return (
            loss.reshape(-1),
            gnorm.reshape(-1),
            jnp.concatenate([mse(params, *val)[None], val_curve]),
            mse(p, *test),
        )

    run = jax.jit(jax.vmap(jax.vmap(one, (None, 0)), (0, None)))
    out = run(jnp.asarray(LRS, jnp.float32), seeds)
    with np.errstate(invalid="ignore"):
        return [np.nan_to_num(np.asarray(o, np.float64), nan=np.inf) for o in out]


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    steps = _common.pick(quick, smoke, 400, 200, 20)
    n_seeds = _common.pick(quick, smoke, ENTRY["seeds"], 5, 2)
    seeds = jnp.arange(n_seeds)
    tune_seeds = jnp.arange(100, 100 + _common.pick(quick, smoke, N_TUNE, 3, 1))
    val = sequences(jax.random.key(10_001), 512)
    test = sequences(jax.random.key(10_002), 512)

    # tuning runs (separate seeds): the plain lr, then the threshold from its gradient norms
    _, tune_gnorm, tune_val, _ = train_arm(jdl.sgd, tune_seeds, steps, val, test)
    with np.errstate(invalid="ignore", over="ignore"):
        plain_lr = int(np.argmin(np.mean(tune_val[:, :, -1], axis=1)))
    norms = tune_gnorm[plain_lr]
    threshold = float(np.percentile(norms[np.isfinite(norms)], PERCENTILE))
    clip_name = f"SGD + clip_by_global_norm({threshold:.3g})"
    _, _, tune_val_clip, _ = train_arm(clipped(threshold), tune_seeds, steps, val, test)
    with np.errstate(invalid="ignore", over="ignore"):
        clip_lr = int(np.argmin(np.mean(tune_val_clip[:, :, -1], axis=1)))

    found = {}
    for name, make, chosen in (
        ("SGD", jdl.sgd, plain_lr),
        (clip_name, clipped(threshold), clip_lr),
    ):
        loss, gnorm, val_curve, test_loss = train_arm(make, seeds, steps, val, test)
        final_val = val_curve[:, :, -1]  # (lr, seed)
        found[name] = dict(
            loss=loss,
            gnorm=gnorm,
            val=val_curve,
            test=test_loss,
            final_val=final_val,
            chosen=chosen,
            largest=largest_useful(final_val),
        )
    plain, clip = found["SGD"], found[clip_name]
    octaves = _common.paired_ci(np.log2(clip["largest"]), np.log2(plain["largest"]))
    verdict = _common.judge(octaves, BAR_OCTAVES, "above")
    test_ratio = _common.paired_ci(
        np.log10(plain["test"][plain["chosen"]]), np.log10(clip["test"][clip["chosen"]])
    )
    active = clip["gnorm"][clip["chosen"]] > threshold
    edges = [name for name, r in found.items() if r["chosen"] in (0, len(LRS) - 1)]

    colors = dict(zip(found, ("tab:red", "tab:green")))
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    t_eval = np.arange(0, steps + 1, EVAL_EVERY)
    for name, r in found.items():
        lr = LRS[r["chosen"]]
        _common.band(
            axes[0],
            t_eval,
            r["val"][r["chosen"]],
            f"{name}, lr {lr:g}",
            colors[name],
            geometric=True,
        )
        kept = [
            i for i in range(len(LRS)) if np.all(r["final_val"][i] < DIVERGED * r["val"][i, :, 0])
        ]
        est = [_common.mean_ci(np.log10(r["final_val"][i])) for i in kept]
        mean = np.array([10**e.mean for e in est])
        axes[1].errorbar(
            LRS[kept],
            mean,
            yerr=[mean - [10**e.lo for e in est], [10**e.hi for e in est] - mean],
            fmt="o-",
            ms=4,
            capsize=3,
            color=colors[name],
            label=f"{name} (geometric mean of {n_seeds}, 95% CI)",
        )
        _common.band(
            axes[2],
            np.arange(1, steps + 1),
            r["gnorm"][plain["chosen"]],
            f"{name}, lr {LRS[plain['chosen']]:g}",
            colors[name],
            geometric=True,
        )
    axes[1].plot(
        LRS,
        np.full(len(LRS), np.mean(plain["val"][0, :, 0])),
        color="0.5",
        ls=":",
        label="validation MSE at initialisation",
    )
    axes[1].plot(
        LRS, np.full(len(LRS), USEFUL), color="k", ls="--", label=f"useful: MSE < {USEFUL:g}"
    )
    axes[2].plot(
        np.arange(1, steps + 1),
        np.full(steps, threshold),
        color="k",
        ls="--",
        label=f"clip threshold {threshold:.3g} (p{PERCENTILE} of unclipped norms)",
    )
    _common.finish_axes(
        axes[0], "SGD step", "validation MSE", "Validation loss at each arm's chosen lr", logy=True
    )
    _common.finish_axes(
        axes[1],
        "learning rate",
        f"validation MSE after {steps} steps",
        f"lr grid, evaluation seeds (lrs where a seed ends above "
        f"{DIVERGED:g}x its start are omitted)",
        logx=True,
        logy=True,
    )
    _common.finish_axes(
        axes[2],
        "SGD step",
        "gradient norm before clipping",
        "Gradient norm at the unclipped arm's tuned lr",
        logy=True,
    )
    fig.suptitle(f"tanh RNN, recurrent weights orthogonal x {SCALE}, {LENGTH}-step memory task")
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    measured = {
        "SGD: tuned lr (tuning seeds)": LRS[plain["chosen"]],
        f"clip threshold (p{PERCENTILE} of SGD's gradient norms, tuning seeds)": threshold,
        "clipped: tuned lr (tuning seeds)": LRS[clip["chosen"]],
        "clipped: fraction of steps clipped at its tuned lr": _common.wilson_ci(active.ravel()),
        "SGD: largest useful lr": _common.positive_ci(plain["largest"]),
        "clipped: largest useful lr": _common.positive_ci(clip["largest"]),
        "log2(largest useful lr clipped / SGD), paired (octaves)": octaves,
        "SGD: test MSE at its tuned lr": _common.positive_ci(plain["test"][plain["chosen"]]),
        "clipped: test MSE at its tuned lr": _common.positive_ci(clip["test"][clip["chosen"]]),
        "log10(test MSE SGD / clipped), paired (reported)": test_ratio,
        "tuned lr at the grid's edge": ", ".join(edges) or "none",
    }
    conclusion = (
        f"clipping at the p{PERCENTILE} gradient norm ({threshold:.3g}; active on "
        f"{active.mean():.0%} of steps) extends the largest useful lr by 2^{octaves.mean:.2f} "
        f"[2^{octaves.lo:.2f}, 2^{octaves.hi:.2f}] (from {plain['largest'].mean():.3g} to "
        f"{clip['largest'].mean():.3g} on average); at the tuned lrs the test MSE ratio "
        f"SGD/clipped is 10^{test_ratio.mean:.2f}"
    )
    theory = ""
    if verdict != "reproduced":
        theory = (
            "Clipping at a high percentile of the gradient norm rescales only the rare steps "
            "at a cliff, where the gradient is many times its typical size; an overshoot "
            "there moves the weights by lr x |g| and can throw the recurrence into "
            "saturation or divergence. It therefore extends the usable learning rates only "
            "when the instability comes from such spikes: if plain SGD fails at large rates "
            "because every step is too long (curvature, not cliffs), clipping the top few "
            "percent of the steps leaves that failure in place (Pascanu, Mikolov & Bengio "
            "2013)."
        )
    rows = [
        {
            "arm": name,
            "lr": LRS[i],
            "final validation MSE": _common.positive_ci(r["final_val"][i])
            if np.all(np.isfinite(r["final_val"][i]))
            else "diverged",
            "useful seeds": _common.wilson_ci(r["final_val"][i] < USEFUL),
            "test MSE": _common.positive_ci(r["test"][i])
            if np.all(np.isfinite(r["test"][i]))
            else "diverged",
        }
        for name, r in found.items()
        for i in range(len(LRS))
    ]
    setup = (
        f"{len(tune_seeds)} tuning seeds (each arm's lr by mean final validation MSE; the "
        f"threshold from the unclipped runs at SGD's tuned lr), then {n_seeds} fresh "
        f"evaluation seeds over the whole grid, {steps} SGD steps, batch {BATCH}, lr grid "
        f"{LRS[0]:g} .. {LRS[-1]:g} (x2), validation and test sets of 512 sequences."
    )
    return _common.report(
        globals(), rows, out_dir, measured, figure, verdict, setup, conclusion, theory
    )


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
