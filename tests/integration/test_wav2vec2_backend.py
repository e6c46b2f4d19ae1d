"""The wav2vec2 alignment path (WhisperX's own CTC aligner) with the tiny random model.

The model's weights are random, so its times mean nothing: the test asserts structure only:
the pipeline completes and keeps every transcribed word, with valid, ordered times.
"""

from __future__ import annotations

from pathlib import Path

from tests.speech import SAMPLE_WAV
from whisperx_service.config import AlignBackend, AlignSettings, AsrSettings, Device, ModelsSettings, Settings
from whisperx_service.domain.jobs import JobOptions, Stage
from whisperx_service.pipeline.plan import JobPaths
from whisperx_service.pipeline.runner import run_pipeline
from whisperx_service.worker.models import ModelCache


def test_wav2vec2_backend_keeps_every_word(models_dir: Path, tmp_path: Path) -> None:
    settings = Settings(
        asr=AsrSettings(device=Device.cpu, threads=2),
        align=AlignSettings(backend=AlignBackend.wav2vec2, model=str(models_dir / "w2v2-tiny-random-en")),
        models=ModelsSettings(dir=models_dir),
    )
    cache = ModelCache(settings)
    seen: list[tuple[Stage, float]] = []
    paths = JobPaths(work=tmp_path / "work", chunks=tmp_path / "chunks")
    t = run_pipeline(
        SAMPLE_WAV, paths, JobOptions(diarize=False), cache, settings, lambda s, p, i, n: seen.append((s, p))
    )
    assert {s for s, _ in seen} >= {Stage.decode, Stage.transcribe, Stage.align, Stage.merge}
    # What the ASR says on its own (the model is cached: no reload), to compare word by word.
    from whisperx_service.pipeline.audio.pcm import decode_to_pcm, open_pcm, read_window
    from whisperx_service.pipeline.stages.transcribe import transcribe

    pcm = decode_to_pcm(SAMPLE_WAV, tmp_path / "check.pcm", max_duration_s=60)
    segs = transcribe(cache.asr(), read_window(open_pcm(pcm.path)), "en", JobOptions(), settings, lambda p: None)
    transcribed = " ".join(s["text"] for s in segs).split()
    words = t.words()
    assert len(words) == len(transcribed) > 20, "no word dropped"
    assert [w.word for w in words] == transcribed
    # Segment text is WhisperX's own text (cut into sentences by its aligner), not a re-join.
    assert " ".join(s.text for s in t.segments) == " ".join(s["text"].strip() for s in segs)
    assert all(0 <= w.start <= w.end <= t.duration for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert t.models["align"].startswith("wav2vec2:")
    assert (tmp_path / "chunks" / "0.json").exists(), "the chunk is checkpointed"
