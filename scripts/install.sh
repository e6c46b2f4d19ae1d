#!/usr/bin/env bash
# Install everything whisperx-service needs on a fresh Debian/Ubuntu machine, idempotently:
# system packages (ffmpeg, libmagic, redis; espeak-ng, sox, tmux and venv support for tests), uv, the project's venv
# (.venv, gateway + worker + dev extras), and the offline model bundle (./models).
# Re-running it only does what is missing. Environment:
#   VENV (default .venv)  MODELS_DIR (default ./models)  WXS_SKIP_APT=1 to skip system packages.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
MODELS_DIR=${MODELS_DIR:-./models}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

say() { printf '\033[1m[install]\033[0m %s\n' "$*"; }

# 1) System packages: ffmpeg (decoding, and its libraries for torchcodec), libmagic (upload type
#    check), redis-server (local runs and tests), espeak-ng + sox (synthetic speech in the tests).
need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v redis-server >/dev/null || need+=(redis-server)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v sox >/dev/null || need+=(sox)
ldconfig -p 2>/dev/null | grep -q libmagic.so.1 || need+=(libmagic1)
# The client tests: a fresh venv for the client package, and a terminal (tmux) to draw its progress bar in.
command -v tmux >/dev/null || need+=(tmux)
"$PY" -c 'import ensurepip' 2>/dev/null || need+=("$(basename "$PY")-venv")
if [ ${#need[@]} -gt 0 ] && [ -z "${WXS_SKIP_APT:-}" ]; then
  say "apt-get install ${need[*]}"
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# 2) uv: resolves and links the ~7 GB torch/WhisperX stack from its cache in seconds on re-runs
#    (it does not read pip's config, so pip's local torch cap does not apply: whisperx pins torch 2.8).
if ! command -v uv >/dev/null; then
  say "installing uv"
  "$PY" -m pip install -q --disable-pip-version-check uv
fi
UV=$(command -v uv || echo "$("$PY" -m site --user-base)/bin/uv")

# 3) The venv: gateway (base), worker (whisperx and its torch pin) and dev extras.
stamp="$VENV/.wxs-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  [ -x "$VENV/bin/python" ] || "$UV" venv -q -p "$PY" "$VENV"
  say "installing Python packages into $VENV (first time: ~4 GB of wheels)"
  VIRTUAL_ENV=$VENV "$UV" pip install -q -e '.[worker,dev]'
  # Only Resemblyzer's pretrained.pt is used; its own deps (webrtcvad, librosa) are not needed.
  VIRTUAL_ENV=$VENV "$UV" pip install -q --no-deps resemblyzer==0.1.4
  touch "$stamp"
fi

# 4) Offline model bundle (diarization pipeline dir, NLTK punkt_tab stand-in, tiny test wav2vec2).
"$VENV/bin/whisperx-service" models prepare --models-dir "$MODELS_DIR"
say "done"
