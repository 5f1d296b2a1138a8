"""Webhooks: the public receiving endpoint and the path from raw bytes to a committed row."""
