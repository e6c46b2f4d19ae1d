"""Link the speakers of separately diarized chunks into global speakers (docs/ARCHITECTURE.md).

Each chunk's diarization names its speakers locally (`SPEAKER_00` of chunk 3 need not be
`SPEAKER_00` of chunk 4). Its pipeline also returns one centroid embedding per local speaker
(pyannote's `return_embeddings=True`). `link_speakers` clusters those centroids so that one person
gets one global label across the whole recording.

Method: agglomerative hierarchical clustering with average linkage (UPGMA) on the cosine distance
`1 - u.v` of the L2-normalised centroids: the same family of method as pyannote.audio's own
`AgglomerativeClustering` of its embeddings (`pyannote.audio.pipelines.clustering`; our offline
pipeline runs it with centroid linkage). Average linkage is used here because it works on cosine
distances directly (centroid linkage needs Euclidean ones) and never produces inversions.
Distances between merged clusters follow the Lance-Williams update for average linkage. On top
comes a *cannot-link* constraint: two speakers of the same chunk never end in one cluster,
because the diarizer already decided they are different people. Agglomerative clustering with
must-link / cannot-link constraints is standard (Davidson & Ravi, "Agglomerative hierarchical
clustering with constraints: theoretical and empirical results", PKDD 2005); with cannot-link
between speakers of one chunk it stays simple, since a merge only unions two sets of chunks.
Finding the *fewest* clusters that respect cannot-link constraints is graph colouring (NP-hard,
as that paper notes), so the greedy merge may stop above a requested count in rare layouts.

Threshold (`LINK_THRESHOLD`): the offline diarization pipeline (models/offline-diarization/
config.yaml) clusters Resemblyzer GE2E embeddings with pyannote's centroid linkage and threshold
0.5. Centroid linkage works on unit vectors with the *Euclidean* metric, and for unit vectors
`|u - v|^2 = 2 (1 - cos)`, so that 0.5 is a cosine distance of 0.5^2 / 2 = 0.125: two speakers
inside a chunk stay apart when their centroids are farther than that. Linking across chunks uses
the same bar. Diarizing parts of the test audio with that pipeline
(`return_embeddings=True`): pyannote's real two-speaker sample call cut in two halves gives
same-speaker centroid distances 0.066 and 0.080 and different-speaker distances 0.155-0.203; the
espeak-ng conversation of tests/speech.py in three parts gives 0.030-0.052 (same voice) and
0.32-0.42 (different voices). GE2E embeddings pass through a ReLU before normalisation, so all
cosine similarities are positive and different people often sit only 0.15-0.3 apart: a threshold
much above 0.125 would merge real speakers. When the speaker count is known, pass it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from whisperx_service.pipeline.post.speakers import speaker_label

#: Cosine distance above which two clusters are not merged (unless a speaker count forces it);
#: see the module docstring for why 0.125 suits Resemblyzer GE2E centroids.
LINK_THRESHOLD = 0.125

Embedding = Sequence[float] | np.ndarray | None


@dataclass
class _Cluster:
    """Members `(chunk, local label)`; `chunks` is the set of their chunk indices."""

    members: list[tuple[int, str]]
    chunks: set[int] = field(default_factory=set)


def _unit(vec: Embedding, dim: int | None) -> np.ndarray | None:
    """`vec` as a float64 unit vector, or None when it is missing, not finite or zero."""
    if vec is None:
        return None
    v = np.asarray(vec, dtype=np.float64).reshape(-1)
    if dim is not None and v.shape[0] != dim:
        raise ValueError(f"embeddings must all have {dim} dimensions, got one with {v.shape[0]}")
    norm = float(np.linalg.norm(v)) if v.size else 0.0
    if not (np.all(np.isfinite(v)) and norm > 0 and math.isfinite(norm)):
        return None
    result: np.ndarray = v / norm
    return result


def _bounds(num_speakers: int | None, min_speakers: int | None, max_speakers: int | None) -> tuple[int, float]:
    """(lower, upper) bounds on the number of clusters; validates the arguments."""
    for name, value in (("num_speakers", num_speakers), ("min_speakers", min_speakers), ("max_speakers", max_speakers)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if num_speakers is not None:
        return num_speakers, float(num_speakers)
    lower = min_speakers or 1
    upper = math.inf if max_speakers is None else float(max_speakers)
    if lower > upper:
        raise ValueError(f"min_speakers ({min_speakers}) is greater than max_speakers ({max_speakers})")
    return lower, upper


def link_speakers(
    chunk_embeddings: Sequence[Mapping[str, Embedding]],
    *,
    num_speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    threshold: float = LINK_THRESHOLD,
    first_seen: Sequence[Mapping[str, float]] | None = None,
) -> list[dict[str, str]]:
    """Map each chunk's local speaker labels to global labels `SPEAKER_00, SPEAKER_01, ...`.

    Clustering (see the module docstring for the method and its sources): every local speaker
    with a usable embedding starts as its own cluster; the closest pair of clusters that share no
    chunk (cannot-link) is merged, repeatedly, by average cosine distance. Merging stops when

    * no allowed pair is left (the constraint decides: there can never be fewer clusters than
      the largest number of speakers in one chunk), or
    * the count has reached the lower bound (`num_speakers`, else `min_speakers`, else 1:
      never merge below it), or
    * the closest allowed pair is farther apart than `threshold` and the count is within the
      upper bound (`num_speakers`, else `max_speakers`); above the bound merging goes on
      regardless of distance.

    `num_speakers` (which overrides min/max, as in pyannote) thus gives exactly that many
    clusters whenever the cannot-link constraint and the number of speakers allow it: never fewer
    than the most speakers in one chunk, and not fewer than the greedy merge order can reach when
    speakers meet pairwise across chunks (three voices that each share some chunk with each other
    stay three).

    Speakers without a usable embedding (None, NaN/inf, all zeros: a speaker with too little
    speech for the embedding model) cannot be placed by similarity. Each gets a global label of
    its own, unless that would exceed the upper bound: then it is attached to the cluster with
    the most members that has no speaker in its chunk (of equals, the one whose first member comes
    first in (chunk, label) order); it keeps a label of its own when every cluster is present in
    its chunk. They are handled in (chunk, label) order, after the embedded speakers are clustered.

    Global labels are numbered by first appearance: by the earliest `first_seen` time of a
    cluster's members when given (a member missing from `first_seen`, or with a non-finite time,
    counts as never seen), then
    by the earliest (chunk index, local label). The result is deterministic: ties between equal
    distances go to the pair that comes first in (chunk, label) order.

    Args:
        chunk_embeddings: per chunk, local label -> centroid embedding (any length, the same for
            all; a list or array), or None.
        num_speakers: exact number of global speakers, when known.
        min_speakers: fewest global speakers (ignored with `num_speakers`).
        max_speakers: most global speakers (ignored with `num_speakers`).
        threshold: cosine distance (0-2) above which clusters stay apart.
        first_seen: optional, per chunk, local label -> first start time (seconds from the audio's
            start) of that speaker, to number global labels in time order.

    Returns:
        Per chunk (same order and length as `chunk_embeddings`), local label -> global label.

    Raises:
        ValueError: a speaker bound below 1, `min_speakers > max_speakers`, a non-finite or
            negative threshold, `first_seen` of another length, or embeddings of different sizes.
    """
    lower, upper = _bounds(num_speakers, min_speakers, max_speakers)
    if not (math.isfinite(threshold) and threshold >= 0):
        raise ValueError(f"threshold must be a finite cosine distance >= 0, got {threshold}")
    if first_seen is not None and len(first_seen) != len(chunk_embeddings):
        raise ValueError(f"first_seen has {len(first_seen)} chunks, chunk_embeddings {len(chunk_embeddings)}")

    # Nodes in (chunk, label) order; that order breaks every tie.
    dim: int | None = None
    nodes: list[tuple[int, str]] = []
    vectors: list[np.ndarray] = []
    unplaced: list[tuple[int, str]] = []
    for c, speakers in enumerate(chunk_embeddings):
        for label in sorted(speakers):
            vec = speakers[label]
            if vec is not None and dim is None:
                dim = int(np.asarray(vec).size)
            unit = _unit(vec, dim)
            if unit is None:
                unplaced.append((c, label))
            else:
                nodes.append((c, label))
                vectors.append(unit)

    clusters = _cluster(nodes, vectors, lower, upper, threshold)
    for c, label in unplaced:
        hosts = [k for k in clusters if c not in k.chunks]
        if len(clusters) + 1 > upper and hosts:
            host = min(hosts, key=lambda k: (-len(k.members), min(k.members)))
            host.members.append((c, label))
            host.chunks.add(c)
        else:
            clusters.append(_Cluster([(c, label)], {c}))

    def order(k: _Cluster) -> tuple[float, tuple[int, str]]:
        times = [first_seen[c].get(label, math.inf) for c, label in k.members] if first_seen else []
        return (min((t for t in times if math.isfinite(t)), default=math.inf), min(k.members))

    mapping: list[dict[str, str]] = [{} for _ in chunk_embeddings]
    for g, k in enumerate(sorted(clusters, key=order)):
        for c, label in k.members:
            mapping[c][label] = speaker_label(g)
    return mapping


def _cluster(
    nodes: list[tuple[int, str]], vectors: list[np.ndarray], lower: int, upper: float, threshold: float
) -> list[_Cluster]:
    """Average-linkage agglomerative clustering of unit `vectors` with cannot-link within a chunk.

    Returns the clusters in the order of their first node. O(n^3) for n nodes with numpy doing the
    inner O(n^2) search: a 10-hour file has a few hundred local speakers at most.
    """
    n = len(nodes)
    clusters = [_Cluster([node], {node[0]}) for node in nodes]
    if n < 2:
        return clusters
    v = np.stack(vectors)
    dist = np.clip(1.0 - v @ v.T, 0.0, 2.0)
    chunk_of = np.array([c for c, _ in nodes])
    conflict = chunk_of[:, None] == chunk_of[None, :]  # True: the pair shares a chunk (cannot-link)
    active = np.ones(n, dtype=bool)
    sizes = np.ones(n)
    upper_tri = np.triu(np.ones((n, n), dtype=bool), k=1)
    count = n
    while count > lower:
        allowed = upper_tri & ~conflict & active[:, None] & active[None, :]
        if not allowed.any():
            break
        masked = np.where(allowed, dist, np.inf)
        flat = int(np.argmin(masked))  # first minimum in row-major order: smallest (i, j) of equals
        i, j = divmod(flat, n)
        if masked[i, j] > threshold and count <= upper:
            break
        # Lance-Williams update for average linkage (UPGMA): size-weighted mean of the distances.
        merged = (sizes[i] * dist[i] + sizes[j] * dist[j]) / (sizes[i] + sizes[j])
        dist[i, :] = merged
        dist[:, i] = merged
        conflict[i, :] |= conflict[j, :]
        conflict[:, i] |= conflict[:, j]
        sizes[i] += sizes[j]
        active[j] = False
        clusters[i].members.extend(clusters[j].members)
        clusters[i].chunks |= clusters[j].chunks
        count -= 1
    return [clusters[k] for k in range(n) if active[k]]
