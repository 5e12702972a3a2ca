"""Claim 8: W^t explodes or vanishes with the eigenvalues of W; so do an RNN's gradients.

J. Petersen, "Optimization in Deep Learning":

    "After t steps, this is equivalent to multiplication by W^t. [...] Eigenvalues λ_i
    that are not near an absolute value of 1 will either explode or vanish. The vanishing
    and exploding gradient problem refers to gradients through such graphs also being
    scaled by diag(λ)^t"

(a) ``||W^t v||`` for ``W = s Q`` (Q a random orthogonal 32x32 matrix, so every eigenvalue
has modulus s). (b) ``jdl.models.RNN`` (hidden 32, ``recurrent_init=orthogonal(s)``), linear
and tanh, over T steps: the norm of the gradient of the loss (mean read-out at step T)
with respect to each hidden state h_t. The input kernel is set to the identity, so the
gradient with respect to the input x_{t+1} is the one with respect to the pre-activation
a_{t+1} = h_t W + x_{t+1}, and dL/dh_t = dL/da_{t+1} W^T exactly. Every measurement is
repeated on 10 seeds (a fresh Q, v, input sequence and read-out each) and reported as a
mean with its 95% interval.

    python experiments/c08_long_term_dependencies.py [--quick] [--out DIR]
"""

from __future__ import annotations

import _common
import jax
import jax.numpy as jnp
import numpy as np
from _common import plt

import jaxopt_dl as jdl

NAME = "c08_long_term_dependencies"
CLAIM = 8
ENTRY = _common.criteria("c08")
TITLE = ENTRY["title"]
SEEDS = ("000",)
SCALES = (0.8, 0.9, 1.0, 1.1, 1.2)
HIDDEN, BATCH, INPUT_STD = 32, 16, 0.01
CRITERION = ENTRY["criterion"]


def identity(x: jax.Array) -> jax.Array:
    return x


def hidden_grad_norms(activation, steps: int, key: jax.Array) -> np.ndarray:
    """``||dL/dh_t||`` (summed over the batch) for t = 1 .. T-1, one row per scale in SCALES.

    One compiled program for all scales (``vmap`` over ``s`` in
    ``recurrent_init=orthogonal(s)``; the same key, so the same ``Q`` for every ``s``).
    """
    k_init, k_x = jax.random.split(key)
    x = INPUT_STD * jax.random.normal(k_x, (BATCH, steps, HIDDEN))

    def norms(scale):
        model = jdl.models.RNN(
            hidden=HIDDEN,
            num_classes=1,
            activation=activation,
            recurrent_init=jdl.initializers.orthogonal(scale),
        )
        params = dict(model.init(k_init, x)["params"])
        params["input_kernel"] = jnp.eye(HIDDEN)
        params["bias"] = jnp.zeros(HIDDEN)
        dx = jax.grad(lambda inputs: jnp.mean(model.apply({"params": params}, inputs)))(x)
        dh = dx[:, 1:] @ params["recurrent_kernel"].T  # dL/da_{t+1} W^T = dL/dh_t
        return jnp.sqrt(jnp.sum(dh**2, axis=(0, 2)))

    return np.asarray(jax.jit(jax.vmap(norms))(jnp.asarray(SCALES)), np.float64)


