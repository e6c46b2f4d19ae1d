"""The outbound worker: every request the service makes itself (signed webhooks), run by a Celery
worker of its own on OUTBOUND_QUEUE, never by a GPU worker. See `tasks.py` and `deliver.py`."""
