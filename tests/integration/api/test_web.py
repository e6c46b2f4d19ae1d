"""The web page's files: served without a key at `/`, `/sw.js` and `/static/*`, with a strict
Content-Security-Policy, from the package; while every API route still needs a key."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from celery import Celery

from tests.conftest import REPO
from tests.integration.api.conftest import Gateway, serve
from whisperx_service.api.routes.web import STATIC_DIR
from whisperx_service.config import AuthSettings, Settings


@pytest.fixture
def gw(api_settings: Settings, celery_app: Celery) -> Iterator[Gateway]:
    """The gateway with keys required."""
    yield from serve(api_settings.model_copy(update={"auth": AuthSettings(enabled=True)}), celery_app)


def test_the_page_loads_without_a_key_and_allows_only_its_own_origin(gw: Gateway) -> None:
    r = gw.client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    csp = dict(part.strip().split(" ", 1) for part in r.headers["content-security-policy"].split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == csp["style-src"] == csp["connect-src"] == "'self'"
    assert csp["frame-ancestors"] == "'none'"
    assert r.headers["x-content-type-options"] == "nosniff"
    # Everything the page loads is the gateway's: no other origin, no inline script or style.
    html = r.text
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs and all(ref.startswith(("/", "#", "data:image/svg+xml")) for ref in refs), refs
    assert "<script>" not in html and "<style" not in html and " style=" not in html
    for ref in refs:
        if ref.startswith("/static/"):
            assert gw.client.get(ref).status_code == 200, ref
    # The API still needs a key.
    assert gw.client.get("/v1/jobs").status_code == 401


def test_scripts_import_only_the_gateways_own_files(gw: Gateway) -> None:
    scripts = sorted(STATIC_DIR.glob("*.js"))
    assert {p.name for p in scripts} >= {"app.js", "api.js", "stream.js", "player.js", "sw.js"}
    for path in scripts:
        text = path.read_text(encoding="utf-8")
        for target in re.findall(r'from "([^"]+)"', text):
            assert target.startswith("./"), (path.name, target)
            assert gw.client.get(f"/static/{target[2:]}").headers["content-type"].startswith("text/javascript")
        assert "http://" not in text and "https://" not in text, path.name
    r = gw.client.get("/sw.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")


def test_a_missing_static_file_is_the_usual_404(gw: Gateway) -> None:
    for path in ("/static/nope.js", "/static/../app.py", "/nope"):
        r = gw.client.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found"


def test_the_tus_bundle_is_where_install_sh_puts_it(gw: Gateway) -> None:
    """resumable.js loads tus-js-client from the path scripts/install.sh copies it to; where the
    install ran (npm found), the gateway serves it as a script, with its licence next to it."""
    url = re.search(r'const BUNDLE = "([^"]+)"', (STATIC_DIR / "resumable.js").read_text(encoding="utf-8"))
    assert url and url[1] == "/static/vendor/tus.min.js"
    install = (REPO / "scripts" / "install.sh").read_text(encoding="utf-8")
    assert "VENDOR=src/whisperx_service/web/static/vendor" in install
    assert 'mv "$VENDOR/tus.min.js.tmp" "$VENDOR/tus.min.js"' in install
    bundle = STATIC_DIR / "vendor" / "tus.min.js"
    if not bundle.is_file():
        pytest.skip("tus-js-client is not installed (scripts/install.sh without npm)")
    r = gw.client.get(url[1])
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.content == bundle.read_bytes()
    assert (STATIC_DIR / "vendor" / "tus-js-client.LICENSE").is_file()
    # The page's CSP has no 'unsafe-eval': the bundle must not build code from strings.
    assert not re.search(r"\beval\(|new Function\(|\bFunction\(\"", r.text)
