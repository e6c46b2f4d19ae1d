"""The `whisperx-service` command line.

    whisperx-service api                      the gateway (uvicorn) on API_HOST:API_PORT
    whisperx-service worker                   one Celery worker (WORKER_CONCURRENCY processes)
    whisperx-service models prepare [--models-dir DIR] [--no-test-models]
    whisperx-service models download [--language en ...] [--asr-model NAME]

Defaults come from `get_settings()` (environment and `.env`). Heavy libraries are imported only by
the subcommand that needs them.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from whisperx_service.config import get_settings
from whisperx_service.errors import ModelLoadFailed


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


@main.command("api")
def api_command() -> None:
    """Run the HTTP gateway (uvicorn, one process) on API_HOST:API_PORT."""
    import uvicorn

    settings = get_settings()
    uvicorn.run(
        "whisperx_service.api.app:app_factory",
        factory=True,
        host=settings.api.host,
        port=settings.api.port,
        log_config=None,  # logging is configured by the app (structlog, JSON lines)
        proxy_headers=True,
    )


@main.command("worker")
@click.option("--loglevel", default=None, help="Celery log level [default: LOG_LEVEL].")
def worker_command(loglevel: str | None) -> None:
    """Run one Celery worker on WORKER_QUEUE: prefork pool of WORKER_CONCURRENCY processes (1 per GPU).

    The node name stays Celery's default `celery@<hostname>` (the container health check pings it).
    SIGTERM is a graceful shutdown: no new job is taken; the running job finishes within
    WORKER_SOFT_SHUTDOWN_S seconds or is handed back to another worker (resumed from its chunks).
    """
    from whisperx_service.pipeline.models.loaders import ensure_runtime_env

    # Before billiard is imported (it reads this once): SIGTERM -> Celery's cold shutdown with the
    # soft window (worker_soft_shutdown_timeout), and pool processes ignore a SIGTERM sent to the
    # whole process group (only the main process decides when to stop the job).
    os.environ["REMAP_SIGTERM"] = "SIGQUIT"
    ensure_runtime_env()  # before anything imports huggingface_hub / transformers
    from whisperx_service.worker.main import app

    settings = get_settings()
    app.worker_main(
        [
            "worker",
            "--pool=prefork",
            f"--concurrency={settings.worker.concurrency}",
            f"--queues={settings.worker.queue}",
            f"--loglevel={loglevel or settings.observability.log_level}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
