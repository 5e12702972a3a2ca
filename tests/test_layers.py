"""The import arrows: ``_core <- transforms <- optimizers <- fused <- training / __main__``."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "jaxopt_dl"
LAYERS = ["_core", "transforms", "optimizers", "fused", "training"]


def _layer(module: str):
    """The layer of a dotted module name inside jaxopt_dl, or None."""
    parts = module.split(".")
    if parts[0] != "jaxopt_dl" or len(parts) < 2:
        return None
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else None


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


FILES = [
    p
    for layer in LAYERS
    for p in (
        [PACKAGE / f"{layer}.py"]
        if (PACKAGE / f"{layer}.py").exists()
        else sorted((PACKAGE / layer).glob("*.py"))
    )
]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_from_a_layer_above(path):
    own = LAYERS.index(path.relative_to(PACKAGE).parts[0].removesuffix(".py"))
    above = sorted({m for m in _imports(path) if _layer(m) is not None and _layer(m) > own})
    assert not above, f"{path.name} imports from a layer above it: {above}"
