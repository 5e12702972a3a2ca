"""Claim 9: only the right initialization scale keeps activations alive through a deep net.

A deep ``jdl.models.MLP`` (width 256) with tanh or ReLU, fed N(0, 1) inputs; the standard
deviation of every hidden layer's output (sown as ``dense_<i>_out``) for three kernel
initializers: ``small_random(0.01)``, ``normalized_uniform()`` (Glorot) and ``he_normal()``.

    python experiments/c09_initialization_scale.py [--quick] [--out DIR]
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c09_initialization_scale"
CLAIM = 9
TITLE = "Only the right init scale keeps activation std in ~0.5-2 through a deep tanh/ReLU net"
SEEDS = ("002", "003")
WIDTH, BATCH = 256, 512
LOW, HIGH = 0.5, 2.0
INITS = {
    "small_random(0.01)": jdl.initializers.small_random(0.01),
    "normalized_uniform (Glorot)": jdl.initializers.normalized_uniform(),
    "he_normal": jdl.initializers.he_normal(),
}
ACTIVATIONS = {"tanh": (jnp.tanh, "normalized_uniform (Glorot)"), "relu": (nn.relu, "he_normal")}
CRITERION = (
    "with N(0,1) inputs through the deep net: for ReLU, He init keeps every hidden layer's "
    "activation std within [0.5, 2]; for tanh, normalized (Glorot) init does; and for each "
    "activation both other inits end (last hidden layer) with std outside [0.5, 2]"
)


def layer_stds(activation, kernel_init, depth: int, x: jax.Array) -> np.ndarray:
    """Standard deviation of each hidden layer's output (over batch and units)."""
    model = jdl.models.MLP(hidden=(WIDTH,) * depth, num_classes=10, kernel_init=kernel_init,
                           activation=activation)
    variables = model.init(jax.random.key(3), x)
    _, state = model.apply(variables, x, mutable=["intermediates"])
    acts = state["intermediates"]
    return np.array([float(jnp.std(acts[f"dense_{i}_out"][0])) for i in range(depth)])


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    depth = _common.pick(quick, smoke, 15, 10, 4)
    x = jax.random.normal(jax.random.key(0), (BATCH, WIDTH))
    stds = {(a, i): layer_stds(fn, init, depth, x)
            for a, (fn, _) in ACTIVATIONS.items() for i, init in INITS.items()}

    def inside(v):
        return bool(np.all((v >= LOW) & (v <= HIGH)))

    checks = {}
    for a, (_, right) in ACTIVATIONS.items():
        checks[f"{a}: {right} keeps all layers in band"] = inside(stds[a, right])
        for i in INITS:
            if i != right:
                last = stds[a, i][-1]
                checks[f"{a}: {i} leaves band"] = bool(last < LOW or last > HIGH)
    reproduced = all(checks.values())

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.4))
    layers = np.arange(1, depth + 1)
    colors = dict(zip(INITS, ("tab:red", "tab:blue", "tab:green")))
    for ax, a in zip(axes, ACTIVATIONS):
        for i in INITS:
            ax.semilogy(layers, stds[a, i], "o-", ms=4, color=colors[i], label=i)
        ax.axhspan(LOW, HIGH, color="0.9", label=f"band [{LOW}, {HIGH}]")
        ax.set_xlabel("hidden layer")
        ax.set_ylabel("activation std")
        ax.set_title(f"{a}: {depth} layers x {WIDTH} units, N(0,1) inputs")
        ax.legend(fontsize=8)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    marks = sorted({1, depth // 2, depth})
    rows = [
        {"activation": a, "init": i, **{f"std layer {m}": stds[a, i][m - 1] for m in marks},
         "all layers in [0.5, 2]": inside(stds[a, i]),
         "right init (lecture)": i == ACTIVATIONS[a][1]}
        for a in ACTIVATIONS for i in INITS
    ]
    measured = {f"{a} / {i}: last std": stds[a, i][-1] for a in ACTIVATIONS for i in INITS}
    measured.update({k: v for k, v in checks.items()})
    setup = f"MLP width {WIDTH}, depth {depth}, zero biases, batch {BATCH} of N(0,1) inputs."
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup))
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
