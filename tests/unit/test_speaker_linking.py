"""Linking speakers across chunks by their embeddings (`whisperx_service.pipeline.post.linking`)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from whisperx_service.pipeline.post.linking import LINK_THRESHOLD, link_speakers

DIM = 256

Chunks = list[dict[str, np.ndarray | None]]
Truth = list[dict[str, int]]


def unit(v: np.ndarray) -> np.ndarray:
    out: np.ndarray = v / np.linalg.norm(v)
    return out


def random_voices(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """`n` unrelated speakers: random unit vectors (cosine distance about 1 between them)."""
    return [unit(rng.standard_normal(DIM)) for _ in range(n)]


def ge2e_like_voices(rng: np.random.Generator, n: int, spread: float = 0.45) -> list[np.ndarray]:
    """`n` speakers sharing a common direction, as Resemblyzer's ReLU'd, positive embeddings do:
    different speakers end up only about 0.15-0.2 apart in cosine distance."""
    base = unit(np.abs(rng.standard_normal(DIM)))
    return [unit(base + spread * unit(rng.standard_normal(DIM))) for _ in range(n)]


def centroid(voice: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    """A chunk's centroid of `voice`: the voice plus noise of norm about `noise`."""
    return unit(voice + noise * rng.standard_normal(DIM) / np.sqrt(DIM))


def make_chunks(voices: list[np.ndarray], presence: list[list[int]], seed: int, noise: float) -> tuple[Chunks, Truth]:
    """Per chunk, local labels (shuffled against the true identity) -> centroid; and label -> true id."""
    rng = np.random.default_rng(seed)
    shuffle = random.Random(seed)
    chunks: Chunks = []
    truth: Truth = []
    for who in presence:
        labels = [f"SPEAKER_{i:02d}" for i in range(len(who))]
        shuffle.shuffle(labels)
        chunks.append({label: centroid(voices[v], rng, noise) for label, v in zip(labels, who, strict=True)})
        truth.append(dict(zip(labels, who, strict=True)))
    return chunks, truth


def assert_recovers(mapping: list[dict[str, str]], truth: Truth) -> None:
    """Same true speaker <-> same global label, everywhere."""
    label_of: dict[int, set[str]] = {}
    for m, t in zip(mapping, truth, strict=True):
        assert m.keys() == t.keys()
        for local, true_id in t.items():
            label_of.setdefault(true_id, set()).add(m[local])
    assert all(len(labels) == 1 for labels in label_of.values()), label_of
    assert len({next(iter(labels)) for labels in label_of.values()}) == len(label_of)


def global_labels(mapping: list[dict[str, str]]) -> set[str]:
    return {g for m in mapping for g in m.values()}


def assert_cannot_link(mapping: list[dict[str, str]]) -> None:
    for m in mapping:
        assert len(set(m.values())) == len(m)  # two speakers of one chunk never share a global label


PRESENCE_3 = [[0, 1], [1, 2], [0], [0, 1, 2], [2], [1, 0]]  # 6 chunks, 1-3 of 3 speakers each


def test_recovers_three_random_speakers_across_six_chunks() -> None:
    for seed in range(20):
        voices = random_voices(np.random.default_rng(seed), 3)
        chunks, truth = make_chunks(voices, PRESENCE_3, seed, noise=0.3)
        mapping = link_speakers(chunks)
        assert_recovers(mapping, truth)
        assert global_labels(mapping) == {"SPEAKER_00", "SPEAKER_01", "SPEAKER_02"}
        assert_cannot_link(mapping)
        assert link_speakers(chunks, num_speakers=3) == mapping


def test_recovers_close_voices_with_the_default_threshold() -> None:
    # Distances like those measured on real speech with the offline GE2E pipeline (see the module
    # docstring): same speaker about 0.02-0.08 apart, different speakers about 0.15-0.2.
    rng = np.random.default_rng(11)
    presence = [[0, 1], [2, 3], [1, 3], [0], [0, 2, 3], [1, 2], [3, 0], [1]]
    for seed in range(20):
        voices = ge2e_like_voices(rng, 4)
        chunks, truth = make_chunks(voices, presence, seed, noise=0.2)
        flat = [(truth[c][label], v) for c, ch in enumerate(chunks) for label, v in ch.items() if v is not None]
        same = [1 - a @ b for (i, a), (j, b) in itertools.combinations(flat, 2) if i == j]
        diff = [1 - a @ b for (i, a), (j, b) in itertools.combinations(flat, 2) if i != j]
        assert max(same) < LINK_THRESHOLD < min(diff) < 0.25
        assert_recovers(link_speakers(chunks), truth)


def test_speakers_of_one_chunk_never_merge() -> None:
    voice = random_voices(np.random.default_rng(0), 1)[0]
    # The diarizer split one voice in two in chunk 0 (identical embeddings): still two speakers.
    chunks: Chunks = [{"SPEAKER_00": voice, "SPEAKER_01": voice}, {"SPEAKER_00": voice}]
    mapping = link_speakers(chunks)
    assert_cannot_link(mapping)
    assert mapping == [{"SPEAKER_00": "SPEAKER_00", "SPEAKER_01": "SPEAKER_01"}, {"SPEAKER_00": "SPEAKER_00"}]
    # Even when forced to one speaker: the constraint wins over num_speakers.
    assert link_speakers(chunks, num_speakers=1) == mapping


