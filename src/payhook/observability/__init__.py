"""Observability: structured logs with a request id on every line."""
