"""The package layering of docs/ARCHITECTURE.md holds: each package imports only the ones below it."""

from __future__ import annotations

import ast
from pathlib import Path

import whisperx_service

PACKAGE = Path(whisperx_service.__file__).parent

#: Top-level module or package -> the service's modules and packages it may import.
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "errors": set(),
    "media": set(),
    "domain": set(),
    "logs": {"config"},
    "transcripts": {"domain"},
    "storage": {"domain", "errors", "media"},
    "store": {"config", "domain"},
    "broker": {"config"},
    "access": {"config", "domain", "errors", "logs", "storage", "store"},
    "pipeline": {"config", "domain", "errors", "media", "storage", "transcripts"},
    "maintenance": {"broker", "config", "domain", "errors", "logs", "storage", "store"},
    "outbound": {"broker", "config", "domain", "errors", "logs", "storage", "store"},
    "api": {
        "access",
        "broker",
        "config",
        "domain",
        "errors",
        "logs",
        "maintenance",
        "media",
        "storage",
        "store",
        "transcripts",
    },
    "worker": {"broker", "config", "domain", "errors", "logs", "pipeline", "storage", "store", "transcripts"},
    "cli": {"access", "api", "config", "domain", "errors", "logs", "outbound", "pipeline", "worker"},
}


def _imports(path: Path) -> set[str]:
    """The service's top-level modules or packages that `path` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        found |= {n.split(".")[1] for n in names if n.startswith("whisperx_service.")}
    return found


def test_every_package_imports_only_what_its_layer_allows() -> None:
    seen: set[str] = set()
    wrong: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.name == "__init__.py" and len(rel.parts) == 1:
            continue
        top = rel.parts[0].removesuffix(".py")
        seen.add(top)
        assert top in ALLOWED, f"{rel}: a new top-level module; add it to ALLOWED and docs/ARCHITECTURE.md"
        wrong += [f"{rel} imports {dep}" for dep in sorted(_imports(path) - ALLOWED[top] - {top})]
    assert wrong == []
    assert seen == set(ALLOWED)
