"""The `whisperx-service` command line.

    whisperx-service api                      the gateway (uvicorn) on API_HOST:API_PORT
    whisperx-service healthcheck              exit 0 when that gateway answers /healthz (containers)
    whisperx-service worker                   one Celery worker (WORKER_CONCURRENCY processes)
    whisperx-service models prepare [--models-dir DIR] [--no-test-models]
    whisperx-service models download [--language en ...] [--asr-model NAME]
    whisperx-service keys create NAME [--admin] [--max-queued N] [--max-running N]
                                      [--max-audio-hours-per-day H] [--max-storage-gb G] [--json]
    whisperx-service keys list [--json]
    whisperx-service keys revoke NAME_OR_ID

Defaults come from `get_settings()` (environment and `.env`). Heavy libraries are imported only by
the subcommand that needs them.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import click

from whisperx_service.config import get_settings
from whisperx_service.errors import ModelLoadFailed
from whisperx_service.logs import configure_logging

if TYPE_CHECKING:
    from whisperx_service.access.keys import KeyRegistry


@click.group()
@click.version_option(package_name="whisperx-service")
def main() -> None:
    """Self-hosted speech-to-text job service built on WhisperX."""


@click.group()
def models() -> None:
    """Build the offline model bundle or pre-fetch the standard models."""


@models.command("prepare")
@click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Bundle directory [default: MODELS_DIR, ./models].",
)
@click.option(
    "--test-models/--no-test-models",
    default=True,
    show_default=True,
    help="Also build the random tiny wav2vec2 model used by the tests.",
)
def prepare_command(models_dir: Path | None, test_models: bool) -> None:
    """Build the offline bundle (diarization pipeline, NLTK data, test models); skips complete parts."""
    from whisperx_service.pipeline.models import prepare

    target = models_dir if models_dir is not None else get_settings().models.dir
    try:
        paths = prepare.prepare_models(target, with_test_models=test_models)
    except (ValueError, ModelLoadFailed) as exc:
        raise click.ClickException(str(exc)) from exc
    for key, path in paths.items():
        click.echo(f"{key}: {path}")


@models.command("download")
@click.option(
    "--language",
    "-l",
    "languages",
    multiple=True,
    help="Language whose wav2vec2 aligner to fetch; repeat for several [default: ASR_LANGUAGE or en].",
)
@click.option("--asr-model", default=None, help="Whisper model to fetch [default: ASR_MODEL, else per device].")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds to wait for a hub to answer before giving up.",
)
def download_command(languages: tuple[str, ...], asr_model: str | None, timeout_s: float) -> None:
    """Fetch the Whisper model, wav2vec2 aligners and pyannote pipeline (needs internet, HF_TOKEN)."""
    from whisperx_service.pipeline.models import download

    settings = get_settings()
    langs = languages or ((settings.asr.language,) if settings.asr.language else ("en",))
    try:
        fetched = download.download_models(settings, langs, asr_model=asr_model, timeout_s=timeout_s)
    except ModelLoadFailed as exc:
        raise click.ClickException(exc.message) from exc
    for key, where in fetched.items():
        click.echo(f"{key}: {where}")
    if not fetched:
        click.echo("nothing to download: every model is a local directory")


main.add_command(models)


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (records under STORAGE_ROOT/keys, copied to Redis)."""
    # The audit lines these commands write go to stderr, so stdout carries only the key or the
    # JSON (`KEY=$(whisperx-service keys create NAME)`, `... --json | jq`).
    configure_logging(get_settings())


def _registry() -> KeyRegistry:
    from whisperx_service.access.keys import KeyRegistry

    return KeyRegistry(get_settings())


