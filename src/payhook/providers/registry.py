"""Every provider payhook knows, by the name in its endpoint `/v1/webhooks/<name>`."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from payhook.config import Settings
from payhook.providers import adyen, paypal, razorpay, stripe
from payhook.providers.base import Provider, ProviderEndpoint

PROVIDERS: Mapping[str, Provider] = MappingProxyType(
    {
        provider.name: provider
        for provider in (stripe.PROVIDER, razorpay.PROVIDER, adyen.PROVIDER, paypal.PROVIDER)
    }
)


def endpoints(settings: Settings) -> dict[str, ProviderEndpoint]:
    """The providers whose secret is set, with their verifiers; the other endpoints are 404."""
    return {
        name: ProviderEndpoint(provider, provider.verifier(settings))
        for name, provider in PROVIDERS.items()
        if provider.configured(settings)
    }
