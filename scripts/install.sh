#!/usr/bin/env bash
# Install everything whisperx-service needs on a fresh Debian/Ubuntu machine, idempotently:
# system packages (ffmpeg, libmagic, redis; espeak-ng, sox, tmux, chromium and venv support for tests), uv,
# the project's venv (.venv from uv.lock: gateway + worker + dev extras), the web page's
# tus-js-client from the npm registry (web/package-lock.json), and the offline model bundle (./models).
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
# The web page's browser tests: Debian's chromium, driven by Playwright (its own browser download is
# not used; tests/e2e/test_web_e2e.py points Playwright at this binary).
command -v chromium >/dev/null || need+=(chromium)
# The web page's resumable uploads come from the npm registry (step 4): Node.js and npm.
command -v npm >/dev/null || need+=(npm)
"$PY" -c 'import ensurepip' 2>/dev/null || need+=("$(basename "$PY")-venv")
if [ ${#need[@]} -gt 0 ] && [ -z "${WXS_SKIP_APT:-}" ]; then
  say "apt-get install ${need[*]}"
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# 2) uv (the version the lock and the images are made with): installs the locked ~7 GB
#    torch/WhisperX stack from its cache in seconds on re-runs. It does not read pip's config, so a
#    local pip cap on torch does not apply: whisperx pins torch 2.8 (PyPI's Linux wheel, a CUDA build).
UV_VERSION=0.13.9
if ! command -v uv >/dev/null; then
  say "installing uv $UV_VERSION"
  "$PY" -m pip install -q --disable-pip-version-check "uv==$UV_VERSION"
fi
UV=$(command -v uv || echo "$("$PY" -m site --user-base)/bin/uv")

# 3) The venv, exactly as uv.lock says: gateway (base), worker (whisperx and its torch pin) and dev
#    extras, the project itself editable. `--locked` fails if uv.lock is out of step with
#    pyproject.toml (run `uv lock` and commit it). Re-run only when either file changed.
stamp="$VENV/.wxs-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ uv.lock -nt "$stamp" ]; then
  say "installing Python packages into $VENV from uv.lock (first time: ~4 GB of wheels)"
  UV_PROJECT_ENVIRONMENT=$VENV "$UV" sync -q --locked --python "$PY" --extra worker --extra dev
  touch "$stamp"
fi

# 4) The web page's resumable uploads: tus-js-client, exactly as web/package-lock.json says, from the
#    npm registry (never committed: code from elsewhere). Its browser bundle (UMD, no eval) and
#    LICENSE go to the page's git-ignored vendor/ folder, served by the gateway and packed into the
#    wheel and the api image. Without npm the page still works: large files then go in one request.
VENDOR=src/whisperx_service/web/static/vendor
if command -v npm >/dev/null; then
  if [ ! -f "$VENDOR/tus.min.js" ] || [ web/package-lock.json -nt "$VENDOR/tus.min.js" ]; then
    say "installing tus-js-client for the web page (npm ci in web/)"
    (cd web && npm ci --ignore-scripts --no-audit --no-fund --silent)
    mkdir -p "$VENDOR"
    cp web/node_modules/tus-js-client/dist/tus.min.js "$VENDOR/tus.min.js.tmp"
    cp web/node_modules/tus-js-client/LICENSE "$VENDOR/tus-js-client.LICENSE"
    # The bundle includes some of its dependencies: every installed package's licence, in one file.
    for d in web/node_modules/*/; do
      node -e 'const p=require(process.argv[1]);console.log(`==== ${p.name} ${p.version} (${p.license || "licence not named in package.json"})`)' "$PWD/$d/package.json"
      for f in "$d"LICEN[CS]E* "$d"[Ll]icen[cs]e*; do [ -f "$f" ] && cat "$f" && break; done
      echo
    done > "$VENDOR/THIRD-PARTY-LICENSES.txt"
    mv "$VENDOR/tus.min.js.tmp" "$VENDOR/tus.min.js"
  fi
else
  say "npm not found: the web page will upload large files without resume (install Node.js and npm, re-run)"
fi

# 5) Offline model bundle (diarization pipeline dir, NLTK punkt_tab stand-in, tiny test wav2vec2).
"$VENV/bin/whisperx-service" models prepare --models-dir "$MODELS_DIR"
say "done"
