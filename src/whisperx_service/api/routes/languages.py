"""`GET /v1/languages`: what the live workers transcribe, and where word alignment is available.

The gateway imports no model code: each warm worker process records the languages of its ASR
model in its Redis record (`worker/warm.py`, `pipeline/models/languages.py`), as it records its
models for `/readyz` and `GET /v1/models`; this route reads the live ones.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions as redis
from fastapi import APIRouter

from whisperx_service.api.auth import PrincipalDep
from whisperx_service.api.deps import JobsDep, SettingsDep
from whisperx_service.domain.workers import LanguageSupport, ProcessState
from whisperx_service.errors import ServiceUnavailable
from whisperx_service.store import workers

router = APIRouter(tags=["languages"])


@router.get(
    "/v1/languages",
    summary="Languages the workers transcribe, and their word alignment",
    responses={503: {"description": "service_unavailable (Redis does not answer)"}},
)
async def list_languages(_: PrincipalDep, settings: SettingsDep, jobs: JobsDep) -> dict[str, Any]:
    """`{models: [...], languages: [{code, name, alignment, align_backend, align_model}]}`.

    `models`: the ASR models of the live warm worker processes (as `GET /v1/models`);
    `languages`: every language one of them transcribes (faster-whisper's list for the model:
    only `en` for an English-only `.en` model), in that list's order, `alignment` true when a
    process that transcribes it can also time its words (`pipeline/models/languages.py`).
    Both lists are empty while no live worker process is warm (the languages are those of the
    loaded model: ask again once `/readyz` is 200).

    Raises:
        ServiceUnavailable: Redis does not answer.
    """
    try:
        live = await workers.live_workers(jobs.r, jobs.keys, within_s=3 * settings.worker.heartbeat_s)
    except redis.RedisError:
        raise ServiceUnavailable("Redis does not answer; try again") from None
    processes = [p for w in live for p in w.processes if p.state is ProcessState.warm and p.languages]
    merged: dict[str, LanguageSupport] = {}
    for process in processes:
        for lang in process.languages:
            if lang.code not in merged or (lang.alignment and not merged[lang.code].alignment):
                merged[lang.code] = lang
    models = sorted({m.name for p in processes for m in p.models if m.stage == "asr"})
    return {"models": models, "languages": [lang.model_dump(mode="json") for lang in merged.values()]}
