#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# sbx performance benchmark (a benchmark, not a test: it passes or fails nothing). Runs `/bin/true`
# N times under each peer runtime (crun, runc, runsc, bwrap, podman), all on the SAME Debian rootfs,
# timing every run with bench/runcmd; then starts a private sbxd on a free port and times its HTTP
# API with bench/sbx-bench (create, exec, create+exec+delete, and a 1000-sandbox density run).
# Prints a p50/p99 table with ratios against sbx and writes bench/results.json. A peer that cannot
# run is reported with the reason and skipped. Everything it builds or caches goes to bench/.cache/
# (rootfs, helpers, sbx templates, one directory of raw samples and logs per run).
#
# Usage: sudo bench/run.sh [-n RUNS] [-w WARMUP] [--density COUNT] [--peers crun,runc,...]
#                          [--no-peers] [--no-sbx] [--sbxd PATH] [--templates-dir DIR] [--out FILE]
set -uo pipefail

bench=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$bench/.." && pwd)
cache=$bench/.cache
runs=200
warmup=5
density=1000
peers=crun,runc,runsc,bwrap,podman
do_peers=1
do_sbx=1
sbxd=$repo/build/sbxd
templates=$cache/sbx-templates
out=$bench/results.json

usage() {
        sed -n 's/^# \{0,1\}//; /^Usage:/,/^$/p' "${BASH_SOURCE[0]}" | sed '/^set /d' >&2
        exit 2
}

need_arg() {
        [[ $# -ge 2 && -n $2 ]] || {
                echo "run.sh: $1 needs a value" >&2
                exit 2
        }
}

while (($#)); do
        case $1 in
        -n | --runs) need_arg "$@"; runs=$2; shift ;;
        -w | --warmup) need_arg "$@"; warmup=$2; shift ;;
        --density) need_arg "$@"; density=$2; shift ;;
        --peers) need_arg "$@"; peers=$2; shift ;;
        --no-peers) do_peers=0 ;;
        --no-sbx) do_sbx=0 ;;
        --sbxd) need_arg "$@"; sbxd=$2; shift ;;
        --templates-dir) need_arg "$@"; templates=$2; shift ;;
        --out) need_arg "$@"; out=$2; shift ;;
        -h | --help) usage ;;
        *) echo "run.sh: unknown argument '$1'" >&2; usage ;;
        esac
        shift
done
for v in runs warmup density; do
        [[ ${!v} =~ ^[0-9]+$ ]] || { echo "run.sh: $v must be a number" >&2; exit 2; }
done
((runs >= 1)) || { echo "run.sh: runs must be >= 1" >&2; exit 2; }
if ((EUID != 0)); then
        echo "run.sh: needs root (containers, cgroups, drop_caches); try: sudo $0" >&2
        exit 1
fi

say() { echo "bench: $*" >&2; }

mkdir -p "$cache/bin"
res=$cache/runs/$(date +%Y%m%d-%H%M%S)-$$
mkdir -p "$res"
state=
sbxd_pid=
data=

# ---- helpers: compiled here, not by CMake (bench/ is not part of the product build) ----
cflags=(-O2 -g -std=gnu17 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla -Wmissing-prototypes -Wstrict-prototypes -Wnull-dereference)
build_tool() {
        local name=$1
        shift
        local src=$bench/$name.c bin=$cache/bin/$name
        if [[ ! -x $bin || $src -nt $bin || $bench/bench-stats.h -nt $bin ]]; then
                cc "${cflags[@]}" -o "$bin" "$src" "$@" || return 1
        fi
}
build_tool runcmd -lm || { say "cannot compile bench/runcmd.c"; exit 1; }
# shellcheck disable=SC2046 # pkg-config prints several words on purpose
build_tool sbx-bench $(pkg-config --cflags --libs libcurl jansson) -lm || {
        say "cannot compile bench/sbx-bench.c (needs libcurl4-openssl-dev and libjansson-dev: scripts/setup.sh)"
        exit 1
}
runcmd=$cache/bin/runcmd
sbxbench=$cache/bin/sbx-bench

