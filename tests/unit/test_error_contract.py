"""One error contract: every code is a class of the tree, documented in the tree and in the README."""

from __future__ import annotations

import re
from pathlib import Path

from whisperx_service import errors
from whisperx_service.errors import JobFailure, ServiceError, all_codes

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_codes() -> dict[str, str]:
    """code -> status column ('404', ..., or 'job') of the README's error table."""
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}|job) \|", README.read_text(encoding="utf-8"), re.M)
    return dict(rows)


def test_every_code_is_one_class_and_codes_are_unique() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, ServiceError)]
    by_code: dict[str, list[str]] = {}
    for cls in classes:
        by_code.setdefault(cls.code, []).append(cls.__name__)
    # The root's code is `internal_error`, which InternalError names explicitly; no other code is shared.
    shared = {code: sorted(names) for code, names in by_code.items() if len(names) > 1}
    assert shared == {"internal_error": ["InternalError", "ServiceError"]}
    assert set(all_codes()) == set(by_code)


def test_the_tree_docstring_and_the_readme_list_every_code() -> None:
    doc = errors.__doc__ or ""
    codes = all_codes()
    assert [c for c in codes if not re.search(rf"\b{c}\b", doc)] == []
    table = _readme_codes()
    assert set(table) == set(codes)
    for code, cls in codes.items():
        # A job failure that is also an HTTP answer (its own status) is listed with that status.
        never_http = issubclass(cls, JobFailure) and cls.http_status == JobFailure.http_status
        expected = "job" if never_http else str(cls.http_status)
        assert table[code] == expected, code


def test_no_raise_site_overrides_a_code() -> None:
    tree = Path(errors.__file__).parent  # the errors package: where codes are defined
    src = tree.parent
    offenders = [
        f"{p.relative_to(src)}:{n}"
        for p in src.rglob("*.py")
        if tree not in p.parents and p.name != "errors.py"
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"""\bcode\s*=\s*["']""", line)
    ]
    assert offenders == []


def test_the_lua_scripts_write_the_tree_code_for_lost_workers() -> None:
    from whisperx_service.errors import WorkerLost
    from whisperx_service.store import scripts

    assert f"'{WorkerLost.code}'" in scripts.CLAIM and f"'{WorkerLost.code}'" in scripts.REAP
