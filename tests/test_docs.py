"""README.md and docs/*.md: short README, links that resolve inside the repository, the two commands.

Pure file reading: no app, no torch work.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
AUTOLINK = re.compile(r"<((?:https?|ftp|file|mailto):[^>\s]+)>")
BARE_URL = re.compile(r"(?<![`\w])(?:https?|ftp|file)://[^\s)>\]]+")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$", re.M)


def _prose(text: str) -> str:
    """The text with fenced code blocks and inline code removed (links there are not links)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, formatting and punctuation dropped, spaces → hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"[`*]", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in ``path``, with GitHub's -1, -2 … suffixes for repeated headings."""
    seen: dict[str, int] = {}
    result = set()
    for match in HEADING.finditer(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(path: Path) -> list[str]:
    return LINK.findall(_prose(path.read_text(encoding="utf-8")))


def test_slug_matches_github():
    assert slug("From trained kernels to a fab, and back (stage 3)") == "from-trained-kernels-to-a-fab-and-back-stage-3"
    assert slug("The method's Table 4 on our data") == "the-methods-table-4-on-our-data"
    assert slug("Knowledge transfer: where NTKD pays") == "knowledge-transfer-where-ntkd-pays"
    assert slug("Stage 1: accuracy before training") == "stage-1-accuracy-before-training"


def test_readme_is_at_most_300_lines():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 300, f"README.md has {lines} lines; move details to docs/ (limit 300)"


def test_readme_links_the_docs():
    targets = {link.split("#")[0] for link in links(README)}
    for name in ("ARCHITECTURE", "BENCHMARKS", "METHOD", "ENERGY"):
        assert f"docs/{name}.md" in targets, f"README.md does not link docs/{name}.md"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_link_leaves_the_repository(document):
    text = _prose(document.read_text(encoding="utf-8"))
    outside = [t for t in LINK.findall(text) if "://" in t or ":" in t.split("/")[0] or t.startswith("/")
               or "../" in t or t == ".."]  # fmt: skip
    outside = sorted(set(outside + AUTOLINK.findall(text) + BARE_URL.findall(text)))
    assert not outside, f"{document.relative_to(ROOT)} links outside the repository: {outside}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(document):
    broken = []
    for target in links(document):
        if "://" in target or not target:
            continue  # reported by test_no_link_leaves_the_repository
        file_part, _, anchor = target.partition("#")
        destination = (document.parent / file_part).resolve() if file_part else document
        if ROOT not in destination.parents and destination != ROOT:
            broken.append(f"{target} (outside the repository)")
        elif not destination.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target} (no heading with anchor #{anchor} in {destination.relative_to(ROOT)})")
    assert not broken, f"{document.relative_to(ROOT)}: broken links: {broken}"


def test_readme_gives_the_two_commands():
    text = README.read_text(encoding="utf-8")
    assert "make run" in text and "make test" in text


def test_ci_runs_the_readme_test_command():
    commands = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.lstrip().startswith("#")]  # fmt: skip
    assert "make test" in commands, ".ci/run does not run `make test`, the test command README.md gives"


def test_every_benchmark_table_has_a_home():
    """bench/readme_tables.py renders each block into the files holding its markers; none may be missing."""
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "bench" / "readme_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    texts = [path.read_text(encoding="utf-8") for path in tables.documents()]
    homeless = [name for name in tables.TABLES if not any(tables.markers(name).search(text) for text in texts)]
    assert not homeless, f"no README.md or docs/*.md holds the markers of: {homeless}"


def test_benchmark_tables_are_what_their_results_render():
    """README.md and docs/*.md show the measured numbers, not an older rendering of them."""
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "bench" / "readme_tables.py")
    tables = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tables)
    stale = [path.name for path, text in tables.rendered().items() if text != path.read_text(encoding="utf-8")]
    assert not stale, f"{stale} differ from bench/results/*.json: run `python bench/readme_tables.py`"
