"""Pins the private behaviour of whisperx, faster-whisper, pyannote.audio, torchaudio, redis-py and
`limits` that src/ relies on, so an upgrade that changes it fails here, with a message naming the
code that depends on it, instead of somewhere downstream. (kombu's Redis structures are pinned in
test_kombu_adapter.py.) pyproject.toml pins these packages to the versions tested.

Everything runs for real (offline models on CPU, the test Redis). Two stand-ins: a WhisperX `Vad`
that hands over fixed windows (exactly what `pipeline/audio/windows.precomputed_windows` installs),
and, for the aligner download, `torch.hub.download_url_to_file` replaced by a recorder, because the
hub cannot be reached here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.speech import SAMPLE_WAV
from whisperx_service.config import AsrSettings, Device, ModelsSettings, Settings
from whisperx_service.pipeline.models import loaders

SR = 16_000


def _pin(what: str, where: str) -> str:
    return f"{what} changed; {where} relies on it (see tests/integration/test_private_api_pins.py)"


@pytest.fixture(scope="module")
def asr(models_dir: Path) -> Any:
    """The offline ASR pipeline (tiny.en, pyannote VAD) on CPU, as the worker loads it."""
    return loaders.load_asr(
        Settings(asr=AsrSettings(device=Device.cpu, threads=2), models=ModelsSettings(dir=models_dir))
    )


@pytest.fixture(scope="module")
def audio() -> np.ndarray:
    """pyannote's 30 s sample call, float32 at 16 kHz."""
    import whisperx

    return np.asarray(whisperx.load_audio(str(SAMPLE_WAV)), dtype=np.float32)


# --- whisperx: FasterWhisperPipeline internals --------------------------------------------------


def test_pipeline_keeps_its_vad_thresholds_in_vad_params(asr: Any) -> None:
    params = getattr(asr, "_vad_params", None)
    where = "pipeline/plan.asr_windows_of (the VAD over the whole file)"
    assert isinstance(params, dict), _pin("FasterWhisperPipeline._vad_params", where)
    for key in ("vad_onset", "vad_offset"):
        assert isinstance(params.get(key), float) and 0 < params[key] < 1, _pin(f"_vad_params[{key!r}]", where)


class _FixedWindows:
    """Stand-in VAD (a WhisperX `Vad`) that records how `transcribe` calls it and hands over fixed windows."""

    def __init__(self, windows: list[dict[str, Any]]) -> None:
        from whisperx.vads.vad import Vad

        class Recorder(Vad):  # type: ignore[misc]
            def __init__(inner) -> None:
                super().__init__(0.5)
                inner.calls: list[tuple[str, Any]] = []

            def preprocess_audio(inner, audio: Any) -> Any:
                inner.calls.append(("preprocess_audio", len(audio)))
                return "prepared"

            def __call__(inner, audio: Any, **kwargs: Any) -> list[Any]:
                inner.calls.append(("call", audio))
                return ["raw"]

            def merge_chunks(inner, segments: Any, chunk_size: float, *args: Any, **kwargs: Any) -> Any:
                inner.calls.append(("merge_chunks", (segments, chunk_size, kwargs)))
                return windows

        self.vad = Recorder()


def test_transcribe_decodes_exactly_the_windows_its_vad_model_gives(asr: Any, audio: np.ndarray) -> None:
    """`precomputed_windows` swaps `asr.vad_model`; `chunk_windows` relies on `int(t * 16000)` slicing."""
    windows = [
        {"start": 0.3125, "end": 9.87, "segments": [(0.3125, 9.87)]},
        {"start": 12.0, "end": 20.5, "segments": [(12.0, 20.5)]},
    ]
    stand_in = _FixedWindows(windows).vad
    sliced: list[int] = []
    preprocess = asr.preprocess
    saved = asr.vad_model

    def record(inputs: dict[str, Any], **kw: Any) -> Any:
        sliced.append(len(inputs["inputs"]))
        return preprocess(inputs, **kw)

    asr.vad_model, asr.preprocess = stand_in, record
    try:
        out = asr.transcribe(audio, batch_size=2, language="en", chunk_size=30)
    finally:
        asr.vad_model = saved
        del asr.preprocess
    where = "pipeline/audio/windows.precomputed_windows"
    names = [name for name, _ in stand_in.calls]
    assert names == ["preprocess_audio", "call", "merge_chunks"], _pin("how transcribe calls vad_model", where)
    assert stand_in.calls[0][1] == len(audio), _pin("preprocess_audio's input", where)
    assert stand_in.calls[1][1] == {"waveform": "prepared", "sample_rate": SR}, _pin("the VAD call's input", where)
    segments, chunk_size, kwargs = stand_in.calls[2][1]
    assert segments == ["raw"] and chunk_size == 30, _pin("merge_chunks' arguments", where)
    assert kwargs == {"onset": asr._vad_params["vad_onset"], "offset": asr._vad_params["vad_offset"]}, _pin(
        "merge_chunks' onset/offset keywords", where
    )
    assert [(s["start"], s["end"]) for s in out["segments"]] == [(0.312, 9.87), (12.0, 20.5)], _pin(
        "segment times = the windows' (rounded to 3 decimals)", where
    )
    assert sliced == [int(w["end"] * SR) - int(w["start"] * SR) for w in windows], _pin(
        "the samples each window decodes (audio[int(start * 16000):int(end * 16000)])",
        "pipeline/audio/windows.chunk_windows",
    )
    assert all(s["text"].strip() for s in out["segments"]), "real speech in both windows"


