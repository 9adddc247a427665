#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Install every Debian package sbx needs to build, test and benchmark on a fresh Debian 12, plus the
# npm packages of tests/ when tests/package-lock.json exists. Idempotent: when everything is already
# there it prints nothing and exits 0. Presence is read with dpkg-query, never by trying a tool;
# `apt-get update` runs only when something is missing. Must run as root (except --dry-run, which
# prints what it would do and changes nothing).
#
# Usage: scripts/setup.sh [--dry-run]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dry_run=0

usage() {
        echo "usage: ${0##*/} [--dry-run]" >&2
        exit 2
}

for arg in "$@"; do
        case $arg in
        --dry-run) dry_run=1 ;;
        -h | --help) usage ;;
        *)
                echo "${0##*/}: unknown argument '$arg'" >&2
                usage
                ;;
        esac
done

if ((EUID != 0 && !dry_run)); then
        echo "${0##*/}: must run as root (try: sudo $0)" >&2
        exit 1
fi

# Build and unit tests (CMakeLists.txt: libuv, libmicrohttpd, jansson, sqlite3, libseccomp,
# libcurl, libcrypto, libarchive, wslay, cmocka), templates (mmdebstrap), the daemon's runtime (uidmap, iproute2,
# zstd, btrfs-progs for --storage btrfs; CRIU comes from scripts/build-criu.sh), then the peers and tools that bench/ compares against.
packages=(
        build-essential cmake ninja-build pkg-config
        libuv1-dev libmicrohttpd-dev libjansson-dev libsqlite3-dev libseccomp-dev
        libcurl4-openssl-dev libssl-dev libcmocka-dev libarchive-dev libwslay-dev
        mmdebstrap ca-certificates uidmap iproute2 zstd btrfs-progs
        crun runc bubblewrap podman runsc hyperfine
)

# Node.js >= 18 runs the integration tests and the code generators. These machines ship Node 20
# outside Debian's package (at /usr/bin/node); only fall back to Debian's nodejs (18) without one.
node_major() {
        local v
        command -v node >/dev/null 2>&1 || return 1
        v=$(node -p 'process.versions.node' 2>/dev/null) || return 1
        echo "${v%%.*}"
}

major=$(node_major || echo 0)
if [[ ! $major =~ ^[0-9]+$ ]] || ((major < 18)); then
        packages+=(nodejs)
        # Debian's nodejs carries no npm; it is needed only for tests/package-lock.json.
        [[ -f $repo/tests/package-lock.json ]] && ! command -v npm >/dev/null 2>&1 && packages+=(npm)
elif [[ -f $repo/tests/package-lock.json ]] && ! command -v npm >/dev/null 2>&1; then
        packages+=(npm)
fi

# A package counts as present when dpkg says "installed" with error flag "ok"; "config-files",
# "half-installed", "reinst-required" and unknown names count as missing.
declare -A present=()
while read -r name status eflag; do
        [[ $status == installed && $eflag == ok ]] && present[$name]=1
done < <(dpkg-query -W -f='${Package} ${db:Status-Status} ${db:Status-Eflag}\n' "${packages[@]}" 2>/dev/null || true)

missing=()
for p in "${packages[@]}"; do
        [[ -n ${present[$p]-} ]] || missing+=("$p")
done

# tests/ node packages: `npm ci` only when the lock file changed since the last install (the hash
# of the lock file it installed from is kept next to the modules).
npm_needed=0
lock=$repo/tests/package-lock.json
stamp=$repo/tests/node_modules/.sbx-setup-lock.sha256
if [[ -f $lock ]]; then
        want=$(sha256sum "$lock" | cut -d' ' -f1)
        have=$(cat "$stamp" 2>/dev/null || true)
        [[ $want == "$have" ]] || npm_needed=1
fi

if ((dry_run)); then
        if ((${#missing[@]})); then
                echo "would run: apt-get update"
                echo "would install: ${missing[*]}"
        fi
        ((npm_needed)) && echo "would run: npm ci (in tests/)"
        "$repo/scripts/build-criu.sh" --dry-run
        exit 0
fi

if ((${#missing[@]})); then
        echo "setup: installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" >/dev/null
fi

if ((npm_needed)); then
        echo "setup: npm ci (in tests/)"
        (cd "$repo/tests" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
        mkdir -p "${stamp%/*}"
        sha256sum "$lock" | cut -d' ' -f1 >"$stamp"
fi

# CRIU >= 4.1 (hibernate with memory, docs/lifecycle.md): built from Debian trixie's source,
# silent when present. Not fatal: without it hibernate keeps the files only, and says so.
"$repo/scripts/build-criu.sh" || echo "setup: CRIU could not be built (see above); continuing without it" >&2