def one_seed(seed: int, steps: int) -> dict:
    """Per-scale measurements of one seed: ``||W^t v||`` and the RNNs' gradient norms."""
    key = jax.random.key(1000 + seed)
    k_q, k_v, k_rnn = jax.random.split(key, 3)
    q = jdl.initializers.orthogonal(1.0)(k_q, (HIDDEN, HIDDEN))
    v = jax.random.normal(k_v, (HIDDEN,))

    def powers(w):
        def step(u, _):
            u = w @ u
            return u, jnp.linalg.norm(u)

        return jax.lax.scan(step, v, None, length=steps)[1] / jnp.linalg.norm(v)

    power_norms = np.asarray(jax.vmap(lambda s: powers(s * q))(jnp.asarray(SCALES)), np.float64)
    grads = {
        act: hidden_grad_norms(fn, steps, k_rnn)
        for act, fn in (("linear", identity), ("tanh", jnp.tanh))
    }
    span = steps - 2  # from h_{T-1} back to h_1
    return dict(
        power_norms=power_norms,
        power_rate=power_norms[:, -1] ** (1.0 / steps),
        grads=grads,
        linear_rate=(grads["linear"][:, 0] / grads["linear"][:, -1]) ** (1.0 / span),
        tanh_ratio=grads["tanh"][:, 0] / grads["tanh"][:, -1],
    )


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    steps = _common.pick(quick, smoke, 100, 100, 20)
    n_seeds = _common.pick(quick, smoke, ENTRY["seeds"], ENTRY["seeds"], 2)
    runs = [one_seed(seed, steps) for seed in range(n_seeds)]
    scales = np.asarray(SCALES)
    power_dev = np.stack([np.max(np.abs(r["power_rate"] / scales - 1)) for r in runs])
    linear_dev = np.stack([r["linear_rate"] / scales - 1 for r in runs])  # (seeds, scales)
    log_ratio = np.stack([np.log10(r["tanh_ratio"]) for r in runs])  # (seeds, scales)
    est_power = _common.mean_ci(power_dev)
    est_linear = {s: _common.mean_ci(linear_dev[:, i]) for i, s in enumerate(SCALES)}
    est_tanh = {s: _common.mean_ci(log_ratio[:, i]) for i, s in enumerate(SCALES)}
    linear = []
    for e in est_linear.values():
        linear += [_common.judge(e, 0.02, "below"), _common.judge(e, -0.02, "above")]
    sanity = {
        "(a) ||W^t v|| grows as s^t": _common.judge(est_power, 0.01, "below"),
        "(b) linear RNN gradients scale as s^(T-t)": _common.combine(linear),
    }
    verdicts = [_common.judge(est_tanh[s], -2.0, "below") for s in SCALES if s <= 0.9]
    verdicts += [_common.judge(est_tanh[s], 1.0, "above") for s in SCALES if s >= 1.1]
    verdict = _common.combine(verdicts)

    cmap = plt.get_cmap("coolwarm")
    colors = {s: cmap(i / (len(SCALES) - 1)) for i, s in enumerate(SCALES)}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.6))
    t = np.arange(1, steps + 1)
    for i, s in enumerate(SCALES):
        _common.band(
            axes[0],
            t,
            np.stack([r["power_norms"][i] for r in runs]),
            f"s={s}",
            colors[s],
            geometric=True,
        )
        axes[0].plot(t, float(s) ** t, ":", color=colors[s], lw=0.8)
        for ax, act in ((axes[1], "linear"), (axes[2], "tanh")):
            g = np.stack([r["grads"][act][i] / r["grads"][act][i, -1] for r in runs])
            _common.band(ax, np.arange(1, steps), g, f"s={s}", colors[s], geometric=True)
    _common.finish_axes(
        axes[0],
        "power t",
        "||W^t v|| / ||v||  (dotted: s^t)",
        "W = s Q: eigenvalue modulus s",
        logy=True,
        legend_size=7,
    )
    for ax, act in ((axes[1], "linear"), (axes[2], "tanh")):
        _common.finish_axes(
            ax,
            "time step t (loss at T)",
            "||dL/dh_t|| / ||dL/dh_{T-1}||",
            f"{act} RNN, recurrent_init = orthogonal(s)",
            logy=True,
            legend_size=7,
        )
    fig.suptitle(f"{n_seeds} seeds (a fresh Q, v and inputs each): geometric mean and 95% CI")
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [
        {
            "s": s,
            "linear RNN growth/step / s - 1": est_linear[s],
            "tanh log10(||dL/dh_1|| / ||dL/dh_T-1||)": est_tanh[s],
        }
        for s in SCALES
    ]
    measured = {"max over s of |(||W^T v||^(1/T)) / s - 1|": est_power}
    measured.update({f"linear RNN growth/step / s - 1 (s={s})": e for s, e in est_linear.items()})
    measured.update(
        {f"tanh log10 gradient ratio h_1/h_T-1 (s={s})": e for s, e in est_tanh.items()}
    )
    conclusion = (
        f"over T = {steps} steps the tanh RNN's gradient ratio ||dL/dh_1|| / ||dL/dh_T-1|| is "
        f"10^{est_tanh[0.8].mean:.1f} at s = 0.8 and 10^{est_tanh[1.2].mean:.1f} at s = 1.2; "
        f"the linear RNN's per-step growth matches s within {np.max(np.abs(linear_dev)):.1%}"
    )
    theory = ""
    if verdict != "reproduced":
        theory = (
            "For the linear RNN dL/dh_t = dL/dh_T (W^T)^(T-t), so the norm scales exactly as "
            "s^(T-t) when every eigenvalue has modulus s. The tanh RNN multiplies each step "
            "by diag(1 - h^2) W^T: the derivative of tanh is at most 1, so vanishing is "
            "guaranteed for s < 1, while for s > 1 growth needs the hidden states to stay in "
            "tanh's linear range; once they saturate the factor 1 - h^2 shrinks and the "
            "explosion is bounded (Pascanu et al. 2013)."
        )
    setup = (
        f"T = {steps}, hidden {HIDDEN}, batch {BATCH}, inputs N(0, {INPUT_STD}^2), loss = "
        f"mean read-out at step T; {n_seeds} seeds."
    )
    return _common.report(
        globals(),
        rows,
        out_dir,
        measured,
        figure,
        verdict,
        setup,
        conclusion,
        theory,
        sanity=sanity,
    )


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
