"""The documentation holds together: README.md and docs/ link only to files that exist,
the README stays an entry point, and no tracked file names a path outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
README_MAX_LINES = 250

# [text](target) and ![alt](target), with an optional "title" after the target.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(`+)[^`]*?\1")
EXTERNAL = re.compile(r"^(https?:|mailto:)", re.IGNORECASE)

# Built from parts so that this file does not itself contain the strings it looks for.
OUTSIDE_PATHS = ("/" + "work" + "/shared", "/" + "work" + "/")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def links(text: str) -> list[str]:
    """Every link and image target of a Markdown text, outside code blocks and code spans."""
    text = FENCE.sub("", text)
    text = INLINE_CODE.sub("", text)
    return LINK.findall(text)


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in links(path.read_text(encoding="utf-8")):
        if EXTERNAL.match(target) or target.startswith("#"):
            continue
        relative = unquote(target.split("#", 1)[0])
        if not (path.parent / relative).exists():
            broken.append(target)
    return broken


def test_link_parser_sees_links_and_images_and_skips_code():
    text = (
        "See [the docs](docs/a.md#part), ![shot](docs/s.png \"title\") and [web](https://x.y/z).\n"
        "`[not](a-link.md)`\n"
        "```\n[nor](this.md)\n```\n"
        "[anchor](#top) [mail](mailto:a@b.c)\n"
    )
    assert links(text) == ["docs/a.md#part", "docs/s.png", "https://x.y/z", "#top", "mailto:a@b.c"]


def test_a_broken_link_is_reported(tmp_path):
    (tmp_path / "there.md").write_text("x")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md) [ok too](there.md#a) [gone](missing.md#b) ![gone](img/none.png) [web](http://x)")
    assert broken_links(page) == ["missing.md#b", "img/none.png"]


def test_docs_exist():
    names = {p.name for p in (ROOT / "docs").glob("*.md")}
    expected = {
        "configuration.md", "architecture.md", "sync.md", "actions.md",
        "a2i-local.md", "performance.md", "decisions.md",
    }
    assert expected <= names, f"missing from docs/: {sorted(expected - names)}"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    broken = broken_links(path)
    assert not broken, f"{path.relative_to(ROOT)} links to missing files: {broken}"


def test_readme_links_every_docs_file():
    targets = {t.split("#", 1)[0] for t in links((ROOT / "README.md").read_text(encoding="utf-8"))}
    unlinked = [
        str(p.relative_to(ROOT)) for p in sorted((ROOT / "docs").glob("*.md"))
        if str(p.relative_to(ROOT)) not in targets
    ]
    assert not unlinked, f"README.md does not link: {unlinked}"


def test_readme_is_an_entry_point():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


def test_no_tracked_file_names_a_path_outside_the_repository():
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode().split("\0")
    offenders = []
    for name in filter(None, listed):
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:  # binary
            continue
        text = data.decode("utf-8", errors="replace")
        offenders += [f"{name}: {needle}" for needle in OUTSIDE_PATHS if needle in text]
    assert not offenders, f"tracked files name paths outside the repository: {offenders}"