def test_transcribe_reads_initial_prompt_and_hotwords_from_options_at_each_call(asr: Any, audio: np.ndarray) -> None:
    """`stages/transcribe._job_asr_options` replaces `asr.options` around one job's transcription."""
    model = asr.model
    prompts: list[list[int]] = []
    get_prompt = model.get_prompt

    def record(*args: Any, **kwargs: Any) -> list[int]:
        prompt: list[int] = get_prompt(*args, **kwargs)
        prompts.append(prompt)
        return prompt

    saved_options, saved_vad = asr.options, asr.vad_model
    asr.options = dataclasses.replace(saved_options, initial_prompt="Zebra quartz.", hotwords="Xylophone")
    asr.vad_model = _FixedWindows([{"start": 0.0, "end": 10.0, "segments": [(0.0, 10.0)]}]).vad
    model.get_prompt = record
    try:
        asr.transcribe(audio, batch_size=1, language="en")
    finally:
        asr.options, asr.vad_model = saved_options, saved_vad
        del model.get_prompt
    where = "pipeline/stages/transcribe._job_asr_options"
    assert len(prompts) == 1, _pin("one prompt per batch from FasterWhisperPipeline.options", where)
    encode = asr.tokenizer.encode if asr.tokenizer is not None else None
    assert encode is not None
    tokens = prompts[0]

    def contains(part: list[int]) -> bool:
        return any(tokens[i : i + len(part)] == part for i in range(len(tokens) - len(part) + 1))

    assert contains(encode(" Zebra quartz.")), _pin("options.initial_prompt reaching the decoder's prompt", where)
    assert contains(encode(" Xylophone")), _pin("options.hotwords reaching the decoder's prompt", where)


def test_vad_batch_size_is_the_one_pyannote_inference_uses(asr: Any, audio: np.ndarray) -> None:
    """`loaders._set_vad_batch_size` reaches `vad_model.vad_pipeline._segmentation.batch_size`."""
    from pyannote.audio.core.inference import Inference

    where = "pipeline/models/loaders._set_vad_batch_size"
    inference = getattr(getattr(asr.vad_model, "vad_pipeline", None), "_segmentation", None)
    assert isinstance(inference, Inference), _pin("Pyannote VAD's vad_pipeline._segmentation", where)
    assert inference.batch_size == loaders.CPU_VAD_BATCH_SIZE
    batches: list[int] = []
    infer = inference.infer

    def record(chunks: Any) -> Any:
        batches.append(int(chunks.shape[0]))
        return infer(chunks)

    inference.infer = record
    try:
        asr.vad_model({"waveform": asr.vad_model.preprocess_audio(audio), "sample_rate": SR})
    finally:
        del inference.infer
    assert batches and max(batches) == loaders.CPU_VAD_BATCH_SIZE, _pin("Inference.batch_size used per batch", where)


def test_load_model_wraps_the_faster_whisper_model_it_is_given(asr: Any) -> None:
    import faster_whisper
    import whisperx
    from whisperx.asr import FasterWhisperPipeline, WhisperModel

    where = "pipeline/models/loaders.load_asr"
    assert issubclass(WhisperModel, faster_whisper.WhisperModel), _pin("whisperx.asr.WhisperModel", where)
    assert isinstance(asr, FasterWhisperPipeline) and isinstance(asr.model, WhisperModel)
    again = whisperx.load_model("tiny.en", "cpu", compute_type="int8", model=asr.model, language="en")
    assert again.model is asr.model, _pin("whisperx.load_model(model=...) using that model", where)
    assert again.model.model.is_multilingual is False, _pin("WhisperModel.model.is_multilingual", where)


