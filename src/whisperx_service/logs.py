"""Structured logs (one JSON object per line, or readable console lines, the job id on every line) and Sentry.

`configure_logging(settings)` routes both structlog and the standard `logging` module (uvicorn,
celery, redis) through the same processors, so every line has the same shape, with the process id
(`pid`: a worker's main process and its pool processes write to one stream). Code binds the job
id with `structlog.contextvars.bind_contextvars(job_id=...)` (a gateway's job routes) or
`bind_job_context` (a worker's job: `job_id`, `attempt`, `stage`, also as Sentry tags); it then
appears on every line that request or task writes.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, FilteringBoundLogger

from whisperx_service.config import Settings


def configure_logging(settings: Settings) -> None:
    """Set up structlog and the stdlib root logger from `settings.observability`.

    Safe to call more than once (the root handler is replaced, not added to).
    """
    obs = settings.observability
    level = logging.getLevelName(obs.log_level)
    if not isinstance(level, int):
        level = logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_pid,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = structlog.processors.JSONRenderer() if obs.log_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, _wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    # The process's real stderr: a Celery worker replaces `sys.stderr` with a proxy that logs what
    # is written to it, and a root handler writing there would feed itself (Celery drops such
    # records, so the worker's own lines and its pool processes' lines would be lost).
    handler = logging.StreamHandler(sys.__stderr__ or sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn installs its own handlers; send its lines through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True


def _wrap_for_formatter(logger: Any, name: str, event_dict: EventDict) -> tuple[Any, ...]:
    """structlog's `ProcessorFormatter.wrap_for_formatter`, which also hands `exc_info` to the stdlib record.

    The line is rendered from the event dict as before (the formatter ignores the record's
    `exc_info` for structlog's own records); the record carries the exception too, so Sentry's
    logging integration reports `log.exception(...)` with its traceback (and drops it as a
    duplicate when the same exception was captured already).
    """
    args, kwargs = structlog.stdlib.ProcessorFormatter.wrap_for_formatter(logger, name, event_dict)
    if event_dict.get("exc_info"):
        kwargs["exc_info"] = event_dict["exc_info"]
    return args, kwargs


def _add_pid(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the writing process's id as `pid`."""
    event_dict.setdefault("pid", os.getpid())
    return event_dict


#: What a worker binds for a job: on its log lines (structlog context vars) and as Sentry tags.
JOB_CONTEXT_KEYS = ("job_id", "attempt", "stage")


def bind_job_context(**values: str | int) -> None:
    """Put `values` (keys from `JOB_CONTEXT_KEYS`) on every log line this context writes from now
    on, and on the Sentry events it sends as tags (the Sentry scope of this context; harmless
    without SENTRY_DSN).

    Raises:
        ValueError: a key outside `JOB_CONTEXT_KEYS`.
    """
    import sentry_sdk

    unknown = set(values) - set(JOB_CONTEXT_KEYS)
    if unknown:
        raise ValueError(f"not a job context key: {sorted(unknown)}")
    structlog.contextvars.bind_contextvars(**values)
    for key, value in values.items():
        sentry_sdk.set_tag(key, str(value))


def clear_job_context() -> None:
    """Remove what `bind_job_context` bound (log context and Sentry tags): the job is over here."""
    import sentry_sdk

    structlog.contextvars.unbind_contextvars(*JOB_CONTEXT_KEYS)
    scope = sentry_sdk.get_isolation_scope()
    for key in JOB_CONTEXT_KEYS:
        scope.remove_tag(key)


def get_logger(name: str) -> FilteringBoundLogger:
    """A structlog logger named `name` (bound context vars such as job_id are merged in)."""
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger


def init_sentry(settings: Settings, *, celery: bool = False) -> bool:
    """Send errors to Sentry when SENTRY_DSN is set (gateway and worker alike).

    Args:
        celery: also install Sentry's Celery integration (in the worker).
    Returns:
        True if Sentry was initialised.
    """
    obs = settings.observability
    if not obs.sentry_dsn:
        return False
    import sentry_sdk

    integrations: list[Any] = []
    if celery:
        from sentry_sdk.integrations.celery import CeleryIntegration

        integrations.append(CeleryIntegration())
    sentry_sdk.init(dsn=obs.sentry_dsn, environment=obs.sentry_environment, integrations=integrations)
    return True
