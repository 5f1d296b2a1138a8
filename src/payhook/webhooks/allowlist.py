"""Which client addresses may post webhooks: WEBHOOK_ALLOWED_IPS, seen through TRUSTED_PROXIES.

The client is the direct peer, unless the peer is a trusted proxy: then X-Forwarded-For is
read from the right, skipping trusted proxies, and the first untrusted address is the client.
Anything left of it was written by the client itself and is never believed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """A comma-separated CIDR list ("10.0.0.0/8, 2001:db8::/32, 192.0.2.7"); ValueError if not."""
    return tuple(ip_network(part.strip()) for part in text.split(",") if part.strip())


def parse_address(text: str) -> Address | None:
    """One X-Forwarded-For hop or ASGI peer: an address, maybe "[v6]:port" or "v4:port"."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; compare them as IPv4.
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: Address, networks: Iterable[Network]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


@dataclass(frozen=True)
class ClientAllowlist:
    """The webhook endpoint's address filter, built once at start."""

    allowed: tuple[Network, ...] = ()
    trusted_proxies: tuple[Network, ...] = ()

    def client_address(self, peer: str | None, forwarded_for: list[str]) -> Address | None:
        """The client's address, or None when it cannot be known (no peer, a garbled hop)."""
        address = parse_address(peer) if peer else None
        hops = [hop for header in forwarded_for for hop in header.split(",")]
        while address is not None and hops and _within(address, self.trusted_proxies):
            address = parse_address(hops.pop())
        return address

    def is_trusted_proxy(self, peer: str) -> bool:
        """Whether this direct peer is one of TRUSTED_PROXIES (whose forwarded headers count)."""
        address = parse_address(peer)
        return address is not None and _within(address, self.trusted_proxies)

    def permits(self, peer: str | None, forwarded_for: list[str]) -> bool:
        """Whether this request may post a webhook (always, when no allowlist is configured)."""
        if not self.allowed:
            return True
        address = self.client_address(peer, forwarded_for)
        return address is not None and _within(address, self.allowed)
