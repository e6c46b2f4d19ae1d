#!/usr/bin/env bash
# Start a local Redis if none answers at REDIS_URL (default redis://127.0.0.1:6379/0).
# It runs with AOF persistence and noeviction (docs/ARCHITECTURE.md), data under $STORAGE_ROOT/redis.
# Prints the PID of a Redis it started (nothing when one was already answering).
set -euo pipefail
URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
if redis-cli -u "$URL" ping >/dev/null 2>&1; then exit 0; fi
hostport=${URL#redis://}; hostport=${hostport%%/*}; hostport=${hostport##*@}
host=${hostport%%:*}; port=${hostport##*:}; [ "$port" = "$host" ] && port=6379
dir=${STORAGE_ROOT:-./data}/redis; mkdir -p "$dir"
redis-server --bind "$host" --port "$port" --dir "$dir" --appendonly yes --appendfsync everysec \
  --maxmemory-policy noeviction --save "" --daemonize no --logfile "$dir/redis.log" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 100); do redis-cli -u "$URL" ping >/dev/null 2>&1 && { echo "$pid"; exit 0; }; sleep 0.1; done
echo "redis-server did not start; see $dir/redis.log" >&2; exit 1
