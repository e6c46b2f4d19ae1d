"""schemathesis over the gateway's OpenAPI schema with a valid key: no input makes it answer 5xx.

The examples are bounded per operation (`MAX_EXAMPLES`) so the run fits the suite; the gateway,
Redis and storage are the real ones (no worker: submitted jobs stay queued).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator

import pytest
import redis
import schemathesis
from celery import Celery
from hypothesis import HealthCheck, given, settings

from tests.integration.api.conftest import Gateway, serve
from whisperx_service.access.keys import KeyRegistry
from whisperx_service.config import AuthSettings, Settings
from whisperx_service.domain.workers import ProcessState, WorkerProcess
from whisperx_service.store.keys import Keys
from whisperx_service.store.workers import record_process, state_ttl_s
from whisperx_service.worker.heartbeat import beat_loop

#: Generated examples per API operation.
MAX_EXAMPLES = 25


@pytest.fixture
def keyed(api_settings: Settings, celery_app: Celery, redis_client: redis.Redis) -> Iterator[tuple[Gateway, str]]:
    """The gateway with keys required, and an admin key (so /metrics and ?owner= are reachable)."""
    s = api_settings.model_copy(
        update={"auth": AuthSettings(enabled=True, key_rate_limit="100000/minute", address_rate_limit="100000/minute")}
    )
    _, key = KeyRegistry(s, redis_client).create("fuzz", admin=True)
    stop = threading.Event()
    beat = threading.Thread(target=beat_loop, args=(s, "fuzz-worker", stop), daemon=True)
    beat.start()  # a live worker's heartbeat and a warm pool process of it, so /readyz answers 200
    warm = WorkerProcess(name="fuzz-worker-pool", state=ProcessState.warm)
    record_process(redis_client, Keys.of(s), "fuzz-worker", warm, state_ttl_s(s.worker.heartbeat_s))
    for gw in serve(s, celery_app):
        yield gw, key
    stop.set()
    beat.join(5)


def test_no_server_errors(keyed: tuple[Gateway, str]) -> None:
    gw, key = keyed
    schema = schemathesis.openapi.from_url(f"{gw.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 7, "the schema lists every route"
    seen: list[str] = []

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            seen.append(f"{case.method} {case.path} {response.status_code}")
            assert response.status_code < 500, (case.method, case.formatted_path, response.text[:500])
            json_error = "application/json" in str(response.headers.get("content-type"))
            if response.status_code >= 400 and json_error and case.method != "HEAD":  # a HEAD answer has no body
                assert set(response.json()) == {"error"}, response.text[:500]

        check()
    print(f"\n[schemathesis] {len(seen)} calls:", dict(Counter(seen)))
    assert len(seen) >= len(operations)
