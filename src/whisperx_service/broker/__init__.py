"""The task queue: the Celery app (`celery_app`) and the one adapter that reads kombu's Redis structures."""
