"""The documentation site builds, documents every public name, and its examples run.

The strict build fails on any broken link, unresolved cross-reference or malformed
docstring section (griffe warnings), so this test is the CI gate of issue 10. The
public names are the ones ``jaxopt_dl/__init__.py`` re-exports; each must have a
heading with a docstring in the built API reference (``docs/reference/``).

Every ```` ```python ```` block of ``docs/**/*.md`` is executed: a page's blocks run in
order in one namespace and its own working folder (all pages in one subprocess, so JAX
is imported once), so the docs cannot rot. A block preceded by the line
``<!-- norun -->`` is skipped; use it only for code that cannot run on one CPU host
(e.g. multi-host setup).
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import html
import importlib.util
import inspect
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
HEADING = re.compile(
    r'<h(?P<level>[1-6]) id="(?P<id>[^"]+)" class="doc doc-heading">(?P<inner>.*?)</h(?P=level)>',
    re.S,
)
MISSING = [
    module
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers")
    if importlib.util.find_spec(module) is None
]

needs_mkdocs = pytest.mark.skipif(
    bool(MISSING),
    reason=f"documentation tools not installed ({', '.join(MISSING)}): "
    "pip install -e '.[docs]' to run the strict docs build",
)


def public_names() -> list[str]:
    """Every name ``jaxopt_dl/__init__.py`` re-exports (its flat ``from ... import`` list)."""
    tree = ast.parse((ROOT / "jaxopt_dl" / "__init__.py").read_text())
    names = [
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module != "jaxopt_dl"
        for alias in node.names
    ]
    return sorted(name for name in names if not name.startswith("_"))


def public_submodules() -> list[str]:
    """Submodules re-exported as ``from jaxopt_dl import X`` (documented as whole pages)."""
    tree = ast.parse((ROOT / "jaxopt_dl" / "__init__.py").read_text())
    return sorted(
        alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == "jaxopt_dl"
        for alias in node.names
    )


def documented_names(reference_dir: pathlib.Path) -> dict[str, str]:
    """Map each documented object's short name to its anchor, for objects with a docstring.

    An object counts as documented when the built page has a mkdocstrings heading for it
    (named by its anchor's last component or by the heading text) followed by a
    paragraph of docstring text before the next heading.
    """
    found: dict[str, str] = {}
    for page in reference_dir.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        headings = list(HEADING.finditer(text))
        for heading, following in zip(headings, headings[1:] + [None]):
            body = text[heading.end() : following.start() if following else len(text)]
            if "<p>" not in body:
                continue
            shown = html.unescape(re.sub(r"<[^>]+>", "", heading["inner"])).replace("¶", "")
            for name in (heading["id"].rsplit(".", 1)[-1], shown.strip().rsplit(".", 1)[-1]):
                found.setdefault(name, heading["id"])
    return found


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, (
        f"mkdocs build --strict failed (exit {result.returncode}):\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    )
    return out


@needs_mkdocs
def test_strict_build_writes_every_nav_page(site):
    assert (site / "index.html").is_file()
    for page in ("getting-started", "porting", "experiments", "benchmarks", "reference"):
        assert (site / page / "index.html").is_file(), page


@needs_mkdocs
def test_every_public_name_has_a_documented_api_entry(site):
    documented = documented_names(site / "reference")
    missing = [name for name in public_names() if name not in documented]
    assert not missing, (
        "public names of jaxopt_dl/__init__.py without a documented entry in the API "
        f"reference: {missing}. Add a docstring, or a docs/reference/<module>.md page with "
        "'::: jaxopt_dl.<module>' and its line in mkdocs.yml's nav."
    )


def test_public_names_are_found_by_the_parser():
    """Guards the check above against vacuously passing on an empty name list."""
    names = public_names()
    assert {"adam", "chain", "exponential_decay", "reduce_on_plateau"} <= set(names)


def test_every_public_submodule_has_a_reference_page():
    pages = "\n".join(p.read_text() for p in (ROOT / "docs" / "reference").rglob("*.md"))
    missing = [m for m in public_submodules() if f"::: jaxopt_dl.{m}" not in pages]
    assert not missing, f"submodules without a docs/reference page: {missing}"


DOCS = ROOT / "docs"
FENCE = re.compile(
    r"^(?P<indent> *)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M
)
NORUN = "<!-- norun -->"
# Runs every page's blocks in order, each page in a fresh namespace and its own working
# folder, in ONE process (one JAX import); writes {page: traceback or None} as JSON.
RUNNER = """
import json, os, sys, traceback
pages, out = json.load(sys.stdin), sys.argv[1]
results = {}
for page, (folder, blocks) in pages.items():
    os.makedirs(folder)
    os.chdir(folder)
    namespace = {"__name__": "__main__"}
    results[page] = None
    for line, code in blocks:
        try:
            exec(compile(code, f"{page}:{line}", "exec"), namespace)
        except BaseException:
            results[page] = f"the python block at {page}:{line} failed:\\n" + traceback.format_exc()
            break
with open(out, "w") as f:
    json.dump(results, f)
"""


def python_blocks(page: pathlib.Path) -> list[tuple[int, str, bool]]:
    """``(line, code, runs)`` of every ```` ```python ```` block of a page, in order.

    ``runs`` is False for a block whose fence is directly preceded by ``<!-- norun -->``.
    Indented blocks (inside lists or admonitions) are dedented.
    """
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        if match["info"].split()[:1] not in (["python"], ["py"]):
            continue
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1].strip()
        indent = len(match["indent"])
        code = "".join(line_[indent:] for line_ in match["body"].splitlines(keepends=True))
        blocks.append((line + 1, code, before != NORUN))
    return blocks


PAGES = sorted(p for p in DOCS.rglob("*.md") if any(runs for *_, runs in python_blocks(p)))


def test_python_blocks_are_found():
    """Guards the example test against vacuously passing: the parser sees the examples."""
    pages = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {"getting-started.md", "guide/training.md", "guide/adaptive.md"} <= pages
    blocks = python_blocks(DOCS / "getting-started.md")
    assert len(blocks) >= 2 and "jdl.adam" in blocks[0][1]


@pytest.fixture(scope="module")
def example_failures(tmp_path_factory) -> dict:
    """Run every page's python blocks (one subprocess); ``{page: traceback or None}``."""
    folder = tmp_path_factory.mktemp("docs_examples")
    pages = {
        page.relative_to(ROOT).as_posix(): (
            str(folder / page.relative_to(DOCS).as_posix().replace("/", "_")),
            [(line, code) for line, code, runs in python_blocks(page) if runs],
        )
        for page in PAGES
    }
    out = folder / "results.json"
    pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": pythonpath, "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, str(out)],
        input=json.dumps(pages),
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0 and out.is_file(), (
        f"the docs example runner crashed (exit {result.returncode}):\n"
        f"{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
    )
    return json.loads(out.read_text())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(DOCS).as_posix())
def test_docs_python_examples_run(page, example_failures):
    """A page's python blocks run, in order, in one namespace (cwd: a temporary folder)."""
    failure = example_failures[page.relative_to(ROOT).as_posix()]
    assert failure is None, failure


@needs_mkdocs
def test_site_loads_nothing_from_the_network(site):
    """The site reads offline: every script, stylesheet and font it loads ships with it."""
    remote = re.compile(r'<(?:script|link)[^>]+(?:src|href)="(https?:)?//[^"]+"')
    offenders = {
        str(page.relative_to(site)): remote.findall(page.read_text(encoding="utf-8"))
        for page in site.rglob("*.html")
        if remote.search(page.read_text(encoding="utf-8"))
    }
    assert not offenders, f"pages loading remote resources: {sorted(offenders)[:5]}"
    assert (site / "javascripts" / "mathjax" / "es5" / "tex-mml-chtml.js").is_file()
    assert list((site / "javascripts" / "mathjax" / "es5" / "output").rglob("*.woff"))


# --- every public callable documents every argument ------------------------------
ARG_SECTIONS = re.compile(r"(Args|Arguments|Attributes|Keyword Args|Keyword Arguments):")


def args_section(doc: str | None) -> str:
    """The lines of a docstring's ``Args:`` (or, for classes, ``Attributes:``) sections."""
    lines = inspect.cleandoc(doc or "").splitlines()
    kept, inside, indent = [], False, 0
    for line in lines:
        stripped, depth = line.strip(), len(line) - len(line.lstrip())
        if ARG_SECTIONS.fullmatch(stripped):
            inside, indent = True, depth
            continue
        if inside and stripped and depth <= indent:
            inside = False
        if inside:
            kept.append(line)
    return "\n".join(kept)


def documents(name: str, section: str) -> bool:
    """Whether an ``Args:`` section has an entry ``name:`` or ``name (type):``."""
    return (
        re.search(rf"^\s+{re.escape(name)}(\s*\([^)\n]*\))?\s*:", section, re.MULTILINE) is not None
    )


def public_callables() -> dict[str, object]:
    """``{qualified name: object}`` of every public function, class and method of jaxopt_dl.

    Public: re-exported by ``jaxopt_dl/__init__.py``, or listed in the ``__all__`` of a
    public submodule or of a module with an API reference page (``::: jaxopt_dl.X`` in
    ``docs/reference/``; a module without ``__all__``: its non-underscore names), and
    defined in jaxopt_dl (names re-exported from optax are optax's to document); plus
    the public methods those classes define themselves.
    """
    import importlib

    import jaxopt_dl

    found: dict[str, object] = {}
    for name in public_names():
        found[f"jaxopt_dl.{name}"] = getattr(jaxopt_dl, name)
    referenced = re.findall(
        r"^::: (jaxopt_dl(?:\.\w+)*)\s*$",
        "\n".join(p.read_text() for p in (DOCS / "reference").rglob("*.md")),
        re.MULTILINE,
    )
    modules = {f"jaxopt_dl.{sub}" for sub in public_submodules()} | set(referenced)
    for module_name in sorted(modules):
        module = importlib.import_module(module_name)
        names = getattr(module, "__all__", [n for n in vars(module) if not n.startswith("_")])
        for name in names:
            found[f"{module_name}.{name}"] = getattr(module, name)
    result: dict[str, object] = {}
    for qualname, obj in found.items():
        if not callable(obj) or not getattr(obj, "__module__", "").startswith("jaxopt_dl"):
            continue
        result[qualname] = obj
        if inspect.isclass(obj):
            is_dataclass = dataclasses.is_dataclass(obj)
            fields = {f.name for f in dataclasses.fields(obj)} if is_dataclass else set()
            for attr, member in vars(obj).items():
                if attr.startswith("_") or attr in fields:  # a field's default is no method
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if inspect.isfunction(member):
                    result[f"{qualname}.{attr}"] = member
    return result


def undocumented_arguments(obj: object) -> list[str]:
    """The parameters of ``obj``'s signature missing from its ``Args:`` section.

    An enum class has no arguments of its own (its signature is ``Enum``'s functional API).
    """
    if inspect.isclass(obj) and issubclass(obj, enum.Enum):
        return []
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    docs = args_section(inspect.getdoc(obj))
    skip = {"self", "cls"}
    if inspect.isclass(obj):
        init = vars(obj).get("__init__")
        docs += "\n" + args_section(getattr(init, "__doc__", None))
        if any(base.__module__.startswith("flax.linen") for base in obj.__mro__):
            skip |= {"parent", "name"}  # flax's own Module fields
    return [
        name
        for name, parameter in signature.parameters.items()
        if name not in skip
        and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        and not documents(name, docs)
    ]


def test_public_callables_are_found():
    """Guards the Args check against vacuously passing on an empty list."""
    names = public_callables()
    assert {"jaxopt_dl.adam", "jaxopt_dl.chain", "jaxopt_dl.training.fit"} <= set(names)
    assert documents("learning_rate", "  learning_rate: the step size.")
    assert not documents("b1", "  learning_rate: the step size, b1 as in torch.")


def test_every_public_argument_is_documented():
    """Every public function, class and method names each argument in ``Args:``."""
    missing = {
        name: gaps
        for name, obj in public_callables().items()
        if (gaps := undocumented_arguments(obj))
    }
    assert not missing, (
        f"{len(missing)} public callables with arguments missing from their docstring's "
        "'Args:' section (Google style):\n"
        + "\n".join(f"  {name}: {', '.join(gaps)}" for name, gaps in sorted(missing.items()))
    )


def test_documented_variadic_arguments_are_annotated():
    """A ``*args``/``**kwargs`` named in ``Args:`` has a type hint (griffe warns otherwise,
    and the strict build turns the warning into a failure)."""
    unannotated = []
    for name, obj in public_callables().items():
        try:
            parameters = inspect.signature(obj).parameters.values()
        except (TypeError, ValueError):
            continue
        docs = args_section(inspect.getdoc(obj))
        for parameter in parameters:
            variadic = parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
            stars = "**" if parameter.kind == parameter.VAR_KEYWORD else "*"
            if (
                variadic
                and parameter.annotation is inspect.Parameter.empty
                and f"{stars}{parameter.name}:" in docs
            ):
                unannotated.append(f"{name}: {stars}{parameter.name}")
    assert not unannotated, "documented variadic arguments without a type hint:\n" + "\n".join(
        unannotated
    )


def _extra(name: str) -> list[str]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["optional-dependencies"][name]


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib needs Python 3.11")
def test_docs_extra_pins_the_toolchain_the_build_uses():
    """Every package of the ``[docs]`` extra is pinned (``==``), ``[test]`` includes it,
    and the installed versions are the pins, so the strict build above ran the pinned
    toolchain; ``make docs`` installs that extra alone."""
    from importlib.metadata import PackageNotFoundError, version

    docs = _extra("docs")
    assert {"mkdocs", "mkdocstrings", "mkdocstrings-python", "griffelib"} <= {
        requirement.split("==")[0] for requirement in docs
    }
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", r) for r in docs), docs
    assert "jaxopt_dl[docs]" in _extra("test")
    mismatched = []
    for requirement in docs:
        package, pinned = requirement.split("==")
        try:
            installed = version(package)
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            mismatched.append(f"{package}: pinned {pinned}, installed {installed}")
    assert not mismatched, "pip install -e '.[docs]' to match the pins:\n" + "\n".join(mismatched)
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^docs: (\S+)$", makefile, re.MULTILINE)
    assert target, "the Makefile has no docs target"
    stamp = target[1]
    recipe = re.search(rf"^{re.escape(stamp)}:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe and "-e '.[docs]'" in recipe[1] and ".[test]" not in recipe[1], stamp


# --- no internal references in user-facing text -----------------------------------
# Whitespace may be a line break: "seed\n002" is caught too.
INTERNAL = re.compile(
    r"seeds?\s+00[0-9]|\.\./shared|the\s+contract|API\.md|\blent\b", re.IGNORECASE
)


def user_facing_files() -> list[pathlib.Path]:
    """README, the docs pages (not the bundled MathJax) and the package's sources."""
    docs = [p for p in DOCS.rglob("*.md") if "javascripts" not in p.relative_to(DOCS).parts]
    return [ROOT / "README.md", *sorted(docs), *sorted((ROOT / "jaxopt_dl").rglob("*.py"))]


def test_no_internal_references_in_user_facing_text():
    """Lectures are cited by author and title; no project-internal paths or jargon."""
    assert INTERNAL.search("as in seed 002's notes") and not INTERNAL.search("a seed of 0")
    assert INTERNAL.search("(seed\n    002, 6.4)")
    offenders = []
    for path in user_facing_files():
        text = path.read_text(encoding="utf-8")
        for match in INTERNAL.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            offenders.append(f"{path.relative_to(ROOT)}:{line}: {' '.join(match[0].split())}")
    assert not offenders, "internal references in user-facing text:\n" + "\n".join(offenders)
