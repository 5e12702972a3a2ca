"""Claim 8: W^t explodes or vanishes with the eigenvalues of W; so do an RNN's gradients.

(a) ``||W^t v||`` for ``W = s Q`` (Q a random orthogonal 32x32 matrix, so every eigenvalue
has modulus s). (b) ``jdl.models.RNN`` (hidden 32, ``recurrent_init=orthogonal(s)``), linear
and tanh, over T steps: the norm of the gradient of the loss (mean read-out at step T)
with respect to each hidden state h_t. The input kernel is set to the identity, so the
gradient with respect to the input x_{t+1} is the one with respect to the pre-activation
a_{t+1} = h_t W + x_{t+1}, and dL/dh_t = dL/da_{t+1} W^T exactly.

    python experiments/c08_long_term_dependencies.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c08_long_term_dependencies"
CLAIM = 8
TITLE = "Long-term dependencies: W^t and an RNN's gradients explode or vanish with W's eigenvalues"
SEEDS = ("000",)
SCALES = (0.8, 0.9, 1.0, 1.1, 1.2)
HIDDEN, BATCH, INPUT_STD = 32, 16, 0.01
CRITERION = (
    "(a) for W = s Q (|eigenvalues| = s, s in 0.8..1.2), ||W^t v||^(1/t) at t = T equals s "
    "within 1%; (b) in the RNN, the per-step backward growth of ||dL/dh_t|| equals s within 2% "
    "for the linear RNN, and for the tanh RNN the ratio ||dL/dh_1|| / ||dL/dh_{T-1}|| is < 1e-2 "
    "for s <= 0.9 (vanishing) and > 10 for s >= 1.1 (exploding)"
)


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
        model = jdl.models.RNN(hidden=HIDDEN, num_classes=1, activation=activation,
                               recurrent_init=jdl.initializers.orthogonal(scale))
        params = dict(model.init(k_init, x)["params"])
        params["input_kernel"] = jnp.eye(HIDDEN)
        params["bias"] = jnp.zeros(HIDDEN)
        dx = jax.grad(lambda inputs: jnp.mean(model.apply({"params": params}, inputs)))(x)
        dh = dx[:, 1:] @ params["recurrent_kernel"].T  # dL/da_{t+1} W^T = dL/dh_t
        return jnp.sqrt(jnp.sum(dh**2, axis=(0, 2)))

    return np.asarray(jax.jit(jax.vmap(norms))(jnp.asarray(SCALES)), np.float64)


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    steps = _common.pick(quick, smoke, 100, 100, 20)
    key = jax.random.key(0)
    q = jdl.initializers.orthogonal(1.0)(key, (HIDDEN, HIDDEN))
    v = jax.random.normal(jax.random.key(1), (HIDDEN,))

    def powers(w):
        def step(u, _):
            u = w @ u
            return u, jnp.linalg.norm(u)

        return jax.lax.scan(step, v, None, length=steps)[1] / jnp.linalg.norm(v)

    power_norms = np.asarray(jax.vmap(lambda s: powers(s * q))(jnp.asarray(SCALES)), np.float64)
    power_rate = power_norms[:, -1] ** (1.0 / steps)
    power_ok = bool(np.all(np.abs(power_rate / np.asarray(SCALES) - 1) < 0.01))

    grads = {}
    for act, fn in (("linear", identity), ("tanh", jnp.tanh)):
        for s, g in zip(SCALES, hidden_grad_norms(fn, steps, jax.random.key(2))):
            grads[act, s] = g
    span = steps - 2  # from h_{T-1} back to h_1

    def rate(g):
        return (g[0] / g[-1]) ** (1.0 / span)

    linear_ok = all(abs(rate(grads["linear", s]) / s - 1) < 0.02 for s in SCALES)
    tanh_ratio = {s: grads["tanh", s][0] / grads["tanh", s][-1] for s in SCALES}
    tanh_ok = all(tanh_ratio[s] < 1e-2 for s in SCALES if s <= 0.9) and all(
        tanh_ratio[s] > 10 for s in SCALES if s >= 1.1
    )
    reproduced = power_ok and linear_ok and tanh_ok

    cmap = plt.get_cmap("coolwarm")
    colors = {s: cmap(i / (len(SCALES) - 1)) for i, s in enumerate(SCALES)}
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.4))
    t = np.arange(1, steps + 1)
    for i, s in enumerate(SCALES):
        axes[0].semilogy(t, power_norms[i], color=colors[s], label=f"s={s}")
        axes[0].semilogy(t, float(s) ** t, ":", color=colors[s], lw=0.8)
        for ax, act in ((axes[1], "linear"), (axes[2], "tanh")):
            g = grads[act, s]
            ax.semilogy(np.arange(1, steps), g / g[-1], color=colors[s], label=f"s={s}")
    axes[0].set_xlabel("power t")
    axes[0].set_ylabel("||W^t v|| / ||v||  (dotted: s^t)")
    axes[0].set_title("W = s Q: eigenvalue modulus s")
    axes[0].legend(fontsize=8)
    for ax, act in ((axes[1], "linear"), (axes[2], "tanh")):
        ax.set_xlabel("time step t (loss at T)")
        ax.set_ylabel("||dL/dh_t|| / ||dL/dh_{T-1}||")
        ax.set_title(f"{act} RNN, recurrent_init = orthogonal(s)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [
        {"s": s, "||W^T v||^(1/T)": power_rate[i],
         "linear RNN growth/step": rate(grads["linear", s]),
         "linear ||dL/dh_1|| / ||dL/dh_T-1||": grads["linear", s][0] / grads["linear", s][-1],
         "tanh RNN growth/step": rate(grads["tanh", s]),
         "tanh ||dL/dh_1|| / ||dL/dh_T-1||": tanh_ratio[s]}
        for i, s in enumerate(SCALES)
    ]
    measured = {f"tanh gradient ratio h_1/h_T-1 (s={s})": tanh_ratio[s] for s in SCALES}
    measured.update({f"linear growth/step (s={s})": rate(grads["linear", s]) for s in (0.8, 1.2)})
    measured["max |W^T rate / s - 1|"] = float(np.max(np.abs(power_rate / np.asarray(SCALES) - 1)))
    setup = (f"T = {steps}, hidden {HIDDEN}, batch {BATCH}, inputs N(0, {INPUT_STD}^2), loss = "
             "mean read-out at step T.")
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup))
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
