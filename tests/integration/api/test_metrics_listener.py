"""METRICS_ADDRESS: the gateway also serves /metrics without a key on a loopback listener of its own,
with the same numbers as the API's /metrics (which keeps needing an admin key)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.api.conftest import Gateway, free_port, serve, wait_until, wav_bytes
from whisperx_service.access.keys import KeyRegistry
from whisperx_service.config import AuthSettings, ObservabilitySettings, Settings


@pytest.fixture
def listener_port() -> int:
    return free_port()


@pytest.fixture
def gw(api_settings: Settings, celery_app: Celery, listener_port: int) -> Iterator[Gateway]:
    """A gateway with keys required and METRICS_ADDRESS on a free loopback port."""
    settings = api_settings.model_copy(
        update={
            "auth": AuthSettings(enabled=True),
            "observability": ObservabilitySettings(metrics_address=f"127.0.0.1:{listener_port}", log_json=True),
        }
    )
    yield from serve(settings, celery_app)


def _samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value, parsed with prometheus-client's own parser."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_listener_serves_without_a_key_what_the_api_serves_to_admins(gw: Gateway, listener_port: int) -> None:
    registry = KeyRegistry(gw.settings)
    _, admin = registry.create("ops", admin=True)
    _, user = registry.create("alice")
    listener = f"http://127.0.0.1:{listener_port}/metrics"

    assert gw.client.get("/metrics").status_code == 401, "the API's /metrics still needs a key"
    assert gw.client.get("/metrics", headers={"Authorization": f"Bearer {user}"}).status_code == 403
    r = gw.client.post(
        "/v1/jobs",
        files={"file": ("a.wav", wav_bytes(), "audio/wav")},
        headers={"Authorization": f"Bearer {user}"},
    )
    assert r.status_code == 202, r.text

    # Held on alice's pending list, then sent to the broker by the dispatcher (no worker takes it).
    wait_until(lambda: _samples(httpx.get(listener, timeout=10).text)['wxs_queue_depth{where="broker"}'] == 1)
    scraped = httpx.get(listener, timeout=10)
    assert scraped.status_code == 200 and scraped.headers["content-type"].startswith("text/plain")
    keyless = _samples(scraped.text)
    api = _samples(gw.client.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).text)
    assert keyless["wxs_jobs_submitted_total"] == api["wxs_jobs_submitted_total"] == 1
    assert keyless["wxs_upload_bytes_total"] == api["wxs_upload_bytes_total"] == len(wav_bytes())
    assert set(keyless) == set(api), "both render the same metric set"
    assert keyless['wxs_queue_depth{where="held"}'] == 0 and keyless['wxs_queue_depth{where="broker"}'] == 1
    assert keyless["wxs_jobs_running"] == 0
