"""Client address resolution for WEBHOOK_ALLOWED_IPS behind TRUSTED_PROXIES."""

from __future__ import annotations

from ipaddress import ip_address

import pytest
from pydantic import ValidationError

from payhook.config import Settings
from payhook.webhooks.allowlist import ClientAllowlist, parse_address, parse_networks

PROXIES = parse_networks("10.0.0.0/8, fd00::/8")
BEHIND_PROXIES = ClientAllowlist(parse_networks("203.0.113.0/24, 2001:db8::/32"), PROXIES)


def client(peer: str | None, *forwarded_for: str) -> str | None:
    address = BEHIND_PROXIES.client_address(peer, list(forwarded_for))
    return None if address is None else str(address)


def test_without_forwarded_for_the_peer_is_the_client() -> None:
    assert client("203.0.113.9") == "203.0.113.9"


def test_forwarded_for_from_an_untrusted_peer_is_ignored() -> None:
    # The attacker at 198.51.100.7 claims to be an allowed address: the claim is not read.
    assert client("198.51.100.7", "203.0.113.9") == "198.51.100.7"
    assert not BEHIND_PROXIES.permits("198.51.100.7", ["203.0.113.9"])


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_client() -> None:
    assert client("10.1.2.3", "203.0.113.9") == "203.0.113.9"
    assert BEHIND_PROXIES.permits("10.1.2.3", ["203.0.113.9"])


def test_the_rightmost_untrusted_hop_wins_over_what_the_client_wrote() -> None:
    # The client sent "X-Forwarded-For: 203.0.113.9" itself; its proxies appended the truth.
    chain = "203.0.113.9, 198.51.100.7, 10.9.9.9"
    assert client("10.1.2.3", chain) == "198.51.100.7"
    assert not BEHIND_PROXIES.permits("10.1.2.3", [chain])


def test_several_forwarded_for_headers_form_one_chain() -> None:
    assert client("10.1.2.3", "198.51.100.7", "203.0.113.9, 10.0.0.5") == "203.0.113.9"


def test_a_chain_of_only_trusted_proxies_ends_at_its_left_end() -> None:
    assert client("10.1.2.3", "10.0.0.1, 10.0.0.2") == "10.0.0.1"


@pytest.mark.parametrize(
    ("peer", "hops", "expected"),
    [
        ("fd00::1", ["2001:db8::5"], "2001:db8::5"),
        ("fd00::1", ["[2001:db8::5]:4711"], "2001:db8::5"),
        ("2001:db8::7", ["198.51.100.7"], "2001:db8::7"),
        ("::ffff:10.0.0.1", ["203.0.113.9:5555"], "203.0.113.9"),
        ("::ffff:203.0.113.4", [], "203.0.113.4"),
    ],
)
def test_ipv6_ports_and_mapped_addresses(peer: str, hops: list[str], expected: str) -> None:
    assert client(peer, *hops) == expected


@pytest.mark.parametrize("hop", ["unknown", "", "203.0.113.9.1", "_hidden"])
def test_a_garbled_hop_behind_a_proxy_is_refused(hop: str) -> None:
    assert client("10.1.2.3", hop) is None
    assert not BEHIND_PROXIES.permits("10.1.2.3", [hop])


def test_no_peer_is_refused_when_an_allowlist_is_set() -> None:
    assert not BEHIND_PROXIES.permits(None, [])


def test_an_empty_allowlist_permits_everyone() -> None:
    assert ClientAllowlist().permits("198.51.100.7", ["anything"])
    assert ClientAllowlist().permits(None, [])


def test_ipv4_and_ipv6_networks_do_not_match_each_other() -> None:
    allowlist = ClientAllowlist(parse_networks("0.0.0.0/0"))
    assert allowlist.permits("198.51.100.7", [])
    assert not allowlist.permits("2001:db8::1", [])


def test_parse_address_strips_ports_and_brackets() -> None:
    assert parse_address("[::1]:80") == ip_address("::1")
    assert parse_address(" 192.0.2.1:443 ") == ip_address("192.0.2.1")
    assert parse_address("not-an-ip") is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("webhook_allowed_ips", "10.0.0.0/33"),
        ("webhook_allowed_ips", "10.0.0.1/8"),
        ("trusted_proxies", "localhost"),
    ],
)
def test_settings_refuse_a_bad_cidr_list(name: str, value: str) -> None:
    with pytest.raises(ValidationError, match=name.upper()):
        Settings(_env_file=None, **{name: value})  # type: ignore[arg-type]


def test_settings_accept_cidr_lists() -> None:
    settings = Settings(
        _env_file=None,
        webhook_allowed_ips="203.0.113.0/24, 2001:db8::/32,198.51.100.7",
        trusted_proxies="",
    )
    assert len(parse_networks(settings.webhook_allowed_ips)) == 3
