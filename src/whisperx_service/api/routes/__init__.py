"""The routes, one module per resource: jobs, events (SSE), results, health and metrics."""
