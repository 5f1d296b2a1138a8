"""payhook: receive payment-provider transaction webhooks, store them durably, process each once."""

__version__ = "0.1.0"
