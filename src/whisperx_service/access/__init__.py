"""Who may do what: API keys (create, list, revoke, resolve), quotas and request rate limits."""
