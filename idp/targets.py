"""Where the service may send requests or visitors in production: outbound targets and redirect URIs.

* Outbound targets (webhook subscribers, an inlet's health check, a captcha provider's verify URL) must
  not resolve to loopback, link-local, private or other non-public addresses, or an admin key could make
  the service probe its own network (the delivery log would then map internal ports). ``IDP_ALLOW_PRIVATE_TARGETS=true``
  lifts the rule for deployments whose subscribers live inside the network. The rule holds when a
  request is sent, not only when the target is registered: a name that resolved to a public address
  then may resolve to an internal one later (DNS rebinding), so :class:`Outbound` resolves the name,
  checks every address, and connects to the checked address itself (with the name as ``Host`` and as
  the TLS server name, so certificates are verified as usual).
* Redirect URIs of relying parties must be https, except on a loopback host (a developer's machine).

Development and tests keep loopback receivers: the rules apply where the caller says so (production).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

import certifi
import requests
import urllib3
from urllib3.exceptions import HTTPError, TimeoutError

from idp.errors import ValidationError

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


# host -> the addresses it resolves to (raises OSError when it does not resolve).
Resolver = Callable[[str], list[str]]


def resolve(host: str) -> list[str]:
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def public_address(url: str, name: str, resolver: Resolver = resolve) -> str:
    """The address to connect to for ``url``: refused unless every address its host resolves to is public."""
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port
    except ValueError:  # a bracketed host that is not an IPv6 address, or a port out of range
        raise ValidationError(f"{name} must name a host and a valid port.", code="invalid_field") from None
    if not host:
        raise ValidationError(f"{name} must name a host.", code="invalid_field")
    try:
        addresses = resolver(host)
    except (OSError, UnicodeError):
        raise ValidationError(f"{name}: the host {host!r} does not resolve.", code="invalid_field") from None
    if not addresses or not all(_public(address) for address in addresses):
        raise ValidationError(
            f"{name} resolves to a loopback, link-local or private address; set IDP_ALLOW_PRIVATE_TARGETS=true "
            "to allow targets inside your network.",
            code="private_target",
        )
    return addresses[0]


def check_outbound(url: str, name: str, resolver: Resolver = resolve) -> None:
    """Refuse ``url`` unless every address its host resolves to is a public one."""
    public_address(url, name, resolver)


class PrivateTargetError(requests.ConnectionError):
    """The target's name resolved to a non-public address when the request was about to be sent."""


class Outbound:
    """Send the service's own requests (webhooks, health checks); redirects are never followed.

    With ``public_only`` (production, unless ``IDP_ALLOW_PRIVATE_TARGETS``) the name is resolved and
    checked at each request and the connection goes to the checked address, so a name cannot be
    pointed at an internal address between the check and the connection. Failures raise
    ``requests.RequestException`` subclasses either way."""

    def __init__(self, public_only: bool, resolver: Resolver = resolve, ca_certs: str | None = None) -> None:
        self.public_only = public_only
        self.resolver = resolver
        self.ca_certs = ca_certs or certifi.where()
        self.session = requests.Session()  # keeps connections open where names are not pinned

    def send(self, method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float) -> int:
        """Send one request and return its status code."""
        return self.fetch(method, url, body, headers, timeout)[0]

    def fetch(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str], timeout: float
    ) -> tuple[int, bytes]:
        """Send one request and return its status code and body."""
        if not self.public_only:
            with self.session.request(
                method, url, data=body, headers=headers, timeout=timeout, allow_redirects=False
            ) as response:
                return response.status_code, response.content
        try:
            address = public_address(url, "the target", self.resolver)
        except ValidationError as exc:
            raise PrivateTargetError(exc.message) from None
        return self._pinned(method, url, address, body, headers, timeout)

    def _pinned(
        self, method: str, url: str, address: str, body: bytes | None, headers: dict[str, str], timeout: float
    ) -> tuple[int, bytes]:
        parts = urlsplit(url)
        host = parts.hostname or ""
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        netloc = parts.netloc.rsplit("@", 1)[-1]
        pool: urllib3.HTTPConnectionPool
        if https:
            pool = urllib3.HTTPSConnectionPool(
                address,
                port,
                timeout=timeout,
                retries=False,
                cert_reqs="CERT_REQUIRED",
                ca_certs=self.ca_certs,
                server_hostname=host,
                assert_hostname=host,
            )
        else:
            pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False)
        try:
            with pool:
                response = pool.urlopen(
                    method,
                    target,
                    body=body,
                    headers={**headers, "Host": netloc},
                    redirect=False,
                    retries=False,
                    assert_same_host=False,
                )
                return int(response.status), bytes(response.data)
        except TimeoutError as exc:
            raise requests.Timeout(str(exc)) from None
        except HTTPError as exc:
            raise requests.ConnectionError(str(exc)) from None


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
