"""Test-only Celery app: the service's app with a 5 s broker visibility timeout.

A misconfiguration the settings refuse (the visibility timeout must exceed the task time limit):
Redis then redelivers a task whose worker is still running it, 5 s after delivery. Workers load it
with `-A tests.e2e.short_visibility_app`. Its broker keys carry the test's REDIS_KEY_PREFIX (kombu's
`global_keyprefix`), so its 5 s redelivery sweep touches no other test's messages in the shared
Redis database; the sweep runs every second.
"""

from __future__ import annotations

from whisperx_service.broker.celery_app import make_celery
from whisperx_service.config import get_settings
from whisperx_service.pipeline.models.loaders import ensure_runtime_env

#: Seconds after which Redis redelivers an unacknowledged task.
VISIBILITY_TIMEOUT_S = 5

ensure_runtime_env()
_settings = get_settings()
app = make_celery(_settings)
app.conf.broker_transport_options = {
    **app.conf.broker_transport_options,
    "visibility_timeout": VISIBILITY_TIMEOUT_S,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}
