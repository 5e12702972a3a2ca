"""Run optax's own test files with optax's names replaced by jaxopt_dl's.

optax ships its tests inside the installed package. :func:`rewrite` copies one of them
and inserts, right after its imports, a call to :func:`patch`: every optax module the
test file imported becomes a :class:`_Proxy` that answers a name with jaxopt_dl's object
wherever jaxopt_dl exports that name (``alias.adam`` -> ``jdl.adam``,
``_schedule.cosine_decay_schedule`` -> ``jdl.cosine_decay_schedule``), and with optax's
own object otherwise. Because the call runs before the test classes are defined, the
names captured by ``parameterized`` decorators are jaxopt_dl's too. :func:`run` runs the
rewritten copy with pytest in a fresh process and returns each test's outcome.
"""

from __future__ import annotations

import ast
import functools
import os
import pathlib
import subprocess
import sys
import types
import xml.etree.ElementTree as ElementTree

import optax

import jaxopt_dl

OPTAX_DIR = pathlib.Path(optax.__file__).parent
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


@functools.cache
def _jdl_names() -> dict:
    """jaxopt_dl's public objects that are not modules, by name."""
    return {
        name: getattr(jaxopt_dl, name)
        for name in dir(jaxopt_dl)
        if not name.startswith("_") and not isinstance(getattr(jaxopt_dl, name), types.ModuleType)
    }


def _from_optax(obj) -> bool:
    name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", "")
    return isinstance(name, str) and (name == "optax" or name.startswith("optax."))


def _swap(name: str, obj):
    if isinstance(obj, _Proxy):
        return obj
    if isinstance(obj, types.ModuleType):
        return _Proxy(obj) if _from_optax(obj) else obj
    jdl = _jdl_names()
    if name in jdl and _from_optax(obj):
        return jdl[name]
    return obj


class _Proxy(types.ModuleType):
    """An optax module whose names jaxopt_dl exports answer with jaxopt_dl's objects."""

    def __init__(self, module: types.ModuleType):
        super().__init__(module.__name__, module.__doc__)
        self.__dict__["_optax_module"] = module

    def __getattr__(self, name: str):
        return _swap(name, getattr(self.__dict__["_optax_module"], name))


def patch(namespace: dict) -> None:
    """Replace the optax modules and optax-exported names in a test module's globals."""
    for name, obj in list(namespace.items()):
        if not name.startswith("__"):
            namespace[name] = _swap(name, obj)


def rewrite(source: str) -> str:
    """``source`` with ``patch(globals())`` inserted after its last top-level import."""
    tree = ast.parse(source)
    last_import = max(
        node.end_lineno for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
    )
    lines = source.splitlines()
    call = "import optax_suite as _jdl_suite; _jdl_suite.patch(globals())"
    return "\n".join(lines[:last_import] + [call] + lines[last_import:]) + "\n"


def run(
    relative_path: str, workdir: pathlib.Path, timeout: float = 900, patched: bool = True
) -> dict[str, str]:
    """Run one optax test file against jaxopt_dl; ``{test id: outcome}``.

    The outcome is "passed", "failed" (a failure or an error) or "skipped"; the test id
    is ``Class::test_name`` as in the file. With ``patched=False`` the file runs
    unchanged, against optax itself.
    """
    source = (OPTAX_DIR / relative_path).read_text()
    copy = workdir / (("jdl_" if patched else "optax_") + relative_path.replace("/", "_"))
    copy.write_text(rewrite(source) if patched else source)
    report = workdir / (copy.stem + ".xml")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(pathlib.Path(__file__).parent)]),
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:xdist",
        "-o",
        "addopts=",
        f"--junitxml={report}",
        str(copy),
    ]
    subprocess.run(command, cwd=workdir, env=env, timeout=timeout, capture_output=True, check=False)
    outcomes = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        test_id = f"{case.get('classname').rsplit('.', 1)[-1]}::{case.get('name')}"
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            outcomes[test_id] = "failed"
        elif "skipped" in kinds:
            outcomes[test_id] = "skipped"
        else:
            outcomes[test_id] = "passed"
    return outcomes
