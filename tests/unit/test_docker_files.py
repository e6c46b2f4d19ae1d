"""Static checks of docker-compose.gpu.yml (+ docker-compose.cpu.yml), the two Dockerfiles and .dockerignore.

These read the files (the compose files with PyYAML, the Dockerfiles as instructions: continuations
joined, comments dropped), in seconds; `make test-docker` builds and runs the images for real.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.gpu.yml"
COMPOSE_CPU = REPO / "docker-compose.cpu.yml"
INSTRUCTIONS = {
    "FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "USER", "WORKDIR", "HEALTHCHECK", "CMD",
    "ENTRYPOINT", "EXPOSE", "LABEL", "VOLUME", "STOPSIGNAL", "SHELL",
}  # fmt: skip


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comment lines dropped, backslash continuations joined."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        op, _, args = buf.partition(" ")
        out.append((op.upper(), args.strip()))
        buf = ""
    assert not buf, f"{path.name}: dangling line continuation"
    return out


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svc = compose["services"]
    assert {"redis", "api", "worker"} <= set(svc)
    return svc  # type: ignore[no-any-return]


def _dockerfile_of(service: dict[str, Any]) -> Path | None:
    build = service.get("build")
    if build is None:
        return None
    path = REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
    assert path.is_file(), path
    return path


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> named volume (short syntax `name:/path[:mode]`)."""
    out = {}
    for v in service.get("volumes", []):
        name, target = v.split(":")[:2]
        out[target] = name
    return out


def _as_words(cmd: str | list[str]) -> list[str]:
    return cmd.split() if isinstance(cmd, str) else [str(x) for x in cmd]


def _exec_json(args: str) -> list[str]:
    """An exec-form argument list (`["a", "b"]`) must be valid JSON."""
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(x, str) for x in value)
    return value


# --------------------------------------------------------------------------- Dockerfiles