@keys.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True, help="Sees and manages every job; may read /metrics.")
@click.option("--max-queued", type=click.IntRange(min=0), default=None, help="Jobs waiting at once.")
@click.option("--max-running", type=click.IntRange(min=0), default=None, help="Jobs running at once.")
@click.option(
    "--max-audio-hours-per-day", type=click.FloatRange(min=0), default=None, help="Audio hours per rolling 24 h."
)
@click.option("--max-storage-gb", type=click.FloatRange(min=0), default=None, help="GB of uploads kept.")
@click.option("--webhook-url", default=None, help="Default webhook URL of the key's jobs (http or https).")
@click.option("--json", "as_json", is_flag=True, help="Print {id, name, key, webhook_secret, admin, quotas} as JSON.")
def keys_create(
    name: str,
    admin: bool,
    max_queued: int | None,
    max_running: int | None,
    max_audio_hours_per_day: float | None,
    max_storage_gb: float | None,
    webhook_url: str | None,
    as_json: bool,
) -> None:
    """Create a key; prints the key alone on one line (it is shown only this once).

    With --json the key's webhook signing secret (`webhook_secret`, Standard Webhooks) is printed
    too, also only this once (`keys rotate-webhook-secret` makes a new one).
    """
    from whisperx_service.access.keys import KeyAdminError
    from whisperx_service.domain.keys import Quotas

    quotas = Quotas(
        max_queued=max_queued,
        max_running=max_running,
        max_audio_hours_per_day=max_audio_hours_per_day,
        max_storage_gb=max_storage_gb,
    )
    try:
        key, secret = _registry().create(name, admin=admin, quotas=quotas, webhook_url=webhook_url)
    except KeyAdminError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        out = {
            "id": key.id,
            "name": key.name,
            "key": secret,
            "webhook_secret": key.webhook_secret,
            "webhook_url": key.webhook_url,
            "admin": key.admin,
            **quotas.model_dump(),
        }
        click.echo(json.dumps(out))
    else:
        click.echo(secret)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of records.")
def keys_list(as_json: bool) -> None:
    """Every key (never its secret): id, name, admin, quotas, created, revoked."""
    found = _registry().list()
    if as_json:
        click.echo(json.dumps([k.public() for k in found]))
        return
    for k in found:
        state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        quotas = " ".join(f"{n}={v:g}" for n, v in k.quotas.model_dump().items() if v is not None)
        click.echo(f"{k.id}  {k.name:<24} {'admin' if k.admin else 'user ':<5}  {state:<22} {quotas}".rstrip())


@keys.command("revoke")
@click.argument("name_or_id")
def keys_revoke(name_or_id: str) -> None:
    """Revoke a key: every gateway refuses it from its next request on."""
    import redis

    from whisperx_service.access.keys import KeyAdminError

    try:
        key = _registry().revoke(name_or_id)
    except KeyAdminError as exc:
        raise click.ClickException(str(exc)) from exc
    except redis.RedisError as exc:
        raise click.ClickException(
            "the key is revoked in storage, but Redis could not be updated, so gateways may still accept it: "
            "run this again once Redis answers"
        ) from exc
    click.echo(f"revoked {key.id} ({key.name})")


@keys.command("rotate-webhook-secret")
@click.argument("name_or_id")
def keys_rotate_webhook_secret(name_or_id: str) -> None:
    """Make a new webhook signing secret for a key; prints it alone on one line (shown only this once).

    From now on the key's webhooks, retries of earlier events included, are signed with it.
    """
    from whisperx_service.access.keys import KeyAdminError

    try:
        key = _registry().rotate_webhook_secret(name_or_id)
    except KeyAdminError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(key.webhook_secret)


@keys.command("set-webhook-url")
@click.argument("name_or_id")
@click.argument("url", required=False)
def keys_set_webhook_url(name_or_id: str, url: str | None) -> None:
    """Set the default webhook URL of a key's jobs (no URL: clear it)."""
    from whisperx_service.access.keys import KeyAdminError

    try:
        key = _registry().set_webhook_url(name_or_id, url)
    except KeyAdminError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{key.id} ({key.name}): webhook URL {key.webhook_url or 'cleared'}")


main.add_command(keys)