def test_torchaudio_aligner_is_fetched_to_model_dir_under_its_path_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`loaders.load_aligner` checks `<cache>/<basename of bundle._path>` before loading offline."""
    import torch.hub
    import torchaudio
    import whisperx
    from whisperx.alignment import DEFAULT_ALIGN_MODELS_TORCH

    where = "pipeline/models/loaders.load_aligner"
    name = DEFAULT_ALIGN_MODELS_TORCH.get("en")
    assert name == "WAV2VEC2_ASR_BASE_960H", _pin("whisperx's default English aligner", where)
    path = getattr(getattr(torchaudio.pipelines, name), "_path", None)
    assert isinstance(path, str) and path.endswith(".pth"), _pin(f"torchaudio.pipelines.{name}._path", where)
    fetched: list[tuple[str, str]] = []

    class Fetched(Exception):
        pass

    def record(url: str, dst: str, *args: Any, **kwargs: Any) -> None:
        fetched.append((url, dst))
        raise Fetched  # the hub cannot be reached here: stop before any download

    monkeypatch.setattr(torch.hub, "download_url_to_file", record)
    with pytest.raises(Fetched):
        whisperx.load_align_model("en", "cpu", model_name=name, model_dir=str(tmp_path))
    assert [Path(dst) for _, dst in fetched] == [tmp_path / Path(path).name], _pin(
        "where load_align_model stores a torchaudio checkpoint", where
    )


def test_diarization_pipeline_returns_turns_and_centroids_with_progress(models_dir: Path, audio: np.ndarray) -> None:
    where = "pipeline/stages/diarize.diarize"
    diarizer = loaders.load_diarizer(
        Settings(asr=AsrSettings(device=Device.cpu), models=ModelsSettings(dir=models_dir))
    )
    seen: list[float] = []
    out = diarizer(audio, num_speakers=2, return_embeddings=True, progress_callback=seen.append)
    assert isinstance(out, tuple) and len(out) == 2, _pin("DiarizationPipeline(return_embeddings=True)", where)
    df, embeddings = out
    assert {"start", "end", "speaker"} <= set(df.columns), _pin("the diarization DataFrame's columns", where)
    assert set(df["speaker"]) == set(embeddings) and len(embeddings) == 2, _pin("one centroid per speaker", where)
    assert all(np.asarray(v).ndim == 1 for v in embeddings.values())
    assert seen and seen == sorted(seen) and seen[-1] == pytest.approx(100.0), _pin("progress_callback 0-100", where)


# --- pyannote.audio ---------------------------------------------------------------------------


def test_embedding_paths_are_routed_by_substrings(models_dir: Path, tmp_path: Path) -> None:
    """`loaders.ROUTING_WORDS`: a local embedding path with one of these words goes to another toolkit."""
    from pyannote.audio.pipelines.speaker_verification import (
        PretrainedSpeakerEmbedding,
        PyannoteAudioPretrainedSpeakerEmbedding,
    )

    where = "pipeline/models/loaders.load_diarizer (ROUTING_WORDS)"
    embedding = models_dir / loaders.OFFLINE_DIARIZATION_DIR / "embedding"
    plain = PretrainedSpeakerEmbedding(str(embedding))
    assert isinstance(plain, PyannoteAudioPretrainedSpeakerEmbedding)
    for word in loaders.ROUTING_WORDS:
        link = tmp_path / f"x-{word}-y"
        link.symlink_to(embedding, target_is_directory=True)
        try:
            routed: object = PretrainedSpeakerEmbedding(str(link))
        except Exception as e:  # another toolkit's loader, which is not installed or cannot read it
            routed = e
        pyannote_own = isinstance(routed, PyannoteAudioPretrainedSpeakerEmbedding)
        assert pyannote_own == (word == "pyannote"), _pin(f"routing of paths containing {word!r}", where)


def test_offline_pipeline_reads_every_parameter_prepare_writes(models_dir: Path) -> None:
    from pyannote.audio import Pipeline

    from whisperx_service.pipeline.models import prepare

    where = "pipeline/models/prepare._build_diarization (config.yaml)"
    pipeline = Pipeline.from_pretrained(models_dir / loaders.OFFLINE_DIARIZATION_DIR)
    assert type(pipeline).__name__ == "SpeakerDiarization"
    assert pipeline.segmentation_step == 0.1, _pin("SpeakerDiarization.segmentation_step", where)
    assert pipeline.embedding_exclude_overlap is True, _pin("embedding_exclude_overlap", where)
    assert pipeline.embedding_batch_size == 8 and pipeline._segmentation.batch_size == 8, _pin("batch sizes", where)
    assert pipeline.segmentation.threshold == pytest.approx(prepare.SEGMENTATION_THRESHOLD), _pin("threshold", where)
    assert pipeline.clustering.method == "centroid", _pin("clustering.method", where)
    assert pipeline.clustering.threshold == pytest.approx(prepare.CLUSTERING_THRESHOLD), _pin("clustering", where)
    assert pipeline.clustering.min_cluster_size == prepare.MIN_CLUSTER_SIZE, _pin("min_cluster_size", where)


# --- redis-py and limits ----------------------------------------------------------------------


def _client_kill(redis_url: str, client_id: int) -> None:
    with redis.Redis.from_url(redis_url) as admin:
        assert admin.client_kill_filter(_id=client_id) == 1


def test_gateway_client_survives_a_connection_the_server_closed(settings: Settings, redis_client: redis.Redis) -> None:
    """api/app.REDIS_RETRIES: a pooled connection the server closed fails its next command once; one retry
    reconnects. Without the retry that command fails, which is why the gateway's clients have one."""
    from whisperx_service.api.app import _redis_client

    async def run() -> tuple[bool, bool]:
        plain = aioredis.Redis.from_pool(
            aioredis.BlockingConnectionPool.from_url(settings.redis.url, retry=Retry(NoBackoff(), 0))
        )
        gateway = _redis_client(settings, socket_timeout_s=5, max_connections=4)
        results = []
        for client in (plain, gateway):
            await client.ping()
            _client_kill(settings.redis.url, int(await client.client_id()))
            try:
                results.append(bool(await client.ping()))
            except redis.ConnectionError:
                results.append(False)
            await client.aclose()
        return results[0], results[1]

    plain_ok, gateway_ok = asyncio.run(run())
    where = "api/app._redis_client (REDIS_RETRIES)"
    assert not plain_ok, _pin("a closed pooled connection failing its next command", where)
    assert gateway_ok, _pin("Retry reconnecting after the server closed the connection", where)


