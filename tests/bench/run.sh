#!/usr/bin/env bash
# run.sh - pulpish benchmarks against CNCF distribution (docker-registry), on 127.0.0.1 only.
#
# Usage: tests/bench/run.sh [--smoke] [--runs N] [--only B7,B8]
#   (no flag)  full run: 256 MiB blob (build.sh --big), 3 runs per figure, 250 and 2,500 tags
#   --smoke    small sizes (largest blob of fixtures/index), 1 run each, 250 tags only, wrk 2 s,
#              100 flood requests, 20 stalled readers of a 4 MiB blob, B12's 10 layers of
#              256 KiB and fixtures/oci for its big image;
#              checks that every figure is produced (not its value)
#   --runs N   runs per figure (default 3 full, 1 smoke; B5 warm, B7 and B8 run once)
#   --only L   only the sections holding these figures (comma-separated B1..B13; B5 = B1 + B2
#              + B3, B9 = its warm (with B11) and cold halves, B11 = B9's warm half, B13 = B2)
#   PULPISH_BIN=path  use this pulpish binary instead of building release (the test suite does)
#   GARAGE_BIN=path   the garage binary (default: garage on PATH, else ~/.cargo/bin/garage)
#   PULPISH_PG_BIN=dir  PostgreSQL server binaries (default: /usr/lib/postgresql/NN/bin)
#
# Starts, all on 127.0.0.1 with free ports and under one temp dir:
#   U  docker-registry holding the fixtures (tests/fixtures/{build,push}.sh, plus
#      fixtures/many2500 in full mode); its access log counts upstream blob GETs and bytes
#   P  docker-registry in proxy (pull-through cache) mode in front of U: the reference for cold
#      GETs (fresh storage and process per cold run)
#   pulpish (SQLite, fresh data dir) with an on_demand remote + repository + sync +
#      distribution per measured upstream repository; a fresh process and data dir per cold run
#   R7 docker-registry with auth: htpasswd (B7's reference), R8 a fresh docker-registry over U's
#      storage (B8's reference); B7 and B8 each use a fresh pulpish
#   G  (B9-B11) a single-node Garage (S3-compatible object store), a fresh bucket per pulpish;
#      pulpish --storage s3 (SQLite, one process) beside pulpish on the filesystem
#   PG (B10) a throwaway PostgreSQL cluster (unix socket only, in its own temp dir), a fresh
#      database per run: three pulpish replicas on it and one Garage bucket; also (optional:
#      skipped, with n/a rows, without PostgreSQL's binaries) a pulpish on a fresh database for
#      B6 and one per B12 run
#   B12 (issue 15's B7) skopeo copy docker://... dir: of fixtures/big and of a 10-layer image
#      (built here, pushed to U) from U and through a fresh pulpish
# Figures (B1..B13) are described in docs/benchmarks.md. Prints one Markdown table on stdout
# (progress on stderr). Exits non-zero if any figure is missing, or if a figure that must hold
# does not (B10: one upstream GET across the replicas). Everything it starts is stopped by PID
# on exit and the temp dirs removed. A run during which other processes (a build, tests) used
# >= 25% of the CPUs is discarded and repeated (up to 3 attempts; not in --smoke).
# Requires: cargo, docker-registry, skopeo, umoci, curl, jq, wrk (apt-get install wrk); B2 and
# B8 python3, B7 htpasswd (apache2-utils), B12 openssl; B9-B11 garage (cargo install garage
# --locked), B10 PostgreSQL's server binaries (initdb, pg_ctl, createdb; runuser as root).
set -euo pipefail
shopt -s inherit_errexit

smoke=false
runs=
only=
while [[ $# -gt 0 ]]; do
    case $1 in
        --smoke) smoke=true ;;
        --runs) runs=${2:?--runs needs a number}; shift ;;
        --only) only=${2:?--only needs a list such as B7,B8}; shift ;;
        -h | --help) sed -n '2,41p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: $0 [--smoke] [--runs N] [--only B1,...,B13]" >&2; exit 2 ;;
    esac
    shift
done

# Sections: warm (B1, B5 warm, B6), cold (B2, B13, B5 1 cold GET), cold32 (B3, B5 32 cold GETs),
# sync (B4), flood (B7), stall (B8), s3warm (B9 warm, B11), s3cold (B9 cold), scaleout (B10),
# pull (B12).
readonly all_sections="warm cold cold32 sync flood stall s3warm s3cold scaleout pull"
sections=" $all_sections "
if [[ -n $only ]]; then
    sections=" "
    for id in ${only//,/ }; do
        case ${id^^} in
            B1 | B6) s=warm ;; B2 | B13) s=cold ;; B3) s=cold32 ;; B4) s=sync ;; B5) s="warm cold cold32" ;;
            B7) s=flood ;; B8) s=stall ;; B9) s="s3warm s3cold" ;; B10) s=scaleout ;; B11) s=s3warm ;;
            B12) s=pull ;;
            *) echo "$0: --only: unknown figure $id (B1..B13)" >&2; exit 2 ;;
        esac
        for x in $s; do [[ $sections == *" $x "* ]] || sections+="$x "; done
    done
fi
readonly sections
# selected SECTION: whether this run includes it.
selected() { [[ $sections == *" $1 "* ]]; }
need_fixtures=false
need_garage=false
for s in warm cold cold32 sync s3warm s3cold scaleout pull; do selected "$s" && need_fixtures=true; done
for s in s3warm s3cold scaleout; do selected "$s" && need_garage=true; done
readonly need_fixtures need_garage

root=$(cd "$(dirname "$0")/../.." && pwd)
# FLOOD_*: B7 requests, how many at a time; STALL_*: B8 readers and blob size; SETTLE: seconds
# before the "during" and "after" samples of B7/B8; TEN_*: B12's many-layer image (layers, KiB
# per layer).
if $smoke; then
    RUNS=${runs:-1} WARM_GETS=2 CONC=32 WRK_SECS=2 TAGS_BIG=0
    FLOOD_N=100 FLOOD_P=50 STALL_N=20 STALL_MIB=4 SETTLE=1 TEN_LAYERS=10 TEN_KIB=256
else
    RUNS=${runs:-3} WARM_GETS=5 CONC=32 WRK_SECS=5 TAGS_BIG=2500
    FLOOD_N=600 FLOOD_P=50 STALL_N=200 STALL_MIB=64 SETTLE=3 TEN_LAYERS=10 TEN_KIB=16384
fi
readonly RUNS WARM_GETS CONC WRK_SECS TAGS_BIG FLOOD_N FLOOD_P STALL_N STALL_MIB SETTLE TEN_LAYERS TEN_KIB
readonly PW=bench-admin-pw
readonly OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
readonly ACCEPT_ALL="application/vnd.oci.image.manifest.v1+json,application/vnd.oci.image.index.v1+json,application/vnd.docker.distribution.manifest.v2+json,application/vnd.docker.distribution.manifest.list.v2+json"
PULPISH=$root/target/release/pulpish

tools=(cargo docker-registry curl jq awk)
if $need_fixtures; then tools+=(skopeo umoci wrk); fi
if selected flood; then tools+=(htpasswd); fi
if selected stall; then tools+=(python3 sha256sum); fi
if selected cold; then tools+=(python3); fi
if selected pull; then tools+=(openssl tar); fi
for tool in "${tools[@]}"; do
    command -v "$tool" >/dev/null || { echo "$0: $tool not found" >&2; exit 1; }
done
GARAGE=
if $need_garage; then
    for g in "${GARAGE_BIN:-}" "$(command -v garage || true)" "$HOME/.cargo/bin/garage"; do
        [[ -n $g && -x $g ]] && { GARAGE=$g; break; }
    done
    [[ -n $GARAGE ]] || { echo "$0: garage not found (GARAGE_BIN, PATH, ~/.cargo/bin; cargo install garage --locked)" >&2; exit 1; }
fi
readonly GARAGE
# PostgreSQL: B10 needs it; B6 and B12 measure pulpish on it too if it is there (else n/a rows).
PG_BIN=
if selected scaleout || selected warm || selected pull; then
    for d in "${PULPISH_PG_BIN:-}" /usr/lib/postgresql/{17,16,15,14,13}/bin; do
        [[ -n $d && -x $d/initdb ]] && { PG_BIN=$d; break; }
    done
    if [[ -n $PG_BIN ]] && ((EUID == 0)) && ! { command -v runuser >/dev/null && id postgres >/dev/null 2>&1; }; then
        selected scaleout && { echo "$0: as root, B10 needs runuser and a postgres user (initdb refuses root)" >&2; exit 1; }
        PG_BIN=
    fi
    if [[ -z $PG_BIN ]]; then
        selected scaleout && { echo "$0: PostgreSQL server binaries not found (PULPISH_PG_BIN)" >&2; exit 1; }
        echo "$0: PostgreSQL server binaries not found (PULPISH_PG_BIN): B6 and B12 on PostgreSQL skipped (n/a)" >&2
    fi
fi
readonly PG_BIN
# Only our own flags reach pulpish.
given_bin=${PULPISH_BIN:-}
while read -r v; do unset "$v"; done < <(env | awk -F= '/^PULPISH_/ { print $1 }')

tmp=$(mktemp -d /tmp/pulpish-bench.XXXXXX)
pidfile=$tmp/pids
results=$tmp/results
: >"$pidfile"
: >"$results"

log() { echo "[bench $(date +%T)] $*" >&2; }

# stop_pid PID: TERM, then KILL after 5 s; only PIDs this script started.
stop_pid() {
    local pid=$1 i
    kill "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        [[ -e /proc/$pid ]] || break
        # A zombie child of ours counts as gone.
        [[ $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null) == Z ]] && break
        sleep 0.05
    done
    [[ -e /proc/$pid ]] && kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    sed -i "/^$pid /d" "$pidfile"
}

# stop_matching PREFIX: stop the processes registered under a name starting with PREFIX.
stop_matching() {
    local pid name
    while read -r pid name; do
        [[ -n $pid ]] || continue
        [[ $name == "$1"* ]] && stop_pid "$pid"
    done <<<"$(cat "$pidfile")"
    return 0
}

# PostgreSQL (B10): its postmaster daemonizes (pg_ctl), so it is stopped by the PID in its own
# postmaster.pid, after everything else (its clients) is gone.
PG_DIR= PG_PID=

# stop_pg: fast shutdown (SIGINT: sessions ended, clean stop), SIGKILL after 10 s.
stop_pg() {
    local i
    [[ -n $PG_PID ]] || return 0
    kill -INT "$PG_PID" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
        [[ -e /proc/$PG_PID ]] || break
        sleep 0.05
    done
    [[ -e /proc/$PG_PID ]] && kill -9 "$PG_PID" 2>/dev/null || true
    PG_PID=
}

