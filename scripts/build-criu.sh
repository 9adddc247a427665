#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Build CRIU >= 4.1 into /usr/local/sbin/criu. Debian 12's criu 3.17 cannot run on kernels >= 6.13
# ("vdso: Unexpected rt vDSO area bounds"); 4.1 fixed it. The source comes from Debian trixie's
# source package, fetched with apt through a throw-away configuration whose one deb-src line uses
# the mirror the machine's own bookworm sources use (the system's apt setup is not touched), and
# is built against bookworm's -dev packages (about 20 s on 2 cores). Idempotent: prints nothing
# and exits 0 when a criu >= 4.1 is already there. Must run as root.
#
# Usage: scripts/build-criu.sh [--dry-run]
set -euo pipefail

prefix=/usr/local/sbin
dry_run=0
for arg in "$@"; do
        case $arg in
        --dry-run) dry_run=1 ;;
        *)
                echo "usage: ${0##*/} [--dry-run]" >&2
                exit 2
                ;;
        esac
done

# "criu 4.1.1" style version at least 4.1?
criu_ok() {
        local v
        v=$("$1" --version 2>/dev/null | sed -n 's/^Version: *//p') || return 1
        [[ $v =~ ^([0-9]+)\.([0-9]+) ]] || return 1
        ((BASH_REMATCH[1] > 4 || (BASH_REMATCH[1] == 4 && BASH_REMATCH[2] >= 1)))
}

if [[ -x $prefix/criu ]] && criu_ok "$prefix/criu"; then
        exit 0
fi
if ((dry_run)); then
        echo "would build CRIU >= 4.1 into $prefix/criu"
        exit 0
fi
if ((EUID != 0)); then
        echo "${0##*/}: must run as root" >&2
        exit 1
fi

deps=(build-essential pkg-config libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
        python3-protobuf libnl-3-dev libnet1-dev libcap-dev libbsd-dev libnftables-dev libgnutls28-dev
        uuid-dev libdrm-dev libaio-dev xz-utils curl)
missing=()
for p in "${deps[@]}"; do
        dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if ((${#missing[@]})); then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The mirror of the machine's own bookworm sources (deb822 or one-line format).
mirror=$(grep -hs -A3 '^Types:.*deb' /etc/apt/sources.list.d/*.sources | sed -n 's/^URIs: *\([^ ]*\).*/\1/p' |
        grep -v security | head -1 || true)
if [[ -z $mirror ]]; then
        mirror=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
                grep -v security | awk '{print $2}' | head -1 || true)
fi
if [[ -z $mirror ]]; then
        echo "${0##*/}: no Debian mirror found in /etc/apt/sources.list*" >&2
        exit 1
fi

work=$(mktemp -d /var/tmp/sbx-criu.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/src"
cat >"$work/apt/sources.list" <<EOF
deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror trixie main
EOF
aptopts=(-o "Dir::Etc::SourceList=$work/apt/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
        -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache" -o "APT::Get::List-Cleanup=0")
start=$SECONDS
apt-get "${aptopts[@]}" -qq update 2>/dev/null
# The Sources index apt just verified (InRelease signature) names the upstream tarball and its
# checksum; the .dsc and Debian's own tarball are not needed (and not always on the mirror).
record=$(apt-cache "${aptopts[@]}" showsrc criu 2>/dev/null | awk -v RS= '/\nVersion: 4\.[1-9]/' | head -50)
directory=$(sed -n 's/^Directory: *//p' <<<"$record" | head -1)
read -r want _ file < <(awk '/^Checksums-Sha256:/{f=1;next} f&&/^ /{print $1, $2, $3} f&&!/^ /{f=0}' <<<"$record" |
        grep '\.orig\.tar\.' | head -1)
if [[ -z $directory || -z ${file:-} ]]; then
        echo "${0##*/}: no CRIU >= 4.1 source package found in trixie on $mirror" >&2
        exit 1
fi
orig=$work/src/$file
curl -fsS -o "$orig" "$mirror/$directory/$file"
have=$(sha256sum "$orig" | awk '{print $1}')
if [[ $want != "$have" ]]; then
        echo "${0##*/}: $file does not match the checksum in trixie's Sources index" >&2
        exit 1
fi
tar -C "$work/src" -xf "$orig"
dir=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d -name "criu-*" | head -1)
make -C "$dir" -j"$(nproc)" criu >"$work/build.log" 2>&1 || {
        tail -30 "$work/build.log" >&2
        echo "${0##*/}: the CRIU build failed" >&2
        exit 1
}
install -m 0755 "$dir/criu/criu" "$prefix/criu"
if ! "$prefix/criu" check >/dev/null 2>&1; then
        echo "${0##*/}: warning: '$prefix/criu check' does not pass on this kernel" >&2
fi
echo "built $("$prefix/criu" --version | sed -n 's/^Version: *//p') into $prefix/criu in $((SECONDS - start)) s"
