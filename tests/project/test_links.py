"""Every relative link in README.md and docs/*.md points at a file that exists, and every
#anchor at a heading of that page (GitHub's heading slugs). External links are not fetched."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
COMMENT = re.compile(r"<!--.*?-->", re.S)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\*|_(?=\w)|(?<=\w)_", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    found: set[str] = set()
    for line in text.splitlines():
        if match := re.match(r"^#{1,6}\s+(.*?)\s*#*$", line):
            base = slug(match.group(1))
            name, n = base, 1
            while name in found:  # repeated headings get -1, -2, ...
                name, n = f"{base}-{n}", n + 1
            found.add(name)
    return found


def links(page: Path) -> list[str]:
    text = COMMENT.sub("", FENCE.sub("", page.read_text()))
    text = re.sub(r"`[^`\n]*`", "", text)  # inline code is not a link
    return [m.group(1) or m.group(2) for m in LINK.finditer(text)]


def broken(page: Path) -> list[str]:
    problems = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, fragment = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            problems.append(f"{target}: no such file {dest}")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            problems.append(f"{target}: no heading #{fragment} in {dest.name}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    assert not broken(page), "\n".join(broken(page))


def test_the_checker_finds_broken_links(tmp_path: Path):
    (tmp_path / "other.md").write_text("# Other page\n\n## Times (2 cores)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n[ok](other.md) [ok](other.md#times-2-cores) [ok](#title) [web](https://x.org)\n"
        "[gone](missing.md) [bad anchor](other.md#nope) [bad self](#nope)\n"
        "```\n[in code](ignored.md)\n```\n`[inline](ignored.md)`\n"
    )
    assert [p.split(":")[0] for p in broken(page)] == ["missing.md", "other.md#nope", "#nope"]


def test_slugs_follow_github():
    assert slug("`make demo`, step by step") == "make-demo-step-by-step"
    assert slug("Shutdown sequence (SIGTERM)") == "shutdown-sequence-sigterm"
    assert slug(
        "Request decoding: what one request may allocate, and how bad requests are answered"
    ) == ("request-decoding-what-one-request-may-allocate-and-how-bad-requests-are-answered")
