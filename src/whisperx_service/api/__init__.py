"""The HTTP gateway (FastAPI): streaming upload, status, SSE, results, health; HTTP only, never torch."""
