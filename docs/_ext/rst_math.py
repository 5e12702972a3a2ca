"""Griffe extension: render the reST bits of jaxopt_dl's docstrings as Markdown.

The package's docstrings follow STYLE.md: Google sections, with the update rule as a
reST ``.. math::`` block and occasional ``:func:`name``` roles (which read well in
``help()``). mkdocstrings renders Markdown, so before parsing, each ``.. math::`` block
becomes a ``$$ ... $$`` display block (pymdownx.arithmatex), each role becomes a code
span, and an ``Example:`` section is read as ``Examples:`` so that its ``>>>`` lines are
shown as code rather than as Markdown text. Only the documentation build uses this file; the package does not import it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_MATH = re.compile(r"^(?P<indent>\s*)\.\. math::\s*(?P<first>.*)$")
_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj):`~?([^`]+)`")
_EXAMPLE = re.compile(r"^(\s*)Example:\s*$")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def rst_to_markdown(text: str) -> str:
    """Turn ``.. math::`` blocks into ``$$`` blocks and reST roles into code spans."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        match = _MATH.match(lines[i])
        if not match:
            line = _EXAMPLE.sub(r"\1Examples:", lines[i])
            out.append(_ROLE.sub(r"``\1``", line))
            i += 1
            continue
        base = len(match.group("indent"))
        body = [match.group("first").strip()] if match.group("first").strip() else []
        i += 1
        while i < len(lines):
            if lines[i].strip():
                if _indent(lines[i]) <= base:
                    break
                body.append(lines[i].strip())
                i += 1
                continue
            following = next((line for line in lines[i + 1 :] if line.strip()), None)
            if body and (following is None or _indent(following) <= base):
                break
            i += 1
        pad = " " * base
        if out and out[-1].strip():
            out.append("")
        out.extend([pad + "$$", *(pad + line for line in body), pad + "$$", ""])
    return "\n".join(out)


class RstMath(griffe.Extension):
    """Rewrite every docstring once, when its object is created."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
