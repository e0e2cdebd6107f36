"""The documentation's links: every relative link resolves, every anchor names a heading of its page.

Anchors follow GitHub's rules for heading ids: the heading's text (inline code and
link markup removed) lowercased, punctuation other than ``-`` and ``_`` dropped,
spaces turned into ``-``; a repeated heading gets ``-1``, ``-2``, ... appended.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_MAX_LINES = 300
MIN_DOCS_PAGES = 5

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
# [text](target) or ![alt](target), with an optional "title"; text may hold one level of brackets.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
KEPT_CATEGORIES = {"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc"}
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files() -> list[Path]:
    """The pages whose links are checked."""
    pages = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md"]
    return pages + sorted(DOCS.glob("*.md"))


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def github_slug(heading: str) -> str:
    """The id GitHub gives a heading of this text."""
    text = INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.strip().lower()
    # GitHub keeps letters, marks, digits, connector punctuation (``_``), spaces and ``-``.
    kept = "".join(c for c in text if c in "- " or unicodedata.category(c) in KEPT_CATEGORIES or c.isalnum())
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading id of a Markdown page, with GitHub's suffixes for repeated headings."""
    seen: dict[str, int] = {}
    ids = set()
    for line in prose_lines(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        ids.add(slug if count == 0 else f"{slug}-{count}")
    return ids


def links(page: Path) -> list[str]:
    """The link targets of a page's prose (inline code and code blocks left out)."""
    found = []
    for line in prose_lines(page.read_text(encoding="utf-8")):
        line = INLINE_CODE.sub("", line)
        found.extend(match.group(1) for match in LINK.finditer(line))
    return found


def relative_links() -> list[tuple[str, str]]:
    """(page, target) for every link that stays in the repository."""
    pairs = []
    for page in markdown_files():
        if not page.is_file():
            continue  # test_the_pages_exist names it
        for target in links(page):
            if SCHEME.match(target) or target.startswith("//"):
                continue
            pairs.append((str(page.relative_to(ROOT)), target))
    return sorted(set(pairs))


def test_the_pages_exist():
    for page in markdown_files():
        assert page.is_file(), f"{page.relative_to(ROOT)} is missing"


def test_the_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; at most {README_MAX_LINES}"


def test_docs_has_its_pages():
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    assert len(pages) >= MIN_DOCS_PAGES, f"docs/ has {pages}; at least {MIN_DOCS_PAGES} pages"
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    unlisted = [name for name in pages if name != "index.md" and f"({name}" not in index]
    assert not unlisted, f"docs/index.md does not list {unlisted}"


def test_the_checker_finds_links_and_slugs():
    assert github_slug("The run report (`report.html`)") == "the-run-report-reporthtml"
    assert github_slug("For the app: MediaPipe Tasks, the preprocessing contract") == (
        "for-the-app-mediapipe-tasks-the-preprocessing-contract"
    )
    assert github_slug("`beam_args`") == "beam_args"
    assert github_slug("Speed and memory") == "speed-and-memory"
    line = 'see [a](docs/a.md#x), ![b](img.png "t"), `[c](not-a-link.md)` and [d](https://example.com)'
    assert [m.group(1) for m in LINK.finditer(INLINE_CODE.sub("", line))] == [
        "docs/a.md#x",
        "img.png",
        "https://example.com",
    ]


@pytest.mark.parametrize(("page", "target"), relative_links())
def test_relative_link_resolves(page: str, target: str):
    source = ROOT / page
    path, _, anchor = target.partition("#")
    resolved = (source.parent / path).resolve() if path else source
    assert resolved.exists(), f"{page}: link {target!r}: {path} does not exist"
    assert resolved == ROOT or ROOT in resolved.parents, f"{page}: link {target!r} leaves the repository"
    if anchor:
        assert resolved.suffix == ".md", f"{page}: link {target!r}: an anchor into a file that is not Markdown"
        known = anchors(resolved)
        assert anchor in known, f"{page}: link {target!r}: no heading {anchor!r} in {resolved.relative_to(ROOT)}"
