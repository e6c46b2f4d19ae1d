"""Background maintenance the gateway starts: the reconciler, restore from storage, retention.

Every accepted job reaches a terminal state and nothing stays on disk forever, even when workers
or Redis fail. One gateway process at a time sweeps (a Redis lock).
"""
