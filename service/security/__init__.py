"""Security and operations: API keys, quotas, stream ownership, TLS, disclosure rules (issue 15)."""
