#!/usr/bin/env bash
# Run the whole service on this machine, in the foreground: installs what is missing, starts Redis
# (if none answers), the gateway on :8000, one worker (on the GPU when torch sees one, ASR_DEVICE=auto)
# and one outbound worker (webhook deliveries).
# Ctrl-C stops all of them.
set -euo pipefail
cd "$(dirname "$0")/.."
# .env fills in what the environment leaves unset (scripts/env.sh: values literal, the environment wins).
. scripts/env.sh
[ -f .env ] && load_dotenv .env
export STORAGE_ROOT=${STORAGE_ROOT:-./data} MODELS_DIR=${MODELS_DIR:-./models}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0} LOG_JSON=${LOG_JSON:-false}
# Models load from local caches only unless HF_HUB_OFFLINE=0 is set (environment or .env): a worker
# never waits on a hub it cannot reach. `whisperx-service models download` fills the caches.
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} PYANNOTE_METRICS_ENABLED=${PYANNOTE_METRICS_ENABLED:-0}
scripts/install.sh
mkdir -p "$STORAGE_ROOT"
pids=()
cleanup() { trap - INT TERM EXIT; echo; echo "[run] stopping"; kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup INT TERM EXIT
redis_pid=$(scripts/ensure_redis.sh); [ -n "$redis_pid" ] && pids+=("$redis_pid")
.venv/bin/whisperx-service worker & pids+=($!)
.venv/bin/whisperx-service outbound & pids+=($!)
.venv/bin/whisperx-service api & pids+=($!)
echo "[run] gateway on http://127.0.0.1:${API_PORT:-8000}  (docs: /docs)  Ctrl-C to stop"
wait -n "${pids[@]}"