# ---- clean-up: our sbxd, its data dir, the peers' state ----
umount_under() { # unmount everything at or below $1 in our mount namespace, deepest first
        awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
                while read -r m; do umount -l "$m" 2>/dev/null; done
}
cgroup_mount() { # mount point of the cgroup hierarchy whose controllers are $1 ("" = cgroup2)
        awk -v c="$1" '{
                for (i = 7; $i != "-"; i++)
                        ;
                fs = $(i + 1)
                if (c == "" && fs == "cgroup2") { print $5; exit }
                if (c != "" && fs == "cgroup") {
                        n = split($(i + 3), o, ","); m = split(c, want, ","); hit = 0
                        for (j = 1; j <= m; j++) for (k = 1; k <= n; k++) if (o[k] == want[j]) hit++
                        if (hit == m) { print $5; exit }
                }
        }' /proc/self/mountinfo
}
# Sandboxes outlive their sbxd by design, and ours has a throw-away data dir, so nothing would ever
# adopt them again. note_children records sbxd's children (sandbox inits, builders) with their
# cgroups; reap_children kills the ones still alive in the same cgroup (so a reused pid is left
# alone) and removes the cgroup dirs they leave empty, never at or above our own cgroup.
note_children() {
        local pid
        [[ -n $sbxd_pid ]] || return 0
        for pid in $(pgrep -P "$sbxd_pid"); do
                grep -qx "$pid .*" "$res/sbxd-children" 2>/dev/null && continue
                echo "$pid $(tr '\n' ' ' <"/proc/$pid/cgroup" 2>/dev/null)" >>"$res/sbxd-children"
        done
}
reap_children() {
        local pid groups line ctrl path mnt dir own n=0
        [[ -f $res/sbxd-children ]] || return 0
        while read -r pid groups; do
                [[ -e /proc/$pid && $(tr '\n' ' ' <"/proc/$pid/cgroup" 2>/dev/null) == "$groups " ]] || continue
                kill -KILL "$pid" 2>/dev/null && n=$((n + 1))
                for _ in $(seq 50); do
                        [[ -e /proc/$pid ]] || break
                        sleep 0.1
                done
                for line in $groups; do
                        IFS=: read -r _ ctrl path <<<"$line"
                        mnt=$(cgroup_mount "$ctrl")
                        [[ -n $mnt ]] || continue
                        own=$(awk -F: -v c="$ctrl" '$2 == c { print $3 }' /proc/self/cgroup)
                        dir=$path
                        while [[ -n $dir && $dir != / && $dir != "$own" ]]; do
                                rmdir "$mnt$dir" 2>/dev/null || break
                                dir=${dir%/*}
                        done
                done
        done <"$res/sbxd-children"
        ((n == 0)) || say "killed $n sandbox process(es) that sbxd left behind"
}
cleanup() {
        if [[ -n $sbxd_pid ]] && kill -0 "$sbxd_pid" 2>/dev/null; then
                note_children
                timeout 90 "$sbxbench" cleanup >"$res/sbx-cleanup.json" 2>"$res/sbx-cleanup.log" ||
                        say "deleting the sandboxes through the API failed: $(tail -n 2 "$res/sbx-cleanup.log" | tr '\n' ' ')"
                note_children
                kill -TERM "$sbxd_pid" 2>/dev/null
                for _ in $(seq 300); do
                        kill -0 "$sbxd_pid" 2>/dev/null || break
                        sleep 0.1
                done
                kill -0 "$sbxd_pid" 2>/dev/null && { say "sbxd ignored SIGTERM for 30 s, killing it"; kill -KILL "$sbxd_pid"; }
                wait "$sbxd_pid" 2>/dev/null
        fi
        [[ -n $sbxd_pid ]] && reap_children
        sbxd_pid=
        for d in "$data" "$state"; do
                [[ -n $d && -d $d ]] || continue
                umount_under "$d"
                if awk -v d="$d" '$5 == d || index($5, d "/") == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; then
                        say "mounts remain under $d; not deleting it"
                else
                        rm -rf --one-file-system "$d"
                fi
        done
        data=
}
trap cleanup EXIT
trap 'exit 130' INT TERM
state=$(mktemp -d /run/sbx-bench-state.XXXXXX) # runtimes' --root dirs

# ---- the shared rootfs: Debian bookworm minbase + bash, coreutils, ca-certificates ----
rootfs=$cache/rootfs
if [[ ! -x $rootfs/bin/true ]]; then
        say "building the rootfs with mmdebstrap into $rootfs (about 20 s, once)"
        src=()
        for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
                [[ -s $f ]] && { src=("$f"); break; }
        done
        rm -rf --one-file-system "$rootfs.tmp"
        if ! mmdebstrap --quiet --variant=minbase --include=bash,coreutils,ca-certificates \
                bookworm "$rootfs.tmp" "${src[@]}" >"$res/mmdebstrap.log" 2>&1; then
                say "mmdebstrap failed (log: $res/mmdebstrap.log):"
                tail -n 20 "$res/mmdebstrap.log" >&2
                exit 1
        fi
        mv "$rootfs.tmp" "$rootfs"
fi

# ---- one OCI bundle (config from `crun spec`/`runc spec`) used by crun, runc and runsc ----
bundle=$cache/bundle
make_bundle() {
        local gen
        rm -rf "$bundle"
        mkdir -p "$bundle"
        for gen in crun runc; do
                command -v "$gen" >/dev/null && (cd "$bundle" && "$gen" spec >/dev/null 2>&1) && break
        done
        [[ -f $bundle/config.json ]] || return 1
        node -e '
                const fs = require("fs"), f = process.argv[1] + "/config.json";
                const c = JSON.parse(fs.readFileSync(f, "utf8"));
                c.process.terminal = false;
                c.process.args = ["/bin/true"];
                c.root = { path: process.argv[2], readonly: true };
                c.hostname = "sbx-bench";
                fs.writeFileSync(f, JSON.stringify(c, null, 2));' "$bundle" "$rootfs"
}

cat >"$res/meta.env" <<EOF
date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
kernel=$(uname -r)
cpus=$(nproc)
mem_total_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)
runs=$runs
warmup=$warmup
density=$density
rootfs=$rootfs
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo none)
EOF

# ---- peers ----
# Privately unmount the cgroup2 tree that makes crun see "hybrid mode" (research: feasibility §6).
# Done once around the whole timed loop, so the wrapper's own cost (about 5 ms) is not measured.
hybrid_wrap=(unshare -m sh -c 'mount --make-rprivate / && umount /sys/fs/cgroup/unified && exec "$@"' sh)
hybrid=0
mountpoint -q /sys/fs/cgroup/unified 2>/dev/null && hybrid=1
limits=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

# peer_variant NAME I: set wrap=() and cmd=() for the I-th way to run peer NAME; 1 when none left.
peer_variant() {
        local name=$1 i=$2
        wrap=()
        note=
        case $name:$i in
        crun:0)
                cmd=(crun --root="$state/crun" run --bundle "$bundle" sbx-bench-crun)
                if ((hybrid)); then
                        wrap=("${hybrid_wrap[@]}")
                        note="inside unshare -m with /sys/fs/cgroup/unified unmounted (hybrid cgroups); wrapper not timed"
                fi
                ;;
        crun:1) ((hybrid)) || return 1; cmd=(crun --root="$state/crun" run --bundle "$bundle" sbx-bench-crun) ;;
        runc:0) cmd=(runc --root="$state/runc" run --bundle "$bundle" sbx-bench-runc) ;;
        runsc:0) cmd=(runsc --root="$state/runsc" --network=none --platform=ptrace run --bundle "$bundle" sbx-bench-runsc) ;;
        bwrap:0) cmd=(bwrap --bind "$rootfs" / --proc /proc --dev /dev --unshare-all --die-with-parent /bin/true) ;;
        podman:0)
                # podman's default RLIMIT_NOFILE/NPROC exceed what root may set here (no CAP_SYS_RESOURCE).
                cmd=(podman run --rm --network=none "${limits[@]}" --rootfs "$rootfs" /bin/true)
                ;;
        podman:1)
                cmd=(podman run --rm --network=none "${limits[@]}" --runtime=runc --rootfs "$rootfs" /bin/true)
                note="--runtime=runc: podman's default runtime crun refuses hybrid cgroups"
                ;;
        podman:2)
                ((hybrid)) || return 1
                cmd=(podman run --rm --network=none "${limits[@]}" --rootfs "$rootfs" /bin/true)
                wrap=("${hybrid_wrap[@]}")
                note="inside unshare -m with /sys/fs/cgroup/unified unmounted (hybrid cgroups); wrapper not timed"
                ;;
        *) return 1 ;;
        esac
}

peer_version() {
        case $1 in
        bwrap) bwrap --version 2>&1 | head -n 1 ;;
        *) "$1" --version 2>&1 | head -n 1 ;;
        esac
}

run_peer() {
        local name=$1 i=0 tried=0
        rm -f "$res/peer-$name".*
        if ! command -v "$name" >/dev/null; then
                echo "$name is not installed (scripts/setup.sh installs it)" >"$res/peer-$name.err"
                say "$name: not installed, skipped"
                return
        fi
        peer_version "$name" >"$res/peer-$name.version"
        if [[ $name != bwrap && ! -f $bundle/config.json ]]; then
                echo "no OCI bundle: neither 'crun spec' nor 'runc spec' worked" >"$res/peer-$name.err"
                say "$name: no OCI bundle, skipped"
                return
        fi
        while peer_variant "$name" "$i"; do
                tried=1
                printf '%s\n' "${cmd[*]}" >"$res/peer-$name.cmd"
                [[ -n $note ]] && printf '%s\n' "$note" >"$res/peer-$name.note"
                say "$name: ${cmd[*]}"
                "${wrap[@]}" "$runcmd" -n "$runs" -w "$warmup" -N "$name" -r "$res/peer-$name.samples" \
                        -- "${cmd[@]}" >"$res/peer-$name.json" 2>"$res/peer-$name.log"
                if [[ -s $res/peer-$name.json ]]; then
                        say "$name: $(cat "$res/peer-$name.json")"
                        break
                fi
                rm -f "$res/peer-$name.json" "$res/peer-$name.note"
                say "$name: failed: $(tail -n 3 "$res/peer-$name.log" | tr '\n' ' ')"
                cp "$res/peer-$name.log" "$res/peer-$name.err"
                i=$((i + 1))
        done
        ((tried)) || echo "no way to run $name on this host" >"$res/peer-$name.err"
        [[ -s $res/peer-$name.json ]] && rm -f "$res/peer-$name.err"
        # runsc/runc/crun name their cgroups after the container id; drop leftovers of failed runs.
        rmdir /sys/fs/cgroup/*/"sbx-bench-$name" 2>/dev/null
        return 0
}

if ((do_peers)); then
        make_bundle || say "could not generate an OCI bundle (crun spec / runc spec); crun, runc and runsc will be skipped"
        IFS=, read -r -a peer_list <<<"$peers"
        for p in "${peer_list[@]}"; do
                run_peer "$p"
        done
fi

# ---- sbx over HTTP ----
sbx_step() { # sbx_step NAME sbx-bench-args...
        local name=$1
        shift
        say "sbx $name: sbx-bench $*"
        note_children
        if "$sbxbench" --pid "$sbxd_pid" "$@" >"$res/sbx-$name.json" 2>"$res/sbx-$name.log" && [[ -s $res/sbx-$name.json ]]; then
                say "sbx $name: $(head -c 400 "$res/sbx-$name.json")"
                return 0
        fi
        note_children
        rm -f "$res/sbx-$name.json"
        { cat "$res/sbx-$name.log"; kill -0 "$sbxd_pid" 2>/dev/null || { echo "sbxd exited; last lines of its log:"; tail -n 20 "$res/sbxd.log"; }; } >"$res/sbx-$name.err"
        say "sbx $name failed: $(head -n 5 "$res/sbx-$name.err" | tr '\n' ' ')"
        return 1
}

# start_sbx POOL_SIZE: a private sbxd on a free port with a throw-away data dir
start_sbx() {
        port=$("$sbxbench" freeport)
        key=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
        data=$(mktemp -d /var/tmp/sbx-bench-data.XXXXXX)
        mkdir -p "$templates"
        export SBX_URL=http://127.0.0.1:$port SBX_KEY=$key
        say "sbx: starting $sbxd --pool-size $1 on 127.0.0.1:$port (data $data, templates $templates)"
        "$sbxd" --listen "127.0.0.1:$port" --data-dir "$data" --api-key "$key" --log-level warn \
                --templates-dir "$templates" --pool-size "$1" >>"$res/sbxd.log" 2>&1 </dev/null &
        sbxd_pid=$!
        say "sbx: waiting for /v1/health and the base template (first start builds it)"
        if sbx_step wait --template base --timeout 1200 wait; then
                rm -f "$res/sbx-wait.json"
                return 0
        fi
        return 1
}

if ((do_sbx)); then
        if [[ ! -x $sbxd ]]; then
                echo "sbxd not found at $sbxd (build it with scripts/build.sh)" >"$res/sbx.err"
                say "sbx: $(cat "$res/sbx.err"), skipped"
        else
                # without the pool: what a create costs from scratch (the issue's "no pool" numbers)
                if start_sbx 0; then
                        sbx_step create -n "$runs" -w "$warmup" --template base create
                        sbx_step exec -n "$runs" -w "$warmup" --template base exec
                        sbx_step cycle-nopool -n "$runs" -w "$warmup" --template base cycle
                        if ((density > 0)); then
                                sbx_step density-host -n "$runs" --count "$density" --template host density
                                sbx_step density-base -n "$runs" --count "$density" --template base density
                        fi
                fi
                cleanup
                # the default configuration: sandboxes launched ahead (--pool-size 2)
                sleep 5 # let the kernel finish tearing down the previous daemon's sandboxes
                if start_sbx 2; then
                        sbx_step create-pool -n "$runs" -w "$warmup" --template base create
                        sbx_step cycle -n "$runs" -w "$warmup" --template base cycle
                fi
                cleanup
        fi
fi

node "$bench/report.mjs" "$res" "$out"
say "raw samples and logs: $res"