def test_num_speakers_gives_exactly_that_many() -> None:
    rng = np.random.default_rng(3)
    voices = random_voices(rng, 4)
    # Voices 2 and 3 never share a chunk; every other pair does.
    presence = [[0, 1], [2, 1], [1, 3], [0], [0, 2], [1, 2], [3, 0], [1]]
    chunks, truth = make_chunks(voices, presence, 3, noise=0.3)
    assert_recovers(link_speakers(chunks), truth)
    for n in (3, 4, 5, 6):
        mapping = link_speakers(chunks, num_speakers=n)
        assert len(global_labels(mapping)) == n
        assert_cannot_link(mapping)
    assert_recovers(link_speakers(chunks, num_speakers=4), truth)
    three = link_speakers(chunks, num_speakers=3)  # the only allowed merge: voices 2 and 3
    labels_of = {
        v: {three[c][label] for c, t in enumerate(truth) for label, x in t.items() if x == v} for v in range(4)
    }
    assert labels_of[2] == labels_of[3] and len(labels_of[2]) == 1
    assert len(set.union(labels_of[0], labels_of[1], labels_of[2])) == 3
    # min/max bound the count; num_speakers overrides them.
    assert len(global_labels(link_speakers(chunks, max_speakers=3))) == 3
    assert len(global_labels(link_speakers(chunks, min_speakers=5))) == 5
    assert len(global_labels(link_speakers(chunks, min_speakers=2, max_speakers=6))) == 4
    assert len(global_labels(link_speakers(chunks, num_speakers=3, min_speakers=5))) == 3
    # Voices 0, 1 and 2 meet pairwise in some chunk: fewer than 3 would break the constraint.
    assert len(global_labels(link_speakers(chunks, num_speakers=1))) == 3
    assert len(global_labels(link_speakers(chunks, num_speakers=40))) == sum(map(len, presence))


def test_speaker_without_embedding_gets_its_own_label_unless_a_count_forces_a_merge() -> None:
    voices = random_voices(np.random.default_rng(5), 3)
    presence = [[0, 1], [0, 2], [0], [1, 2]]
    chunks, truth = make_chunks(voices, presence, 5, noise=0.3)
    chunks[3]["SPEAKER_09"] = np.full(DIM, np.nan)  # too little speech: pyannote gives NaN
    chunks[2]["SPEAKER_08"] = None
    chunks[1]["SPEAKER_07"] = np.zeros(DIM)
    free = link_speakers(chunks)
    assert_cannot_link(free)
    assert len(global_labels(free)) == 3 + 3
    strip = [{k: v for k, v in m.items() if k < "SPEAKER_07"} for m in free]
    assert_recovers(strip, truth)

    forced = link_speakers(chunks, num_speakers=3)
    assert_cannot_link(forced)
    assert len(global_labels(forced)) == 3
    assert_recovers([{k: v for k, v in m.items() if k < "SPEAKER_07"} for m in forced], truth)
    glob = {true_id: forced[c][label] for c, t in enumerate(truth) for label, true_id in t.items()}
    # Chunk 3 holds voices 1 and 2: the NaN speaker joins voice 0, the only cluster absent there.
    assert forced[3]["SPEAKER_09"] == glob[0]
    # Chunk 2 holds voice 0; voices 1 and 2 have 2 chunks each: the tie goes to the one seen first.
    assert forced[2]["SPEAKER_08"] in (glob[1], glob[2])
    # Chunk 1 holds voices 0 and 2: voice 1 is the only host.
    assert forced[1]["SPEAKER_07"] == glob[1]


def test_labels_follow_first_appearance() -> None:
    voices = random_voices(np.random.default_rng(8), 3)
    chunks: Chunks = [{"SPEAKER_00": voices[2], "SPEAKER_01": voices[0]}, {"SPEAKER_00": voices[1]}]
    # Without times: by chunk, then local label.
    assert link_speakers(chunks) == [
        {"SPEAKER_00": "SPEAKER_00", "SPEAKER_01": "SPEAKER_01"},
        {"SPEAKER_00": "SPEAKER_02"},
    ]
    # With first start times: voice 0 (local SPEAKER_01 of chunk 0) talks first.
    first_seen = [{"SPEAKER_00": 7.5, "SPEAKER_01": 0.4}, {"SPEAKER_00": 300.0}]
    assert link_speakers(chunks, first_seen=first_seen) == [
        {"SPEAKER_00": "SPEAKER_01", "SPEAKER_01": "SPEAKER_00"},
        {"SPEAKER_00": "SPEAKER_02"},
    ]


def test_deterministic_whatever_the_dict_order() -> None:
    voices = random_voices(np.random.default_rng(9), 3)
    chunks, _ = make_chunks(voices, PRESENCE_3, 9, noise=0.3)
    once = link_speakers(chunks, num_speakers=2)
    reordered: Chunks = [dict(reversed(list(c.items()))) for c in chunks]
    as_lists = [{k: None if v is None else v.tolist() for k, v in c.items()} for c in chunks]
    assert link_speakers(chunks, num_speakers=2) == once
    assert link_speakers(reordered, num_speakers=2) == once
    assert link_speakers(as_lists, num_speakers=2) == once


def test_empty_inputs() -> None:
    assert link_speakers([]) == []
    assert link_speakers([{}, {}]) == [{}, {}]
    assert link_speakers([{"A": [1.0, 0.0]}]) == [{"A": "SPEAKER_00"}]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_speakers": 0},
        {"min_speakers": 0},
        {"max_speakers": 0},
        {"min_speakers": 3, "max_speakers": 2},
        {"threshold": -0.1},
        {"threshold": float("nan")},
        {"first_seen": []},
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        link_speakers([{"A": [1.0, 0.0]}], **kwargs)  # type: ignore[arg-type]


def test_embeddings_of_different_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="dimensions"):
        link_speakers([{"A": [1.0, 0.0]}, {"A": [1.0, 0.0, 0.0]}])
