#!/usr/bin/env bash
# Build the service image and run the end-to-end tests against the service inside it.
#
# With a working Docker engine it uses `docker build` / `docker run` (official base image,
# torch from the PyTorch CPU index). Without one (these machines: root, Debian bookworm), it
# follows shared/CONTAINER.md: buildah + a locally made Debian base, pip reaching its index
# through the host's CA bundle, pip config and local wheel folder mounted into the build.
#
# The container runs WORKERS worker processes (default 2; the image's own default, `auto`, is one
# per CPU, which may be 1 here), so that the end-to-end tests and the SIGTERM drain cover a
# supervisor and its workers.
#
# Env knobs: IMAGE (tag), ENGINE (docker|buildah, default: auto), MAX_ADDED_MIB (size budget),
# WORKERS (FAIRLOSS_WORKERS in the container).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/fairloss-service:test}
BASE_LOCAL=localhost/debian-py:bookworm
MAX_ADDED_MIB=${MAX_ADDED_MIB:-1075}
WORKERS=${WORKERS:-2}
PY=.venv/bin/python
WORK=$(mktemp -d /tmp/image-test.XXXXXX)
T0=$SECONDS
LAST=$SECONDS

step() {
    printf '\n== [%4ds total, previous step %3ds] %s\n' $((SECONDS - T0)) $((SECONDS - LAST)) "$*"
    LAST=$SECONDS
}
die() { echo "FAIL: $*" >&2; exit 1; }

if [[ -z ${ENGINE:-} ]]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then ENGINE=docker; else ENGINE=buildah; fi
fi

CTR=""        # buildah working container or docker container
SERVER_PID="" # background `buildah run` process
cleanup() {
    local rc=$?
    if [[ -n $SERVER_PID ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        for p in $(descendants "$SERVER_PID") "$SERVER_PID"; do kill -KILL "$p" 2>/dev/null || true; done
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ -n $CTR ]]; then
        if [[ $ENGINE == docker ]]; then docker rm -f "$CTR" >/dev/null 2>&1 || true
        else buildah rm "$CTR" >/dev/null 2>&1 || true; fi
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

descendants() { # all descendant PIDs of $1, depth first
    local c
    for c in $(pgrep -P "$1" || true); do descendants "$c"; echo "$c"; done
}

# GET a URL from the host; exit status 0 on a 2xx answer.
probe() { "$PY" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)' "$1" 2>/dev/null; }

step "engine: $ENGINE; preparing host"
if [[ ! -x .venv/bin/pytest ]]; then make setup; fi
if [[ $ENGINE == buildah ]]; then
    [[ $(id -u) == 0 ]] || die "the buildah path needs root"
    if ! command -v buildah >/dev/null || ! command -v podman >/dev/null || ! command -v debootstrap >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah debootstrap >/dev/null
    fi
fi

# ---------------------------------------------------------------- build
VERSION=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
if [[ $ENGINE == buildah ]]; then
    if ! buildah inspect --type image "$BASE_LOCAL" >/dev/null 2>&1; then
        step "making base image $BASE_LOCAL with debootstrap (once per machine)"
        mirror=$(sed -n 's/^URIs: *\([^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
        mirror=${mirror:-http://deb.debian.org/debian}
        rootfs=$WORK/rootfs
        debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
            bookworm "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
            || { tail -20 "$WORK/debootstrap.log"; die "debootstrap failed"; }
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" -c . | podman import - "$BASE_LOCAL" >/dev/null
        rm -rf "$rootfs"
    fi
    BASE=$BASE_LOCAL

    # What pip needs to reach its index from inside a build step (see `pip config list`).
    cert=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
    wheels=${PIP_FIND_LINKS:-/opt/wheels}
    volumes=()
    [[ -f $cert ]] && volumes+=(--volume "$cert:$cert:ro")
    [[ -f /etc/pip.conf ]] && volumes+=(--volume /etc/pip.conf:/etc/pip.conf:ro)
    if [[ -d $wheels ]]; then volumes+=(--volume "$wheels:$wheels:ro"); else wheels=""; fi

    step "building $IMAGE (buildah, base $BASE, find-links '${wheels}')"
    buildah bud --isolation chroot --network host --layers --force-rm --format docker \
        --build-arg BASE_IMAGE="$BASE" --build-arg PIP_FIND_LINKS="$wheels" --build-arg TORCH_INDEX_URL= \
        --build-arg VCS_REF="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" --build-arg VERSION="$VERSION" "${volumes[@]}" -t "$IMAGE" . 2>&1 | grep -v -E '^(Requirement already satisfied|  (Downloading|Using cached))' || die "image build failed"
    size_of() { podman image inspect --format '{{.Size}}' "$1"; }
    buildah inspect --type image "$IMAGE" | "$PY" -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["Docker"]["config"]))' >"$WORK/config.json"
else
    BASE=$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile)
    step "building $IMAGE (docker, base $BASE)"
    docker build --build-arg VCS_REF="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" --build-arg VERSION="$VERSION" -t "$IMAGE" .
    size_of() { docker image inspect --format '{{.Size}}' "$1"; }
    docker image inspect "$IMAGE" | "$PY" -c 'import json, sys; print(json.dumps(json.load(sys.stdin)[0]["Config"]))' >"$WORK/config.json"
