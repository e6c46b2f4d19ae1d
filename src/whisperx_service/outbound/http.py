"""The one way the service makes an outbound request: an SSRF-safe httpx client (drawbridge).

drawbridge's transport resolves the host once (getaddrinfo), refuses the request when any of
its addresses is loopback, private, link-local (cloud metadata at 169.254.169.254 included),
shared (100.64/10), multicast, reserved, documentation or unspecified, IPv4 or IPv6 (an
IPv4-mapped IPv6 address is checked as the IPv4 address it carries), and then connects to the
address it checked (the URL's host is swapped for it; the Host header and TLS SNI keep the
name), so no second DNS lookup can lead elsewhere. Each redirect hop is a new request through
the same transport, checked again. OUTBOUND_ALLOW_PRIVATE lifts the address check (internal
targets, tests); the rest stays. A refused request never opens a connection.
"""

from __future__ import annotations

import ipaddress

import drawbridge
import httpx
from drawbridge._validator import check_ip

#: Every TCP port: the service does not restrict ports (drawbridge's default allows 80, 443,
#: 8080, 8443 only); the address check is what guards internal services.
ALL_PORTS = frozenset(range(1, 65536))
#: Refused besides drawbridge's list: IPv4-compatible IPv6 (::a.b.c.d, RFC 4291 2.5.5.1, deprecated),
#: which some stacks still route to the IPv4 address it carries.
EXTRA_BLOCKED = frozenset({ipaddress.IPv6Network("::/96")})
#: The User-Agent of every outbound request.
USER_AGENT = "whisperx-service"

#: What a refused destination raises (a drawbridge error; its message names host and address).
Refused = (drawbridge.BlockedAddressError, drawbridge.UnsafeSchemeError, drawbridge.UnsafePortError)


def policy(
    *, allow_private: bool, timeout: httpx.Timeout, max_redirects: int, max_response_bytes: int | None = None
) -> drawbridge.Policy:
    """drawbridge's policy for the service: every port, the extra blocked ranges, the address
    check unless `allow_private`.

    Args:
        timeout: per phase (connect, write, read, pool), seconds.
        max_redirects: redirects followed, each checked again (0: a 3xx is the answer).
        max_response_bytes: bodies read by `SyncClient.request` (None: no cap; streams are capped by
            the caller).
    """
    return drawbridge.Policy(
        allow_private=allow_private,
        allow_ports=ALL_PORTS,
        ip_blocklist=frozenset() if allow_private else EXTRA_BLOCKED,
        timeout=timeout,
        max_redirects=max_redirects,
        user_agent=USER_AGENT,
        max_response_bytes=max_response_bytes,
    )


def client(pol: drawbridge.Policy) -> drawbridge.SyncClient:
    """A synchronous SSRF-safe client under `pol` (no proxies from the environment). Close it after use."""
    return drawbridge.SyncClient(pol)


def address_refused(address: str, *, allow_private: bool = False) -> str | None:
    """Why the service refuses to connect to `address` (an IP literal), or None when it may.

    The very check every outbound request makes after resolving its host (drawbridge's), here
    without any connection, for tests and diagnostics.

    Raises:
        ValueError: `address` is not an IP address.
    """
    ip = ipaddress.ip_address(address)
    pol = policy(allow_private=allow_private, timeout=httpx.Timeout(1.0), max_redirects=0)
    try:
        check_ip(address, ip, pol)
    except drawbridge.BlockedAddressError as e:
        return e.reason
    return None
