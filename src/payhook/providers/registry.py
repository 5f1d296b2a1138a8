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


def configured(settings: Settings) -> list[Provider]:
    """The providers whose secret is set: their endpoints answer, the others are 404."""
    return [provider for provider in PROVIDERS.values() if provider.configured(settings)]


def endpoints(settings: Settings) -> dict[str, ProviderEndpoint]:
    """The configured providers with their verifiers, built once at start-up."""
    return {
        provider.name: ProviderEndpoint(provider, provider.verifier(settings))
        for provider in configured(settings)
    }
