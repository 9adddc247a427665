#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# Configure and build sbx with CMake + Ninja: into build/ by default, or into build-asan/ with
# AddressSanitizer + UndefinedBehaviorSanitizer (-DSBX_SANITIZE=ON) when given --asan. Installs
# nothing (that is setup.sh's job). With --quiet the CMake/Ninja output goes to a log file and is
# shown only when the build fails.
#
# Usage: scripts/build.sh [--asan] [--quiet] [-- extra cmake -D options...]
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=build
sanitize=OFF
quiet=0
extra=()

while (($#)); do
        case $1 in
        --asan) dir=build-asan sanitize=ON ;;
        --quiet) quiet=1 ;;
        --)
                shift
                extra=("$@")
                break
                ;;
        *)
                echo "usage: ${0##*/} [--asan] [--quiet] [-- cmake options...]" >&2
                exit 2
                ;;
        esac
        shift
done

out=$repo/$dir

# A tree configured with another generator (say, by hand with Makefiles) cannot be reused by
# Ninja; build trees hold nothing but outputs, so start that one afresh.
if [[ -f $out/CMakeCache.txt ]] && ! grep -qx 'CMAKE_GENERATOR:INTERNAL=Ninja' "$out/CMakeCache.txt"; then
        echo "build: $dir/ was configured with another generator, reconfiguring from scratch" >&2
        rm -rf --one-file-system "$out"
fi

run() {
        cmake -S "$repo" -B "$out" -G Ninja -DSBX_SANITIZE="$sanitize" "${extra[@]}" &&
                cmake --build "$out"
}

if ((quiet)); then
        mkdir -p "$out"
        log=$out/build.log
        if ! run >"$log" 2>&1; then
                echo "build: $dir/ failed; last lines of $dir/build.log:" >&2
                tail -n 60 "$log" >&2
                exit 1
        fi
else
        run
fi
