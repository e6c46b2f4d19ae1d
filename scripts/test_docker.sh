#!/usr/bin/env bash
# make test-docker: build both images with a real Docker engine and run them on real speech.
#
#  1. Installs Debian's docker.io, debootstrap and docker-compose when missing (needs root).
#  2. Starts a dockerd of its own (socket, exec root and pid file in a temp folder; no iptables,
#     no bridge: everything runs with host networking) and stops it at the end, even on failure.
#  3. Makes the base image: python:3.11-slim-bookworm when WXS_BASE_IMAGE names it and a registry
#     can serve it, else (the default) a stand-in from Debian's packages: debootstrap of bookworm
#     with python3, `docker import`ed; the tarball is cached in $WXS_CACHE_DIR.
#  4. Builds docker/api.Dockerfile and docker/worker.Dockerfile (BuildKit, --network host; the CA
#     certificate in $SSL_CERT_FILE, when set, goes in as the build secret `ca`).
#  5. Validates docker-compose.gpu.yml alone and with docker-compose.cpu.yml (`docker-compose config`).
#  6. Runs the gateway and a CPU worker container on a Redis of its own (a free port on 127.0.0.1,
#     with a password), submits a synthetic conversation, downloads the transcript and checks its
#     WER, that both containers run as non-root and that their health checks pass
#     (tests/docker_smoke.py); writes image sizes, build times and the job's numbers to
#     bench/results-docker.json.
#
# The engine's data root (image layers, BuildKit's build cache with uv's downloads) is kept in
# $WXS_CACHE_DIR/docker (default ~/.cache/whisperx-service/docker) between runs, so a second run
# rebuilds only what changed instead of fetching the ~4 GB torch stack again; at the end, every
# image but the two built ones and the base is removed and the build cache is trimmed to
# WXS_BUILD_CACHE_KEEP (default 12GB). WXS_CACHE_DIR pointing at an empty folder is a cold run.
#
# Environment: WXS_CACHE_DIR, WXS_BUILD_CACHE_KEEP, WXS_BASE_IMAGE (an image to use as is instead of
# the debootstrap stand-in), WXS_KEEP_IMAGES=0 (also remove the built images and the base at the end),
# VENV (default .venv: the host side runs tests/docker_smoke.py with it).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
if [ "$(id -u)" -ne 0 ]; then exec sudo --preserve-env "$0" "$@"; fi
VENV=${VENV:-.venv}
CACHE=${WXS_CACHE_DIR:-$HOME/.cache/whisperx-service}
KEEP=${WXS_BUILD_CACHE_KEEP:-12GB}
say() { printf '\033[1m[test-docker]\033[0m %s\n' "$*"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(round($(now) - $1, 1))"; }
t_start=$(now)

# ---------------------------------------------------------------- 1) engine packages
need=()
dpkg -s docker.io >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v docker-compose >/dev/null || need+=(docker-compose)
if [ ${#need[@]} -gt 0 ]; then
  say "apt-get install ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's client: it builds with BuildKit by itself. A newer `docker` first on PATH may lack the
# buildx plugin, which such a client needs for BuildKit.
DOCKER=$(dpkg -L docker.io | grep 'bin/docker$' | head -n1)
DOCKERD=$(dpkg -L docker.io | grep 'bin/dockerd$' | head -n1)
export DOCKER_BUILDKIT=1

# ---------------------------------------------------------------- 2) our own dockerd
mkdir -p "$CACHE"
# One run at a time per cache (a data root serves one daemon).
exec 9>"$CACHE/docker.lock"
flock -n 9 || { say "waiting for another make test-docker on $CACHE"; flock 9; }
W=$(mktemp -d /tmp/wxs-docker.XXXXXX)
DATA_ROOT=$CACHE/docker
mkdir -p "$DATA_ROOT"
export DOCKER_HOST=unix://$W/docker.sock
TAG=wxs-test-$(basename "$W" | tr -dc 'a-zA-Z0-9' | tr 'A-Z' 'a-z')
dockerd_pid= redis_pid= child=
# Long steps run in the background and are waited for, so a signal stops them at once (bash runs
# a trap only after the foreground command ends).
bg() { "$@" & child=$!; wait "$child"; }
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  [ -n "$child" ] && kill "$child" 2>/dev/null && wait "$child" 2>/dev/null
  if [ -n "$dockerd_pid" ]; then
    for c in $("$DOCKER" ps -aq --filter "label=$TAG" 2>/dev/null); do
      [ "$rc" -ne 0 ] && { echo "---- logs of $c"; "$DOCKER" logs --tail 60 "$c" 2>&1; }
      "$DOCKER" rm -f "$c" >/dev/null 2>&1
    done
    if [ "${WXS_KEEP_IMAGES:-1}" = 0 ]; then
      "$DOCKER" image rm -f whisperx-service-api:test whisperx-service-worker:test "${BASE:-none}" >/dev/null 2>&1
    fi
    # Keep what a warm run needs (the built images, the base, recent build cache), drop the rest.
    "$DOCKER" image prune -f >/dev/null 2>&1
    "$DOCKER" builder prune -f --keep-storage "$KEEP" >/dev/null 2>&1
    kill "$dockerd_pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$dockerd_pid" 2>/dev/null
  fi
  [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null
  # dockerd leaves its network namespace mounted under the exec root.
  for m in $(awk -v w="$W/" 'index($2, w) == 1 {print $2}' /proc/mounts | sort -r); do umount "$m"; done
  [ "$rc" -ne 0 ] && [ -f "$W/dockerd.log" ] && { echo "---- dockerd log (tail)"; tail -n 30 "$W/dockerd.log"; }
  rm -rf "$W"
  exit "$rc"
}
trap cleanup EXIT
trap 'say "failed at line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT TERM
say "starting dockerd (data root $DATA_ROOT, socket $W/docker.sock)"
setsid "$DOCKERD" --iptables=false --ip6tables=false --bridge=none \
  --data-root "$DATA_ROOT" --exec-root "$W/exec" -H "$DOCKER_HOST" -p "$W/dockerd.pid" \
  >"$W/dockerd.log" 2>&1 &
dockerd_pid=$!
for _ in $(seq 1 150); do "$DOCKER" version >/dev/null 2>&1 && break; sleep 0.2; done
"$DOCKER" version --format 'engine {{.Server.Version}}, client {{.Client.Version}}'

# ---------------------------------------------------------------- 3) base image
t0=$(now)
if [ -n "${WXS_BASE_IMAGE:-}" ]; then
  BASE=$WXS_BASE_IMAGE
elif "$DOCKER" image inspect local/bookworm-python3:test >/dev/null 2>&1; then
  BASE=local/bookworm-python3:test
else
  BASE=local/bookworm-python3:test
  tarball=$CACHE/bookworm-python3.tar
  if [ ! -s "$tarball" ]; then
    mirror=$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p; s/^deb \[[^]]*\] *\([^ ]*\) bookworm .*/\1/p; s/^deb \([^ []*\) bookworm .*/\1/p' \
      /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | head -n1 || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    say "debootstrap bookworm (python3) from $mirror"
    bg debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$W/rootfs" "$mirror" \
      >"$W/debootstrap.log" 2>&1 || { tail -n 20 "$W/debootstrap.log"; exit 1; }
    rm -rf "$W/rootfs/var/cache/apt/archives/"*.deb "$W/rootfs/var/lib/apt/lists/"*
    tar -C "$W/rootfs" -cf "$tarball.tmp" . && sync "$tarball.tmp" && mv "$tarball.tmp" "$tarball"
    rm -rf "$W/rootfs"
  fi
  "$DOCKER" import --change 'CMD ["python3"]' "$tarball" "$BASE" >/dev/null
fi
base_s=$(since "$t0")
say "base image $BASE ready in ${base_s} s"

# ---------------------------------------------------------------- 4) build
# cold: no earlier build of the worker image in the data root (everything is fetched and built).
state=cold
"$DOCKER" image inspect whisperx-service-worker:test >/dev/null 2>&1 && state=warm
secret=()
[ -n "${SSL_CERT_FILE:-}" ] && [ -s "$SSL_CERT_FILE" ] && secret=(--secret "id=ca,src=$SSL_CERT_FILE")
declare -A build_s
for name in api worker; do
  say "building whisperx-service-$name:test"
  t0=$(now)
  bg "$DOCKER" build --network host --progress plain --build-arg "BASE_IMAGE=$BASE" "${secret[@]}" \
    -f "docker/$name.Dockerfile" -t "whisperx-service-$name:test" . >"$W/build-$name.log" 2>&1 \
    || { tail -n 40 "$W/build-$name.log"; exit 1; }
  build_s[$name]=$(since "$t0")
  say "built whisperx-service-$name:test in ${build_s[$name]} s"
done

# ---------------------------------------------------------------- 5) compose files
say "validating docker-compose.gpu.yml (+ docker-compose.cpu.yml)"
mkdir -p "$W/compose"
cp docker-compose.gpu.yml docker-compose.cpu.yml "$W/compose/"
{ cat .env.example; echo "REDIS_PASSWORD=test"; } >"$W/compose/.env"
for files in "-f docker-compose.gpu.yml" "-f docker-compose.gpu.yml -f docker-compose.cpu.yml"; do
  # shellcheck disable=SC2086
  (cd "$W/compose" && docker-compose $files config >"$W/compose/config.yml") \
    || { say "docker-compose $files config failed"; exit 1; }
done

# ---------------------------------------------------------------- 6) run on real speech
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port=$(free_port) api_port=$(free_port)
password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
mkdir -p "$W/redis" "$W/storage" "$W/models"
chown 10001:10001 "$W/storage" "$W/models"  # the images' app user
redis-server --bind 127.0.0.1 --port "$redis_port" --requirepass "$password" --dir "$W/redis" \
  --appendonly yes --maxmemory-policy noeviction --save "" --daemonize no --logfile "$W/redis/redis.log" &
redis_pid=$!
redis_url="redis://:$password@127.0.0.1:$redis_port/0"
common=(--label "$TAG" --network host --security-opt no-new-privileges:true --cap-drop ALL
  -e "REDIS_URL=$redis_url" -e LOG_JSON=true -v "$W/storage:/data")
say "starting the gateway (127.0.0.1:$api_port) and a CPU worker; Redis on 127.0.0.1:$redis_port"
"$DOCKER" run -d --name "$TAG-api" "${common[@]}" --read-only --tmpfs /tmp \
  -e API_HOST=127.0.0.1 -e "API_PORT=$api_port" whisperx-service-api:test >/dev/null
"$DOCKER" run -d --name "$TAG-worker" "${common[@]}" -v "$W/models:/models" \
  -e ASR_DEVICE=cpu -e HF_HUB_OFFLINE=1 whisperx-service-worker:test >/dev/null

sizes=$(for name in api worker; do
  printf '%s=%s ' "$name" "$("$DOCKER" image inspect -f '{{.Size}}' "whisperx-service-$name:test")"
done)
PYTHONPATH=$REPO bg "$VENV/bin/python" -m tests.docker_smoke \
  --docker "$DOCKER" --api "$TAG-api" --worker "$TAG-worker" \
  --url "http://127.0.0.1:$api_port" --admin-key-file "$W/storage/admin.key" --work "$W/smoke" \
  --sizes "$sizes" --build-s "api=${build_s[api]} worker=${build_s[worker]}" --base-s "$base_s" \
  --base-image "$BASE" --cache "$state" --started "$t_start" --out bench/results-docker.json
say "passed ($state) in $(since "$t_start") s"
