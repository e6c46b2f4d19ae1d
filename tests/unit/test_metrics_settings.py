"""METRICS_ADDRESS, WORKER_METRICS_ADDRESS and METRICS_ALLOW_REMOTE: parsed, off when unset, loopback
unless remote serving is allowed (their metrics need no key)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from whisperx_service.config import ObservabilitySettings, split_address


@pytest.mark.parametrize(
    ("address", "expected"),
    [("127.0.0.1:9100", ("127.0.0.1", 9100)), ("[::1]:9101", ("::1", 9101)), ("localhost:80", ("localhost", 80))],
)
def test_split_address(address: str, expected: tuple[str, int]) -> None:
    assert split_address(address) == expected


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:", ":9100", "127.0.0.1:0", "127.0.0.1:70000", "x:y"])
def test_malformed_address_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="host:port"):
        split_address(address)
    with pytest.raises(ValidationError, match="host:port"):
        ObservabilitySettings(metrics_address=address)


def test_unset_or_empty_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICS_ADDRESS", "")
    monkeypatch.delenv("WORKER_METRICS_ADDRESS", raising=False)
    obs = ObservabilitySettings()
    assert obs.metrics_address is None and obs.worker_metrics_address is None


@pytest.mark.parametrize("name", ["METRICS_ADDRESS", "WORKER_METRICS_ADDRESS"])
def test_non_loopback_needs_allow_remote(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(name, "0.0.0.0:9100")
    with pytest.raises(ValidationError, match=f"{name}='0.0.0.0:9100' is not a loopback address"):
        ObservabilitySettings()
    monkeypatch.setenv("METRICS_ALLOW_REMOTE", "true")
    assert ObservabilitySettings().model_dump()[name.lower()] == "0.0.0.0:9100"


@pytest.mark.parametrize("address", ["127.0.0.1:9100", "127.9.9.9:1", "[::1]:9100", "localhost:9100"])
def test_loopback_is_allowed_without_allow_remote(address: str) -> None:
    assert ObservabilitySettings(metrics_address=address, worker_metrics_address=address).metrics_address == address