def test_exhausted_blocking_pool_raises_connection_error(settings: Settings, redis_client: redis.Redis) -> None:
    """api/errors answers `redis.ConnectionError` with 503: a full pool must raise that, after its timeout."""

    async def run() -> BaseException | None:
        pool = aioredis.BlockingConnectionPool.from_url(settings.redis.url, max_connections=1, timeout=0.2)
        client = aioredis.Redis.from_pool(pool)
        held = await pool.get_connection()
        try:
            await client.ping()
        except BaseException as e:
            return e
        finally:
            await pool.release(held)
            await client.aclose()
        return None

    error = asyncio.run(run())
    assert isinstance(error, redis.ConnectionError), _pin(
        "BlockingConnectionPool raising ConnectionError when no connection frees", "api/app._redis_client (503)"
    )


def test_rate_limits_run_on_the_gateway_pool(settings: Settings, redis_client: redis.Redis) -> None:
    """access/limits passes the gateway's pool to `limits`' RedisStorage (`connection_pool=`), so its Lua
    scripts run on the gateway's connections (named here, to find them in CLIENT LIST)."""
    from whisperx_service.access.limits import RequestLimiter

    name = f"wxs-pin-{uuid.uuid4().hex[:8]}"

    async def run() -> list[str]:
        pool = aioredis.BlockingConnectionPool.from_url(settings.redis.url, max_connections=2, client_name=name)
        client = aioredis.Redis.from_pool(pool)
        try:
            assert await RequestLimiter(settings, client).request("key", "127.0.0.1") is None
            return [str(c["cmd"]) for c in redis_client.client_list() if c.get("name") == name]
        finally:
            await client.aclose()

    commands = asyncio.run(run())
    assert any(cmd.startswith(("evalsha", "eval", "fcall")) for cmd in commands), _pin(
        f"limits' RedisStorage(connection_pool=...) using that pool (commands on it: {commands})",
        "access/limits.RequestLimiter",
    )