@pytest.mark.parametrize("name", ["api.Dockerfile", "worker.Dockerfile"])
def test_dockerfiles_are_well_formed(name: str) -> None:
    instrs = dockerfile(REPO / "docker" / name)
    assert instrs[0][0] in {"FROM", "ARG"}
    assert all(op in INSTRUCTIONS for op, _ in instrs), [op for op, _ in instrs if op not in INSTRUCTIONS]
    for op, args in instrs:
        if op in {"CMD", "ENTRYPOINT"} and args.startswith("["):
            _exec_json(args)
        if op == "HEALTHCHECK" and "CMD [" in args:
            _exec_json(args[args.index("CMD [") + 4 :])
    # Runs as a non-root user, and that user is the last USER.
    users = [args for op, args in instrs if op == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert [op for op, _ in instrs].count("HEALTHCHECK") == 1


@pytest.mark.parametrize("name", ["api.Dockerfile", "worker.Dockerfile"])
def test_copied_sources_exist_and_are_not_dockerignored(name: str) -> None:
    ignore = [
        p.strip().lstrip("/")
        for p in (REPO / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    for op, args in dockerfile(REPO / "docker" / name):
        if op != "COPY" or "--from=" in args:
            continue
        *sources, _dest = [a for a in args.split() if not a.startswith("--")]
        for src in sources:
            assert (REPO / src).exists(), src
            assert not any(fnmatch.fnmatch(src, pat) for pat in ignore if not pat.startswith("!")), src


def test_api_image_is_slim_and_never_installs_the_ml_stack() -> None:
    instrs = dockerfile(REPO / "docker" / "api.Dockerfile")
    text = "\n".join(f"{op} {args}" for op, args in instrs)
    assert not re.search(r"torch|cuda|\[worker\]|--extra[ =]worker|resemblyzer", text, re.IGNORECASE)
    assert not re.search(r"whisperx(?![_-]service)", text), "the gateway image installs whisperx"
    assert "uv sync --locked" in text and "libmagic1" in text and "ffmpeg" in text
    # Settings decide the address: the command names no host or port.
    assert _exec_json(next(args for op, args in instrs if op == "CMD")) == ["whisperx-service", "api"]
    assert _exec_json(next(args for op, args in instrs if op == "HEALTHCHECK").split("CMD", 1)[1].strip()) == [
        "whisperx-service",
        "healthcheck",
    ]


def test_worker_image_installs_the_locked_worker_extra_on_the_same_base() -> None:
    instrs = dockerfile(REPO / "docker" / "worker.Dockerfile")
    text = "\n".join(f"{op} {args}" for op, args in instrs)
    assert not re.search(r"nvidia/cuda|--no-deps", text), "no CUDA base image; nothing installed outside uv.lock"
    assert re.search(r"uv sync --locked --extra worker", text)
    assert "ffmpeg" in text and "libmagic1" in text
    cmd = " ".join(_exec_json(next(args for op, args in instrs if op == "CMD")))
    assert "whisperx-service models prepare --no-test-models" in cmd
    assert cmd.rstrip().endswith("exec whisperx-service worker")
    assert "inspect ping" in next(args for op, args in instrs if op == "HEALTHCHECK")


@pytest.mark.parametrize("name", ["api.Dockerfile", "worker.Dockerfile"])
def test_images_build_from_the_base_argument_without_registry_stages(name: str) -> None:
    """One base for both (BASE_IMAGE, the public slim image by default); uv comes from PyPI.

    No `# syntax=` line (it makes BuildKit pull a frontend image) and no other FROM image.
    """
    raw = (REPO / "docker" / name).read_text(encoding="utf-8")
    assert not re.search(r"^#\s*syntax\s*=", raw, re.MULTILINE | re.IGNORECASE)
    instrs = dockerfile(REPO / "docker" / name)
    assert instrs[0] == ("ARG", "BASE_IMAGE=python:3.11-slim-bookworm")
    froms = [args.split()[0] for op, args in instrs if op == "FROM"]
    assert froms and set(froms) == {"${BASE_IMAGE}"}, froms
    text = "\n".join(f"{op} {args}" for op, args in instrs)
    assert re.search(r'pip install .*"uv==\$\{UV_VERSION\}"', text)
    # The optional CA certificate (a TLS-inspecting proxy) is a secret, used only when given.
    uses = [args for op, args in instrs if op == "RUN" and ("pip install" in args or "uv sync" in args)]
    assert uses and all("--mount=type=secret,id=ca,required=false" in args for args in uses)
    assert all("if [ -s /run/secrets/ca ]" in args for args in uses)


# --------------------------------------------------------------------------- compose


def test_redis_is_durable_and_never_evicts(services: dict[str, dict[str, Any]], compose: dict[str, Any]) -> None:
    redis = services["redis"]
    assert redis["image"].startswith("redis:7")
    words = _as_words(redis["command"])
    pairs = dict(zip(words[1::2], words[2::2], strict=False))
    assert words[0] == "redis-server"
    assert pairs["--appendonly"] == "yes"
    assert pairs["--appendfsync"] in {"everysec", "always"}
    assert pairs["--maxmemory-policy"] == "noeviction"
    assert pairs["--maxmemory"] and "REDIS_PASSWORD" in pairs["--requirepass"]
    assert redis["networks"] == ["backend"] and compose["networks"]["backend"]["internal"] is True
    assert "ports" not in redis
    assert "redis-cli" in redis["healthcheck"]["test"] and "ping" in redis["healthcheck"]["test"]
    assert _mounts(redis)["/data"] in compose["volumes"]


def test_api_and_worker_share_the_storage_volume(services: dict[str, dict[str, Any]], compose: dict[str, Any]) -> None:
    api, worker = services["api"], services["worker"]
    for svc in (api, worker):
        root = svc["environment"]["STORAGE_ROOT"]
        assert _mounts(svc)[root] == "storage"
        assert (
            svc["environment"]["REDIS_URL"].startswith("redis://") and "@redis:6379/" in svc["environment"]["REDIS_URL"]
        )
    assert "storage" in compose["volumes"]
    # The published container port is the port the gateway binds (API_PORT), from one expression.
    assert api["environment"]["API_PORT"] == "${API_PORT:-8000}"
    assert all(str(p).endswith(":${API_PORT:-8000}") for p in api["ports"])
    assert all(str(p).startswith("${API_PUBLISH_ADDRESS:-127.0.0.1}:") for p in api["ports"]), "loopback by default"


def test_worker_reserves_a_gpu_and_caches_models(services: dict[str, dict[str, Any]], compose: dict[str, Any]) -> None:
    worker = services["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] and d.get("device_ids") == ["0"] for d in devices)
    env = worker["environment"]
    assert env["ASR_DEVICE"] == "cuda"
    # The hub model set of the README's GPU host.
    assert "large-v3-turbo" in env["ASR_MODEL"]
    assert "wav2vec2" in env["ALIGN_BACKEND"]
    assert "pyannote/speaker-diarization-community-1" in env["DIARIZE_PIPELINE"]
    assert "${HF_TOKEN" in env["HF_TOKEN"]
    mounts = _mounts(worker)
    model_mount = next(path for path, name in mounts.items() if name == "models")
    assert "models" in compose["volumes"]
    for var in ("HF_HOME", "MODELS_DIR"):
        assert env[var].startswith(model_mount + "/"), var
    assert "models" not in _mounts(services["api"]).values()


def test_depends_on_waits_for_healthy(services: dict[str, dict[str, Any]]) -> None:
    for name in ("api", "worker", "worker-cpu"):
        deps = services[name]["depends_on"]
        assert isinstance(deps, dict) and "redis" in deps
        assert all(d["condition"] == "service_healthy" for d in deps.values())
    for svc in services.values():
        for d in (svc.get("depends_on") or {}).values():
            assert d["condition"] == "service_healthy"


def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        hc = svc.get("healthcheck")
        if hc is not None:
            assert not hc.get("disable") and hc["test"], name
            continue
        path = _dockerfile_of(svc)
        assert path is not None and any(op == "HEALTHCHECK" for op, _ in dockerfile(path)), name


def test_containers_are_hardened(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        assert "no-new-privileges:true" in svc["security_opt"], name
        assert svc["cap_drop"] == ["ALL"], name
        assert svc["pids_limit"] > 0 and svc["mem_limit"], name
    assert services["api"]["read_only"] is True and services["redis"]["read_only"] is True
    for name in ("api", "worker", "worker-cpu"):
        assert "REDIS_PASSWORD" in services[name]["environment"]["REDIS_URL"], name
    assert services["api"]["environment"]["HF_TOKEN"] == "", "the gateway never gets the hub token"


def test_env_file_is_plain(services: dict[str, dict[str, Any]]) -> None:
    """`.env` as a plain path: docker-compose 1.29 (the validator here) cannot read v2's {path, required}."""
    for name in ("api", "worker", "worker-cpu"):
        assert services[name]["env_file"] == ".env", name


def test_workers_share_one_definition(services: dict[str, dict[str, Any]]) -> None:
    """GPU and CPU workers differ only in device, device settings and memory limit (the x-worker anchor)."""
    gpu, cpu = services["worker"], services["worker-cpu"]
    differ = {"deploy", "environment", "mem_limit"}
    assert {k: v for k, v in gpu.items() if k not in differ} == {k: v for k, v in cpu.items() if k not in differ}
    assert cpu["environment"]["ASR_DEVICE"] == "cpu" and "devices" not in str(cpu.get("deploy"))
    assert cpu["deploy"]["replicas"] == 0, "not started on a GPU host"
    same = {k: v for k, v in gpu["environment"].items() if not k.startswith(("ASR_", "ALIGN_", "DIARIZE_"))}
    assert same == {k: v for k, v in cpu["environment"].items() if k in same}


def test_cpu_override_swaps_the_gpu_workers_for_the_cpu_worker(services: dict[str, dict[str, Any]]) -> None:
    override = yaml.safe_load(COMPOSE_CPU.read_text(encoding="utf-8"))["services"]
    gpu_workers = {n for n, s in services.items() if "devices" in str(s.get("deploy", {}).get("resources"))}
    assert gpu_workers and {n: override[n]["deploy"]["replicas"] for n in gpu_workers} == dict.fromkeys(gpu_workers, 0)
    assert override["worker-cpu"] == {"deploy": {"replicas": 1}}


def test_dockerignore_keeps_secrets_and_bulk_out() -> None:
    patterns = {p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".env", ".venv", ".git", "/models", "/data"} <= patterns
    assert not {"src", "/src", "pyproject.toml", "uv.lock", "README.md"} & patterns
