"""The web page: `/` (index.html), `/sw.js` (its service worker) and `/static/*` (its script and
style), static files shipped inside the package (`whisperx_service/web/static/`).

No key is needed to load them (they hold no data); every API call the page makes sends the key
the person pasted as `Authorization: Bearer` (see docs/WEB.md). Everything the page loads comes
from the gateway itself, so it works air-gapped, and its Content-Security-Policy allows nothing
else: no inline script or style, no other origin, no framing.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from starlette.responses import FileResponse
from starlette.staticfiles import StaticFiles

#: The page's files inside the installed package.
STATIC_DIR = Path(__file__).resolve().parents[2] / "web" / "static"

#: Content-Security-Policy of the page: its own origin only. `media-src blob:` is the fallback
#: player (a downloaded copy of the audio where no service worker runs); `img-src data:` the
#: inline SVG icon; `connect-src 'self'` the API calls and the event stream.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self' blob:; connect-src 'self'; worker-src 'self'; manifest-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
#: Headers of the page and its service worker.
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # revalidated each load (ETag), so an upgrade shows at once
}

router = APIRouter(include_in_schema=False)


@router.get("/")
async def index() -> FileResponse:
    """The page (`index.html`) with its strict headers (`PAGE_HEADERS`)."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/sw.js")
async def service_worker() -> FileResponse:
    """The page's service worker, served from `/` so its scope covers `/v1/jobs/*/audio` (it adds the
    key to the audio element's range requests, which cannot carry a header themselves)."""
    return FileResponse(STATIC_DIR / "sw.js", media_type="text/javascript; charset=utf-8", headers=PAGE_HEADERS)


def install_web(app: FastAPI) -> None:
    """Add the page's routes and mount `/static` (Starlette's StaticFiles: ETag, 304, no listing;
    a missing file is the usual 404 `not_found`)."""
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=True), name="static")
