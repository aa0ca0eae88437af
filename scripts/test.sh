#!/usr/bin/env bash
# The test command: installs what the suite needs when it is missing, then runs
# `cargo test --workspace` with any arguments given (e.g. `scripts/test.sh --test pull`).
#
# Debian packages are installed with apt-get when run as root; otherwise the exact
# `apt-get install` line is printed and the script stops. Tools with no Debian package are
# built or installed once, outside the clone: Garage into ~/.cargo/bin (about 7.5 minutes on
# 2 cores), schemathesis and pulp-cli into virtualenvs under ~/.cache/pulpish.
set -euo pipefail
cd "$(dirname "$0")/.."

# To build: a C toolchain and libpq (diesel's PostgreSQL backend links it). To test: the real
# programs the tests start (PostgreSQL, Debian's docker-registry, nginx, tinyproxy) and the
# clients they drive (skopeo, podman, curl, wrk, ab, htpasswd, umoci, busybox for images), and
# prometheus_client's text-format parser for /metrics.
# A package named `name:command` counts as present when that command is (any nginx flavour
# will do, and installing nginx-light over nginx-full would remove it).
packages=(
    build-essential pkg-config libpq-dev ca-certificates python3 python3-venv
    postgresql docker-registry:docker-registry nginx-light:nginx tinyproxy:tinyproxy
    skopeo:skopeo podman:podman runc:runc umoci:umoci busybox-static:busybox
    curl:curl jq:jq openssl:openssl apache2-utils:htpasswd wrk:wrk python3-prometheus-client
)
missing=()
for entry in "${packages[@]}"; do
    pkg=${entry%%:*}
    cmd=${entry#"$pkg"}
    cmd=${cmd#:}
    if [ -n "$cmd" ] && command -v "$cmd" >/dev/null 2>&1; then
        continue
    fi
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    line="apt-get install -y ${missing[*]}"
    if [ "$(id -u)" != 0 ]; then
        echo "the test suite needs these Debian packages; as root, run:" >&2
        echo "    apt-get update && $line" >&2
        exit 1
    fi
    echo "installing: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # A second try rides out a mirror hiccup or another apt holding the lock.
    apt-get install -y -qq -o DPkg::Lock::Timeout=120 "${missing[@]}" >/dev/null \
        || apt-get install -y -qq -o DPkg::Lock::Timeout=120 "${missing[@]}" >/dev/null
fi

export PATH="$HOME/.cargo/bin:$PATH"
# Garage (S3-compatible object store) for the S3 storage tests.
GARAGE_BIN="$(.ci/garage)"
export GARAGE_BIN
# schemathesis for tests/schemathesis.rs (tests/pulp_cli.rs makes its own venv the same way).
PULPISH_SCHEMATHESIS="$(.ci/schemathesis-venv)"
export PULPISH_SCHEMATHESIS

# Every test binary runs, so one failure does not hide the others.
exec cargo test --workspace --no-fail-fast "$@"
