"""Reading windows of the decoded PCM: exact samples, and no resident memory left behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from whisperx_service.config import SAMPLE_RATE
from whisperx_service.pipeline.audio.pcm import INT16_SCALE, open_pcm, read_window


def _rss_file_mib() -> float:
    """This process's resident file-backed memory (MiB), from /proc/self/status."""
    return int(Path("/proc/self/status").read_text().split("RssFile:")[1].split()[0]) / 1024


def _pcm(tmp_path: Path, seconds: int) -> tuple[Path, np.ndarray]:
    samples = np.random.default_rng(3).integers(-20_000, 20_000, seconds * SAMPLE_RATE, dtype=np.int16)
    path = tmp_path / "audio.pcm"
    samples.tofile(path)
    return path, samples


def test_window_is_the_exact_samples_scaled(tmp_path: Path) -> None:
    path, samples = _pcm(tmp_path, 5)
    pcm = open_pcm(path)
    got = read_window(pcm, 1.25, 3.5)
    assert got.dtype == np.float32 and got.shape == (int(2.25 * SAMPLE_RATE),)
    np.testing.assert_array_equal(got, samples[20_000:56_000].astype(np.float32) / INT16_SCALE)
    assert len(read_window(pcm, 4.0)) == SAMPLE_RATE  # to the end
    assert len(read_window(pcm, -1.0, 0.5)) == SAMPLE_RATE // 2  # clamped at 0


def test_reading_the_whole_file_window_by_window_keeps_no_pages_resident(tmp_path: Path) -> None:
    path, samples = _pcm(tmp_path, 600)  # 19 MB on disk
    pcm = open_pcm(path)
    before = _rss_file_mib()
    total = 0.0
    for k in range(0, 600, 20):
        total += float(read_window(pcm, k, k + 20).sum())
    assert abs(total - float(samples.sum()) / INT16_SCALE) < 1e-3 * len(samples)
    grown = _rss_file_mib() - before
    # Without releasing, every page read stays mapped: ~18 MiB here, 1.1 GB for a 10-hour job.
    assert grown < 2.0, f"{grown:.1f} MiB of the mapped file stayed resident"
    raw = float(np.asarray(pcm[:], dtype=np.float32).sum())  # a plain slice, for comparison
    assert raw != 0.0 and _rss_file_mib() - before > 15.0
