"""Access control against the real gateway and Redis: keys, ownership, quotas, rate limits, audit.

Each refusal asserts the status, the error code, and that nothing was created or left behind.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from celery import Celery
from click.testing import CliRunner

from tests.integration.api.conftest import Gateway, accounted_job_ids, serve, wav_bytes
from whisperx_service.access.keys import ADMIN_KEY_FILE, KeyRegistry
from whisperx_service.api.app import create_app
from whisperx_service.cli import main as cli
from whisperx_service.config import ApiSettings, AuthSettings, Settings
from whisperx_service.domain.jobs import JobStatus
from whisperx_service.domain.keys import Quotas
from whisperx_service.storage.keys import KeyFiles
from whisperx_service.store.jobs import JobStore
from whisperx_service.store.keys import Keys


@pytest.fixture
def auth_settings(api_settings: Settings) -> Settings:
    """API test settings with keys required and small rate limits."""
    return api_settings.model_copy(
        update={
            "auth": AuthSettings(
                enabled=True, failures_limit="50/minute", key_rate_limit="1000/minute", address_rate_limit="2000/minute"
            )
        }
    )


@pytest.fixture
def registry(auth_settings: Settings, redis_client: redis.Redis) -> KeyRegistry:
    """The key registry of the test storage and Redis."""
    return KeyRegistry(auth_settings, redis_client)


@pytest.fixture
def gw(auth_settings: Settings, celery_app: Celery) -> Iterator[Gateway]:
    """The gateway with keys required."""
    yield from serve(auth_settings, celery_app)


def bearer(key: str) -> dict[str, str]:
    """The Authorization header of a key."""
    return {"Authorization": f"Bearer {key}"}


def submit(gw: Gateway, key: str, **fields: str) -> httpx.Response:
    """POST a small WAV as `key`."""
    return gw.client.post(
        "/v1/jobs", files={"file": ("a.wav", wav_bytes(), "audio/wav")}, data=fields, headers=bearer(key)
    )


def nothing_created(gw: Gateway, r: redis.Redis) -> None:
    """No job directory, no job in Redis, nothing held, no task message."""
    assert gw.job_dirs() == []
    assert r.keys(f"{gw.settings.redis.key_prefix}:job:*") == []
    assert accounted_job_ids(r, gw.settings) == []


def test_health_is_open_everything_else_needs_a_key(gw: Gateway, redis_client: redis.Redis) -> None:
    assert gw.client.get("/healthz").status_code == 200
    assert gw.client.get("/readyz").status_code in (200, 503)
    for method, path in [
        ("GET", "/v1/jobs"),
        ("GET", f"/v1/jobs/{'0' * 32}"),
        ("GET", f"/v1/jobs/{'0' * 32}/events"),
        ("GET", f"/v1/jobs/{'0' * 32}/result"),
        ("GET", f"/v1/jobs/{'0' * 32}/audio"),
        ("DELETE", f"/v1/jobs/{'0' * 32}"),
        ("GET", "/metrics"),
    ]:
        r = gw.client.request(method, path)
        assert r.status_code == 401, (method, path, r.text)
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == "unauthorized"
    r = gw.client.post("/v1/jobs", files={"file": ("a.wav", wav_bytes(), "audio/wav")})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    nothing_created(gw, redis_client)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer wxs_0000000000000000_" + "A" * 43,  # well formed, unknown
        "Bearer not-a-key",
        "Basic dXNlcjpwYXNz",
        "Bearer",
    ],
)
def test_wrong_keys_are_refused(gw: Gateway, registry: KeyRegistry, redis_client: redis.Redis, header: str) -> None:
    registry.create("alice")
    r = gw.client.post(
        "/v1/jobs", files={"file": ("a.wav", wav_bytes(), "audio/wav")}, headers={"Authorization": header}
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    nothing_created(gw, redis_client)


def test_a_key_with_a_wrong_secret_is_refused(gw: Gateway, registry: KeyRegistry) -> None:
    _, key = registry.create("alice")
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert gw.client.get("/v1/jobs", headers=bearer(forged)).status_code == 401
    assert gw.client.get("/v1/jobs", headers=bearer(key)).status_code == 200


def test_revoked_key_is_refused_at_once_on_every_gateway(
    gw: Gateway, auth_settings: Settings, celery_app: Celery, registry: KeyRegistry, redis_client: redis.Redis
) -> None:
    _, key = registry.create("alice")
    for other in serve(auth_settings, celery_app):  # a second gateway process on the same Redis
        assert gw.client.get("/v1/jobs", headers=bearer(key)).status_code == 200
        assert other.client.get("/v1/jobs", headers=bearer(key)).status_code == 200
        registry.revoke("alice")
        for g in (gw, other):
            r = g.client.get("/v1/jobs", headers=bearer(key))
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
            assert submit(g, key).status_code == 401
    nothing_created(gw, redis_client)


def test_keys_survive_a_redis_loss(gw: Gateway, registry: KeyRegistry, redis_client: redis.Redis) -> None:
    _, alive = registry.create("alice")
    _, revoked = registry.create("bob")
    registry.revoke("bob")
    redis_client.flushdb()  # the copies in Redis are gone; storage is the record
    assert gw.client.get("/v1/jobs", headers=bearer(alive)).status_code == 200
    assert gw.client.get("/v1/jobs", headers=bearer(revoked)).status_code == 401


def test_key_records_hold_no_secret(auth_settings: Settings, registry: KeyRegistry) -> None:
    key, secret = registry.create("alice", quotas=Quotas(max_queued=3))
    raw = (auth_settings.storage.root / "keys" / f"{key.id}.json").read_text()
    assert secret not in raw and secret.split("_")[-1] not in raw
    assert json.loads(raw)["key_hash"] == key.key_hash and len(key.key_hash) == 64
    assert KeyFiles(auth_settings.storage.root).read(key.id) == key


def test_another_keys_job_is_not_found(gw: Gateway, registry: KeyRegistry, worker_store: JobStore) -> None:
    _, alice = registry.create("alice")
    _, bob = registry.create("bob")
    _, admin = registry.create("root", admin=True)
    r = submit(gw, alice)
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    worker_store.claim(job, "w1", 60)
    worker_store.finish(job, JobStatus.succeeded, attempt=1)
    for method, path in [
        ("GET", f"/v1/jobs/{job}"),
        ("GET", f"/v1/jobs/{job}/events"),
        ("GET", f"/v1/jobs/{job}/result"),
        ("GET", f"/v1/jobs/{job}/audio"),
        ("DELETE", f"/v1/jobs/{job}"),
        ("DELETE", f"/v1/jobs/{job}?purge=true"),
    ]:
        r = gw.client.request(method, path, headers=bearer(bob))
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["error"]["code"] == "job_not_found"
    assert gw.client.get("/v1/jobs", headers=bearer(bob)).json()["jobs"] == []
    assert gw.client.get(f"/v1/jobs/{job}/audio", headers=bearer(alice)).content == wav_bytes()
    own = gw.client.get(f"/v1/jobs/{job}", headers=bearer(alice)).json()
    assert own["owner"]["name"] == "alice" and own["status"] == "succeeded"
    assert [j["id"] for j in gw.client.get("/v1/jobs", headers=bearer(alice)).json()["jobs"]] == [job]
    # An admin key sees and filters every job, by the owner's name or id.
    assert [j["id"] for j in gw.client.get("/v1/jobs", headers=bearer(admin)).json()["jobs"]] == [job]
    by_name = gw.client.get("/v1/jobs", params={"owner": "alice"}, headers=bearer(admin)).json()["jobs"]
    by_id = gw.client.get("/v1/jobs", params={"owner": own["owner"]["id"]}, headers=bearer(admin)).json()["jobs"]
    assert [j["id"] for j in by_name] == [j["id"] for j in by_id] == [job]
    assert gw.client.get("/v1/jobs", params={"owner": "bob"}, headers=bearer(admin)).json()["jobs"] == []
    r = gw.client.get("/v1/jobs", params={"owner": "alice"}, headers=bearer(bob))
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_only"
    assert gw.client.delete(f"/v1/jobs/{job}?purge=true", headers=bearer(admin)).status_code == 204
    assert gw.client.get(f"/v1/jobs/{job}", headers=bearer(alice)).status_code == 404


def test_metrics_need_an_admin_key(gw: Gateway, registry: KeyRegistry) -> None:
    _, user = registry.create("alice")
    _, admin = registry.create("root", admin=True)
    r = gw.client.get("/metrics", headers=bearer(user))
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_only"
    r = gw.client.get("/metrics", headers=bearer(admin))
    assert r.status_code == 200 and "wxs_jobs_submitted_total" in r.text


def test_quota_max_queued(gw: Gateway, registry: KeyRegistry, redis_client: redis.Redis) -> None:
    _, key = registry.create("alice", quotas=Quotas(max_queued=2))
    first = [submit(gw, key).status_code for _ in range(2)]
    assert first == [202, 202]
    before = gw.job_dirs()
    r = submit(gw, key)
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "quota_exceeded" and "max_queued" in r.json()["error"]["message"]
    assert int(r.headers["retry-after"]) >= 1
    assert gw.job_dirs() == before and len(accounted_job_ids(redis_client, gw.settings)) == 2
    # Another key is not affected.
    _, other = registry.create("bob", quotas=Quotas(max_queued=2))
    assert submit(gw, other).status_code == 202


def test_quota_max_queued_holds_under_concurrent_submissions(
    gw: Gateway, registry: KeyRegistry, redis_client: redis.Redis
) -> None:
    # Eight uploads of one key at once, with room for two: the quota is checked and the job created
    # in one step per key, so no two submissions both see the last free place.
    _, key = registry.create("alice", quotas=Quotas(max_queued=2))
    wav = wav_bytes(2.0)

    def one(_: int) -> int:
        with httpx.Client(base_url=gw.url, timeout=60) as c:
            files = {"file": ("a.wav", wav, "audio/wav")}
            return c.post("/v1/jobs", files=files, headers=bearer(key)).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(one, range(8)))
    assert codes == [202, 202, *[429] * 6]
    assert len(gw.job_dirs()) == 2 and len(accounted_job_ids(redis_client, gw.settings)) == 2


def test_quota_max_storage_gb(gw: Gateway, registry: KeyRegistry) -> None:
    size = len(wav_bytes())
    _, key = registry.create("alice", quotas=Quotas(max_storage_gb=(1.5 * size) / 1e9))
    assert submit(gw, key).status_code == 202
    before = gw.job_dirs()
    r = submit(gw, key)  # the second upload would hold 2 x size > 1.5 x size
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"
    assert "max_storage_gb" in r.json()["error"]["message"]
    assert gw.job_dirs() == before, "the refused upload left nothing"


def test_quota_max_audio_hours_per_day(
    gw: Gateway, registry: KeyRegistry, worker_store: JobStore, redis_client: redis.Redis
) -> None:
    _, key = registry.create("alice", quotas=Quotas(max_audio_hours_per_day=1.0))
    job = submit(gw, key).json()["id"]
    worker_store.claim(job, "w1", 60)
    worker_store.update(job, 1, duration_s=3700.0)  # the worker decoded more than an hour of audio
    r = submit(gw, key)
    assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded"
    assert "max_audio_hours_per_day" in r.json()["error"]["message"]
    assert 1 <= int(r.headers["retry-after"]) <= 86_400


def test_failed_keys_are_rate_limited_per_address(
    auth_settings: Settings, celery_app: Celery, registry: KeyRegistry
) -> None:
    settings = auth_settings.model_copy(
        update={"auth": auth_settings.auth.model_copy(update={"failures_limit": "5/minute"})}
    )
    _, good = registry.create("alice")
    for gw in serve(settings, celery_app):
        codes = [gw.client.get("/v1/jobs", headers=bearer("wxs_nope")).status_code for _ in range(6)]
        assert codes == [401] * 5 + [429]
        r = gw.client.get("/v1/jobs", headers=bearer(good))  # the address is blocked, whatever the key
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
        assert int(r.headers["retry-after"]) >= 1


def test_request_rate_per_key(auth_settings: Settings, celery_app: Celery, registry: KeyRegistry) -> None:
    settings = auth_settings.model_copy(
        update={"auth": auth_settings.auth.model_copy(update={"key_rate_limit": "3/minute"})}
    )
    _, key = registry.create("alice")
    _, other = registry.create("bob")
    for gw in serve(settings, celery_app):
        codes = [gw.client.get("/v1/jobs", headers=bearer(key)).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert gw.client.get("/v1/jobs", headers=bearer(other)).status_code == 200


def test_audit_lines(gw: Gateway, registry: KeyRegistry, capfd: pytest.CaptureFixture[str]) -> None:
    _, key = registry.create("alice")
    job = submit(gw, key).json()["id"]
    gw.client.delete(f"/v1/jobs/{job}", headers=bearer(key))
    gw.client.get("/v1/jobs", headers=bearer("wxs_bad"))
    lines = [json.loads(x) for x in capfd.readouterr().err.splitlines() if x.startswith("{")]
    audit = [x for x in lines if x.get("logger") == "whisperx_service.audit"]
    events = {x["event"] for x in audit}
    assert {"job_created", "job_cancelled", "auth_failed"} <= events, events
    created = next(x for x in audit if x["event"] == "job_created")
    assert created["job_id"] == job and created["key_id"] == key.split("_")[1]


def test_auth_off_is_refused_off_loopback(api_settings: Settings) -> None:
    for host in ("0.0.0.0", "192.0.2.1", "::"):
        s = api_settings.model_copy(update={"api": ApiSettings(host=host), "auth": AuthSettings(enabled=False)})
        with pytest.raises(ValueError, match="loopback"):
            create_app(s)
    for host in ("127.0.0.1", "::1", "localhost"):
        create_app(api_settings.model_copy(update={"api": ApiSettings(host=host), "auth": AuthSettings(enabled=False)}))


def test_keys_cli(auth_settings: Settings, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    from whisperx_service import config

    monkeypatch.setattr(config, "get_settings", lambda: auth_settings)
    monkeypatch.setattr("whisperx_service.cli.get_settings", lambda: auth_settings)
    runner = CliRunner()
    out = runner.invoke(cli, ["keys", "create", "alice", "--max-queued", "3"])
    assert out.exit_code == 0, out.output
    key = out.output.strip()
    assert key.startswith("wxs_") and len(out.output.splitlines()) == 1
    out = runner.invoke(cli, ["keys", "create", "ops", "--admin", "--max-storage-gb", "2.5", "--json"])
    made = json.loads(out.output)
    assert made["name"] == "ops" and made["admin"] is True and made["max_storage_gb"] == 2.5 and made["key"]
    assert runner.invoke(cli, ["keys", "create", "alice"]).exit_code != 0  # the name is taken
    listed = json.loads(runner.invoke(cli, ["keys", "list", "--json"]).output)
    assert [k["name"] for k in listed] == ["alice", "ops"]
    assert key not in json.dumps(listed) and all("key_hash" not in k for k in listed)
    out = runner.invoke(cli, ["keys", "revoke", "alice"])
    assert out.exit_code == 0 and "revoked" in out.output
    listed = json.loads(runner.invoke(cli, ["keys", "list", "--json"]).output)
    assert listed[0]["revoked_at"] is not None and listed[1]["revoked_at"] is None
    assert runner.invoke(cli, ["keys", "revoke", "nobody"]).exit_code != 0
    assert redis_client.get(Keys.of(auth_settings).api_key(listed[0]["id"])) is not None


def test_admin_key_on_first_start(auth_settings: Settings, registry: KeyRegistry) -> None:
    path = registry.ensure_admin_key()
    assert path == auth_settings.storage.root / ADMIN_KEY_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = path.read_text().strip()
    found = registry.find("admin")
    assert found is not None and found.admin and found.matches(key)
    assert registry.ensure_admin_key() is None, "made once"
    assert path.read_text().strip() == key


def test_auth_off_serves_only_loopback_clients(gateway: Gateway) -> None:
    """With AUTH_ENABLED=false a client on another machine (here: seen through a local proxy) is refused."""
    assert not gateway.settings.auth.enabled
    assert gateway.client.get("/v1/jobs").status_code == 200
    r = gateway.client.get("/v1/jobs", headers={"X-Forwarded-For": "192.0.2.7"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert gateway.client.get("/healthz", headers={"X-Forwarded-For": "192.0.2.7"}).status_code == 200
