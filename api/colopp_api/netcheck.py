"""Where webhooks may point (``COLOPP_API_WEBHOOK_NETWORKS``), checked when one is registered
(pure). With networks set, a webhook URL's host must be an IP address inside one of them (no
host names: what a name resolves to can change after the check)."""

from __future__ import annotations

import ipaddress

from colopp.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def webhook_networks(text: str) -> tuple[Network, ...]:
    """The comma-separated CIDRs (empty: anywhere).

    Raises:
        ConfigError: a malformed network.
    """
    try:
        return tuple(ipaddress.ip_network(part.strip()) for part in text.split(",") if part)
    except ValueError as exc:
        raise ConfigError(f"COLOPP_API_WEBHOOK_NETWORKS: {exc}") from exc


def url_refusal(host: str | None, networks: tuple[Network, ...]) -> str | None:
    """Why a webhook may not point at ``host`` (None: it may)."""
    if not networks:
        return None
    allowed = ", ".join(map(str, networks))
    try:
        address = ipaddress.ip_address((host or "").strip("[]"))
    except ValueError:
        return f"webhook URLs must name an IP address in {allowed} (not a host name)"
    if not any(address in net for net in networks):
        return f"{address} is not in the webhook networks ({allowed})"
    return None
