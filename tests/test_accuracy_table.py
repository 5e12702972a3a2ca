"""README's accuracy table = the committed runs of ``examples/accuracy_table.py``.

The table between the README's accuracy markers must be what the script renders from
``examples/accuracy_table.json``; the results file must hold a run of every row as the
script defines it now (its arguments, seeds and moment dtype), so a changed recipe
without a rerun fails; the demo row is the command ``make demo`` runs.
"""

from __future__ import annotations

import importlib.util
import pathlib
import re
import shlex

ROOT = pathlib.Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location(
    "accuracy_table", ROOT / "examples" / "accuracy_table.py"
)
accuracy_table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(accuracy_table)


def test_readme_table_is_rendered_from_the_results_file():
    readme = (ROOT / "README.md").read_text()
    block = readme[readme.index(accuracy_table.BEGIN) : readme.index(accuracy_table.END)]
    rendered = accuracy_table.render(accuracy_table.load())
    assert block.strip() == f"{accuracy_table.BEGIN}\n{rendered}".strip(), (
        "README.md's accuracy table is stale: run python examples/accuracy_table.py "
        "(or --render-only after editing the results)"
    )


def test_results_hold_a_run_of_every_row_as_defined_now():
    rows = {row["id"]: row for row in accuracy_table.load()["rows"]}
    assert list(rows) == [row["id"] for row in accuracy_table.ROWS]
    for row in accuracy_table.ROWS:
        stored = rows[row["id"]]
        current = accuracy_table.spec(row)
        assert {key: stored[key] for key in current} == current, (
            f"row {row['id']} changed since its run: python examples/accuracy_table.py "
            f"--rows {row['id']}"
        )
        accuracy = stored["test_accuracy"]
        assert sorted(accuracy, key=int) == [str(seed) for seed in row["seeds"]]
        assert all(0.0 < value <= 1.0 for value in accuracy.values())


def test_render_shows_each_rows_numbers():
    """The renderer reads the numbers it shows: changing one result changes the table."""
    results = accuracy_table.load()
    before = accuracy_table.render(results)
    results["rows"][0]["test_accuracy"]["0"] = 0.5
    after = accuracy_table.render(results)
    assert "50.0%" in after and "50.0%" not in before


def test_demo_row_is_the_make_demo_command():
    makefile = (ROOT / "Makefile").read_text()
    command = re.search(r"^demo:.*\n\t(.*)$", makefile, re.MULTILINE)[1]
    args = shlex.split(command.split("-m jaxopt_dl train", 1)[1])
    demo = next(row for row in accuracy_table.ROWS if row["id"] == "resnet_demo")
    without_run_flags = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--seed", "--out"):
            skip = True
        else:
            without_run_flags.append(arg)
    assert without_run_flags == demo["args"]
    assert "--seed" in args and args[args.index("--seed") + 1] == str(demo["seeds"][0])
