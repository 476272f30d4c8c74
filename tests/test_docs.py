"""What the README and the docs/ pages tell a user holds: the quick start is the two commands CI runs, every
`qmedimg` command line they show parses with today's CLI, every relative link points at a file, the site's nav
lists every page, and every API page names a module that exists. (CI also builds the site with
`mkdocs build --strict`, which checks anchors and renders the API pages; these checks need no mkdocs.)"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import yaml

from qmedimg.cli.parser import build_parser

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_includes" not in p.parts)
QUICK_START = [
    'pip install -e . && qmedimg train --dataset breastmnist --out runs/breast     # the main job',
    'pip install -e ".[test]" && python -m pytest -q                               # the tests',
]


def fenced_blocks(text: str, language: str | None = None) -> list[str]:
    """The contents of the fenced code blocks of a Markdown text (indented ones in lists too)."""
    blocks = re.findall(r"^ *```(\w*)\n(.*?)^ *```", text, re.S | re.M)
    return [body for lang, body in blocks if language is None or lang == language]


def command_lines(path: Path) -> list[str]:
    """`qmedimg ...` lines a user would type: in bash blocks, or after a `$ ` prompt in any block; synopsis
    lines with placeholders ([...], A|B, ...) are not commands."""
    text = path.read_text()
    found = []
    for block in fenced_blocks(text):
        is_bash = block in fenced_blocks(text, "bash")
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            prompt = line.startswith("$ ")
            line = line[2:] if prompt else line
            if not line.startswith("qmedimg ") or not (is_bash or prompt):
                continue
            command = line.split(" #")[0].strip()
            if not any(mark in command for mark in ("[", "|", "...", "…")):
                found.append(command)
    return found


def test_readme_starts_with_the_quick_start_commands_ci_runs():
    first = fenced_blocks(README.read_text())[0].splitlines()
    assert first == QUICK_START


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_commands_parse(path, capsys):
    parser = build_parser()
    for command in command_lines(path):
        try:
            parser.parse_args(shlex.split(command)[1:])
        except SystemExit:
            pytest.fail(f"{path.relative_to(ROOT)}: `{command}` does not parse: {capsys.readouterr().err.strip()}")


def test_readme_shows_every_command():
    commands = {line.split()[1] for line in command_lines(README)}
    subcommands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert set(subcommands) - commands == set()


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_relative_links_exist(path):
    text = re.sub(r"^ *```.*?^ *```", "", path.read_text(), flags=re.S | re.M)
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:|#", target):
            continue
        file = (path.parent / target.split("#")[0]).resolve()
        if not file.exists():
            missing.append(target)
    assert not missing, f"{path.relative_to(ROOT)} links to missing files: {missing}"


def nav_files(items) -> list[str]:
    files = []
    for item in items:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        files += nav_files(value) if isinstance(value, list) else [value]
    return files


def test_docs_nav_lists_every_page_and_nothing_else():
    nav = nav_files(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    pages = [str(p.relative_to(DOCS)) for p in PAGES]
    assert {"in the nav, no such page": sorted(set(nav) - set(pages)),
            "pages missing from the nav": sorted(set(pages) - set(nav))} == {
        "in the nav, no such page": [], "pages missing from the nav": []}
    assert len(nav) == len(set(nav)), "a page is in the nav twice"


def test_docs_api_pages_name_modules_that_exist():
    names = [name for page in sorted((DOCS / "api").glob("*.md"))
             for name in re.findall(r"^::: ([\w.]+)", page.read_text(), re.M)]
    assert names
    assert [name for name in names if importlib.util.find_spec(name) is None] == []