cleanup() {
    local rc=$?
    stop_matching ""
    stop_pg
    [[ -z $PG_DIR ]] || rm -rf "$PG_DIR"
    rm -rf "$tmp"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_bg NAME LOGFILE CMD...: start CMD in the background, register it, set BG_PID.
start_bg() {
    local name=$1 logf=$2
    shift 2
    "$@" >"$logf" 2>&1 &
    BG_PID=$!
    echo "$BG_PID $name" >>"$pidfile"
}

free_port() {
    # Below the ephemeral range, so no client socket (ours or a server's) can hold the port.
    local p lo
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
    ((lo > 12000)) || lo=32768
    while :; do
        p=$((10000 + RANDOM % (lo - 10000)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && ! grep -q "127.0.0.1:$p\$" "$tmp/ports" 2>/dev/null; then
            echo "127.0.0.1:$p" >>"$tmp/ports"
            echo "$p"
            return
        fi
    done
}

# wait_http URL PID [CODE]: until URL answers CODE, 200 by default (or the process died / 20 s
# passed).
wait_http() {
    local i
    for ((i = 0; i < 400; i++)); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' "$1" || true) == "${3:-200}" ]] && return 0
        [[ -e /proc/$2 ]] || { echo "process $2 died before $1 answered" >&2; return 1; }
        sleep 0.05
    done
    echo "timeout waiting for $1" >&2
    return 1
}

# record KEY VALUE: a figure (held in PENDING while a measured run is in progress).
record() { echo "$1 $2" >>"${PENDING:-$results}"; }

# cpu_busy_pct: percent of all CPUs busy over the next second (whole machine).
cpu_busy_pct() {
    local a b
    a=$(head -n 1 /proc/stat)
    sleep 1
    b=$(head -n 1 /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN {
        n = split(a, x); split(b, y); t = 0
        for (i = 2; i <= n; i++) t += y[i] - x[i]
        idle = (y[5] - x[5]) + (y[6] - x[6])
        printf "%d", (t > 0 ? 100 * (t - idle) / t : 0) }'
}

# wait_quiet: called while our own processes are idle; waits (up to 1 min) until the rest of
# the machine uses < 25% of the CPUs, so a concurrent build does not skew a run (measured
# then checks what other processes used during the run itself).
wait_quiet() {
    local i b
    for ((i = 0; i < 30; i++)); do
        b=$(cpu_busy_pct)
        ((b < 25)) && return 0
        ((i > 0)) || log "  machine busy (${b}% CPU in use by other processes); waiting up to 1 min"
        sleep 1
    done
    log "  still busy (${b}%); measuring anyway"
}

rss_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }

# reset_hwm PID: reset VmHWM (peak RSS) to the current RSS (Linux >= 4.0, needs the right to).
reset_hwm() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null; }

# --- registries -------------------------------------------------------------------------

# start_registry NAME DIR PORT [PROXY_UPSTREAM_PORT] [HTPASSWD_FILE]: sets BG_PID; log in
# $tmp/NAME.log. With HTPASSWD_FILE, every request needs Basic credentials (auth: htpasswd).
start_registry() {
    local name=$1 dir=$2 port=$3 up=${4:-} htpasswd=${5:-}
    mkdir -p "$dir"
    {
        echo "version: 0.1"
        echo "storage: { filesystem: { rootdirectory: $dir }, delete: { enabled: true } }"
        echo "http: { addr: 127.0.0.1:$port, secret: bench-secret }"
        echo "log: { level: info, accesslog: { disabled: false } }"
        [[ -z $up ]] || echo "proxy: { remoteurl: http://127.0.0.1:$up }"
        [[ -z $htpasswd ]] || echo "auth: { htpasswd: { realm: bench, path: $htpasswd } }"
    } >"$tmp/$name.yml"
    start_bg "$name" "$tmp/$name.log" docker-registry serve "$tmp/$name.yml"
    wait_http "http://127.0.0.1:$port/v2/" "$BG_PID" "$([[ -z $htpasswd ]] && echo 200 || echo 401)"
}

# upstream_blob_gets OFFSET DIGEST: "COUNT BYTES" of U's GETs of DIGEST logged after OFFSET.
# Access log lines are in combined log format: ... "GET /v2/x/blobs/D HTTP/1.1" 200 BYTES ...
upstream_blob_gets() {
    tail -c "+$(($1 + 1))" "$tmp/U.log" |
        awk -v d="/blobs/$2" '$6 == "\"GET" && index($7, d) { n++; b += $10 } END { printf "%d %.0f\n", n, b }'
}

# --- pulpish ------------------------------------------------------------------------------

# start_pulpish NAME [FLAG...]: fresh data dir, SQLite in it, FLAGs added (e.g. S3_ARGS); sets
# BG_PID, PP (port), PBASE (http://127.0.0.1:PP). With --database-url among the FLAGs (a
# replica on a shared database): that database instead of SQLite, and --advertise-url PBASE.
start_pulpish() {
    local name=$1 dir=$tmp/$1-data db
    shift
    rm -rf "$dir"
    mkdir -p "$dir"
    PP=$(free_port)
    PBASE=http://127.0.0.1:$PP
    if [[ " $* " == *" --database-url "* ]]; then
        db=(--advertise-url "$PBASE")
    else
        db=(--database-url "sqlite://$dir/pulpish.db")
    fi
    start_bg "$name" "$tmp/$name.log" "$PULPISH" serve --bind "127.0.0.1:$PP" --data-dir "$dir" \
        "${db[@]}" --admin-password "$PW" "$@"
    wait_http "$PBASE/pulp/api/v3/status/" "$BG_PID"
}

api() { curl -sS --fail-with-body -u "admin:$PW" -H 'Content-Type: application/json' "$@"; }

# --- the object store (B9-B11) and PostgreSQL (B10) ----------------------------------------

garage_cli() { RUST_LOG=warn "$GARAGE" -c "$tmp/garage/garage.toml" "$@" </dev/null; }

# s3_curl CURL_ARG...: a request signed with the bench key (Garage wants x-amz-content-sha256).
s3_curl() {
    curl -sS --aws-sigv4 "aws:amz:garage:s3" --user "$S3_KEY:$S3_SECRET" \
        -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"
}

hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# start_garage: a single-node Garage (layout applied, key "bench"), as tests/support/garage.rs
# does it; sets S3_ENDPOINT, S3_KEY, S3_SECRET. Log in $tmp/garage.log.
start_garage() {
    local dir=$tmp/garage rpc s3 admin i id out
    mkdir -p "$dir"
    rpc=$(free_port) s3=$(free_port) admin=$(free_port)
    printf '%s\n' "metadata_dir = \"$dir/meta\"" "data_dir = \"$dir/data\"" 'db_engine = "sqlite"' \
        'replication_factor = 1' "rpc_bind_addr = \"127.0.0.1:$rpc\"" \
        "rpc_public_addr = \"127.0.0.1:$rpc\"" "rpc_secret = \"$(hex 32)\"" '' '[s3_api]' \
        's3_region = "garage"' "api_bind_addr = \"127.0.0.1:$s3\"" \
        'root_domain = ".s3.garage.localhost"' '' '[admin]' "api_bind_addr = \"127.0.0.1:$admin\"" \
        "admin_token = \"$(hex 16)\"" >"$dir/garage.toml"
    start_bg garage "$tmp/garage.log" env RUST_LOG=garage=warn "$GARAGE" -c "$dir/garage.toml" server
    for ((i = 0; ; i++)); do
        garage_cli status >/dev/null 2>&1 && break
        if [[ ! -e /proc/$BG_PID ]] || ((i >= 200)); then
            echo "garage did not start:" >&2
            tail "$tmp/garage.log" >&2
            return 1
        fi
        sleep 0.1
    done
    id=$(garage_cli node id -q)
    garage_cli layout assign -z dc1 -c 100G "${id%%@*}" >/dev/null
    garage_cli layout apply --version 1 >/dev/null
    out=$(garage_cli key create bench)
    S3_KEY=$(awk -F': *' '$1 == "Key ID" { print $2 }' <<<"$out")
    S3_SECRET=$(awk -F': *' '$1 == "Secret key" { print $2 }' <<<"$out")
    [[ -n $S3_KEY && -n $S3_SECRET ]] || { echo "garage key create said: $out" >&2; return 1; }
    S3_ENDPOINT=http://127.0.0.1:$s3
    # Ready once a signed ListBuckets answers 200 (the layout is in force).
    for ((i = 0; ; i++)); do
        [[ $(s3_curl -o /dev/null -w '%{http_code}' "$S3_ENDPOINT/" 2>/dev/null || true) == 200 ]] && break
        ((i < 400)) || { echo "garage's S3 API did not answer 200 in 20 s" >&2; return 1; }
        sleep 0.05
    done
}

# new_bucket PREFIX: a new bucket that the bench key may read, write and own; sets S3_ARGS (the
# `pulpish serve` flags for it).
BUCKETS=0
new_bucket() {
    local b
    BUCKETS=$((BUCKETS + 1))
    b=$1-$BASHPID-$BUCKETS
    garage_cli bucket create "$b" >/dev/null
    garage_cli bucket allow --read --write --owner "$b" --key bench >/dev/null
    S3_ARGS=(--storage s3 --s3-endpoint "$S3_ENDPOINT" --s3-bucket "$b" --s3-region garage
        --s3-access-key-id "$S3_KEY" --s3-secret-access-key "$S3_SECRET")
}

# pg_as BIN ARG...: a PostgreSQL server binary, as the postgres user when we are root (initdb
# refuses root).
pg_as() {
    local bin=$PG_BIN/$1
    shift
    if ((EUID == 0)); then runuser -u postgres -- "$bin" "$@"; else "$bin" "$@"; fi
}

# start_pg: a throwaway cluster in PG_DIR (its unix socket there, no TCP, fsync off); sets
# PG_PID (the postmaster, detached by pg_ctl).
start_pg() {
    local rc=0
    PG_DIR=$(mktemp -d /tmp/pulpish-bench-pg.XXXXXX)
    ((EUID != 0)) || chown postgres: "$PG_DIR"
    pg_as initdb -D "$PG_DIR/data" -U postgres --auth=trust --no-sync -E UTF8 --locale=C.UTF-8 >"$tmp/initdb.log" 2>&1 ||
        { cat "$tmp/initdb.log" >&2; return 1; }
    pg_as pg_ctl -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w start \
        -o "-k $PG_DIR -c listen_addresses='' -c fsync=off -c max_connections=300" >/dev/null || rc=$?
    [[ ! -s $PG_DIR/data/postmaster.pid ]] || PG_PID=$(head -n 1 "$PG_DIR/data/postmaster.pid")
    if [[ $rc != 0 || -z $PG_PID ]]; then
        echo "PostgreSQL did not start:" >&2
        cat "$PG_DIR/server.log" >&2
        return 1
    fi
}

# new_database PREFIX: a new empty database; sets PG_URL.
DATABASES=0
new_database() {
    local d
    DATABASES=$((DATABASES + 1))
    d=${1}_${BASHPID}_$DATABASES
    "$PG_BIN/createdb" -h "$PG_DIR" -U postgres "$d"
    PG_URL="postgresql:///$d?host=$PG_DIR&user=postgres"
}

# wait_stored BASE: until pulpish at BASE has recorded the measured blob as an artifact (stored;
# 30 s at most).
wait_stored() {
    local i
    for ((i = 0; i < 600; i++)); do
        [[ $(api "$1/pulp/api/v3/artifacts/?sha256=${BLOB_DIGEST#sha256:}" | jq -r .count) -ge 1 ]] && return 0
        sleep 0.05
    done
    echo "$1 did not store the blob in 30 s" >&2
    return 1
}

# artifact_count BASE: how many artifacts pulpish at BASE has recorded.
artifact_count() { api "$1/pulp/api/v3/artifacts/" | jq -r .count; }

# wait_task BASE HREF: until completed; fails (printing the description) otherwise.
wait_task() {
    local state t
    while :; do
        t=$(api "$1$2")
        state=$(jq -r .state <<<"$t")
        case $state in
            completed) return 0 ;;
            failed | canceled)
                echo "task $2 $state: $(jq -r '.error.description // .error' <<<"$t")" >&2
                return 1
                ;;
        esac
        sleep 0.05
    done
}

