"""The outbound worker's task and its scheduler.

`deliver(item)` makes one attempt at one item of the outbound schedule (`webhook:<delivery id>`:
a webhook delivery, `deliver.py`; `fetch:<job id>`: a job's source from its URL, `fetch.py`),
holding the item's lock meanwhile (one thread at a time per item). The scheduler, a thread of the
worker's main process started when the worker is ready, takes what is due every OUTBOUND_POLL_S
(`WebhookStore.take_due`: each item pushed OUTBOUND_LEASE_S ahead) and sends one task per item on
OUTBOUND_QUEUE. Every worker runs one; the take is atomic, so an item is sent once per lease.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import httpx
import redis
from celery import Celery, Task, shared_task
from celery.signals import worker_ready, worker_shutting_down

from whisperx_service.broker.celery_app import OUTBOUND_APP, OUTBOUND_TASK
from whisperx_service.config import Settings
from whisperx_service.logs import get_logger
from whisperx_service.outbound import http
from whisperx_service.outbound.deliver import attempt_delivery
from whisperx_service.outbound.fetch import fetch_job
from whisperx_service.store.fetches import FETCH_ITEM, FetchStore
from whisperx_service.store.keys import Keys
from whisperx_service.store.webhooks import WEBHOOK_ITEM, WebhookStore

log = get_logger(__name__)

_local = threading.local()
_stop = threading.Event()


def _store(settings: Settings) -> tuple[redis.Redis, WebhookStore]:
    """This thread's Redis client and webhook store."""
    if getattr(_local, "store", None) is None:
        r = redis.Redis.from_url(settings.redis.url, socket_timeout=10, health_check_interval=30)
        _local.r, _local.store = r, WebhookStore(r, Keys.of(settings))
    return _local.r, _local.store


@shared_task(name=OUTBOUND_TASK, bind=True, acks_late=True)
def deliver(self: Task, item: str) -> str:
    """One attempt at the schedule's `item`. Returns the delivery's state, the fetch's outcome
    (`fetched`, `failed`), or `skipped:<why>`."""
    settings: Settings = self.app.wxs_settings
    r, store = _store(settings)
    if not item.startswith((WEBHOOK_ITEM, FETCH_ITEM)):
        store.r.zrem(store.keys.outbound_due(), item)
        return "skipped:unknown"
    token = uuid.uuid4().hex
    lease_ms = int(settings.outbound.lease_s * 1000)
    if not store.lock(item, lease_ms, token):
        return "skipped:busy"
    try:
        if item.startswith(FETCH_ITEM):
            fetches = FetchStore(r, store.keys, events_maxlen=settings.redis.events_maxlen)
            return fetch_job(r, fetches, settings, item.removeprefix(FETCH_ITEM), lease_ms)
        did = item.removeprefix(WEBHOOK_ITEM)
        timeout = httpx.Timeout(settings.webhook.timeout_s)
        pol = http.policy(allow_private=settings.outbound.allow_private, timeout=timeout, max_redirects=0)
        with http.client(pol) as client:
            state = attempt_delivery(r, store, settings, client, did)
        if state is None and not store.delivery(did):
            store.r.zrem(store.keys.outbound_due(), item)  # its job was purged
        return state.value if state is not None else "skipped:done"
    finally:
        store.unlock(item, token)


def schedule_once(celery: Celery, store: WebhookStore, settings: Settings) -> int:
    """Send a task for every item due now; returns how many.

    Raises:
        redis.RedisError, kombu.exceptions.OperationalError: Redis or the broker failed (the items
            taken come due again after OUTBOUND_LEASE_S).
    """
    items = store.take_due(int(time.time() * 1000), int(settings.outbound.lease_s * 1000))
    for item in items:
        celery.send_task(OUTBOUND_TASK, args=[item], queue=settings.outbound.queue)
    return len(items)


def run_scheduler(celery: Celery, settings: Settings) -> None:
    """The scheduler loop (a daemon thread): `schedule_once` every OUTBOUND_POLL_S until shutdown; never raises."""
    r = redis.Redis.from_url(settings.redis.url, socket_timeout=10, health_check_interval=30)
    store = WebhookStore(r, Keys.of(settings))
    while not _stop.wait(settings.outbound.poll_s):
        try:
            schedule_once(celery, store, settings)
        except Exception as e:  # Redis or the broker away: try again next round
            log.warning("outbound_schedule_failed", error=repr(e))


@worker_ready.connect
def _start_scheduler(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    if app is None or app.main != OUTBOUND_APP:  # a GPU worker that imported this module
        return
    settings: Settings = app.wxs_settings
    _stop.clear()
    threading.Thread(target=run_scheduler, args=(app, settings), name="outbound-scheduler", daemon=True).start()
    log.info("outbound_scheduler_started", queue=settings.outbound.queue)


@worker_shutting_down.connect
def _stop_scheduler(**_: Any) -> None:
    _stop.set()
