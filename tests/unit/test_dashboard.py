"""docker/grafana-dashboard.json queries only metrics (and labels) the service exports.

The exported names come from the real collectors: the gateway's `GatewayCollector` and the
worker's `WorkerMetrics` (on a registry of their own), with every labelled metric given a child,
so each sample name and its label names are known.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from whisperx_service.api.metrics import GatewayCollector, Snapshot
from whisperx_service.worker.metrics import WorkerMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docker" / "grafana-dashboard.json"
#: Labels Prometheus adds to every scraped series, and a histogram bucket's bound.
SCRAPE_LABELS = {"instance", "job", "le"}
#: PromQL words that look like names but are functions, aggregations or keywords.
PROMQL_WORDS = {"sum", "max", "min", "avg", "rate", "histogram_quantile", "by", "without", "increase", "count"}


def _exprs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "expr" and isinstance(value, str):
                yield value
            else:
                yield from _exprs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _exprs(item)


def _exported() -> dict[str, set[str]]:
    """Sample name -> its label names, from everything the gateway and a worker export."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(Snapshot(), sse_clients=0, sse_readers=0))
    worker = WorkerMetrics(registry)
    worker.stage_seconds.labels(stage="decode").observe(1.0)
    worker.jobs_ended.labels(status="failed", code="audio_decode_failed").inc()
    worker.rtf.observe(0.5)
    worker.audio_seconds.inc(10)
    worker.model_load_seconds.labels(kind="asr").observe(2.0)
    worker.jobs_running.set(1)
    for gauge in (worker.gpu_allocated, worker.gpu_reserved, worker.gpu_peak):
        gauge.labels(device="cuda:0").set(1)
    out: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


def test_the_dashboard_has_queries() -> None:
    exprs = list(_exprs(json.loads(DASHBOARD.read_text(encoding="utf-8"))))
    assert len(exprs) >= 10


def test_every_queried_metric_and_label_is_exported() -> None:
    exported = _exported()
    assert "wxs_stage_duration_seconds_bucket" in exported and "wxs_queue_depth" in exported
    missing, bad_labels = [], []
    for expr in _exprs(json.loads(DASHBOARD.read_text(encoding="utf-8"))):
        names = {n for n in re.findall(r"\b(wxs_[a-z0-9_]+)\b", expr)}
        assert names, f"no wxs_ metric in {expr!r}"
        missing += [f"{n} (in {expr})" for n in sorted(names) if n not in exported]
        labels = set(SCRAPE_LABELS).union(*(exported.get(n, set()) for n in names))
        grouped = {w.strip() for g in re.findall(r"\bby \(([^)]*)\)", expr) for w in g.split(",") if w.strip()}
        matched = set(re.findall(r"[{,]\s*([a-z_]+)\s*=~?", expr))
        bad_labels += [f"{label} (in {expr})" for label in sorted(grouped | matched) if label not in labels]
        words = set(re.findall(r"\b([a-z_]+)\s*\(", expr)) - PROMQL_WORDS
        assert not words, f"unexpected PromQL function {words} in {expr!r}"
    assert missing == []
    assert bad_labels == []