# setup_repo BASE NAME UPSTREAM_NAME BASE_PATH: on_demand remote + repo, sync, distribution.
# Sets SYNC_SECS (POST sync -> task seen completed, polled every 50 ms).
setup_repo() {
    local base=$1 name=$2 up=$3 bp=$4 remote repo task t0 t1
    remote=$(api -d "$(jq -cn --arg n "$name" --arg u "http://127.0.0.1:$UP" --arg un "$up" \
        '{name: $n, url: $u, upstream_name: $un, policy: "on_demand"}')" \
        "$base/pulp/api/v3/remotes/container/container/" | jq -er .pulp_href)
    repo=$(api -d "$(jq -cn --arg n "$name" --arg r "$remote" '{name: $n, remote: $r}')" \
        "$base/pulp/api/v3/repositories/container/container/" | jq -er .pulp_href)
    t0=$(date +%s.%N)
    task=$(api -X POST -d '{}' "$base${repo}sync/" | jq -er .task)
    wait_task "$base" "$task"
    t1=$(date +%s.%N)
    SYNC_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    task=$(api -d "$(jq -cn --arg n "$name" --arg b "$bp" --arg r "$repo" \
        '{name: $n, base_path: $b, repository: $r}')" \
        "$base/pulp/api/v3/distributions/container/container/" | jq -er .task)
    wait_task "$base" "$task"
}

# --- measuring ----------------------------------------------------------------------------

# get_blob URL [CURL_FLAG...]: one full GET to /dev/null; prints seconds; fails unless 200 with
# BLOB_SIZE bytes (with -L: at the end of the redirects).
get_blob() {
    local out code size secs
    out=$(curl -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total}' "${@:2}" "$1")
    read -r code size secs <<<"$out"
    if [[ $code != 200 || $size != "$BLOB_SIZE" ]]; then
        echo "GET $1: HTTP $code, $size bytes (expected 200, $BLOB_SIZE)" >&2
        return 1
    fi
    echo "$secs"
}

# get_blob_ttfb URL: as get_blob, printing "SECONDS FIRST_BYTE_MS" (curl's time_starttransfer:
# from the start until the first body byte, connect included).
get_blob_ttfb() {
    local out code size secs first
    out=$(curl -sS -o /dev/null -w '%{http_code} %{size_download} %{time_total} %{time_starttransfer}' "$1")
    read -r code size secs first <<<"$out"
    if [[ $code != 200 || $size != "$BLOB_SIZE" ]]; then
        echo "GET $1: HTTP $code, $size bytes (expected 200, $BLOB_SIZE)" >&2
        return 1
    fi
    echo "$secs $(awk -v f="$first" 'BEGIN { printf "%.3f", f * 1000 }')"
}

# warm_mbps URL [CURL_FLAG...]: WARM_GETS sequential full GETs; prints MB/s (10^6 bytes) over
# their sum.
warm_mbps() {
    local i s total=0
    for ((i = 0; i < WARM_GETS; i++)); do
        s=$(get_blob "$@")
        total=$(awk -v a="$total" -v b="$s" 'BEGIN { print a + b }')
    done
    awk -v n="$WARM_GETS" -v sz="$BLOB_SIZE" -v t="$total" 'BEGIN { printf "%.1f", n * sz / t / 1e6 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }

# record_ratio NAME A B [FILE]: records A ÷ B, from the last values of A and B recorded in FILE
# (default: the results; PENDING for this run's values), if both exist.
record_ratio() {
    local a b from=${4:-$results}
    a=$(awk -v k="$2" '$1 == k { v = $2 } END { print v }' "$from")
    b=$(awk -v k="$3" '$1 == k { v = $2 } END { print v }' "$from")
    [[ -z $a || -z $b ]] || record "$1" "$(ratio "$a" "$b")"
}

# concurrent_gets URL...: CONC clients at once, round-robin over the URLs; fails unless every
# one got the whole blob. Prints the wall time in seconds.
concurrent_gets() {
    local i pids=() t0 t1 bad=0 f urls=("$@")
    t0=$(date +%s.%N)
    for ((i = 0; i < CONC; i++)); do
        curl -sS -o /dev/null -w '%{http_code} %{size_download}\n' "${urls[i % ${#urls[@]}]}" >"$tmp/conc.$i" 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || bad=1; done
    t1=$(date +%s.%N)
    for ((i = 0; i < CONC; i++)); do
        f=$(cat "$tmp/conc.$i")
        [[ $f == "200 $BLOB_SIZE" ]] || { echo "concurrent GET $i: $f" >&2; bad=1; }
    done
    rm -f "$tmp"/conc.*
    [[ $bad == 0 ]] || return 1
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

# rss_loop PID OUT: "VmRSS RssAnon RssFile" (KiB) every 50 ms into OUT while PID lives.
rss_loop() {
    while [[ -e /proc/$1 ]]; do
        awk '$1 ~ /^(VmRSS|RssAnon|RssFile):$/ { v[$1] = $2 }
            END { print v["VmRSS:"], v["RssAnon:"], v["RssFile:"] }' "/proc/$1/status" >>"$2" 2>/dev/null || true
        sleep 0.05
    done
}

# sample_rss PID OUT: rss_loop in the background until stopped; sets BG_PID.
sample_rss() { start_bg sampler /dev/null rss_loop "$1" "$2"; }

# wrk_run URL [timeouts-counted]: "REQ_PER_S P99_MS TIMEOUTS"; fails on socket errors or non-2xx
# answers, and on requests over wrk's 2 s timeout unless they are to be counted (B6 on
# PostgreSQL, where the goal is about them: a row counts them rather than losing the section).
wrk_run() {
    local out rps p99 errs tmo
    out=$(wrk -t2 -c64 -d"${WRK_SECS}s" --latency -s "$tmp/accept.lua" "$1")
    rps=$(awk '$1 == "BENCH_RPS" { print $2 }' <<<"$out")
    p99=$(awk '$1 == "BENCH_P99_MS" { print $2 }' <<<"$out")
    errs=$(awk '$1 == "BENCH_ERRORS" { print $2 }' <<<"$out")
    tmo=$(awk '$1 == "BENCH_TIMEOUTS" { print $2 }' <<<"$out")
    [[ -z ${2:-} || -z $errs || -z $tmo ]] || errs=$((errs - tmo))
    if [[ -z $rps || -z $p99 || $errs != 0 ]]; then
        echo "wrk $1 failed (errors: ${errs:-?}):" >&2
        echo "$out" >&2
        return 1
    fi
    echo "$rps $p99 $tmo"
}

# --- setup ----------------------------------------------------------------------------------

SECONDS=0
log "mode: $($smoke && echo smoke || echo full), $RUNS run(s) per figure; temp dir $tmp"
if [[ -n $given_bin ]]; then
    # Given a binary (the test suite's smoke run passes its debug build): no nested cargo.
    PULPISH=$given_bin
else
    log "cargo build --release -p pulpish"
    (cd "$root" && cargo build --release -p pulpish) >&2
fi
[[ -x $PULPISH ]] || { echo "$0: $PULPISH not built" >&2; exit 1; }

UP=$(free_port)
readonly UP U=http://127.0.0.1:$UP
start_registry U "$tmp/u-storage" "$UP"

# largest_blob REPO TAG: "DIGEST SIZE" of the largest config/layer blob reachable from TAG.
largest_blob() {
    local m
    m=$(curl -sSf -H "Accept: $ACCEPT_ALL" "$U/v2/$1/manifests/$2")
    if jq -e '.manifests' <<<"$m" >/dev/null; then
        jq -r '.manifests[].digest' <<<"$m" | while read -r d; do
            curl -sSf -H "Accept: $ACCEPT_ALL" "$U/v2/$1/manifests/$d" | jq -r '(.layers[], .config) | "\(.digest) \(.size)"'
        done
    else
        jq -r '(.layers[], .config) | "\(.digest) \(.size)"' <<<"$m"
    fi | sort -k2,2nr | head -n 1
}

# The fixtures (B1..B6 only; B7 and B8 bring their own). The measured blob: the big layer, or
# (smoke) the largest blob under fixtures/index.
if $need_fixtures; then
    log "building fixtures"
    if $smoke; then
        bash "$root/tests/fixtures/build.sh" "$tmp/fixtures" >/dev/null
    else
        bash "$root/tests/fixtures/build.sh" "$tmp/fixtures" --big >/dev/null
    fi

    log "pushing fixtures to U ($U)"
    bash "$root/tests/fixtures/push.sh" "$tmp/fixtures" "127.0.0.1:$UP" >"$tmp/pushed" 2>"$tmp/push.log" ||
        { cat "$tmp/push.log" >&2; exit 1; }

    if ((TAGS_BIG > 0)) && selected sync; then
        log "creating fixtures/many$TAGS_BIG ($TAGS_BIG tags) in U"
        skopeo copy --dest-tls-verify=false "oci:$tmp/fixtures/layout:amd64" \
            "docker://127.0.0.1:$UP/fixtures/many$TAGS_BIG:tag-0000" >/dev/null 2>"$tmp/skopeo.log" ||
            { cat "$tmp/skopeo.log" >&2; exit 1; }
        ctype=$(curl -sSf -H "Accept: $ACCEPT_ALL" -o "$tmp/many.json" -w '%{content_type}' \
            "$U/v2/fixtures/many$TAGS_BIG/manifests/tag-0000")
        seq -f 'tag-%04g' 1 $((TAGS_BIG - 1)) |
            xargs -P 8 -I '{}' curl -sSf -o /dev/null -X PUT -H "Content-Type: $ctype" \
                --data-binary "@$tmp/many.json" "$U/v2/fixtures/many$TAGS_BIG/manifests/{}"
        n=$(curl -sSf "$U/v2/fixtures/many$TAGS_BIG/tags/list?n=100000" | jq '.tags | length')
        [[ $n == "$TAGS_BIG" ]] || { echo "$0: fixtures/many$TAGS_BIG has $n tags" >&2; exit 1; }
    fi

    if $smoke; then BLOB_REPO=fixtures/index; else BLOB_REPO=fixtures/big; fi
    read -r BLOB_DIGEST BLOB_SIZE < <(largest_blob "$BLOB_REPO" latest)
    readonly BLOB_REPO BLOB_DIGEST BLOB_SIZE
    [[ -n $BLOB_DIGEST && $BLOB_SIZE -gt 0 ]] || { echo "$0: no blob found in $BLOB_REPO" >&2; exit 1; }
    log "blob: $BLOB_REPO $BLOB_DIGEST ($BLOB_SIZE bytes)"
    U_BLOB=$U/v2/$BLOB_REPO/blobs/$BLOB_DIGEST
    get_blob "$U_BLOB" >/dev/null # page cache warm on U's side
fi

if $need_garage; then
    log "starting Garage ($GARAGE)"
    start_garage
    log "  S3 endpoint $S3_ENDPOINT"
fi
if [[ -n $PG_BIN ]]; then
    log "starting PostgreSQL ($PG_BIN)"
    start_pg
    log "  socket in $PG_DIR, postmaster $PG_PID"
fi

cat >"$tmp/accept.lua" <<EOF
wrk.headers["Accept"] = "$OCI_MANIFEST"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("BENCH_RPS %.1f\n", summary.requests / (summary.duration / 1e6)))
  io.write(string.format("BENCH_P99_MS %.3f\n", latency:percentile(99) / 1000))
  io.write(string.format("BENCH_ERRORS %d\n", e.connect + e.read + e.write + e.status + e.timeout))
  io.write(string.format("BENCH_TIMEOUTS %d\n", e.timeout))
end
EOF

# --- sections ---------------------------------------------------------------------------------
# Each runs in a subshell with errexit: a failure loses that section's figures (reported as
# missing, exit status 1) but the other sections still run.

# others_ticks: "PID TICKS" (utime + stime) of every user process not started by this script.
others_ticks() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v me=$$ -v pg="${PG_PID:-0}" '{
        pid = $1; l = $0; sub(/^.*\) /, "", l); split(l, f, " ")
        pp[pid] = f[2]; t[pid] = f[12] + f[13]
    } END {
        for (p in t) {
            q = p; mine = 0
            # Ours (below this script or our PostgreSQL postmaster, which pg_ctl detached) or a
            # kernel thread (below kthreadd, pid 2): not counted.
            for (n = 0; q > 1 && n < 64; n++) { if (q == me || q == 2 || q == pg) { mine = 1; break }; q = pp[q] }
            if (!mine) print p, t[p]
        }
    }'
}

