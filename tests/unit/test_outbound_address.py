"""The outbound address check (drawbridge's, as `outbound.http` configures it) on every class of
address, without connecting anywhere; the retry schedule; the URL form check."""

from __future__ import annotations

import itertools
import random

import pytest

from whisperx_service.domain.jobs import check_http_url
from whisperx_service.domain.webhooks import backoff_s
from whisperx_service.outbound.http import address_refused

REFUSED = [
    "10.0.0.1", "10.255.255.254",  # 10/8
    "172.16.0.1", "172.31.255.254",  # 172.16/12
    "192.168.0.1", "192.168.255.254",  # 192.168/16
    "169.254.169.254", "169.254.0.1",  # link-local, cloud metadata
    "127.0.0.1", "127.0.0.2", "127.255.255.254",  # loopback
    "0.0.0.0", "0.1.2.3",  # unspecified, "this network"
    "224.0.0.1", "239.255.255.250",  # multicast
    "240.0.0.1", "255.255.255.255",  # reserved, broadcast
    "100.64.0.1",  # shared address space (carrier NAT)
    "192.0.2.1", "198.51.100.1", "203.0.113.1", "198.18.0.1",  # documentation, benchmarking
    "::1", "::",  # IPv6 loopback, unspecified
    "fc00::1", "fd12:3456::1",  # fc00::/7 unique local
    "fe80::1", "febf::1",  # fe80::/10 link-local
    "ff02::1", "ff0e::1",  # multicast
    "2001:db8::1",  # documentation
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:192.168.1.1",  # IPv4-mapped
    "::127.0.0.1", "::10.0.0.1",  # IPv4-compatible (deprecated)
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
]  # fmt: skip
ALLOWED = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2a00:1450:4001::200e", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_refused(address: str) -> None:
    assert address_refused(address) is not None
    assert address_refused(address, allow_private=True) is None


@pytest.mark.parametrize("address", ALLOWED)
def test_allowed(address: str) -> None:
    assert address_refused(address) is None


def test_not_an_address() -> None:
    with pytest.raises(ValueError):
        address_refused("localhost")


def test_backoff_doubles_with_jitter_and_caps() -> None:
    rng = random.Random(1)
    waits = [backoff_s(n, 10.0, 3600.0, 0.25, rng) for n in range(1, 12)]
    for n, w in enumerate(waits[:8], start=1):
        assert 10.0 * 2 ** (n - 1) <= w <= 10.0 * 2 ** (n - 1) * 1.25
    assert all(a < b for a, b in itertools.pairwise(waits[:9]))  # gaps grow until the cap
    assert all(3600.0 <= w <= 4500.0 for w in waits[9:])


@pytest.mark.parametrize(
    "url", ["ftp://h/x", "file:///etc/passwd", "http://", "http://u:p@h/x", "http://h/a b", "gopher://h", "h/x"]
)
def test_url_form_refused(url: str) -> None:
    with pytest.raises(ValueError):
        check_http_url(url)


def test_url_form_accepted() -> None:
    assert check_http_url(" https://example.com:8443/hook?x=1 ") == "https://example.com:8443/hook?x=1"
