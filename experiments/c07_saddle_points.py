"""Claim 7: GD slows near a saddle; noise and momentum escape; pure Newton is attracted to it.

``jdl.data.saddle(0.25)``: f(x, y) = x^2 - y^2 + y^4/4, a saddle at the origin and minima
(0, +-sqrt(2)) with f = -1. Gradient descent, momentum and noisy GD run as one vmapped
``lax.scan`` each (``_common.toy_trajectories``); pure Newton (``jdl.minimize(...,
method="newton", damping=0)``: full steps ``-H^{-1} g``) and damped Newton (the default,
which shifts the Hessian to positive definite and line-searches) from a grid of starts
around the saddle, vmapped over the starts.

    python experiments/c07_saddle_points.py [--quick] [--out DIR]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import _common
import jaxopt_dl as jdl
from _common import plt

NAME = "c07_saddle_points"
CLAIM = 7
TITLE = "GD slows near a saddle; noisy GD / momentum escape; pure Newton is attracted to it"
SEEDS = ("000", "002")
LR, NOISE, QUARTIC = 0.05, 0.05, 0.25
NEAR, FAR, ON = (1.0, 1e-3), (1.0, 0.5), (1.0, 0.0)
CRITERION = (
    "f = x^2 - y^2 + y^4/4, GD lr 0.05: (a) from (1, 1e-3), next to the saddle's attracting "
    "line, GD needs > 3x the steps to reach f < -0.9 that it needs from (1, 0.5); (b) from "
    "(1, 0) exactly, GD ends within 1e-3 of the saddle while >= 90% of noisy-GD runs "
    "(gradient noise N(0, 0.05^2)) reach f < -0.9; (c) from (1, 1e-3) momentum 0.9 reaches "
    "f < -0.9 in fewer steps than GD; (d) from starts in [-0.5, 0.5]^2 (y != 0) pure Newton "
    "(damping 0) ends within 1e-3 of the saddle in >= 90% of starts, damped Newton reaches "
    "f < -0.99 in 100%"
)


def _steps_to(losses: np.ndarray, level: float) -> float:
    """First step index with loss < level (inf if never)."""
    hit = np.nonzero(losses < level)[0]
    return float(hit[0]) if hit.size else float("inf")


def run(out_dir: str, quick: bool = False, smoke: bool = False) -> _common.Result:
    steps = _common.pick(quick, smoke, 600, 400, 150)
    n_keys = _common.pick(quick, smoke, 64, 32, 4)
    n_grid = _common.pick(quick, smoke, 12, 8, 3)
    surface = jdl.data.saddle(QUARTIC)
    fun = jax.jit(jax.vmap(surface.fun))
    exact = lambda w, k: surface.grad(w)  # noqa: E731
    noisy = lambda w, k: surface.noisy_grad(w, k, NOISE)  # noqa: E731
    keys = jax.random.split(jax.random.key(0), n_keys)
    one_key = keys[:1]

    def path(make, grad_fn, w0, ks):
        ws = _common.toy_trajectories(make, [LR], grad_fn, w0, steps, ks)[0]
        return np.asarray(ws, np.float64)  # (keys, steps + 1, 2)

    def losses(ws):
        return np.asarray(fun(jnp.asarray(ws.reshape(-1, 2), jnp.float32))).reshape(ws.shape[:-1])

    gd = jdl.sgd
    mom = lambda lr: jdl.momentum(lr, 0.9)  # noqa: E731
    runs = {
        "GD from (1, 0.5)": path(gd, exact, FAR, one_key)[0],
        "GD from (1, 1e-3)": path(gd, exact, NEAR, one_key)[0],
        "momentum 0.9 from (1, 1e-3)": path(mom, exact, NEAR, one_key)[0],
        "GD from (1, 0)": path(gd, exact, ON, one_key)[0],
    }
    noisy_runs = path(gd, noisy, ON, keys)
    curves = {k: losses(v) for k, v in runs.items()}
    noisy_losses = losses(noisy_runs)
    t_far = _steps_to(curves["GD from (1, 0.5)"], -0.9)
    t_near = _steps_to(curves["GD from (1, 1e-3)"], -0.9)
    t_mom = _steps_to(curves["momentum 0.9 from (1, 1e-3)"], -0.9)
    gd_on_dist = float(np.linalg.norm(runs["GD from (1, 0)"][-1]))
    noisy_escaped = float(np.mean(noisy_losses.min(axis=1) < -0.9))

    # Newton from a grid of starts around the saddle (y != 0).
    g = np.linspace(-0.5, 0.5, n_grid)
    gx, gy = np.meshgrid(g, g + (0.5 / n_grid if n_grid % 2 else 0.0))
    starts = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    starts = starts[np.abs(starts[:, 1]) > 1e-6]

    def newton(x0, pure):
        opts = {"damping": 0.0} if pure else {}
        return jdl.minimize(surface.fun, x0, method="newton", maxiter=100, tol=1e-6, **opts).x

    pure_x = np.asarray(jax.vmap(lambda x0: newton(x0, True))(jnp.asarray(starts)))
    damped_x = np.asarray(jax.vmap(lambda x0: newton(x0, False))(jnp.asarray(starts)))
    pure_at_saddle = float(np.mean(np.linalg.norm(pure_x, axis=1) < 1e-3))
    damped_at_min = float(np.mean(np.asarray(fun(jnp.asarray(damped_x))) < -0.99))

    a = t_near > 3 * t_far
    b = gd_on_dist < 1e-3 and noisy_escaped >= 0.9
    c = t_mom < t_near
    d = pure_at_saddle >= 0.9 and damped_at_min == 1.0
    reproduced = bool(a and b and c and d)

    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    xx, yy = np.meshgrid(np.linspace(-1.2, 1.2, 200), np.linspace(-2, 2, 200))
    zz = np.asarray(fun(jnp.asarray(np.stack([xx.ravel(), yy.ravel()], 1), jnp.float32)))
    axes[0].contour(xx, yy, zz.reshape(xx.shape), levels=30, colors="0.8", linewidths=0.5)
    for (label, ws), color in zip(runs.items(), ("tab:blue", "tab:orange", "tab:green", "k")):
        axes[0].plot(ws[:, 0], ws[:, 1], ".-", ms=2, lw=0.8, color=color, label=label)
    axes[0].plot(noisy_runs[0, :, 0], noisy_runs[0, :, 1], lw=0.6, color="tab:red",
                 label="noisy GD from (1, 0), one run")
    axes[0].plot(0, 0, "kx", ms=10, label="saddle")
    axes[0].set_xlabel("x")
    axes[0].set_ylabel("y")
    axes[0].set_title("Paths on f = x² - y² + y⁴/4")
    axes[0].legend(fontsize=7, loc="lower left")
    for (label, curve), color in zip(curves.items(), ("tab:blue", "tab:orange", "tab:green", "k")):
        axes[1].plot(curve, color=color, label=label)
    axes[1].plot(np.median(noisy_losses, axis=0), color="tab:red",
                 label=f"noisy GD from (1, 0), median of {n_keys}")
    axes[1].axhline(-0.9, color="0.5", ls=":", lw=0.8, label="f = -0.9")
    axes[1].set_xlabel("step")
    axes[1].set_ylabel("f")
    axes[1].set_title("Loss: the plateau at f = 0 is the saddle")
    axes[1].legend(fontsize=7)
    axes[2].scatter(starts[:, 0], starts[:, 1], s=12, c="0.6", label="starts")
    axes[2].scatter(pure_x[:, 0], pure_x[:, 1], s=60, marker="x", c="tab:red",
                    label=f"pure Newton ends ({pure_at_saddle:.0%} at the saddle)")
    axes[2].scatter(damped_x[:, 0], damped_x[:, 1], s=60, marker="+", c="tab:green",
                    label=f"damped Newton ends ({damped_at_min:.0%} at a minimum)")
    axes[2].set_xlabel("x")
    axes[2].set_ylabel("y")
    axes[2].set_title("Newton: where the iterates end")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    figure = _common.save_figure(fig, out_dir, NAME)

    rows = [{"run": k, "steps to f < -0.9": _steps_to(v, -0.9), "final f": v[-1],
             "final distance to saddle": float(np.linalg.norm(runs[k][-1]))}
            for k, v in curves.items()]
    rows.append({"run": f"noisy GD from (1, 0), {n_keys} keys (median)",
                 "steps to f < -0.9": float(np.median([_steps_to(c, -0.9) for c in noisy_losses])),
                 "final f": float(np.median(noisy_losses[:, -1])),
                 "final distance to saddle": float(np.median(
                     np.linalg.norm(noisy_runs[:, -1], axis=1)))})
    newton_rows = [
        {"method": "pure Newton (damping 0)", "starts": len(starts),
         "fraction ending at the saddle": pure_at_saddle,
         "fraction ending at a minimum (f < -0.99)":
             float(np.mean(np.asarray(fun(jnp.asarray(pure_x))) < -0.99))},
        {"method": "damped Newton (default)", "starts": len(starts),
         "fraction ending at the saddle": float(np.mean(np.linalg.norm(damped_x, axis=1) < 1e-3)),
         "fraction ending at a minimum (f < -0.99)": damped_at_min},
    ]
    measured = {
        "GD steps from (1, 0.5)": t_far, "GD steps from (1, 1e-3)": t_near,
        "momentum steps from (1, 1e-3)": t_mom, "GD from (1, 0): final distance": gd_on_dist,
        "noisy GD escaped fraction": noisy_escaped, "pure Newton at saddle": pure_at_saddle,
        "damped Newton at minimum": damped_at_min,
    }
    setup = (f"saddle(quartic={QUARTIC}), lr {LR}, {steps} steps; noisy GD: {n_keys} keys, noise "
             f"std {NOISE}; Newton: {len(starts)} grid starts in [-0.5, 0.5]^2, maxiter 100.")
    table = _common.write_table(rows, out_dir, NAME, TITLE,
                                notes=_common.verdict_notes(globals(), reproduced, setup),
                                extra_tables={"Newton from starts around the saddle": newton_rows})
    return _common.result(globals(), measured, reproduced, figure, table)


if __name__ == "__main__":
    raise SystemExit(_common.main(run, __doc__))