# measured NAME FUNCTION...: runs one measurement; if other processes (a build, tests) used
# >= 25% of the CPUs meanwhile, its figures are dropped and it is repeated (3 attempts; the
# last one is kept and counted as busy).
measured() {
    local name=$1 attempt t0 t1 pct
    shift
    if $smoke; then
        # The smoke run checks that every figure is produced, not its value: no waiting for a
        # quiet machine, no repeats (it runs inside `cargo test`, beside other tests).
        : >"$tmp/pending"
        PENDING=$tmp/pending "$@"
        cat "$tmp/pending" >>"$results"
        return 0
    fi
    for attempt in 1 2 3; do
        wait_quiet
        : >"$tmp/pending"
        others_ticks >"$tmp/others.0"
        t0=$(date +%s.%N)
        PENDING=$tmp/pending "$@"
        t1=$(date +%s.%N)
        others_ticks >"$tmp/others.1"
        pct=$(awk -v t0="$t0" -v t1="$t1" -v hz="$(getconf CLK_TCK)" -v ncpu="$(nproc)" '
            FNR == NR { before[$1] = $2; next }
            { d += $2 - (($1 in before) ? before[$1] : 0) }
            END { printf "%d", 100 * d / hz / ((t1 - t0) * ncpu) }' "$tmp/others.0" "$tmp/others.1")
        if ((pct < 25 || attempt == 3)); then
            cat "$tmp/pending" >>"$results"
            if ((pct >= 25)); then
                log "  $name: other processes used ${pct}% of the CPUs; kept anyway (3rd attempt)"
                record busy 1
            fi
            return 0
        fi
        log "  $name: other processes used ${pct}% of the CPUs meanwhile; repeating it"
    done
}

# W: one long-lived pulpish with the blob stored and fixtures/oci synced (B1, B5 warm, B6).
b1_run() {
    local pm um
    pm=$(warm_mbps "$P_BLOB")
    um=$(warm_mbps "$U_BLOB")
    record b1.pulpish "$pm"
    record b1.u "$um"
    record b1.ratio "$(ratio "$pm" "$um")"
    log "  run $1: pulpish $pm MB/s, U $um MB/s"
}

# B5 warm: VmRSS counts the pages of memory-mapped files too, so RssAnon (heap, stacks) and
# RssFile (mapped files: the binary, stored blobs) are reported beside it.
b5_warm_run() {
    local before after i s spid pids=() peak peak_anon peak_file kib2mib
    kib2mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
    : >"$tmp/rss4"
    before=$(rss_kib "$W_PID" VmRSS)
    sample_rss "$W_PID" "$tmp/rss4"
    spid=$BG_PID
    for ((i = 0; i < 4; i++)); do
        for ((s = 0; s < WARM_GETS; s++)); do get_blob "$P_BLOB" >/dev/null; done &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i"; done
    sleep 0.2
    stop_pid "$spid"
    after=$(rss_kib "$W_PID" VmRSS)
    [[ -s $tmp/rss4 ]] || { echo "no RSS samples" >&2; return 1; }
    read -r peak peak_anon peak_file < <(awk '
        $1 > a { a = $1 } $2 > b { b = $2 } $3 > c { c = $3 } END { print a, b, c }' "$tmp/rss4")
    record b5.warm4.before "$(kib2mib "$before")"
    record b5.warm4.peak "$(kib2mib "$peak")"
    record b5.warm4.peak_anon "$(kib2mib "$peak_anon")"
    record b5.warm4.peak_file "$(kib2mib "$peak_file")"
    record b5.warm4.after "$(kib2mib "$after")"
    log "  VmRSS before $before KiB, peak $peak KiB (RssAnon $peak_anon, RssFile $peak_file;" \
        "$(wc -l <"$tmp/rss4") samples), after $after KiB"
}

# B6, one run: pulpish (SQLite), pulpish on PostgreSQL (if there), U.
b6_run() {
    local out p pm g= gm= gt u um
    out=$(wrk_run "$W_BASE/v2/bench/oci/manifests/latest")
    read -r p pm _ <<<"$out"
    if [[ -n $WPG_BASE ]]; then
        out=$(wrk_run "$WPG_BASE/v2/bench/oci/manifests/latest" timeouts-counted)
        read -r g gm gt <<<"$out"
        record b6.pg.rps "$g"
        record b6.pg.p99 "$gm"
        record b6.pg.timeouts "$gt"
    fi
    out=$(wrk_run "$U/v2/fixtures/oci/manifests/latest")
    read -r u um _ <<<"$out"
    record b6.pulpish.rps "$p"
    record b6.u.rps "$u"
    record b6.ratio "$(ratio "$p" "$u")"
    record b6.pulpish.p99 "$pm"
    record b6.u.p99 "$um"
    log "  run $1: pulpish $p req/s p99 $pm ms,${g:+ on PostgreSQL $g req/s p99 $gm ms ($gt over 2 s),} U $u req/s p99 $um ms"
}

section_warm() {
    local i
    WPG_BASE=
    if [[ -n $PG_BIN ]]; then
        # B6 on PostgreSQL: a fresh database, the pool as pulpish sizes it by default.
        new_database b6
        start_pulpish WPG --database-url "$PG_URL"
        WPG_BASE=$PBASE
        setup_repo "$PBASE" oci fixtures/oci bench/oci
    fi
    start_pulpish W
    W_PID=$BG_PID
    W_BASE=$PBASE
    setup_repo "$PBASE" blob "$BLOB_REPO" bench/blob
    setup_repo "$PBASE" oci fixtures/oci bench/oci
    P_BLOB=$PBASE/v2/bench/blob/blobs/$BLOB_DIGEST
    get_blob "$P_BLOB" >/dev/null # on_demand: fetched and stored now
    # The artifact is recorded just after the client has its bytes: give it a moment.
    for _ in $(seq 100); do
        [[ $(find "$tmp/W-data/artifact" -type f | wc -l) -ge 1 ]] && break
        sleep 0.1
    done
    [[ $(find "$tmp/W-data/artifact" -type f | wc -l) -ge 1 ]] || { echo "blob not stored by pulpish" >&2; return 1; }
    get_blob "$P_BLOB" >/dev/null # served from disk, page cache warm

    log "B1 warm GET throughput ($WARM_GETS x $BLOB_SIZE bytes per run)"
    for ((i = 1; i <= RUNS; i++)); do measured "B1 run $i" b1_run "$i"; done
    log "B5 RSS with 4 clients streaming the stored blob ($WARM_GETS GETs each)"
    measured "B5 warm" b5_warm_run
    log "B6 manifest GETs, 64 connections, ${WRK_SECS} s per run${WPG_BASE:+ (pulpish on SQLite and on PostgreSQL)}"
    for ((i = 1; i <= RUNS; i++)); do measured "B6 run $i" b6_run "$i"; done
    stop_pid "$W_PID"
    stop_matching WPG
}

# Fresh P: proxy registry in front of U with empty storage. Sets PX (base URL), P_PID.
fresh_proxy() {
    local port
    rm -rf "$tmp/p-storage"
    port=$(free_port)
    start_registry cold-P "$tmp/p-storage" "$port" "$UP"
    P_PID=$BG_PID
    PX=http://127.0.0.1:$port
}

# A fresh pulpish with the blob repository synced (nothing downloaded). Sets PBASE, C_PID.
fresh_pulpish() {
    start_pulpish cold-pulpish
    C_PID=$BG_PID
    setup_repo "$PBASE" blob "$BLOB_REPO" bench/blob
    [[ -z $(find "$tmp/cold-pulpish-data/artifact" -type f) ]] || { echo "pulpish is not cold" >&2; return 1; }
}

# settle_upstream_log OFFSET: until U's blob GETs after OFFSET stop changing for 0.5 s (max 15 s).
settle_upstream_log() {
    local last="" cur i
    for ((i = 0; i < 30; i++)); do
        cur=$(upstream_blob_gets "$1" "$BLOB_DIGEST")
        [[ $cur == "$last" && $i -ge 2 ]] && return 0
        last=$cur
        sleep 0.5
    done
}

# peak_mib PID: VmHWM since the last reset_hwm, in MiB.
peak_mib() { awk -v k="$(rss_kib "$1" VmHWM)" 'BEGIN { printf "%.1f", k / 1024 }'; }

# sha.py FILE: reads FILE into memory, then times SHA-256 of it 3 times (hashlib: OpenSSL, SHA-NI
# where the CPU has it); prints "SECONDS HEX", the fastest of the 3 (what the CPU can do: the
# first one alone is often slower, and a busy machine makes any of them slower).
cat >"$tmp/sha.py" <<'EOF'
import hashlib, sys, time
with open(sys.argv[1], "rb") as f:
    data = f.read()
best = None
for _ in range(3):
    t0 = time.perf_counter()
    digest = hashlib.sha256(data).hexdigest()
    t = time.perf_counter() - t0
    best = t if best is None else min(best, t)
print(f"{best:.4f} {digest}")
EOF

# sha_secs: the time to SHA-256 the measured blob in memory (U's copy of it), checked against
# its digest.
sha_secs() {
    local hex=${BLOB_DIGEST#sha256:} secs got
    read -r secs got < <(python3 "$tmp/sha.py" "$tmp/u-storage/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data")
    [[ $got == "$hex" ]] || { echo "SHA-256 of U's blob file: $got, expected $hex" >&2; return 1; }
    echo "$secs"
}

# B2 (+ B2', B13, B5): the time to SHA-256 the blob in memory, U direct (warm), then a fresh
# pulpish's first GET, then a fresh P's first GET.
b2_run() {
    local t u p sha u_first t_first out hwm_ok=true
    sha=$(sha_secs)
    fresh_pulpish
    out=$(get_blob_ttfb "$U_BLOB")
    read -r u u_first <<<"$out"
    reset_hwm "$C_PID" || hwm_ok=false
    out=$(get_blob_ttfb "$PBASE/v2/bench/blob/blobs/$BLOB_DIGEST")
    read -r t t_first <<<"$out"
    if $hwm_ok; then record b5.cold1 "$(peak_mib "$C_PID")"; fi
    stop_pid "$C_PID"
    fresh_proxy
    p=$(get_blob "$PX/v2/$BLOB_REPO/blobs/$BLOB_DIGEST")
    stop_pid "$P_PID"
    record b2.u "$u"
    record b2.pulpish "$t"
    record b2.p "$p"
    record b2.ratio "$(ratio "$t" "$u")"
    record b2.p.ratio "$(ratio "$p" "$u")"
    record b2.sha "$sha"
    record b2.bound.ratio "$(awk -v t="$t" -v u="$u" -v s="$sha" 'BEGIN { printf "%.3f", t / (u > s ? u : s) }')"
    record b13.u "$u_first"
    record b13.pulpish "$t_first"
    record b13.ratio "$(ratio "$t_first" "$u_first")"
    log "  run $1: U $u s, pulpish cold $t s, P cold $p s; SHA-256 in memory $sha s;" \
        "first byte: U $u_first ms, pulpish $t_first ms"
}

# B3 (+ B5) against a fresh pulpish.
b3_pulpish_run() {
    local off n b wall hwm_ok=true
    fresh_pulpish
    reset_hwm "$C_PID" || hwm_ok=false
    sleep 0.3
    off=$(stat -c %s "$tmp/U.log")
    wall=$(concurrent_gets "$PBASE/v2/bench/blob/blobs/$BLOB_DIGEST")
    if $hwm_ok; then record b5.cold32 "$(peak_mib "$C_PID")"; fi
    settle_upstream_log "$off"
    read -r n b < <(upstream_blob_gets "$off" "$BLOB_DIGEST")
    stop_pid "$C_PID"
    record b3.pulpish "$(ratio "$b" "$BLOB_SIZE")"
    record b3.pulpish.gets "$n"
    record b3.pulpish.wall "$wall"
    log "  run $1: pulpish: $n upstream GETs, $b bytes, clients done in $wall s"
}

# B3 against a fresh P.
b3_proxy_run() {
    local off n b wall
    fresh_proxy
    off=$(stat -c %s "$tmp/U.log")
    wall=$(concurrent_gets "$PX/v2/$BLOB_REPO/blobs/$BLOB_DIGEST")
    # P's own store download may finish after the clients: wait for U's log to settle.
    settle_upstream_log "$off"
    read -r n b < <(upstream_blob_gets "$off" "$BLOB_DIGEST")
    stop_pid "$P_PID"
    record b3.p "$(ratio "$b" "$BLOB_SIZE")"
    record b3.p.gets "$n"
    record b3.p.wall "$wall"
    log "  run $1: P: $n upstream GETs, $b bytes, clients done in $wall s"
}

section_cold() {
    local i
    log "B2 cold GET (fresh pulpish / fresh P per run) + B2' SHA-256 bound + B13 first byte + B5 peak RSS"
    for ((i = 1; i <= RUNS; i++)); do measured "B2 run $i" b2_run "$i"; done
}

section_cold32() {
    local i
    log "B3 $CONC concurrent cold GETs + B5 peak RSS"
    for ((i = 1; i <= RUNS; i++)); do
        measured "B3 pulpish run $i" b3_pulpish_run "$i"
        measured "B3 P run $i" b3_proxy_run "$i"
    done
}

# sync_tags UPSTREAM_NAME TAGS: a fresh pulpish syncs it; sets SYNC_SECS; checks the tag count.
sync_tags() {
    local n
    start_pulpish cold-sync
    setup_repo "$PBASE" many "$1" bench/many
    n=$(curl -sSf "$PBASE/v2/bench/many/tags/list" | jq '.tags | length')
    stop_pid "$BG_PID"
    [[ $n == "$2" ]] || { echo "pulpish synced $n tags of $1, expected $2" >&2; return 1; }
}

b4_run() {
    local t250 t2500
    sync_tags fixtures/many 250
    t250=$SYNC_SECS
    record b4.250 "$t250"
    if ((TAGS_BIG > 0)); then
        sync_tags "fixtures/many$TAGS_BIG" "$TAGS_BIG"
        t2500=$SYNC_SECS
        record b4.2500 "$t2500"
        record b4.ratio "$(ratio "$t2500" "$t250")"
        log "  run $1: 250 tags $t250 s, $TAGS_BIG tags $t2500 s"
    else
        log "  run $1: 250 tags $t250 s"
    fi
}

section_sync() {
    local i
    log "B4 on_demand sync wall time (fresh pulpish per sync)"
    for ((i = 1; i <= RUNS; i++)); do measured "B4 run $i" b4_run "$i"; done
}

# --- B7: wrong-password flood -----------------------------------------------------------------

# wait_bg PID: wait for a start_bg process that ends by itself, then unregister it.
wait_bg() {
    local rc=0
    wait "$1" || rc=$?
    sed -i "/^$1 /d" "$pidfile"
    return "$rc"
}

# flood_config OUT USER URL...: a curl config (-K) of FLOOD_N GETs, each with its own wrong
# password (so no cache of checked credentials can answer it), round-robin over the URLs; each
# transfer prints "URL_INDEX HTTP_CODE".
flood_config() {
    local out=$1 user=$2 i u
    shift 2
    : >"$out"
    for ((i = 0; i < FLOOD_N; i++)); do
        u=$((i % $#))
        ((i == 0)) || echo next >>"$out"
        printf 'url = "%s"\nuser = "%s:wrong-%d"\noutput = "/dev/null"\nwrite-out = "%d %%{http_code}\\n"\n' \
            "${@:u+1:1}" "$user" "$i" "$u" >>"$out"
    done
}

# flood_curl CONFIG OUT: the flood, FLOOD_P transfers at a time, new connections at once; the
# answers into OUT (curl's parallel progress meter, which -s does not silence here, is dropped).
flood_curl() { curl -s -Z --parallel-immediate --parallel-max "$FLOOD_P" -K "$1" >"$2" 2>/dev/null; }

# probe_loop URL USER:PASSWORD OUT FLAG: GETs with the right password, one after another, while
# FLAG exists; "HTTP_CODE SECONDS" per GET into OUT.
probe_loop() {
    while [[ -e $4 ]]; do
        curl -s -o /dev/null -w '%{http_code} %{time_total}\n' -u "$2" "$1" >>"$3" || true
    done
}

# flood PID LABEL CREDS PROBE_URL URL...: resets PID's VmHWM, samples its RSS, sends the flood
# (FLOOD_P at a time) while probe_loop checks PROBE_URL with the right CREDS, waits SETTLE s;
# records b7.LABEL.{before,peak,peak_anon,after,after_anon,secs,good_bad,good_max,good_after}
# and the histogram b7.LABEL.{401,429,503,other}.
flood() {
    local pid=$1 label=$2 creds=$3 probe_url=$4 before spid fpid ppid t0 t1 hwm peak peak_anon
    local after after_anon n c401 c429 c503 other good_n good_bad good_max good_after
    shift 4
    flood_config "$tmp/flood.cfg" "${creds%%:*}" "$@"
    : >"$tmp/flood.out"
    : >"$tmp/probe.out"
    : >"$tmp/flood.rss"
    before=$(rss_kib "$pid" VmRSS)
    reset_hwm "$pid" || true
    sample_rss "$pid" "$tmp/flood.rss"
    spid=$BG_PID
    touch "$tmp/flooding"
    t0=$(date +%s.%N)
    start_bg flood /dev/null flood_curl "$tmp/flood.cfg" "$tmp/flood.out"
    fpid=$BG_PID
    start_bg probe /dev/null probe_loop "$probe_url" "$creds" "$tmp/probe.out" "$tmp/flooding"
    ppid=$BG_PID
    wait_bg "$fpid" || true # curl exits non-zero if a transfer failed; counted as "other" below
    t1=$(date +%s.%N)
    rm -f "$tmp/flooding"
    wait_bg "$ppid" || true
    good_after=$(curl -s -o /dev/null -w '%{http_code}' -u "$creds" "$probe_url" || true)
    sleep "$SETTLE"
    stop_pid "$spid"
    hwm=$(rss_kib "$pid" VmHWM)
    after=$(rss_kib "$pid" VmRSS)
    after_anon=$(rss_kib "$pid" RssAnon)
    read -r peak peak_anon < <(awk -v h="$hwm" '$1 > a { a = $1 } $2 > b { b = $2 }
        END { print (h > a ? h : a), b + 0 }' "$tmp/flood.rss")
    read -r n c401 c429 c503 other < <(awk '/^[0-9]+ [0-9]+$/ { n++; c[$2]++ }
        END { print n + 0, c[401] + 0, c[429] + 0, c[503] + 0, n - c[401] - c[429] - c[503] }' "$tmp/flood.out")
    read -r good_n good_bad good_max < <(awk '{ n++; if ($1 != 200) bad++; if ($2 > m) m = $2 }
        END { print n + 0, bad + 0, m + 0 }' "$tmp/probe.out")
    if [[ $n != "$FLOOD_N" || $good_n == 0 || $good_after != 200 ]]; then
        echo "flood $label: $n of $FLOOD_N answers, $good_n probes, right password after: HTTP $good_after" >&2
        return 1
    fi
    kib2mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
    record "b7.$label.before" "$(kib2mib "$before")"
    record "b7.$label.peak" "$(kib2mib "$peak")"
    record "b7.$label.peak_anon" "$(kib2mib "$peak_anon")"
    record "b7.$label.after" "$(kib2mib "$after")"
    record "b7.$label.after_anon" "$(kib2mib "$after_anon")"
    record "b7.$label.secs" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"
    record "b7.$label.401" "$c401"
    record "b7.$label.429" "$c429"
    record "b7.$label.503" "$c503"
    record "b7.$label.other" "$other"
    record "b7.$label.good_bad" "$good_bad"
    record "b7.$label.good_max" "$good_max"
    log "  $label: VmRSS $before KiB -> peak $peak KiB (RssAnon $peak_anon) -> $after KiB" \
        "${SETTLE} s after; 401 $c401, 429 $c429, 503 $c503, other $other;" \
        "right password during: $good_n GETs, $good_bad not 200, slowest $good_max s; after: $good_after"
    log "  $label answers by URL: $(sort "$tmp/flood.out" | uniq -c | tr -s ' \n' ' ')"
}

b7_pulpish_run() {
    start_pulpish B7
    # The admin has logged in before (its credentials were checked once), as during any session.
    api -o /dev/null "$PBASE/pulp/api/v3/remotes/container/container/"
    flood "$BG_PID" pulpish "admin:$PW" "$PBASE/pulp/api/v3/remotes/container/container/" \
        "$PBASE/pulp/api/v3/remotes/container/container/" "$PBASE/token?scope=repository:x:pull"
    stop_matching B7
}

# The reference: docker-registry with auth: htpasswd (bcrypt), flooded on /v2/.
b7_registry_run() {
    local port
    htpasswd -Bbn bench bench-pw >"$tmp/htpasswd" 2>/dev/null
    port=$(free_port)
    start_registry R7 "$tmp/r7-storage" "$port" "" "$tmp/htpasswd"
    curl -sSf -o /dev/null -u bench:bench-pw "http://127.0.0.1:$port/v2/"
    flood "$BG_PID" reg "bench:bench-pw" "http://127.0.0.1:$port/v2/" "http://127.0.0.1:$port/v2/"
    stop_matching R7
}

section_flood() {
    log "B7 $FLOOD_N requests with wrong passwords, $FLOOD_P at a time: pulpish (remotes + /token), docker-registry htpasswd (/v2/)"
    measured "B7 pulpish" b7_pulpish_run
    measured "B7 docker-registry" b7_registry_run
    record_ratio b7.ratio b7.pulpish.peak b7.reg.peak
}

# --- B8: stalled readers -----------------------------------------------------------------------

# stall.py HOST PORT PATH N HOLD READY: N connections each send one GET and never read; READY is
# created once all are sent; after HOLD s, prints how many had an answer starting "HTTP/1.1 200"
# (peeked, not read) and closes them all.
cat >"$tmp/stall.py" <<'EOF'
import socket, sys, time
host, port, path, n, hold, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
socks = []
for _ in range(n):
    s = socket.create_connection((host, port))
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    socks.append(s)
open(ready, "w").close()
time.sleep(hold)
ok = 0
for s in socks:
    try:
        ok += s.recv(12, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"HTTP/1.1 200"
    except BlockingIOError:
        pass
print(ok, flush=True)
for s in socks:
    s.close()
EOF

# rss3 PID: "VmRSS RssAnon RssFile" in KiB.
rss3() { echo "$(rss_kib "$1" VmRSS) $(rss_kib "$1" RssAnon) $(rss_kib "$1" RssFile)"; }

# stall PID LABEL PORT PATH: STALL_N stalled readers of PATH; records b8.LABEL.* (MiB) before,
# SETTLE s into the stall, and SETTLE s after the readers closed, plus KiB per reader.
stall() {
    local pid=$1 label=$2 port=$3 path=$4 b ba bf d da df a aa af spid ok i
    rm -f "$tmp/stall.ready"
    read -r b ba bf < <(rss3 "$pid")
    start_bg stall "$tmp/stall.out" python3 "$tmp/stall.py" 127.0.0.1 "$port" "$path" "$STALL_N" \
        "$((SETTLE + 1))" "$tmp/stall.ready"
    spid=$BG_PID
    for ((i = 0; i < 600; i++)); do
        [[ -e $tmp/stall.ready || ! -e /proc/$spid ]] && break
        sleep 0.05
    done
    [[ -e $tmp/stall.ready ]] || { echo "stall $label: readers not connected"; cat "$tmp/stall.out"; } >&2
    sleep "$SETTLE"
    read -r d da df < <(rss3 "$pid")
    wait_bg "$spid" || { echo "stall $label: client failed:" >&2; cat "$tmp/stall.out" >&2; return 1; }
    sleep "$SETTLE"
    read -r a aa af < <(rss3 "$pid")
    ok=$(tail -n 1 "$tmp/stall.out")
    [[ $ok == "$STALL_N" ]] || { echo "stall $label: $ok of $STALL_N readers got 200" >&2; return 1; }
    kib2mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
    record "b8.$label.before" "$(kib2mib "$b")"
    record "b8.$label.during" "$(kib2mib "$d")"
    record "b8.$label.during_anon" "$(kib2mib "$da")"
    record "b8.$label.during_file" "$(kib2mib "$df")"
    record "b8.$label.after" "$(kib2mib "$a")"
    record "b8.$label.after_anon" "$(kib2mib "$aa")"
    record "b8.$label.per_reader" "$(awk -v d="$d" -v b="$b" -v n="$STALL_N" 'BEGIN { printf "%.0f", (d - b) / n }')"
    record "b8.$label.per_reader_anon" "$(awk -v d="$da" -v b="$ba" -v n="$STALL_N" 'BEGIN { printf "%.0f", (d - b) / n }')"
    log "  $label: VmRSS/RssAnon/RssFile KiB before $b/$ba/$bf, during $d/$da/$df, after $a/$aa/$af"
}

# check_blob URL: a full GET gets 200 and STALL_BLOB's size.
check_blob() {
    local got
    got=$(curl -sS -o /dev/null -w '%{http_code} %{size_download}' "$1")
    [[ $got == "200 $STALL_SIZE" ]] || { echo "GET $1: $got (expected 200 $STALL_SIZE)" >&2; return 1; }
}

b8_pulpish_run() {
    local code
    start_pulpish B8
    code=$(curl -sS -o "$tmp/push.out" -w '%{http_code}' -u "admin:$PW" -X POST \
        -H 'Content-Type: application/octet-stream' --data-binary "@$tmp/stall.blob" \
        "$PBASE/v2/bench/stall/blobs/uploads/?digest=$STALL_DIGEST")
    [[ $code == 201 ]] || { echo "push to pulpish: HTTP $code $(cat "$tmp/push.out")" >&2; return 1; }
    check_blob "$PBASE/v2/bench/stall/blobs/$STALL_DIGEST" # stored; page cache warm
    stall "$BG_PID" pulpish "$PP" "/v2/bench/stall/blobs/$STALL_DIGEST"
    stop_matching B8
}

# The reference: a fresh docker-registry process serving U's storage (U itself keeps the memory
# of earlier runs; Go returns it to the system only minutes later).
b8_u_run() {
    local port
    port=$(free_port)
    start_registry R8 "$tmp/u-storage" "$port"
    check_blob "http://127.0.0.1:$port/v2/bench/stall/blobs/$STALL_DIGEST" # page cache warm
    stall "$BG_PID" u "$port" "/v2/bench/stall/blobs/$STALL_DIGEST"
    stop_matching R8
}

section_stall() {
    local loc sep
    log "B8 $STALL_N stalled readers of a stored $STALL_MIB MiB blob: pulpish, docker-registry"
    head -c $((STALL_MIB << 20)) /dev/urandom >"$tmp/stall.blob"
    STALL_SIZE=$((STALL_MIB << 20))
    STALL_DIGEST=sha256:$(sha256sum "$tmp/stall.blob" | cut -d ' ' -f 1)
    # U: a monolithic push (POST, then PUT with the bytes).
    loc=$(curl -sSf -D - -o /dev/null -X POST "$U/v2/bench/stall/blobs/uploads/" |
        awk 'tolower($1) == "location:" { print $2 }' | tr -d '\r')
    [[ $loc == http* ]] || loc=$U$loc
    [[ $loc == *\?* ]] && sep='&' || sep='?'
    curl -sSf -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' \
        --data-binary "@$tmp/stall.blob" "$loc${sep}digest=$STALL_DIGEST"
    check_blob "$U/v2/bench/stall/blobs/$STALL_DIGEST"
    measured "B8 pulpish" b8_pulpish_run
    measured "B8 docker-registry" b8_u_run
    record_ratio b8.ratio b8.pulpish.during b8.u.during
}

# --- B9, B11: the object-store backend (Garage) -----------------------------------------------

# stored_pulpish NAME [FLAG...]: a pulpish with the blob repository synced and the blob fetched
# once through it and recorded as stored; sets PBASE, BLOB_URL.
stored_pulpish() {
    local name=$1
    shift
    start_pulpish "$name" "$@"
    setup_repo "$PBASE" blob "$BLOB_REPO" bench/blob
    BLOB_URL=$PBASE/v2/bench/blob/blobs/$BLOB_DIGEST
    get_blob "$BLOB_URL" >/dev/null # on_demand: fetched now, then stored
    wait_stored "$PBASE"
}

# B9 warm and B11, one run: the same blob from pulpish on the filesystem, on S3 (streamed through
# pulpish), on S3 with --redirect-blobs (curl -L: 307, then the presigned GET from Garage), and
# from U directly, back to back.
s3warm_run() {
    local fs s3 rd u
    fs=$(warm_mbps "$FSW_BLOB")
    s3=$(warm_mbps "$S3W_BLOB")
    rd=$(warm_mbps "$RDW_BLOB" -L)
    u=$(warm_mbps "$U_BLOB")
    record b9.warm.s3 "$s3"
    record b9.warm.fs "$fs"
    record b9.warm.u "$u"
    record b9.warm.s3_fs "$(ratio "$s3" "$fs")"
    record b9.warm.s3_u "$(ratio "$s3" "$u")"
    record b11.redirect "$rd"
    record b11.rd_s3 "$(ratio "$rd" "$s3")"
    record b11.rd_fs "$(ratio "$rd" "$fs")"
    log "  run $1: S3 $s3 MB/s, filesystem $fs MB/s, S3 --redirect-blobs $rd MB/s, U $u MB/s"
}

section_s3warm() {
    local i code
    stored_pulpish FSW
    FSW_BLOB=$BLOB_URL
    new_bucket b9w
    stored_pulpish S3W "${S3_ARGS[@]}"
    S3W_BLOB=$BLOB_URL
    new_bucket b11
    stored_pulpish RDW "${S3_ARGS[@]}" --redirect-blobs
    RDW_BLOB=$BLOB_URL
    code=$(curl -sS -o /dev/null -w '%{http_code}' "$RDW_BLOB")
    [[ $code == 307 ]] || { echo "--redirect-blobs: the stored blob answered $code, not 307" >&2; return 1; }
    # Page caches (and Garage's) warm.
    get_blob "$FSW_BLOB" >/dev/null
    get_blob "$S3W_BLOB" >/dev/null
    get_blob "$RDW_BLOB" -L >/dev/null
    log "B9 warm + B11 GET throughput, S3 / filesystem / S3 redirect / U ($WARM_GETS x $BLOB_SIZE bytes each per run)"
    for ((i = 1; i <= RUNS; i++)); do measured "B9/B11 warm run $i" s3warm_run "$i"; done
    stop_matching FSW
    stop_matching S3W
    stop_matching RDW
}

# cold_once NAME [FLAG...]: a fresh pulpish (the blob repository synced, nothing fetched), then
# its first GET of the blob; sets COLD_SECS (that GET) and STORED_SECS (from the GET's start
# until the blob is recorded as stored, polled every 50 ms). Stops it.
cold_once() {
    local name=$1 t0 t1
    shift
    start_pulpish "$name" "$@"
    setup_repo "$PBASE" blob "$BLOB_REPO" bench/blob
    [[ $(api "$PBASE/pulp/api/v3/artifacts/?sha256=${BLOB_DIGEST#sha256:}" | jq -r .count) == 0 ]] ||
        { echo "$name is not cold" >&2; return 1; }
    t0=$(date +%s.%N)
    COLD_SECS=$(get_blob "$PBASE/v2/bench/blob/blobs/$BLOB_DIGEST")
    wait_stored "$PBASE"
    t1=$(date +%s.%N)
    STORED_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    stop_matching "$name"
}

# B9 cold, one run: U direct (warm), then a fresh pulpish on S3 (a new bucket), then a fresh
# pulpish on the filesystem.
s3cold_run() {
    local u s ss f fs
    u=$(get_blob "$U_BLOB")
    new_bucket b9c
    cold_once C9S "${S3_ARGS[@]}"
    s=$COLD_SECS ss=$STORED_SECS
    cold_once C9F
    f=$COLD_SECS fs=$STORED_SECS
    record b9.cold.u "$u"
    record b9.cold.s3 "$s"
    record b9.cold.fs "$f"
    record b9.cold.s3_fs "$(ratio "$s" "$f")"
    record b9.cold.s3_u "$(ratio "$s" "$u")"
    record b9.cold.s3_stored "$ss"
    record b9.cold.fs_stored "$fs"
    log "  run $1: U $u s, pulpish cold on S3 $s s (stored after $ss s), on the filesystem $f s (stored after $fs s)"
}

section_s3cold() {
    local i
    log "B9 cold GET: U direct, fresh pulpish on S3 (new bucket), fresh pulpish on the filesystem"
    for ((i = 1; i <= RUNS; i++)); do measured "B9 cold run $i" s3cold_run "$i"; done
}

# --- B10: scale-out, three replicas on PostgreSQL + S3 -----------------------------------------

# cold_conc NAME_PREFIX URL...: CONC cold GETs round-robin over the URLs; records
# b10.LABEL.{wall,mbps,gets,ubytes} (LABEL: $1) from the wall time and U's log.
cold_conc() {
    local label=$1 off wall n b
    shift
    sleep 0.3
    off=$(stat -c %s "$tmp/U.log")
    wall=$(concurrent_gets "$@")
    settle_upstream_log "$off"
    read -r n b < <(upstream_blob_gets "$off" "$BLOB_DIGEST")
    record "b10.$label.wall" "$wall"
    record "b10.$label.mbps" "$(awk -v n="$CONC" -v s="$BLOB_SIZE" -v t="$wall" 'BEGIN { printf "%.1f", n * s / t / 1e6 }')"
    record "b10.$label.gets" "$n"
    record "b10.$label.ubytes" "$(ratio "$b" "$BLOB_SIZE")"
    COLD_GETS=$n
    log "  $label: $CONC clients over $# URL(s) done in $wall s; U saw $n GET(s) of the blob, $b bytes"
}

# B10, one run: three fresh replicas (a new database, a new bucket, each its own data dir and
# --advertise-url), CONC cold GETs round-robin over them; then the same on one fresh pulpish on
# the filesystem (SQLite).
b10_run() {
    local i urls=() first=
    new_database b10
    new_bucket b10
    for i in 1 2 3; do
        start_pulpish "B10-r$i" --database-url "$PG_URL" "${S3_ARGS[@]}"
        urls+=("$PBASE/v2/bench/blob/blobs/$BLOB_DIGEST")
        first=${first:-$PBASE}
    done
    setup_repo "$first" blob "$BLOB_REPO" bench/blob
    [[ $(api "$first/pulp/api/v3/artifacts/?sha256=${BLOB_DIGEST#sha256:}" | jq -r .count) == 0 ]] ||
        { echo "the replicas are not cold" >&2; return 1; }
    cold_conc rep "${urls[@]}"
    ((COLD_GETS == 1)) || log "  B10 run $1: the upstream served $COLD_GETS GETs of the blob to the 3 replicas (must be 1)"
    stop_matching B10-r
    start_pulpish B10-one
    setup_repo "$PBASE" blob "$BLOB_REPO" bench/blob
    cold_conc one "$PBASE/v2/bench/blob/blobs/$BLOB_DIGEST"
    stop_matching B10-one
    record_ratio b10.ratio b10.rep.mbps b10.one.mbps "$PENDING"
}


section_scaleout() {
    local i
    log "B10 $CONC cold GETs over 3 replicas (PostgreSQL + S3) vs on 1 pulpish (filesystem)"
    for ((i = 1; i <= RUNS; i++)); do measured "B10 run $i" b10_run "$i"; done
}

# --- B12 (issue 15's B7): skopeo copy of whole images, cold through pulpish vs from U -------

# build_ten: an image of TEN_LAYERS layers of TEN_KIB KiB of AES-CTR keystream each (a fixed key
# per layer, as build.sh makes the big layer), pushed to U as bench/ten:latest.
build_ten() {
    local d=$tmp/ten i key
    rm -rf "$d"
    mkdir -p "$d/files"
    umoci init --layout "$d/layout" >/dev/null
    umoci new --image "$d/layout:ten" >/dev/null
    for ((i = 0; i < TEN_LAYERS; i++)); do
        key=$(printf 'pulpish-ten-%d' "$i" | sha256sum | cut -d ' ' -f 1)
        head -c $((TEN_KIB << 10)) /dev/zero |
            openssl enc -aes-256-ctr -nosalt -K "$key" -iv 00000000000000000000000000000000 >"$d/files/layer-$i.bin"
        tar -C "$d/files" --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$d/layer.tar" "layer-$i.bin"
        umoci raw add-layer --image "$d/layout:ten" --history.created 1970-01-01T00:00:00Z "$d/layer.tar"
        rm -f "$d/files/layer-$i.bin" "$d/layer.tar"
    done
    umoci config --image "$d/layout:ten" --created 1970-01-01T00:00:00Z --architecture amd64 --os linux \
        --config.cmd /layer-0.bin >/dev/null
    skopeo copy --dest-tls-verify=false "oci:$d/layout:ten" "docker://127.0.0.1:$UP/bench/ten:latest" \
        >/dev/null 2>"$tmp/skopeo-ten.log" || { cat "$tmp/skopeo-ten.log" >&2; return 1; }
    rm -rf "$d"
}

# skopeo_secs HOST:PORT NAME: one `skopeo copy docker://HOST:PORT/NAME:latest dir:` into a new
# dir (removed after); prints the seconds it took.
skopeo_secs() {
    local t0 t1 out=$tmp/b12-dir
    rm -rf "$out"
    t0=$(date +%s.%N)
    skopeo copy --src-tls-verify=false "docker://$1/$2:latest" "dir:$out" >/dev/null 2>"$tmp/skopeo-b12.log" ||
        { echo "skopeo copy docker://$1/$2:latest:" >&2; cat "$tmp/skopeo-b12.log" >&2; return 1; }
    t1=$(date +%s.%N)
    rm -rf "$out"
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

# b12_pulpish NAME [FLAG...]: a fresh pulpish with both images' repositories synced (nothing
# downloaded); sets PBASE.
b12_pulpish() {
    start_pulpish "$@"
    setup_repo "$PBASE" big "$B12_BIG" bench/big
    setup_repo "$PBASE" ten bench/ten bench/ten
    [[ -z $(find "$tmp/$1-data/artifact" -type f 2>/dev/null) ]] || { echo "$1 is not cold" >&2; return 1; }
}

# B12, one run: per image, U direct (warm), then a fresh pulpish (SQLite), then a fresh pulpish
# on a new PostgreSQL database (if there); the pulpish processes start before any copy.
b12_run() {
    local img up u sq pg= sq_host pg_host=
    b12_pulpish B12-sqlite
    sq_host=${PBASE#http://}
    if [[ -n $PG_BIN ]]; then
        new_database b12
        b12_pulpish B12-pg --database-url "$PG_URL"
        pg_host=${PBASE#http://}
    fi
    for img in big ten; do
        case $img in big) up=$B12_BIG ;; ten) up=bench/ten ;; esac
        u=$(skopeo_secs "127.0.0.1:$UP" "$up")
        sq=$(skopeo_secs "$sq_host" "bench/$img")
        record "b12.$img.u" "$u"
        record "b12.$img.pulpish" "$sq"
        record "b12.$img.ratio" "$(ratio "$sq" "$u")"
        if [[ -n $pg_host ]]; then
            pg=$(skopeo_secs "$pg_host" "bench/$img")
            record "b12.$img.pg" "$pg"
            record "b12.$img.pg_ratio" "$(ratio "$pg" "$u")"
        fi
        log "  run $1, $img image: U $u s, pulpish cold $sq s${pg:+, pulpish on PostgreSQL cold $pg s}"
    done
    stop_matching B12-
}

section_pull() {
    local i
    if $smoke; then B12_BIG=fixtures/oci; else B12_BIG=fixtures/big; fi
    log "B12: building a $TEN_LAYERS-layer image ($TEN_KIB KiB per layer), pushing it to U"
    build_ten
    # U's side warm (page cache), and skopeo's binary too.
    skopeo_secs "127.0.0.1:$UP" "$B12_BIG" >/dev/null
    skopeo_secs "127.0.0.1:$UP" bench/ten >/dev/null
    log "B12 skopeo copy to dir: of $B12_BIG and bench/ten: U direct, fresh pulpish${PG_BIN:+ (SQLite, PostgreSQL)}"
    for ((i = 1; i <= RUNS; i++)); do measured "B12 run $i" b12_run "$i"; done
}

failed_sections=()
for s in $all_sections; do
    selected "$s" || continue
    set +e
    (
        set -e
        "section_$s"
    )
    rc=$?
    set -e
    for name in cold- W B7 B8 R7 R8 flood probe stall sampler FSW S3W RDW C9 B10- B12-; do stop_matching "$name"; done
    if [[ $rc != 0 ]]; then
        failed_sections+=("$s")
        log "section $s FAILED (exit $rc); see the messages above"
        for f in "$tmp"/W.log "$tmp"/WPG.log "$tmp"/B12-*.log "$tmp"/cold-*.log "$tmp"/B7.log "$tmp"/B8.log "$tmp"/R7.log "$tmp"/R8.log \
            "$tmp"/FSW.log "$tmp"/S3W.log "$tmp"/RDW.log "$tmp"/C9?.log "$tmp"/B10-*.log "$tmp"/garage.log; do
            [[ -f $f ]] && { echo "--- tail of $(basename "$f")" >&2; tail -n 5 "$f" >&2; }
        done
    fi
done

# --- table ------------------------------------------------------------------------------------

missing=0
# stats KEY: "MEDIAN MIN MAX COUNT" of the recorded values (nothing if none).
stats() {
    awk -v k="$1" '$1 == k { print $2 }' "$results" | sort -g |
        awk '{ a[NR] = $1 } END { if (NR == 0) exit; m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; print m, a[1], a[NR], NR }'
}

# row ID FIGURE KEY FORMAT [GOAL_TEXT OP LIMIT ON [must]]: OP ge|le|eq, ON med|max|min|all:
# which value is held to the goal (all: every run's); with "must", a goal not met fails the
# script like a missing figure.
must_failed=()
row() {
    local id=$1 fig=$2 key=$3 fmt=$4 goal=${5:-} op=${6:-} lim=${7:-} on=${8:-med} must=${9:-}
    local med mn mx cnt met="" v vs range
    selected "$(section_of "$key")" || return 0
    read -r med mn mx cnt < <(stats "$key"; echo) || true
    if [[ -z ${med:-} ]]; then
        echo "| $id | $fig | **missing** | | | $goal | |"
        missing=1
        return
    fi
    if [[ -n $op ]]; then
        case $on in med) vs=$med ;; max) vs=$mx ;; min) vs=$mn ;; all) vs="$mn $mx" ;; esac
        met=yes
        for v in $vs; do
            awk -v v="$v" -v l="$lim" -v op="$op" -v f="$fmt" 'BEGIN { v = sprintf(f, v) + 0
                exit !((op == "ge" && v >= l) || (op == "le" && v <= l) || (op == "eq" && v == l)) }' ||
                met=**no**
        done
        [[ $met == yes || -z $must ]] || must_failed+=("$id $fig")
    fi
    range=$(printf "$fmt–$fmt" "$mn" "$mx")
    ((cnt > 1)) || range="–"
    printf "| %s | %s | $fmt | %s | %s | %s | %s |\n" "$id" "$fig" "$med" "$range" "$cnt" "$goal" "$met"
}

# section_of KEY: the section that records KEY.
section_of() {
    case $1 in
        b1.* | b5.warm4.* | b6.*) echo warm ;;
        b2.* | b13.* | b5.cold1) echo cold ;;
        b3.* | b5.cold32) echo cold32 ;;
        b12.*) echo pull ;;
        b4.*) echo sync ;;
        b7.*) echo flood ;;
        b8.*) echo stall ;;
        b9.warm.* | b11.*) echo s3warm ;;
        b9.cold.*) echo s3cold ;;
        b10.*) echo scaleout ;;
    esac
}

