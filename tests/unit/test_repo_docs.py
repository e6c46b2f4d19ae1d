"""The repository stands on its own: no file points outside it, and the docs' links resolve.

A user who clones the repository has only what is in it, so no file may refer to the notes in the
`shared` folder beside the development checkout (`OUTSIDE`). The tree is walked in Python
(unit tests start no process, so no `git ls-files`), skipping what is never committed: `.git`,
virtual environments, the model bundle, job data and caches.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Directory names never committed (see .gitignore), skipped at any depth.
SKIP_DIRS = {".git", ".venv", "venv", "models", "data", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache"}
SKIP_DIRS |= {".pytest_cache", ".whl", "work"}
#: Paths outside the repository that a clone does not have; split so this file does not match itself.
OUTSIDE = (b".." + b"/shared", b"/work" + b"/shared")
#: Markdown files a user reads.
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_DOC_MENTION = re.compile(r"docs/[A-Z][A-Z_]*\.md")


def _repo_files() -> Iterator[Path]:
    stack = [REPO]
    while stack:
        d = stack.pop()
        for entry in d.iterdir():
            if entry.is_symlink():
                continue  # a local link (e.g. .venv -> a shared venv), never committed
            if entry.is_dir():
                if entry.name not in SKIP_DIRS and not entry.name.endswith(".egg-info"):
                    stack.append(entry)
            elif entry.is_file():
                yield entry


def test_no_file_points_outside_the_repository() -> None:
    files = list(_repo_files())
    assert len(files) > 100, "the walk found too few files; is REPO right?"
    offenders = []
    for path in files:
        data = path.read_bytes()
        offenders += [f"{path.relative_to(REPO)}: {needle.decode()}" for needle in OUTSIDE if needle in data]
    assert not offenders, "files refer to paths a clone does not have:\n" + "\n".join(offenders)


def _anchors(doc: Path) -> set[str]:
    """The heading anchors GitHub makes for a Markdown file: lower case, punctuation dropped,
    spaces to hyphens (headings inside fenced code blocks are not headings)."""
    out, fenced = set(), False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (m := re.match(r"^#{1,6} (.+)$", line)):
            out.add(re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-"))
    return out


def test_markdown_links_resolve() -> None:
    broken = []
    for doc in DOCS:
        for target in _LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"^[a-z]+:", target):
                continue  # a URL
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path) if path else doc
            if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in _anchors(linked)):
                broken.append(f"{doc.relative_to(REPO)} -> {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_mentioned_docs_exist_and_every_doc_is_reachable_from_the_readme() -> None:
    mentioned = set()
    for doc in [*DOCS, *sorted((REPO / "src").rglob("*.py"))]:
        mentioned |= set(_DOC_MENTION.findall(doc.read_text(encoding="utf-8")))
    missing = sorted(m for m in mentioned if not (REPO / m).is_file())
    assert not missing, f"mentioned but not in the repository: {missing}"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    unlinked = [d.name for d in DOCS[1:] if f"docs/{d.name}" not in readme]
    assert not unlinked, f"README.md does not point to: {unlinked}"
