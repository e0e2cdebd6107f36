"""The documentation's links: every relative link resolves, every anchor names a heading of its page.

Anchors follow GitHub's rules for heading ids: the heading's text (inline code and
link markup removed) lowercased, punctuation other than ``-`` and ``_`` dropped,
spaces turned into ``-``; a repeated heading gets ``-1``, ``-2``, ... appended.
"""

from __future__ import annotations

import ast
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


# --- The compatibility shims: one table in design-decisions.md, one comment at each place in the code ---------

SHIM_PAGE = DOCS / "design-decisions.md"
SHIM_HEADING = "Compatibility shims"
SHIM_COMMENT = "# compatibility shim: docs/design-decisions.md#compatibility-shims"
SHIM_MENTION = re.compile(r"#\s*compatibility shim", re.IGNORECASE)
SHIM_PLACE = re.compile(r"`([\w./-]+\.py):(\w+)`")


def shim_places() -> list[tuple[str, str]]:
    """(file, name) of every place the first column of the shims table names, in table order."""
    lines = SHIM_PAGE.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if HEADING.match(line) and line.lstrip("# ") == SHIM_HEADING)
    places = []
    for line in lines[start + 1 :]:
        if HEADING.match(line):
            break
        if line.startswith("|") and not set(line) <= set("|- "):
            first = line.split("|")[1]
            places.extend(SHIM_PLACE.findall(first))
    return places


def code_files() -> list[Path]:
    """The project's Python files: not the tests, hidden folders (environments, caches) or build output."""
    files = []
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if parts[0] in ("tests", "build", "dist", "runs") or any(part.startswith(".") for part in parts):
            continue
        files.append(path)
    return files


def named_spans(source: str) -> dict[str, list[tuple[int, int]]]:
    """``{name: [(first line, last line), ...]}`` of every def, class and module-level assignment.

    A span starts one line above the def (or its first decorator), so a comment right above it counts.
    """
    spans: dict[str, list[tuple[int, int]]] = {}
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            spans.setdefault(node.name, []).append((first - 1, node.end_lineno or node.lineno))
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        for target in targets:
            if isinstance(target, ast.Name):
                spans.setdefault(target.id, []).append((node.lineno - 1, node.end_lineno or node.lineno))
    return spans


def shim_comments() -> list[tuple[str, int, str]]:
    """(file, line, text) of every comment in the code that mentions a compatibility shim."""
    found = []
    for path in code_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if SHIM_MENTION.search(line):
                found.append((str(path.relative_to(ROOT)), number, line.strip()))
    return found


def test_the_shims_table_has_rows():
    assert github_slug(SHIM_HEADING) in anchors(SHIM_PAGE)
    assert len(shim_places()) >= 10, f"{SHIM_PAGE.name}: the {SHIM_HEADING!r} table names {shim_places()}"


def test_every_shim_place_exists():
    for file, name in shim_places():
        path = ROOT / file
        assert path.is_file(), f"{SHIM_PAGE.name}: shim in {file}, which does not exist"
        assert name in named_spans(path.read_text(encoding="utf-8")), f"{SHIM_PAGE.name}: no {name} in {file}"


def test_every_shim_comment_names_a_table_entry():
    places = set(shim_places())
    comments = shim_comments()
    assert comments, "no compatibility shim comment in the code"
    for file, number, text in comments:
        assert text == SHIM_COMMENT, f"{file}:{number}: write the shim comment as {SHIM_COMMENT!r}, not {text!r}"
        spans = named_spans((ROOT / file).read_text(encoding="utf-8"))
        inside = {name for name, ranges in spans.items() if any(a <= number <= b for a, b in ranges)}
        assert {(file, name) for name in inside} & places, (
            f"{file}:{number}: a compatibility shim in {sorted(inside) or 'module scope'}, "
            f"which the table in {SHIM_PAGE.name}#compatibility-shims does not name"
        )


def test_the_shim_checker_finds_places():
    source = "X = 1\n\n# shim\n@dec\ndef f():\n    return 1\n"
    assert named_spans(source) == {"X": [(0, 1)], "f": [(3, 6)]}
    row = "| `bucket/a.py:f`, `b/c.py:X` | what | why | when |"
    assert SHIM_PLACE.findall(row.split("|")[1]) == [("bucket/a.py", "f"), ("b/c.py", "X")]