na_row() { if selected sync; then echo "| $1 | $2 | n/a ($3) | | | $4 | |"; fi; }

# pg_row ID FIGURE KEY FORMAT [GOAL...]: a row measured on PostgreSQL; n/a without its binaries.
pg_row() {
    if [[ -n $PG_BIN ]]; then
        row "$@"
    elif selected "$(section_of "$3")"; then
        echo "| $1 | $2 | n/a (no PostgreSQL) | | | ${5:-} | |"
    fi
}

{
    echo
    mode=$($smoke && echo smoke || echo full)
    if $need_fixtures; then
        mib=$(awk -v s="$BLOB_SIZE" 'BEGIN { printf (s >= 1048576 ? "%.0f MiB" : "%.2f MiB"), s / 1048576 }')
        echo "Blob: $BLOB_REPO layer $mib; $RUNS run(s) per figure; mode $mode."
    else
        echo "Mode $mode; sections:$sections(--only $only)."
    fi
    selected flood && echo "B7: $FLOOD_N requests with wrong passwords, $FLOOD_P at a time."
    selected stall && echo "B8: $STALL_N stalled readers of a stored $STALL_MIB MiB blob."
    echo
    echo "| # | figure | median | min–max | runs | goal | met |"
    echo "|---|---|---|---|---|---|---|"
    row B1 "warm blob GET, pulpish (stored), MB/s" b1.pulpish %.0f
    row B1 "warm blob GET, U direct, MB/s" b1.u %.0f
    row B1 "warm throughput pulpish ÷ U" b1.ratio %.2f "≥ 1.30" ge 1.30
    row B2 "cold GET, U direct, s" b2.u %.3f
    row B2 "cold GET, pulpish on_demand, s" b2.pulpish %.3f
    row B2 "cold GET, P (proxy), s" b2.p %.3f
    row B2 "cold time pulpish ÷ U" b2.ratio %.2f "≤ 1.10" le 1.10
    row B2 "cold time P ÷ U (reference)" b2.p.ratio %.2f
    row B2 "SHA-256 of the blob in memory (python3 hashlib), s" b2.sha %.3f
    row B2 "cold time pulpish ÷ max(U, SHA-256) (B2′)" b2.bound.ratio %.2f "≤ 1.10" le 1.10
    row B3 "$CONC cold GETs: U bytes sent ÷ blob size, pulpish" b3.pulpish %.2f "1.00" le 1.00 max
    row B3 "$CONC cold GETs: U bytes sent ÷ blob size, P" b3.p %.2f
    row B3 "$CONC cold GETs: upstream GETs, pulpish" b3.pulpish.gets %.0f
    row B3 "$CONC cold GETs: upstream GETs, P" b3.p.gets %.0f
    row B3 "$CONC cold GETs: all clients done, pulpish, s" b3.pulpish.wall %.2f
    row B3 "$CONC cold GETs: all clients done, P, s" b3.p.wall %.2f
    row B4 "on_demand sync, 250 tags, s" b4.250 %.2f "< 5" le 4.999
    if ((TAGS_BIG > 0)); then
        row B4 "on_demand sync, $TAGS_BIG tags, s" b4.2500 %.2f
        row B4 "sync time $TAGS_BIG ÷ 250 tags" b4.ratio %.2f "≤ 11" le 11
    else
        na_row B4 "on_demand sync, 2500 tags, s" smoke ""
        na_row B4 "sync time 2500 ÷ 250 tags" smoke "≤ 11"
    fi
    row B5 "peak RSS (VmHWM), 1 cold GET (B2), MiB" b5.cold1 %.1f "≤ 64" le 64 max
    row B5 "peak RSS (VmHWM), $CONC cold GETs (B3), MiB" b5.cold32 %.1f "≤ 64" le 64 max
    row B5 "RSS, 4 warm clients: VmRSS before, MiB" b5.warm4.before %.1f
    row B5 "RSS, 4 warm clients: VmRSS peak (50 ms samples), MiB" b5.warm4.peak %.1f "≤ 64" le 64 max
    row B5 "RSS, 4 warm clients: RssAnon peak, MiB" b5.warm4.peak_anon %.1f
    row B5 "RSS, 4 warm clients: RssFile peak (mapped files), MiB" b5.warm4.peak_file %.1f
    row B5 "RSS, 4 warm clients: VmRSS after, MiB" b5.warm4.after %.1f
    row B6 "manifest GETs/s, 64 conns, pulpish" b6.pulpish.rps %.0f
    row B6 "manifest GETs/s, 64 conns, U" b6.u.rps %.0f
    row B6 "manifest GETs/s pulpish ÷ U" b6.ratio %.2f "≥ 1.5" ge 1.5
    row B6 "manifest GET p99, pulpish, ms" b6.pulpish.p99 %.2f "≤ 10" le 10
    row B6 "manifest GET p99, U, ms" b6.u.p99 %.2f
    pg_row B6 "manifest GETs/s, 64 conns, pulpish on PostgreSQL" b6.pg.rps %.0f
    pg_row B6 "manifest GET p99, pulpish on PostgreSQL, ms" b6.pg.p99 %.2f "≤ 15" le 15
    pg_row B6 "manifest GETs over wrk's 2 s timeout, pulpish on PostgreSQL" b6.pg.timeouts %.0f "0" le 0 max
    row B7 "wrong-password flood: VmRSS before, pulpish, MiB" b7.pulpish.before %.1f
    row B7 "wrong-password flood: peak RSS (VmHWM), pulpish, MiB" b7.pulpish.peak %.1f
    row B7 "wrong-password flood: RssAnon peak (50 ms samples), pulpish, MiB" b7.pulpish.peak_anon %.1f
    row B7 "wrong-password flood: VmRSS ${SETTLE} s after, pulpish, MiB" b7.pulpish.after %.1f
    row B7 "wrong-password flood: RssAnon ${SETTLE} s after, pulpish, MiB" b7.pulpish.after_anon %.1f
    row B7 "wrong-password flood: 401 answers (password hashes checked), pulpish" b7.pulpish.401 %.0f
    row B7 "wrong-password flood: 429 answers (failure budget spent), pulpish" b7.pulpish.429 %.0f
    row B7 "wrong-password flood: 503 answers (check queue full), pulpish" b7.pulpish.503 %.0f
    row B7 "wrong-password flood: other answers, pulpish" b7.pulpish.other %.0f
    row B7 "wrong-password flood: all answered, pulpish, s" b7.pulpish.secs %.2f
    row B7 "wrong-password flood: right password during it, not 200, pulpish" b7.pulpish.good_bad %.0f "0" le 0 max
    row B7 "wrong-password flood: right password during it, slowest, pulpish, s" b7.pulpish.good_max %.3f
    row B7 "wrong-password flood: VmRSS before, docker-registry htpasswd, MiB" b7.reg.before %.1f
    row B7 "wrong-password flood: peak RSS (VmHWM), docker-registry htpasswd, MiB" b7.reg.peak %.1f
    row B7 "wrong-password flood: VmRSS ${SETTLE} s after, docker-registry htpasswd, MiB" b7.reg.after %.1f
    row B7 "wrong-password flood: 401 answers, docker-registry htpasswd" b7.reg.401 %.0f
    row B7 "wrong-password flood: all answered, docker-registry htpasswd, s" b7.reg.secs %.2f
    row B7 "wrong-password flood: right password during it, slowest, docker-registry, s" b7.reg.good_max %.3f
    row B7 "wrong-password flood: peak RSS pulpish ÷ docker-registry" b7.ratio %.2f
    row B8 "$STALL_N stalled readers: VmRSS before, pulpish, MiB" b8.pulpish.before %.1f
    row B8 "$STALL_N stalled readers: VmRSS during, pulpish, MiB" b8.pulpish.during %.1f
    row B8 "$STALL_N stalled readers: RssAnon during, pulpish, MiB" b8.pulpish.during_anon %.1f
    row B8 "$STALL_N stalled readers: RssFile during (mapped files), pulpish, MiB" b8.pulpish.during_file %.1f
    row B8 "$STALL_N stalled readers: VmRSS per reader (during − before), pulpish, KiB" b8.pulpish.per_reader %.0f
    row B8 "$STALL_N stalled readers: RssAnon per reader (during − before), pulpish, KiB" b8.pulpish.per_reader_anon %.0f
    row B8 "$STALL_N stalled readers: VmRSS ${SETTLE} s after they left, pulpish, MiB" b8.pulpish.after %.1f
    row B8 "$STALL_N stalled readers: RssAnon ${SETTLE} s after they left, pulpish, MiB" b8.pulpish.after_anon %.1f
    row B8 "$STALL_N stalled readers: VmRSS before, docker-registry, MiB" b8.u.before %.1f
    row B8 "$STALL_N stalled readers: VmRSS during, docker-registry, MiB" b8.u.during %.1f
    row B8 "$STALL_N stalled readers: RssAnon during, docker-registry, MiB" b8.u.during_anon %.1f
    row B8 "$STALL_N stalled readers: VmRSS per reader (during − before), docker-registry, KiB" b8.u.per_reader %.0f
    row B8 "$STALL_N stalled readers: VmRSS ${SETTLE} s after they left, docker-registry, MiB" b8.u.after %.1f
    row B8 "$STALL_N stalled readers: VmRSS during, pulpish ÷ docker-registry" b8.ratio %.2f
    row B9 "warm blob GET, pulpish on S3 (Garage), MB/s" b9.warm.s3 %.0f
    row B9 "warm blob GET, pulpish on the filesystem, MB/s" b9.warm.fs %.0f
    row B9 "warm blob GET, U direct, MB/s" b9.warm.u %.0f
    row B9 "warm throughput S3 ÷ filesystem" b9.warm.s3_fs %.2f
    row B9 "warm throughput S3 ÷ U" b9.warm.s3_u %.2f
    row B9 "cold GET, U direct, s" b9.cold.u %.3f
    row B9 "cold GET, pulpish on S3, s" b9.cold.s3 %.3f
    row B9 "cold GET, pulpish on the filesystem, s" b9.cold.fs %.3f
    row B9 "cold time S3 ÷ filesystem" b9.cold.s3_fs %.2f
    row B9 "cold time S3 ÷ U" b9.cold.s3_u %.2f
    row B9 "cold GET start to blob recorded as stored, S3, s" b9.cold.s3_stored %.3f
    row B9 "cold GET start to blob recorded as stored, filesystem, s" b9.cold.fs_stored %.3f
    row B10 "$CONC cold GETs, 3 replicas (PostgreSQL + S3): all clients done, s" b10.rep.wall %.2f
    row B10 "$CONC cold GETs, 3 replicas: aggregate MB/s" b10.rep.mbps %.0f
    row B10 "$CONC cold GETs, 3 replicas: upstream GETs of the blob" b10.rep.gets %.0f "= 1" eq 1 all must
    row B10 "$CONC cold GETs, 3 replicas: U bytes sent ÷ blob size" b10.rep.ubytes %.2f
    row B10 "$CONC cold GETs, 1 pulpish (filesystem): all clients done, s" b10.one.wall %.2f
    row B10 "$CONC cold GETs, 1 pulpish: aggregate MB/s" b10.one.mbps %.0f
    row B10 "$CONC cold GETs, 1 pulpish: upstream GETs of the blob" b10.one.gets %.0f
    row B10 "$CONC cold GETs: aggregate MB/s 3 replicas ÷ 1 pulpish" b10.ratio %.2f
    row B11 "warm blob GET, pulpish on S3 --redirect-blobs (curl -L), MB/s" b11.redirect %.0f
    row B11 "warm throughput redirect ÷ streamed S3 (B9)" b11.rd_s3 %.2f
    row B11 "warm throughput redirect ÷ filesystem (B9)" b11.rd_fs %.2f
    b12_big=$($smoke && echo fixtures/oci || echo fixtures/big)
    b12_ten="$TEN_LAYERS × $(awk -v k="$TEN_KIB" 'BEGIN { printf (k >= 1024 ? "%g MiB" : "%g KiB"), (k >= 1024 ? k / 1024 : k) }') layers"
    for img in big ten; do
        if [[ $img == big ]]; then what="$b12_big"; else what="bench/ten ($b12_ten)"; fi
        row B12 "skopeo copy to dir:, $what, U direct (warm), s" "b12.$img.u" %.3f
        row B12 "skopeo copy to dir:, $what, pulpish cold, s" "b12.$img.pulpish" %.3f
        pg_row B12 "skopeo copy to dir:, $what, pulpish on PostgreSQL cold, s" "b12.$img.pg" %.3f
        row B12 "skopeo copy, $what: pulpish ÷ U" "b12.$img.ratio" %.2f "≤ 1.05" le 1.05
        pg_row B12 "skopeo copy, $what: pulpish on PostgreSQL ÷ U" "b12.$img.pg_ratio" %.2f "≤ 1.05" le 1.05
    done
    row B13 "cold blob GET, time to first byte, U direct (warm), ms" b13.u %.1f
    row B13 "cold blob GET, time to first byte, pulpish on_demand, ms" b13.pulpish %.1f
    row B13 "first byte pulpish ÷ U" b13.ratio %.2f "≤ 1.5" le 1.5
    echo
    busy=$(awk '$1 == "busy"' "$results" | wc -l)
    ((busy == 0)) || { echo "Note: $busy run(s) started while other processes kept >= 25% of the CPUs busy."; echo; }
}
log "done in ${SECONDS}s"
if [[ $missing != 0 || ${#failed_sections[@]} -gt 0 ]]; then
    echo "$0: figures missing (failed sections: ${failed_sections[*]:-none})" >&2
    exit 1
fi
if ((${#must_failed[@]} > 0)); then
    printf '%s: a figure that must hold did not: %s\n' "$0" "${must_failed[@]}" >&2
    exit 1
fi
