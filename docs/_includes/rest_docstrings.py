"""A griffe extension for the API pages: qmedimg's docstrings are written in reST habits (``Example::`` literal
blocks, ``>>>`` doctests, ``:class:`~x.Y``` roles); mkdocstrings renders docstrings as Markdown. This turns
literal blocks and doctests into fenced code and roles into code spans before rendering. Docs only: nothing in
``qmedimg`` imports it."""

from __future__ import annotations

import re
import textwrap

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|mod|attr|obj|data|exc|const):`(~?)([^`]+)`")


def _role(match: re.Match) -> str:
    short, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if short else target}`"


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def convert(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i, fence = 0, False
    while i < len(lines):
        line = lines[i]
        if line.lstrip().startswith("```"):
            fence = not fence
        if fence:
            out.append(line)
            i += 1
            continue
        if line.lstrip().startswith(">>>"):  # a doctest: its prompts and output, up to a blank line
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i])
                i += 1
            pad = " " * _indent(block[0])
            out += [f"{pad}```pycon", *block, f"{pad}```"]
            continue
        if line.rstrip().endswith("::") and i + 1 < len(lines) and not lines[i + 1].strip():
            base = _indent(line)
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            if j < len(lines) and _indent(lines[j]) > base:  # a literal block: everything indented deeper
                block = []
                while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
                    block.append(lines[j])
                    j += 1
                while block and not block[-1].strip():
                    block.pop()
                head = line.rstrip()[:-1]  # "Example::" -> "Example:"; " ::" alone -> nothing
                if head.strip() == ":":
                    head = ""
                pad = " " * base
                if head.strip():
                    out += [head, ""]
                out += [f"{pad}```python", *textwrap.indent(textwrap.dedent("\n".join(block)), pad).splitlines(),
                        f"{pad}```", ""]
                i = j
                continue
        out.append(ROLE.sub(_role, line))
        i += 1
    return "\n".join(out)


class RestDocstrings(griffe.Extension):
    """Convert every docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
