"""Claim 5: without bias correction an EWA, and Adam's first steps, start too small.

(a) The EWA start-up curve (seed 001's "temperature" example): ``jdl.ema(beta,
debias=False)`` versus ``jdl.ema(beta)`` on a noisy series around a level. (b) Adam's
first steps on a constant gradient: ``jdl.adam(lr)`` versus ``jdl.adam(lr,
bias_correction=False)`` (seed 003's "not quite Adam": neither moment corrected).

    python experiments/c05_bias_correction.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c05_bias_correction"
CLAIM = 5
TITLE = "Without bias correction, the EWA and Adam's first steps are too small by 1/(1-beta^t)"
SEEDS = ("001", "003")
BETA = 0.98
B1, B2, LR = 0.9, 0.999, 1e-3
FIRST = 10
CRITERION = (
    "(a) EWA: uncorrected / corrected average equals 1 - beta^t at every step (max relative "
    "error < 1e-4, beta = 0.98); (b) Adam (b1 = 0.9, b2 = 0.999, constant gradient): the first "
    "10 steps without bias correction are smaller than with it by the factor 1 - b1^t "
    "(measured ratio within 5% of 1 - b1^t at every t <= 10)"
)


def scan_transform(tx, series: jnp.ndarray) -> np.ndarray:
    """Outputs of a stateful transform fed ``series[t]`` one step at a time (one ``lax.scan``)."""

    def step(state, g):
        out, state = tx.update(g, state)
        return state, out

    return np.asarray(jax.jit(lambda s: jax.lax.scan(step, tx.init(s[0]), s)[1])(series))


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    days = _common.pick(quick, smoke, 365, 365, 60)
    rng = np.random.default_rng(1)
    t = np.arange(days)
    temperature = 10 + 8 * np.sin(2 * np.pi * (t - 100) / 365) + 3 * rng.standard_normal(days)
    series = jnp.asarray(temperature, jnp.float32)[:, None]
    raw = scan_transform(jdl.ema(BETA, debias=False), series)[:, 0]
    corrected = scan_transform(jdl.ema(BETA), series)[:, 0]
    expected = 1 - BETA ** np.arange(1, days + 1)
    ewa_err = float(np.max(np.abs(raw / corrected - expected) / expected))

    grads = jnp.ones((FIRST, 1), jnp.float32)
    with_bc = -scan_transform(jdl.adam(LR, B1, B2), grads)[:, 0]
    without = -scan_transform(jdl.adam(LR, B1, B2, bias_correction=False), grads)[:, 0]
    momentum_only = -scan_transform(jdl.momentum(LR, B1, form="ema"), grads)[:, 0]
    steps = np.arange(1, FIRST + 1)
    claimed = 1 - B1**steps
    ratio = without / with_bc
    both_moments = (1 - B1**steps) / np.sqrt(1 - B2**steps)
    adam_err = float(np.max(np.abs(ratio - claimed) / claimed))
    reproduced = ewa_err < 1e-4 and adam_err < 0.05

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4))
    axes[0].plot(t, temperature, ".", ms=2, color="0.6", label="daily value")
    axes[0].plot(t, raw, color="tab:red", label=f"EWA beta={BETA}, no correction")
    axes[0].plot(t, corrected, color="tab:green", label="EWA / (1 - beta^t)")
    axes[0].set_xlabel("day t")
    axes[0].set_ylabel("temperature")
    axes[0].set_title("EWA start-up: the uncorrected average starts at 0")
    axes[0].legend(fontsize=8)
    axes[1].semilogy(steps, with_bc, "o-", color="tab:green", label="Adam (bias-corrected)")
    axes[1].semilogy(steps, without, "s-", color="tab:red", label="Adam, no bias correction")
    axes[1].semilogy(steps, LR * claimed, "--", color="0.4",
                     label="claimed: lr (1 - b1^t)")
    axes[1].semilogy(steps, momentum_only, "x:", color="tab:blue",
                     label="EMA momentum alone (no correction)")
    axes[1].set_xlabel("step t")
    axes[1].set_ylabel("step size |update| (gradient = 1)")
    axes[1].set_title(f"First Adam steps, lr={LR}, b1={B1}, b2={B2}")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [
        {"t": int(s), "EWA raw / corrected": raw[s - 1] / corrected[s - 1],
         "1 - beta^t": expected[s - 1], "Adam step": with_bc[s - 1],
         "no-correction step": without[s - 1], "measured ratio": ratio[s - 1],
         "claimed 1 - b1^t": claimed[s - 1],
         "(1-b1^t)/sqrt(1-b2^t)": both_moments[s - 1],
         "momentum-only step / lr": momentum_only[s - 1] / LR}
        for s in steps
    ]
    measured = {
        "EWA ratio max rel. error vs 1-beta^t": ewa_err,
        "Adam no-correction / corrected at t=1": ratio[0],
        "claimed at t=1": claimed[0],
        "Adam ratio max rel. error vs 1-b1^t": adam_err,
        "EMA-momentum step / lr at t=1": momentum_only[0] / LR,
    }
    setup = (f"(a) {days} daily values, level 10 + 8 sin(.), noise std 3, beta = {BETA}; "
             f"(b) gradient = 1 for {FIRST} steps. The uncorrected second moment v_t = "
             "(1-b2^t) g^2 is also too small, which divides the step by sqrt(1-b2^t): "
             "without correction the step is lr (1-b1^t)/sqrt(1-b2^t) (column shown).")
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup))
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
