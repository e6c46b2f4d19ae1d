"""Idempotency-Key on POST /v1/jobs and the OpenAI routes' errors, against the real gateway and Redis.

No worker runs: everything here is decided before or at job creation (the OpenAI routes'
answers of finished jobs are the e2e tests' `tests/e2e/test_openai_e2e.py`). The official
`openai` client is used where its exception classes are the point.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest
import redis
from celery import Celery

from tests.integration.api.conftest import Gateway, accounted_job_ids, serve, wav_bytes
from whisperx_service.access.keys import KeyRegistry
from whisperx_service.config import AuthSettings, Settings
from whisperx_service.domain.workers import DeviceInfo, ModelStatus, ProcessState, WorkerProcess
from whisperx_service.store.jobs import heartbeat
from whisperx_service.store.keys import Keys
from whisperx_service.store.workers import record_process, state_ttl_s


@pytest.fixture
def auth_settings(api_settings: Settings) -> Settings:
    """API test settings with keys required."""
    return api_settings.model_copy(
        update={
            "auth": AuthSettings(
                enabled=True, failures_limit="50/minute", key_rate_limit="1000/minute", address_rate_limit="2000/minute"
            )
        }
    )


@pytest.fixture
def gw(auth_settings: Settings, celery_app: Celery) -> Iterator[Gateway]:
    yield from serve(auth_settings, celery_app)


@pytest.fixture
def keys(auth_settings: Settings, redis_client: redis.Redis) -> tuple[str, str]:
    """Two API keys (alice, bob)."""
    registry = KeyRegistry(auth_settings, redis_client)
    return registry.create("alice")[1], registry.create("bob")[1]


def post(gw: Gateway, key: str, idem: str | None, audio: bytes, **fields: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    if idem is not None:
        headers["Idempotency-Key"] = idem
    return gw.client.post("/v1/jobs", files={"file": ("a.wav", audio, "audio/wav")}, data=fields, headers=headers)


def job_ids(r: redis.Redis, settings: Settings) -> list[str]:
    return sorted(x.decode() for x in r.zrange(Keys.of(settings).jobs_index(), 0, -1))


def test_the_same_submission_twice_is_one_job(gw: Gateway, keys: tuple[str, str], redis_client: redis.Redis) -> None:
    alice, _ = keys
    audio = wav_bytes(0.7)
    first = post(gw, alice, "k-1", audio, language="en")
    again = post(gw, alice, "k-1", audio, language="en")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert "Idempotent-Replayed" not in first.headers
    assert job_ids(redis_client, gw.settings) == [first.json()["id"]]
    assert len(gw.job_dirs()) == 1, "the repeat's upload is not stored"
    assert accounted_job_ids(redis_client, gw.settings) == [first.json()["id"]]


def test_other_content_with_the_same_key_is_409(gw: Gateway, keys: tuple[str, str], redis_client: redis.Redis) -> None:
    alice, _ = keys
    first = post(gw, alice, "k-2", wav_bytes(0.7))
    assert first.status_code == 202
    other_file = post(gw, alice, "k-2", wav_bytes(0.9))
    other_field = post(gw, alice, "k-2", wav_bytes(0.7), language="de")
    for r in (other_file, other_field):
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "idempotency_conflict"
        assert r.headers["x-should-retry"] == "false"
    assert job_ids(redis_client, gw.settings) == [first.json()["id"]]


def test_keys_of_different_api_keys_never_meet(gw: Gateway, keys: tuple[str, str], redis_client: redis.Redis) -> None:
    alice, bob = keys
    a = post(gw, alice, "shared", wav_bytes(0.7))
    b = post(gw, bob, "shared", wav_bytes(0.7))
    assert a.status_code == b.status_code == 202 and a.json()["id"] != b.json()["id"]
    assert len(job_ids(redis_client, gw.settings)) == 2


def test_concurrent_identical_submissions_make_one_job(
    gw: Gateway, keys: tuple[str, str], redis_client: redis.Redis
) -> None:
    alice, _ = keys
    audio = wav_bytes(3.0)
    start = threading.Barrier(8)

    def one(_: int) -> httpx.Response:
        start.wait()
        with httpx.Client(base_url=gw.url, timeout=30) as c:
            return c.post(
                "/v1/jobs",
                files={"file": ("a.wav", audio, "audio/wav")},
                headers={"Authorization": f"Bearer {alice}", "Idempotency-Key": "k-race"},
            )

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(8)))
    created = [r for r in answers if r.status_code == 202]
    waiting = [r for r in answers if r.status_code == 409]
    assert len(created) + len(waiting) == 8, [r.text for r in answers]
    assert created, "at least the first is answered 202"
    assert {r.json()["id"] for r in created} == {created[0].json()["id"]}
    for r in waiting:
        assert r.json()["error"]["code"] == "idempotency_in_progress" and r.headers["Retry-After"] == "1"
    assert job_ids(redis_client, gw.settings) == [created[0].json()["id"]]
    # After the first finished, a repeat gets its job.
    assert post(gw, alice, "k-race", audio).json()["id"] == created[0].json()["id"]


def test_a_refused_first_request_frees_the_key(gw: Gateway, keys: tuple[str, str], redis_client: redis.Redis) -> None:
    alice, _ = keys
    bad = post(gw, alice, "k-3", wav_bytes(0.7), num_speakers="0")
    assert bad.status_code == 422
    good = post(gw, alice, "k-3", wav_bytes(0.7))
    assert good.status_code == 202 and "Idempotent-Replayed" not in good.headers
    assert job_ids(redis_client, gw.settings) == [good.json()["id"]]


def test_a_malformed_key_is_refused(gw: Gateway, keys: tuple[str, str], redis_client: redis.Redis) -> None:
    r = post(gw, keys[0], "x" * 256, wav_bytes(0.7))
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    assert job_ids(redis_client, gw.settings) == []


def test_idempotency_keys_expire_after_the_ttl(
    auth_settings: Settings, celery_app: Celery, redis_client: redis.Redis
) -> None:
    settings = auth_settings.model_copy(
        update={"limits": auth_settings.limits.model_copy(update={"idempotency_ttl_s": 30.0})}
    )
    alice = KeyRegistry(settings, redis_client).create("alice")[1]
    for gw in serve(settings, celery_app):
        first = post(gw, alice, "k-ttl", wav_bytes(0.7))
        stored = redis_client.keys(f"{settings.redis.key_prefix}:idem:*")
        assert len(stored) == 1 and b"k-ttl" not in stored[0], "the key is stored hashed"
        assert 0 < redis_client.pttl(stored[0]) <= 30_000
        redis_client.delete(stored[0])  # as when the TTL runs out
        again = post(gw, alice, "k-ttl", wav_bytes(0.7))
        assert again.json()["id"] != first.json()["id"]


# ---------------------------------------------------------------- OpenAI routes' errors


def sdk(gw: Gateway, key: str, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0, **kw)


def test_openai_errors_have_openais_shape_and_sdk_classes(
    gw: Gateway, keys: tuple[str, str], redis_client: redis.Redis
) -> None:
    audio = ("a.wav", wav_bytes(0.7), "audio/wav")
    with pytest.raises(openai.AuthenticationError) as auth:
        sdk(gw, "wxs_wrong").audio.transcriptions.create(file=audio, model="whisper-1")
    body = auth.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}
    assert body["code"] == "unauthorized" and body["type"] == "authentication_error"
    client = sdk(gw, keys[0])
    cases: list[tuple[dict[str, Any], str, str | None]] = [
        ({"response_format": "xml"}, "invalid_parameter", "response_format"),
        ({"response_format": "verbose_json", "timestamp_granularities": ["char"]}, "invalid_parameter",
         "timestamp_granularities"),
        ({"temperature": 3}, "invalid_parameter", "temperature"),
        ({"extra_body": {"num_speakers": 0}}, "invalid_parameter", "num_speakers"),
        ({"extra_body": {"diarize": "maybe"}}, "invalid_parameter", "diarize"),
        ({"known_speaker_names": ["agent"], "known_speaker_references": ["data:audio/wav;base64,AA=="]},
         "unsupported", "known_speaker_names"),
        ({"extra_body": {"colour": "blue"}}, "invalid_request", None),
    ]  # fmt: skip
    for kwargs, code, param in cases:
        with pytest.raises(openai.BadRequestError) as e:
            client.audio.transcriptions.create(file=audio, model="whisper-1", **kwargs)
        assert e.value.status_code == 400 and e.value.code == code, (kwargs, e.value.body)
        assert e.value.param == param
        assert "/" not in e.value.message.replace("http://", "")
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.translations.create(file=audio, model="whisper-1", response_format="diarized_json")  # type: ignore[arg-type]
    assert e.value.param == "response_format"
    with pytest.raises(openai.NotFoundError) as nf:
        client.models.retrieve("gpt-5")
    assert nf.value.code == "model_not_found"
    assert job_ids(redis_client, gw.settings) == [] and gw.job_dirs() == []
    # The job API keeps its own error shape.
    r = gw.client.get("/v1/jobs/0", headers={"Authorization": f"Bearer {keys[0]}"})
    assert set(r.json()["error"]) == {"code", "message"}


def test_models_list_the_configured_asr_model(gw: Gateway, keys: tuple[str, str]) -> None:
    models = sdk(gw, keys[0]).models.list()
    ids = [m.id for m in models.data]
    assert "whisper-1" in ids and all(m.object == "model" and m.owned_by == "whisperx-service" for m in models.data)
    # ASR_DEVICE auto (the test settings): the gateway cannot tell cpu from cuda, so both defaults.
    assert sorted(ids) == ["large-v3-turbo", "tiny.en", "whisper-1"]


def test_models_list_what_the_live_workers_hold_warm(
    gw: Gateway, keys: tuple[str, str], redis_client: redis.Redis
) -> None:
    # A live worker (a heartbeat) whose pool process reports its ASR model warm: that model is
    # listed instead of the settings' guess; a model still loading is not.
    store_keys, ttl = Keys.of(gw.settings), state_ttl_s(gw.settings.worker.heartbeat_s)
    heartbeat(redis_client, store_keys, "host:1", state_ttl_s=ttl)
    models = [ModelStatus(stage="asr", name="large-v2", warm=True), ModelStatus(stage="asr", name="base", warm=False)]
    process = WorkerProcess(name="host:2", state=ProcessState.warm, device=DeviceInfo(type="cpu"), models=models)
    record_process(redis_client, store_keys, "host:1", process, ttl)
    client = sdk(gw, keys[0])
    assert sorted(m.id for m in client.models.list().data) == ["large-v2", "whisper-1"]
    assert client.models.retrieve("large-v2").id == "large-v2"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("base")


def test_a_429_carries_retry_after_and_the_sdk_waits_for_it(
    auth_settings: Settings, celery_app: Celery, redis_client: redis.Redis
) -> None:
    settings = auth_settings.model_copy(
        update={"auth": auth_settings.auth.model_copy(update={"key_rate_limit": "3/minute"})}
    )
    alice = KeyRegistry(settings, redis_client).create("alice")[1]
    for gw in serve(settings, celery_app):
        client = sdk(gw, alice)
        for _ in range(3):
            client.models.list()
        with pytest.raises(openai.RateLimitError) as e:
            client.models.list()
        assert e.value.code == "rate_limited" and int(e.value.response.headers["retry-after"]) >= 1
        assert e.value.body is not None and e.value.body["type"] == "rate_limit_error"  # type: ignore[index]
