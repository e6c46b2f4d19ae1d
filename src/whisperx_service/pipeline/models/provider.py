"""What the pipeline needs from a model cache (the worker's `worker.models.ModelCache` provides it)."""

from __future__ import annotations

from typing import Any, Protocol


class ModelProvider(Protocol):
    """What the runner needs from the model cache (see `worker.models.ModelCache`)."""

    loads: list[str]

    @property
    def device(self) -> str: ...
    def asr(self) -> Any: ...
    def aligner(self, language: str) -> tuple[Any, Any]: ...
    def diarizer(self) -> Any: ...
    def describe(self, language: str | None) -> dict[str, str]: ...