fi

step "image size and configuration"
image_b=$(size_of "$IMAGE"); base_b=$(size_of "$BASE")
added_mib=$(( (image_b - base_b) / 1048576 ))
printf 'uncompressed size: image %d MiB, base %d MiB, added by the Dockerfile %d MiB (budget %d MiB)\n' \
    $((image_b / 1048576)) $((base_b / 1048576)) "$added_mib" "$MAX_ADDED_MIB"
(( added_mib <= MAX_ADDED_MIB )) || die "the image adds ${added_mib} MiB over its base"

# Prints the config; asserts a non-root user, a healthcheck, port 8000 and the exec-form CMD;
# writes the healthcheck and CMD argv (NUL-separated) for the steps below.
"$PY" - "$WORK" <<'EOF'
import json, sys
work = sys.argv[1]
cfg = json.load(open(f"{work}/config.json"))
for key in ("User", "Cmd", "ExposedPorts", "Healthcheck", "Labels"):
    print(f"{key}: {json.dumps(cfg.get(key))}")
user = (cfg.get("User") or "").split(":")[0]
assert user not in ("", "0", "root"), f"image runs as root (User={user!r})"
test = (cfg.get("Healthcheck") or {}).get("Test") or []
assert test and test[0] in ("CMD", "CMD-SHELL"), f"no HEALTHCHECK ({test!r})"
hc = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
assert "8000/tcp" in (cfg.get("ExposedPorts") or {}), "port 8000 not exposed"
assert cfg.get("Cmd") == ["python", "-m", "service"], f"CMD is {cfg.get('Cmd')!r}"
assert not cfg.get("Entrypoint"), "an ENTRYPOINT would put another process at PID 1"
open(f"{work}/hc", "w").write("\0".join(hc))
open(f"{work}/cmd", "w").write("\0".join(cfg["Cmd"]))
EOF
mapfile -d '' HC <"$WORK/hc"
mapfile -d '' CMD <"$WORK/cmd"

# ---------------------------------------------------------------- run
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
step "starting the container ($ENGINE), service on $URL, FAIRLOSS_WORKERS=$WORKERS"
if [[ $ENGINE == buildah ]]; then
    CTR=$(buildah from --pull-never "$IMAGE")
    buildah config --env FAIRLOSS_PORT="$PORT" --env FAIRLOSS_WORKERS="$WORKERS" "$CTR"
    uid=$(buildah run --isolation chroot "$CTR" -- python -c 'import os; print(os.getuid())')
    echo "uid inside the container: $uid"
    [[ $uid != 0 ]] || die "the container runs as root"
    buildah run --isolation chroot "$CTR" -- "${CMD[@]}" >"$WORK/server.log" 2>&1 &
    SERVER_PID=$!
else
    CTR=$(docker run -d -p "127.0.0.1:$PORT:8000" -e FAIRLOSS_WORKERS="$WORKERS" \
        --health-interval=1s --health-start-period=60s "$IMAGE")
    uid=$(docker exec "$CTR" python -c 'import os; print(os.getuid())')
    echo "uid inside the container: $uid"
    [[ $uid != 0 ]] || die "the container runs as root"
fi

server_log() {
    if [[ $ENGINE == buildah ]]; then cat "$WORK/server.log"; else docker logs "$CTR" 2>&1; fi
}
alive() {
    if [[ $ENGINE == buildah ]]; then kill -0 "$SERVER_PID" 2>/dev/null
    else [[ $(docker inspect -f '{{.State.Running}}' "$CTR") == true ]]; fi
}
for _ in $(seq 1 120); do
    probe "$URL/readyz" && break
    alive || { server_log; die "the service exited before it was ready"; }
    sleep 0.5
done
probe "$URL/readyz" || { server_log; die "not ready after 60 s"; }
echo "ready after $((SECONDS - LAST)) s"

step "HEALTHCHECK command inside the container"
if [[ $ENGINE == buildah ]]; then
    buildah run --isolation chroot "$CTR" -- "${HC[@]}" || die "HEALTHCHECK command failed"
    echo "HEALTHCHECK command: exit 0 (healthy)"
else
    for _ in $(seq 1 60); do
        status=$(docker inspect -f '{{.State.Health.Status}}' "$CTR")
        [[ $status == healthy ]] && break
        sleep 1
    done
    echo "docker health status: $status"
    [[ $status == healthy ]] || die "container not healthy"
