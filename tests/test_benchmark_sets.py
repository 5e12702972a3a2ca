"""The MNIST-1D table and the optimizer benchmark set: the sweep with a custom loss, the
problems, the protocol, the statistics and that the docs' numbers are the results files'."""

import json
import os
import re
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

import jaxopt_dl as jdl
from benchmarks import mnist1d_table, optimizer_set
from benchmarks.reporting import (
    RESULTS,
    ROOT,
    bootstrap_interval,
    replace_section,
    wilson_interval,
)


def small_quadratic(dim=10, n=64, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(dim, dim))
    hessian = a @ a.T / dim + 0.1 * np.eye(dim)
    x = rng.normal(0.0, 0.6, (n, dim)).astype(np.float32)
    xv = rng.normal(0.0, 0.6, (n, dim)).astype(np.float32)
    y = np.zeros(n, np.int32)
    return hessian, (x, y), (xv, y)


def test_sweep_with_a_custom_loss_equals_plain_sgd_in_numpy():
    hessian, (x, y), val = small_quadratic()
    rates, run_seeds, epochs, batch = [0.05, 0.2], [3, 4], 3, 16
    result = jdl.training.sweep(
        lambda learning_rate: jdl.sgd(learning_rate),
        {"learning_rate": np.array(rates, np.float32)},
        run_seeds,
        optimizer_set.Shift(dim=10),
        (x, y),
        epochs=epochs,
        batch_size=batch,
        val_data=val,
        loss=optimizer_set.quadratic_loss(hessian),
    )
    for i, lr in enumerate(rates):
        for j, seed in enumerate(run_seeds):
            theta = np.ones(10)
            for epoch in range(epochs):
                idx, _ = jdl.training.epoch_indices(len(x), batch, seed, epoch)
                for step in idx:
                    theta = theta - lr * hessian @ (theta - x[step].astype(np.float64)).mean(0)
                d = theta - val[0]
                expected = 0.5 * np.einsum("bi,ij,bj->b", d, hessian, d).mean()
                np.testing.assert_allclose(result.val_loss[i, j, epoch], expected, rtol=2e-4)
    assert np.all(np.isnan(result.val_accuracy))


def test_quadratic_deep_has_deepobs_spectrum_and_noisy_gradients():
    hessian = optimizer_set.quadratic_deep_hessian()
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-10)
    eigenvalues = np.sort(np.linalg.eigvalsh(hessian))
    assert np.all((eigenvalues[:90] > 0) & (eigenvalues[:90] < 1))
    assert np.all((eigenvalues[90:] > 30) & (eigenvalues[90:] < 60))
    # the rotation mixes the axes: no eigenvector is a coordinate axis
    assert np.abs(np.linalg.eigh(hessian)[1]).max() < 0.9
    problem = optimizer_set.problems(quick=True)["quadratic_deep"]
    x = problem.train[0]
    assert x.shape == (1000, 100) and abs(x.std() - 0.6) < 0.01
    # minibatch gradients at theta = 1 scatter around the full gradient
    g = (hessian @ (1.0 - x[:128].T)).mean(1), (hessian @ (1.0 - x[128:256].T)).mean(1)
    assert np.linalg.norm(g[0] - g[1]) > 0.1


def record_of(steps, finals):
    """A record with given per-seed steps/final losses: {problem: {optimizer: [...]}}."""
    return {
        "mode": "quick",
        "problems": {
            p: {
                "judged": {
                    o: {"steps_to_target": steps[p][o], "final_val_loss": finals[p][o]}
                    for o in steps[p]
                }
            }
            for p in steps
        },
    }


def test_performance_profile_by_hand():
    inf = float("inf")
    steps = {
        "p": {"a": [10, 20], "b": [20, 10]},
        "q": {"a": [30, inf], "b": [inf, inf]},
    }
    record = record_of(steps, steps)
    prof = optimizer_set.profile(record, "steps_to_target")
    assert prof["runs"] == 3  # the (q, seed 1) run nobody solved is left out
    tau = np.array(prof["tau"])
    rho_a, rho_b = np.array(prof["rho"]["a"]), np.array(prof["rho"]["b"])
    # a: ratios 1, 2, 1; b: ratios 2, 1, inf
    np.testing.assert_allclose(rho_a, np.where(tau >= 2, 1.0, 2 / 3))
    np.testing.assert_allclose(rho_b, np.where(tau >= 2, 2 / 3, 1 / 3))
    assert optimizer_set.conclusion(record).startswith("a is fastest to the target on 67% of 3")


def test_protocol_tunes_on_other_seeds_and_measures_steps_to_the_target():
    hessian, train, val = small_quadratic()
    problem = optimizer_set.Problem(
        "small",
        optimizer_set.Shift(dim=10),
        train,
        val,
        4,
        16,
        optimizer_set.quadratic_loss(hessian),
    )
    optimizers = {"adam": lambda learning_rate: jdl.adam(learning_rate)}
    out = optimizer_set.run_problem(problem, optimizers, quick=True, target=None)
    tuning, judged = out["tuning"]["adam"], out["judged"]["adam"]
    assert tuning["best_index"] == int(np.argmin(tuning["score"]))
    assert set(judged["seeds"]).isdisjoint(optimizer_set.seeds(True)[0])
    best = min(tuning["val_curve"])
    np.testing.assert_allclose(out["target"], best + 0.05 * (out["initial_val_loss"] - best))
    # the judged runs again, by hand: first epoch at or below the target
    rerun = jdl.training.sweep(
        lambda learning_rate: jdl.adam(learning_rate),
        {"learning_rate": np.array([tuning["best_rate"]], np.float32)},
        judged["seeds"],
        problem.model,
        train,
        epochs=4,
        batch_size=16,
        val_data=val,
        loss=problem.loss,
    )
    for seed_index, steps in enumerate(judged["steps_to_target"]):
        curve = rerun.val_loss[0, seed_index]
        hits = np.flatnonzero(curve <= out["target"])
        assert steps == (float((hits[0] + 1) * 4) if hits.size else float("inf"))
    np.testing.assert_allclose(judged["final_val_loss"], rerun.val_loss[0, :, -1], rtol=1e-6)


