"""Every Redis key the service uses, built in one place. No f-string keys elsewhere."""

from __future__ import annotations

from dataclasses import dataclass

from whisperx_service.config import Settings


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder bound to a prefix (`REDIS_KEY_PREFIX`, default `wxs`)."""

    prefix: str = "wxs"

    @classmethod
    def of(cls, settings: Settings) -> Keys:
        """The keys of this deployment (REDIS_KEY_PREFIX)."""
        return cls(settings.redis.key_prefix)

    def job(self, job_id: str) -> str:
        """Hash: the job's state (status, stage, percent, attempt, lease, times, error)."""
        return f"{self.prefix}:job:{job_id}"

    def events(self, job_id: str) -> str:
        """Stream: the job's progress events; entry id = SSE id."""
        return f"{self.prefix}:job:{job_id}:events"

    def jobs_index(self) -> str:
        """Sorted set: job ids scored by creation time (ms since the epoch)."""
        return f"{self.prefix}:jobs"

    def finished(self) -> str:
        """Sorted set: ids of ended jobs scored by finish time (ms); the retention index"""
        return f"{self.prefix}:finished"

    def running(self) -> str:
        """Set: ids of jobs a worker has claimed and not finished (what the reconciler watches)."""
        return f"{self.prefix}:running"

    def reconciler_lock(self) -> str:
        """String: held by the one gateway process whose reconciler runs now (SET NX PX)."""
        return f"{self.prefix}:reconciler"

    def storage_synced(self) -> str:
        """String: set by the reconciler once every job in storage is known to Redis. Its absence
        means Redis lost its data (or never had it): the reconciler rebuilds the jobs from storage."""
        return f"{self.prefix}:storage-synced"

    def retention_sweep(self) -> str:
        """String: exists (PX = RETENTION_SWEEP_INTERVAL_S) while the last retention sweep is recent."""
        return f"{self.prefix}:retention-sweep"

    def workers(self) -> str:
        """Sorted set: worker names scored by their last heartbeat (s since the epoch)."""
        return f"{self.prefix}:workers"

    def worker_state(self, worker: str) -> str:
        """Hash: a live worker's pool processes, `<host>:<pid>` -> `WorkerProcess` JSON (models, device,
        warm or not); expires with the worker's heartbeat (`store/workers.py`)."""
        return f"{self.prefix}:worker:{worker}"

    def worker_failures(self) -> str:
        """Hash: worker name -> `WorkerFailure` JSON of a worker that could not start (the model, what to do)."""
        return f"{self.prefix}:worker-failures"

    def api_key(self, key_id: str) -> str:
        """String: an API key's record (the `ApiKey` JSON, from storage), cached; see `store/api_keys.py`."""
        return f"{self.prefix}:apikey:{key_id}"

    def owner_jobs(self, key_id: str) -> str:
        """Sorted set: ids of the jobs a key created, scored by creation time (ms)."""
        return f"{self.prefix}:owner:{key_id}:jobs"

    def quota_lock(self, key_id: str) -> str:
        """String (redis-py lock): held while a submission of the key is checked against its quotas
        and created, so two submissions never both take the key's last free place."""
        return f"{self.prefix}:key:{key_id}:quota-lock"

    def idempotency(self, owner_id: str, key_digest: str) -> str:
        """String (JSON): a submission's `Idempotency-Key` (its SHA-256 hex) of one owner (`-` = no key,
        auth off): the reservation while the first upload streams, then the job it made (`store/idempotency.py`)."""
        return f"{self.prefix}:idem:{owner_id}:{key_digest}"

    def job_waiters(self, job_id: str) -> str:
        """String (INCR/DECR): how many /v1/audio/* requests wait on the job now; the last to leave
        early cancels it after API_OPENAI_CANCEL_GRACE_S."""
        return f"{self.prefix}:job:{job_id}:waiters"

    def pending(self, owner_id: str) -> str:
        """List: ids of an owner's jobs held for a worker slot, oldest first (`-` = no key, auth off)."""
        return f"{self.prefix}:pending:{owner_id}"

    def dispatch_ring(self) -> str:
        """Sorted set: owners with held jobs, scored by the dispatch number of their last job handed out."""
        return f"{self.prefix}:dispatch:ring"

    def dispatch_served(self) -> str:
        """Hash: owner -> dispatch number of its last job handed out (its place when it joins the ring)."""
        return f"{self.prefix}:dispatch:served"

    def dispatch_seq(self) -> str:
        """String: the last dispatch number (INCR)."""
        return f"{self.prefix}:dispatch:seq"

    def dispatching(self) -> str:
        """Sorted set: ids taken off a pending list and being sent to Celery, scored by the take (ms)."""
        return f"{self.prefix}:dispatch:moving"

    def owner_active(self, owner_id: str) -> str:
        """Set: ids of an owner's jobs handed to Celery and not seen ended yet (its max_running count)."""
        return f"{self.prefix}:owner:{owner_id}:active"

    def dispatcher_lock(self) -> str:
        """String: held by the one gateway process whose dispatcher hands out jobs now (SET NX PX)."""
        return f"{self.prefix}:dispatcher"

    def rate_limits(self) -> str:
        """Prefix of the rate limiter's keys (the `limits` library adds its own suffixes)."""
        return f"{self.prefix}:limits"

    def delivery(self, delivery_id: str) -> str:
        """Hash: one webhook delivery (job, event, url, state, attempts made, the body once built);
        `store/webhooks.py`."""
        return f"{self.prefix}:delivery:{delivery_id}"

    def delivery_attempts(self, delivery_id: str) -> str:
        """List: one JSON `WebhookAttempt` per attempt at a delivery, oldest first."""
        return f"{self.prefix}:delivery:{delivery_id}:attempts"

    def job_deliveries(self, job_id: str) -> str:
        """List: ids of a job's webhook deliveries, in the order their events happened."""
        return f"{self.prefix}:job:{job_id}:deliveries"

    def outbound_due(self) -> str:
        """Sorted set: outbound work (`webhook:<delivery id>`) scored by when it is due (ms); a
        sent item is pushed a lease ahead, so one whose worker died comes due again."""
        return f"{self.prefix}:outbound:due"

    def outbound_lock(self, item: str) -> str:
        """String: held (SET NX PX) while one outbound worker thread works on an item."""
        return f"{self.prefix}:outbound:lock:{item}"

    def metrics(self) -> str:
        """Hash: service-wide counters shared by all gateway and worker processes."""
        return f"{self.prefix}:metrics"
