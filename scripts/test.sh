#!/usr/bin/env bash
# Run the tests (all of tests/, or the paths and options given) against a real Redis (started here
# if none answers).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 PYANNOTE_METRICS_ENABLED=0 MODELS_DIR=${MODELS_DIR:-$PWD/models}
export REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
export TEST_REDIS_URL=$REDIS_URL STORAGE_ROOT=${STORAGE_ROOT:-$PWD/data/test}
started=$(scripts/ensure_redis.sh)
trap '[ -n "$started" ] && kill "$started" 2>/dev/null || true' EXIT
.venv/bin/python -m pytest -q "$@"