def test_factory_named_and_its_errors():
    tx = optimizer_set.factory_named("nadam")(1e-3)
    params = {"w": jnp.ones(3)}
    updates, _ = tx.update({"w": jnp.ones(3)}, tx.init(params), params)
    assert updates["w"].shape == (3,)
    assert optimizer_set.factory_named("optax:adam")(1e-3) is not None
    with pytest.raises(ValueError, match="--optimizer"):
        optimizer_set.factory_named("no_such_optimizer")


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (37, 50)])
def test_wilson_interval_equals_scipy(k, n):
    expected = scipy.stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    np.testing.assert_allclose(wilson_interval(k, n), (expected.low, expected.high), atol=1e-9)


def test_bootstrap_interval_brackets_the_statistic_and_keeps_failures():
    values = np.array([1.0, 2.0, 3.0, 4.0, 10.0])
    low, high = bootstrap_interval(values)
    assert low <= values.mean() <= high and low >= 1.0 and high <= 10.0
    assert bootstrap_interval(np.full(5, 7.0)) == (7.0, 7.0)
    low, high = bootstrap_interval(np.array([1.0, np.inf, np.inf, np.inf, 2.0]), np.median)
    assert high == np.inf


def test_replace_section_adds_then_replaces(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# Title\n\ntext\n")
    replace_section(str(page), "s", "first")
    replace_section(str(page), "s", "second")
    text = page.read_text()
    assert text.startswith("# Title\n\ntext\n") and "first" not in text
    assert text.count("<!-- s:begin -->\nsecond\n<!-- s:end -->") == 1


def section(name):
    text = open(os.path.join(ROOT, "docs", "benchmarks.md")).read()
    match = re.search(f"<!-- {name}:begin -->\n(.*?)\n<!-- {name}:end -->", text, re.S)
    return match and match.group(1)


@pytest.mark.parametrize("suffix", ["", ".quick"])
def test_mnist1d_tables_are_generated_from_their_results(suffix):
    path = os.path.join(RESULTS, f"mnist1d_table{suffix}.json")
    if not os.path.exists(path):
        pytest.skip(f"no {os.path.basename(path)} committed")
    record = json.load(open(path))
    assert record["mode"] == ("quick" if suffix else "full")
    table = mnist1d_table.markdown(record)
    assert open(os.path.join(RESULTS, f"mnist1d_table{suffix}.md")).read() == table
    if not suffix:
        assert section("mnist1d_table") == table.strip()
    for key, row in record["rows"].items():
        assert row["paper_accuracy"] == mnist1d_table.PAPER[key]
        assert len(row["test_accuracy"]) == len(record["setup"]["seeds"])
        assert f"| {row['paper_accuracy']:.0f}% | {row['mean']:.1f}% |" in table


@pytest.mark.parametrize("suffix", ["", ".quick"])
def test_optimizer_set_tables_are_generated_from_their_results(suffix):
    path = os.path.join(RESULTS, f"optimizer_set{suffix}.json")
    if not os.path.exists(path):
        pytest.skip(f"no {os.path.basename(path)} committed")
    record = json.load(open(path))
    assert record["mode"] == ("quick" if suffix else "full")
    png = f"optimizer_set{suffix}.png"
    assert open(os.path.join(RESULTS, f"optimizer_set{suffix}.md")).read() == (
        optimizer_set.markdown(record, png)
    )
    assert os.path.exists(os.path.join(RESULTS, png))
    full = os.path.exists(os.path.join(RESULTS, "optimizer_set.json"))
    if suffix == ("" if full else ".quick"):  # the docs show the full run once there is one
        assert (
            section("optimizer_set") == optimizer_set.markdown(record, "optimizer_set.png").strip()
        )
        assert os.path.exists(os.path.join(ROOT, "docs", "optimizer_set.png"))
    if not suffix:
        assert len(record["protocol"]["judged_seeds"]) >= 10
    for problem in record["problems"].values():
        for name, tuned in problem["tuning"].items():
            assert tuned["best_rate"] == tuned["rates"][int(np.argmin(tuned["score"]))]
            assert len(problem["judged"][name]["steps_to_target"]) == len(
                record["protocol"]["judged_seeds"]
            )


def test_a_users_optimizer_is_judged_at_the_baselines_targets_in_a_new_process(tmp_path):
    baseline_path = os.path.join(RESULTS, "optimizer_set.quick.json")
    if not os.path.exists(baseline_path):
        pytest.skip("no optimizer_set.quick.json committed")
    baseline = json.load(open(baseline_path))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.optimizer_set",
            "--quick",
            "--optimizer",
            "nadam",
            "--problems",
            "quadratic_deep",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    record = json.load(open(tmp_path / "optimizer_set.nadam.quick.json"))
    problem = record["problems"]["quadratic_deep"]
    assert problem["target"] == baseline["problems"]["quadratic_deep"]["target"]
    assert list(problem["judged"]) == ["nadam"]
    table = (tmp_path / "optimizer_set.nadam.quick.md").read_text()
    # the user's row beside every baseline's, on the problem that ran only
    for name in [*baseline["problems"]["quadratic_deep"]["judged"], "nadam"]:
        assert f"| {name} |" in table
    assert "mnist1d_mlp" not in table and (tmp_path / "optimizer_set.nadam.quick.png").exists()
