"""Server-side request forgery, with OUTBOUND_ALLOW_PRIVATE off: loopback targets only.

Webhooks to 127.0.0.1, ::1, [::ffff:127.0.0.1] and `localhost` are refused after the service
resolved and checked the address, before any connection: the receivers count every TCP
connection they accept and see none. A redirect from an allowed server to 127.0.0.2 is refused
on the second hop, again without a connection to it. No traffic leaves 127.0.0.0/8 and ::1.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import drawbridge
import httpx
import pytest

from tests.e2e.conftest import Service, start_service, stop_service
from tests.e2e.faults import wait_until
from tests.e2e.receivers import Receiver, start_receiver, write_tone
from tests.e2e.test_webhooks import deliveries, end_job
from whisperx_service.domain.webhooks import new_webhook_secret
from whisperx_service.outbound.http import ALL_PORTS, client


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, redis_url: str, models_dir: Path) -> Iterator[Service]:
    """Gateway + outbound worker with the address check on, one attempt per delivery."""
    s = start_service(
        tmp_path_factory.mktemp("ssrf"),
        redis_url,
        models_dir,
        workers=0,
        outbound=True,
        API_DISPATCH_INTERVAL_S="0",
        OUTBOUND_ALLOW_PRIVATE="false",
        OUTBOUND_POLL_S="0.1",
        WEBHOOK_SECRET=new_webhook_secret(),
        WEBHOOK_MAX_ATTEMPTS="1",
    )
    yield s
    stop_service(s)


@pytest.fixture(scope="module")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short tone (the jobs never run)."""
    return write_tone(tmp_path_factory.mktemp("audio") / "tone.wav")


@pytest.fixture(scope="module")
def v4() -> Iterator[Receiver]:
    r = start_receiver("127.0.0.1")
    yield r
    r.close()


@pytest.fixture(scope="module")
def v6() -> Iterator[Receiver]:
    r = start_receiver("::1")
    yield r
    r.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "localhost"])
def test_loopback_webhook_refused_without_connecting(
    svc: Service,
    audio: Path,
    v4: Receiver,
    v6: Receiver,
    host: str,
) -> None:
    port = v6.port if host == "[::1]" else v4.port
    job_id = end_job(svc, audio, f"http://{host}:{port}/hook")
    d = wait_until(
        lambda: next((x for x in deliveries(svc, job_id) if x["state"] != "pending"), None), 30, "attempt made"
    )
    assert d["state"] == "exhausted"
    assert [(a["status_code"], a["error"]) for a in d["attempts"]] == [(None, "refused_address")]
    assert v4.connections == 0 and v6.connections == 0
    assert v4.requests == [] and v6.requests == []


def test_redirect_to_a_refused_address_is_checked_again() -> None:
    """The first hop is allowed here (127.0.0.1 on the policy's allowlist), the redirect's target
    127.0.0.2 is not: the client refuses it before connecting."""
    target = start_receiver("127.0.0.2")
    first = start_receiver("127.0.0.1")
    first.redirect = target.url("127.0.0.2", "/next")
    try:
        pol = drawbridge.Policy(
            allow_ports=ALL_PORTS,
            ip_allowlist=[ipaddress.ip_network("127.0.0.1/32")],
            timeout=httpx.Timeout(5.0),
            max_redirects=5,
        )
        with client(pol) as c, pytest.raises(drawbridge.BlockedAddressError) as e:
            c.get(first.url())
        assert str(e.value.ip) == "127.0.0.2"
        assert len(first.requests) == 1
        assert target.connections == 0 and target.requests == []
    finally:
        first.close()
        target.close()
