"""Draw every learning-rate schedule, reduce-on-plateau and the batch-size schedules.

Writes ``OUT/schedules.png`` (one panel per schedule) and ``OUT/schedules.md`` (each
schedule's formula and its value at a few steps).

    python experiments/schedules.py [--quick] [--out DIR]

Not a claim of issue 7 (claim 0): a gallery with a sanity criterion.
"""

from __future__ import annotations

import _common
import jax
import jax.numpy as jnp
import numpy as np
from _common import plt

import jaxopt_dl as jdl

NAME = "schedules"
CLAIM = 0
TITLE = "Gallery: every learning-rate schedule, reduce-on-plateau and batch-size schedule"
SEEDS = ("000", "002")
CRITERION = (
    "every schedule's value is finite and within [0, 0.1] (the peak) at every step, and "
    "reduce_on_plateau lowers the learning rate at least once after the loss flattens"
)


def schedules(total: int) -> list[tuple[str, str, jdl.schedules.Schedule]]:
    """(name, formula, schedule) for every schedule, sized to ``total`` steps."""
    q = total // 4
    return [
        ("constant_schedule", "v", jdl.constant_schedule(0.1)),
        ("linear_schedule", "I + (E-I) min(t,T)/T", jdl.linear_schedule(0.1, 0.001, total // 2)),
        (
            "polynomial_schedule",
            "(I-E)(1-min(t,T)/T)^P + E",
            jdl.polynomial_schedule(0.1, 0.001, 2.0, total),
        ),
        ("exponential_decay", "I r^((t-B)/T)", jdl.exponential_decay(0.1, q, 0.5)),
        (
            "exponential_decay (staircase)",
            "I r^floor((t-B)/T)",
            jdl.exponential_decay(0.1, q, 0.5, staircase=True),
        ),
        (
            "cosine_decay_schedule",
            "I[(1-a)(1+cos(pi min(t,T)/T))/2 + a]",
            jdl.cosine_decay_schedule(0.1, total),
        ),
        (
            "warmup_cosine_decay_schedule",
            "linear warmup to P over W, cosine to E at D",
            jdl.warmup_cosine_decay_schedule(0.0, 0.1, total // 10, total, 0.001),
        ),
        (
            "warmup_exponential_decay_schedule",
            "linear warmup to P over W, then P r^((t-W)/T)",
            jdl.warmup_exponential_decay_schedule(0.0, 0.1, total // 10, q, 0.5),
        ),
        (
            "piecewise_constant_schedule",
            "I prod_{b_i <= t} s_i",
            jdl.piecewise_constant_schedule(0.1, {q: 0.5, 2 * q: 0.2, 3 * q: 0.5}),
        ),
        (
            "join_schedules",
            "s_i(t - b_{i-1}) on [b_{i-1}, b_i)",
            jdl.join_schedules(
                [jdl.linear_schedule(0.0, 0.1, q), jdl.exponential_decay(0.1, q, 0.3)], [q]
            ),
        ),
        (
            "sgdr_schedule",
            "cosine cycles with restarts",
            jdl.sgdr_schedule(
                [dict(init_value=0.1, peak_value=0.1, warmup_steps=0, decay_steps=q)] * 2
                + [dict(init_value=0.05, peak_value=0.05, warmup_steps=0, decay_steps=2 * q)]
            ),
        ),
        (
            "cosine_onecycle_schedule",
            "cosine P/d -> P -> P/(d f)",
            jdl.cosine_onecycle_schedule(total, 0.1),
        ),
        (
            "linear_onecycle_schedule",
            "linear P/d -> P -> P/d -> P/(d f)",
            jdl.linear_onecycle_schedule(total, 0.1),
        ),
        ("inverse_time_decay", "I / (1 + r t/D)", jdl.inverse_time_decay(0.1, 1.0, total // 20)),
        ("step_decay", "I d^floor(t/K)", jdl.step_decay(0.1, 0.5, q // 2)),
        ("multistep_decay", "I g^#{m_i <= t}", jdl.multistep_decay(0.1, [q, 3 * q], 0.1)),
        (
            "per_epoch(step_decay)",
            "s(floor(t/S))",
            jdl.per_epoch(jdl.step_decay(0.1, 0.5, 2), q // 2),
        ),
        ("cyclic_schedule (triangular)", "b + (m-b) h(t)", jdl.cyclic_schedule(0.01, 0.1, q // 3)),
        (
            "cyclic_schedule (triangular2)",
            "b + (m-b) h(t) / 2^cycle",
            jdl.cyclic_schedule(0.01, 0.1, q // 3, mode="triangular2"),
        ),
        (
            "cyclic_schedule (exp_range)",
            "b + (m-b) h(t) g^t",
            jdl.cyclic_schedule(0.01, 0.1, q // 3, mode="exp_range", gamma=1 - 4.0 / total),
        ),
    ]


def plateau_trajectory(total: int) -> tuple[np.ndarray, np.ndarray]:
    """A noisy loss that flattens, and the lr reduce_on_plateau gives it (base lr 0.1)."""
    t = np.arange(total)
    noise = np.random.default_rng(0).standard_normal(total)
    losses = jnp.asarray(1.0 + 2.0 * np.exp(-t / (total / 8)) + 0.02 * noise, jnp.float32)
    tx = jdl.reduce_on_plateau(
        factor=0.5, patience=total // 40, cooldown=total // 100, min_scale=0.01
    )
    params = jnp.zeros(1)

    def step(state, loss):
        _, state = tx.update(params, state, params, value=loss)
        return state, state.scale

    _, scales = jax.jit(lambda v: jax.lax.scan(step, tx.init(params), v))(losses)
    return np.asarray(losses), 0.1 * np.asarray(scales)


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    """Draw every schedule; check each stays finite in [0, 0.1] and the plateau rule acts."""
    total = _common.pick(quick, smoke, 1000, 200, 80)
    steps = jnp.arange(total + 1)
    table = schedules(total)
    values = [np.asarray(jax.jit(jax.vmap(schedule))(steps)) for _, _, schedule in table]
    losses, plateau_lr = plateau_trajectory(total)
    epochs = np.arange(40)
    batch_sizes = {
        "constant_batch_size(64)": jdl.constant_batch_size(64),
        "step_doubling_batch_size(32, 10)": jdl.step_doubling_batch_size(32, 10),
        "geometric_batch_size(16, 1.1, 512)": jdl.geometric_batch_size(16, 1.1, 512),
    }

    panels = len(table) + 2
    cols = 4
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    axes = axes.ravel()
    for ax, (name, formula, _), y in zip(axes, table, values):
        ax.plot(np.asarray(steps), y, label=name)
        ax.set_title(f"{name}\n{formula}", fontsize=8)
        ax.set_xlabel("step", fontsize=7)
        ax.set_ylabel("learning rate", fontsize=7)
        ax.tick_params(labelsize=7)
    ax = axes[len(table)]
    ax.plot(plateau_lr, label="lr (log scale)")
    ax.set_yscale("log")
    ax.set_xlabel("step", fontsize=7)
    ax.set_ylabel("learning rate", fontsize=7)
    ax2 = ax.twinx()
    ax2.plot(losses, color="0.7", lw=0.5, label="loss")
    ax2.set_ylabel("loss", fontsize=7)
    ax.set_title("reduce_on_plateau (lr, log; loss in grey)", fontsize=8)
    ax.legend(fontsize=6, loc="upper right")
    ax = axes[len(table) + 1]
    for label, schedule in batch_sizes.items():
        ax.step(epochs, [schedule(int(e)) for e in epochs], where="post", label=label)
    ax.set_title("batch-size schedules (per epoch)", fontsize=8)
    ax.set_xlabel("epoch", fontsize=7)
    ax.set_ylabel("batch size", fontsize=7)
    ax.legend(fontsize=6)
    for ax in axes[panels:]:
        ax.axis("off")
    fig.suptitle(f"Learning-rate and batch-size schedules ({total} steps)")
    fig.tight_layout()
    figure_path = _common.save_figure(fig, out_dir, NAME, dpi=80 if quick else 110)

    in_range = [
        bool(np.all(np.isfinite(y)) and y.min() >= 0 and y.max() <= 0.1 + 1e-6) for y in values
    ]
    reductions = int(np.sum(plateau_lr[1:] < plateau_lr[:-1]))
    reproduced = all(in_range) and reductions >= 1
    marks = [0, total // 4, total // 2, total]
    rows_ = [
        {
            "schedule": name,
            "formula": f"`{formula}`",
            **{f"t={m}": y[m] for m in marks},
            "finite, in [0, 0.1]": ok,
        }
        for (name, formula, _), y, ok in zip(table, values, in_range)
    ]
    rows_.append(
        {
            "schedule": "reduce_on_plateau",
            "formula": "`scale *= factor after patience+1 bad evaluations`",
            **{f"t={m}": plateau_lr[min(m, total - 1)] for m in marks},
            "finite, in [0, 0.1]": bool(np.all(np.isfinite(plateau_lr))),
        }
    )
    batches = [
        {"batch-size schedule": label, **{f"epoch {e}": schedule(e) for e in (0, 10, 20, 39)}}
        for label, schedule in batch_sizes.items()
    ]
    measured = {
        "schedules drawn": len(table),
        "schedules finite and in [0, 0.1]": sum(in_range),
        "plateau lr reductions": reductions,
        "plateau final lr": float(plateau_lr[-1]),
    }
    setup = f"every schedule sized to {total} steps (peak 0.1); reduce_on_plateau on a noisy loss that flattens."
    table_path = _common.write_table(
        rows_,
        out_dir,
        NAME,
        TITLE,
        notes=_common.verdict_notes(globals(), reproduced, setup),
        extra_tables={"Batch-size schedules": batches},
    )
    return _common.result(globals(), measured, reproduced, figure_path, table_path)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
