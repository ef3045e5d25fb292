"""Where the service may send requests or visitors in production: outbound targets and redirect URIs.

* Outbound targets (webhook subscribers, an inlet's health check) must not resolve to loopback,
  link-local, private or other non-public addresses, or an admin key could make the service probe its
  own network (the delivery log would then map internal ports). ``IDP_ALLOW_PRIVATE_TARGETS=true``
  lifts the rule for deployments whose subscribers live inside the network.
* Redirect URIs of relying parties must be https, except on a loopback host (a developer's machine).

Development and tests keep loopback receivers: the rules apply where the caller says so (production).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from idp.errors import ValidationError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_outbound(url: str, name: str) -> None:
    """Refuse ``url`` unless every address its host resolves to is a public one."""
    host = urlsplit(url).hostname
    if not host:
        raise ValidationError(f"{name} must name a host.", code="invalid_field")
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise ValidationError(f"{name}: the host {host!r} does not resolve.", code="invalid_field") from None
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or not all(_public(address) for address in addresses):
        raise ValidationError(
            f"{name} resolves to a loopback, link-local or private address; set IDP_ALLOW_PRIVATE_TARGETS=true "
            "to allow targets inside your network.",
            code="private_target",
        )


def loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_redirect_uri(uri: str, name: str) -> None:
    """Refuse a plain-http URI unless its host is loopback."""
    parts = urlsplit(uri)
    if parts.scheme != "https" and not loopback_host(parts.hostname):
        raise ValidationError(f"{name} must use https (plain http only on a loopback host).", code="insecure_uri")
