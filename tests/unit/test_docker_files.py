"""Static checks of docker-compose.gpu.yml, the two Dockerfiles and .dockerignore.

Docker cannot run here, so these read the files: the compose file with PyYAML, the Dockerfiles as
instructions (continuations joined, comments dropped).
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
    froms = [args for op, args in instrs if op == "FROM"]
    assert any("python:${PYTHON_VERSION}-slim" in f for f in froms)
    assert re.search(r"^ARG PYTHON_VERSION=3\.11$", text, re.MULTILINE)
    assert "libmagic1" in text
    cmd = _exec_json(next(args for op, args in instrs if op == "CMD"))
    assert cmd[:3] == ["uvicorn", "whisperx_service.api.app:app_factory", "--factory"]
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0" and cmd[cmd.index("--port") + 1] == "8000"
    assert "/healthz" in next(args for op, args in instrs if op == "HEALTHCHECK")


def test_worker_image_has_cuda_python311_and_the_worker_extra() -> None:
    instrs = dockerfile(REPO / "docker" / "worker.Dockerfile")
    text = "\n".join(f"{op} {args}" for op, args in instrs)
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu", text, re.MULTILINE)
    assert "FROM ${CUDA_IMAGE}" in text
    assert "uv python install 3.11" in text
    assert re.search(r"--extra worker", text)
    assert "install --no-deps resemblyzer==0.1.4" in text
    assert "ffmpeg" in text and "libmagic1" in text
    cmd = " ".join(_exec_json(next(args for op, args in instrs if op == "CMD")))
    assert "whisperx-service models prepare --no-test-models" in cmd
    assert cmd.rstrip().endswith("exec whisperx-service worker")
    assert "inspect ping" in next(args for op, args in instrs if op == "HEALTHCHECK")


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
    assert any(str(p).endswith(":8000") for p in api["ports"])  # container port of the CMD
    assert all(str(p).startswith("${API_PUBLISH_ADDRESS:-127.0.0.1}:") for p in api["ports"]), "loopback by default"


def test_worker_reserves_a_gpu_and_caches_models(services: dict[str, dict[str, Any]], compose: dict[str, Any]) -> None:
    worker = services["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] and d.get("count") == 1 for d in devices)
    env = worker["environment"]
    assert env["ASR_DEVICE"] == "cuda"
    assert "large-v3-turbo" in env["ASR_MODEL"]
    assert "pyannote/speaker-diarization-community-1" in env["DIARIZE_PIPELINE"]
    assert "${HF_TOKEN" in env["HF_TOKEN"]
    mounts = _mounts(worker)
    model_mount = next(path for path, name in mounts.items() if name == "models")
    assert "models" in compose["volumes"]
    for var in ("HF_HOME", "MODELS_DIR"):
        assert env[var].startswith(model_mount + "/"), var
    assert "models" not in _mounts(services["api"]).values()


def test_depends_on_waits_for_healthy(services: dict[str, dict[str, Any]]) -> None:
    for name in ("api", "worker"):
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
    for name in ("api", "worker"):
        assert "REDIS_PASSWORD" in services[name]["environment"]["REDIS_URL"], name
    assert services["api"]["environment"]["HF_TOKEN"] == "", "the gateway never gets the hub token"


def test_env_file_is_optional(services: dict[str, dict[str, Any]]) -> None:
    for name in ("api", "worker"):
        entries = services[name]["env_file"]
        assert any(e["path"] == ".env" and e["required"] is False for e in entries), name


def test_dockerignore_keeps_secrets_and_bulk_out() -> None:
    patterns = {p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()}
    assert {".env", ".venv", ".git", "/models", "/data"} <= patterns
    assert not {"src", "/src", "pyproject.toml", "README.md"} & patterns