fi

step "end-to-end tests against $URL"
# The README example, through the container.
"$PY" - "$URL" "$WORKERS" <<'EOF' || die "README example failed"
import sys, httpx
url, workers = sys.argv[1], int(sys.argv[2])
info = httpx.get(f"{url}/info").json()
print("info:", info)
assert info["server"]["workers"] == workers, f"{info['server']} (wanted {workers} workers)"
example = {"logits": [[0.34, 0.33, 0.33], [0.49, 0.51, 0.0]], "labels": [0, 0]}
r = httpx.post(f"{url}/score", json=example)
assert r.status_code == 200, r.text
print("README /score:", r.json()["reduced"])
body = {"labels": example["labels"], "candidates": [{"name": "model", "logits": example["logits"]}]}
r = httpx.post(f"{url}/compare", json=body)
assert r.status_code == 200, r.text
violations = r.json()["candidates"][0]["violations"]
print("README /compare violations:", {k: v["count"] for k, v in violations.items()})
assert violations["ce"]["count"] == 1 and violations["total"]["count"] == 0
EOF
if [[ -f tests/test_e2e.py ]]; then
    FAIRLOSS_E2E_URL=$URL .venv/bin/pytest -q -p no:cacheprovider tests/test_e2e.py
else
    echo "tests/test_e2e.py not found: only the probes above were checked"
fi

step "SIGTERM with a request in flight: must finish it and exit 0 within 10 s"
if [[ $ENGINE == buildah ]]; then
    pid=""
    # The process that runs CMD (argv0 is a full path): the supervisor, not its workers
    # (`python -c 'from multiprocessing.spawn import ...'`).
    for p in $(descendants "$SERVER_PID"); do
        mapfile -d '' argv <"/proc/$p/cmdline" || continue
        [[ ${argv[0]##*/} == "${CMD[0]}" && "${argv[*]:1}" == "${CMD[*]:1}" ]] && pid=$p
    done
    [[ -n $pid ]] || die "service process not found"
    stop() { kill -TERM "$pid"; }
else
    stop() { docker kill --signal TERM "$CTR" >/dev/null; }
fi
# A large /score request (chunked upload); the signal goes out once its body has been sent.
"$PY" - "$URL" "$WORK" >"$WORK/inflight.log" 2>&1 <<'EOF' &
import json, os, random, sys, time, httpx
url, work = sys.argv[1:]
random.seed(0)
rows = [[round(random.uniform(-5, 5), 3) for _ in range(10)] for _ in range(1000)]
body = json.dumps({"logits": rows * 200, "labels": [random.randrange(10) for _ in range(200_000)]}).encode()
def chunks():
    for i in range(0, len(body), 1 << 20):
        yield body[i:i + (1 << 20)]
    open(f"{work}/sent", "w").close()
r = httpx.post(url + "/score", content=chunks(), headers={"Content-Type": "application/json"}, timeout=30)
done = time.time()
sigterm = float(open(f"{work}/sigterm").read()) if os.path.exists(f"{work}/sigterm") else done
print(f"in-flight request ({len(body) >> 20} MiB): HTTP {r.status_code}, answered {done - sigterm:+.2f} s after SIGTERM")
sys.exit(r.status_code != 200)
EOF
client=$!
for _ in $(seq 1 200); do [[ -e $WORK/sent ]] && break; sleep 0.05; done
sleep 0.2
date +%s.%N >"$WORK/sigterm"
stop
if [[ $ENGINE == buildah ]]; then
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then server_log; die "still running 10 s after SIGTERM"; fi
    rc=0; wait "$SERVER_PID" || rc=$?
    SERVER_PID=""
else
    docker wait "$CTR" >/dev/null & waiter=$!
    for _ in $(seq 1 100); do kill -0 "$waiter" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$waiter" 2>/dev/null; then die "still running 10 s after SIGTERM"; fi
    rc=$(docker inspect -f '{{.State.ExitCode}}' "$CTR")
fi
awk -v t0="$(cat "$WORK/sigterm")" -v t1="$(date +%s.%N)" -v rc="$rc" \
    'BEGIN { printf "stopped %.1f s after SIGTERM, exit status %s\n", t1 - t0, rc }'
client_rc=0; wait "$client" || client_rc=$?
cat "$WORK/inflight.log"
echo "--- service log (tail)"; server_log | tail -8
# With several workers `python -m service` is their supervisor: on SIGTERM it stops listening,
# sends each worker SIGTERM, waits for them to drain and returns, exit status 0. (With one worker
# it exits 0 from its SIGTERM handler once uvicorn has drained.)
[[ $rc == 0 ]] || die "unclean exit status $rc"
[[ $client_rc == 0 ]] || die "the in-flight request did not complete"

step "PASS: image $IMAGE"