@main.command("outbound")
@click.option("--loglevel", default=None, help="Celery log level [default: LOG_LEVEL].")
def outbound_command(loglevel: str | None) -> None:
    """Run the outbound worker on OUTBOUND_QUEUE: signed webhook deliveries, OUTBOUND_CONCURRENCY threads.

    It needs no GPU and no model; run one or more next to the gateway. Deliveries wait in Redis
    (the outbound schedule) while none runs, and are sent once one starts.
    """
    from celery.bin.celery import celery as celery_command

    settings = get_settings()
    celery_command.main(
        args=[
            "--app=whisperx_service.outbound.main",
            "worker",
            "--pool=threads",
            f"--concurrency={settings.outbound.concurrency}",
            f"--queues={settings.outbound.queue}",
            f"--loglevel={loglevel or settings.observability.log_level}",
            "--hostname=outbound@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        prog_name="celery",
    )


#: Seconds that open connections (SSE streams) get to end after SIGTERM before the gateway closes
#: them; under the 30 s stop grace period docker-compose.gpu.yml gives the gateway.
API_GRACEFUL_SHUTDOWN_S = 20


@main.command("api")
def api_command() -> None:
    """Run the HTTP gateway (uvicorn, one process) on API_HOST:API_PORT.

    On the first start with AUTH_ENABLED, an admin key is created and written to
    STORAGE_ROOT/admin.key (mode 0600).
    """
    import uvicorn

    settings = get_settings()
    if settings.auth.enabled:
        made = _registry().ensure_admin_key()
        if made is not None:
            click.echo(f"created an admin API key; it is in {made} (mode 0600)", err=True)
    uvicorn.run(
        "whisperx_service.api.app:app_factory",
        factory=True,
        host=settings.api.host,
        port=settings.api.port,
        log_config=None,  # logging is configured by the app (structlog, JSON lines)
        proxy_headers=True,
        timeout_graceful_shutdown=API_GRACEFUL_SHUTDOWN_S,
    )


def healthz_request(host: str, port: int, allowed_hosts: list[str]) -> tuple[str, dict[str, str]]:
    """The URL and headers that reach `/healthz` of a gateway bound to `host`:`port` on this machine.

    A wildcard bind address is probed on loopback (`0.0.0.0` and empty as 127.0.0.1, `::` as ::1).
    When API_ALLOWED_HOSTS restricts the Host header, the first allowed name is sent (a leading
    `*.` becomes `healthcheck.`), so the gateway's TrustedHostMiddleware lets the probe through.

    Returns:
        (URL, request headers).
    """
    probe = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in probe:
        probe = f"[{probe}]"
    headers: dict[str, str] = {}
    if allowed_hosts and allowed_hosts != ["*"]:
        name = allowed_hosts[0]
        headers["Host"] = "healthcheck." + name[2:] if name.startswith("*.") else name
    return f"http://{probe}:{port}/healthz", headers


@main.command("healthcheck")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0.1),
    default=4.0,
    show_default=True,
    help="Seconds to wait for the answer.",
)
def healthcheck_command(timeout_s: float) -> None:
    """Exit 0 when the gateway at API_HOST:API_PORT answers GET /healthz with 200 (container health check).

    Exits 1, with the reason on stderr, when it does not answer in time or answers another status.
    """
    import httpx

    settings = get_settings()
    url, headers = healthz_request(settings.api.host, settings.api.port, settings.api.allowed_hosts)
    try:
        response = httpx.get(url, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"{url}: no answer ({type(exc).__name__})") from exc
    if response.status_code != 200:
        raise click.ClickException(f"{url}: HTTP {response.status_code}")


@main.command("worker")
@click.option("--loglevel", default=None, help="Celery log level [default: LOG_LEVEL].")
def worker_command(loglevel: str | None) -> None:
    """Run one Celery worker on WORKER_QUEUE: prefork pool of WORKER_CONCURRENCY processes (1 per GPU).

    The node name stays Celery's default `celery@<hostname>` (the container health check pings it).
    SIGTERM is a graceful shutdown: no new job is taken; the running job finishes within
    WORKER_SOFT_SHUTDOWN_S seconds or is handed back to another worker (resumed from its chunks).
    Each pool process loads its models before it takes a job; one that cannot load a model stops
    the worker with exit code 1 (worker/warm.py).
    """
    from whisperx_service.pipeline.models.loaders import ensure_runtime_env

    # Before billiard is imported (it reads this once): SIGTERM -> Celery's cold shutdown with the
    # soft window (worker_soft_shutdown_timeout), and pool processes ignore a SIGTERM sent to the
    # whole process group (only the main process decides when to stop the job).
    os.environ["REMAP_SIGTERM"] = "SIGQUIT"
    ensure_runtime_env()  # before anything imports huggingface_hub / transformers
    from celery.bin.celery import celery as celery_command

    settings = get_settings()
    # The `celery` command itself, in this process: it exits with the worker's exit code (1 when a
    # model cannot be loaded at start, worker/warm.py); `app.worker_main` would return 0 regardless.
    celery_command.main(
        args=[
            "--app=whisperx_service.worker.main",
            "worker",
            "--pool=prefork",
            f"--concurrency={settings.worker.concurrency}",
            f"--queues={settings.worker.queue}",
            f"--loglevel={loglevel or settings.observability.log_level}",
            "--without-gossip",
            "--without-mingle",
        ],
        prog_name="celery",
    )
