"""Smoke test of every experiment script (tiny sizes) and of run_all's bookkeeping.

New scripts in ``experiments/`` join the parametrized list automatically.
"""

import json
import os
import sys

import pytest

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")
sys.path.insert(0, EXPERIMENTS)

import _common  # noqa: E402
import run_all  # noqa: E402

NAMES = run_all.experiment_names()


def test_experiments_are_discovered():
    assert "run_all" not in NAMES and all(not n.startswith("_") for n in NAMES)
    assert len(NAMES) >= 9


@pytest.mark.parametrize("name", NAMES)
def test_experiment_smoke(name, tmp_path):
    module = run_all.load(name)
    res = module.run(str(tmp_path), quick=True, smoke=True)
    assert isinstance(res, _common.Result)
    assert res.name == name and res.error is None
    assert res.claim == module.CLAIM and res.title == module.TITLE
    assert res.seeds and all(len(s) == 3 and s.isdigit() for s in res.seeds)
    assert res.criterion and res.measured and isinstance(res.reproduced, bool)
    assert res.figure == os.path.join(str(tmp_path), f"{name}.png")
    assert res.table == os.path.join(str(tmp_path), f"{name}.md")
    with open(res.figure, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(res.table) as f:
        text = f.read()
    assert text.startswith("# ") and "|---|" in text and module.CRITERION in text
    assert sorted(os.listdir(tmp_path)) == sorted([f"{name}.png", f"{name}.md"])
    json.dumps(res.to_dict())


def test_save_figure_rejects_unlabelled_axes(tmp_path):
    fig, ax = _common.plt.subplots()
    ax.plot([0, 1], label="a")
    ax.legend()
    ax.set_title("t")
    with pytest.raises(ValueError, match="no x label"):
        _common.save_figure(fig, str(tmp_path), "bad")
    assert not os.listdir(tmp_path)


def test_run_all_records_a_crash_and_keeps_going(tmp_path, monkeypatch):
    def broken(out_dir, quick=False, smoke=False):
        raise RuntimeError("boom")

    module = run_all.load("schedules")
    monkeypatch.setattr(module, "run", broken)
    results = run_all.run_experiments(["schedules", "c05_bias_correction"], str(tmp_path),
                                      quick=True, smoke=True)
    status = {r.name: r.status for r in results}
    assert status["schedules"] == "error"
    assert status["c05_bias_correction"] in ("yes", "no")
    summary = (tmp_path / "summary.md").read_text()
    assert "RuntimeError: boom" in summary and "c05_bias_correction" in summary
    records = json.loads((tmp_path / "summary.json").read_text())
    assert [r["name"] for r in records] == ["schedules", "c05_bias_correction"]
    assert records[0]["status"] == "error" and "boom" in records[0]["error"]
