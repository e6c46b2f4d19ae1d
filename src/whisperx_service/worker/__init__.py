"""The Celery worker: the transcription task and what keeps it honest (lease, progress, heartbeat, hand-back)."""
