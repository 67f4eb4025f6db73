#!/usr/bin/env bash
# An A/B of two builds of the portal: the CPU a Leads page costs with each, measured alternately so that the
# shared machine's drift falls on both alike.
#
#   bash bench/portal-ab.sh OLD_REV [NEW_REV]     (NEW_REV: the working tree when not given)
#
# Each side is built in release mode (a revision in a git worktree, with its own target folder under target/);
# the sandbox is always the new side's. Then ROUNDS times (3), old then new: a fresh sandbox on CPU 0 and portal
# on CPU 1 (one worker each), a real login, and RUNS (4) runs of wrk (64 connections, DURATION 4s, on the
# sandbox's CPU); the portal's CPU per page comes from /proc/PID/stat. Prints the least and the median of each side.
# Needs what portal-load.sh needs, and two CPUs.
set -euo pipefail

OLD_REV="${1:?usage: bench/portal-ab.sh OLD_REV [NEW_REV]}"
NEW_REV="${2:-}"
ROUNDS="${ROUNDS:-3}"
RUNS="${RUNS:-4}"
DURATION="${DURATION:-4s}"
cd "$(dirname "$0")/.."
# shellcheck source=bench/portal-common.sh
source bench/portal-common.sh
trap 'cleanup; git worktree prune' EXIT

# build REV -> the path of its zylker-portal binary ("" builds the working tree).
build() {
    if [ -z "$1" ]; then
        cargo build --release --locked --quiet --bin zylker-portal
        echo "target/release/zylker-portal"
        return
    fi
    local tree="${WORK}/tree-$1" target
    target="$(pwd)/target/portal-ab"
    git worktree add --quiet --detach "${tree}" "$1"
    (cd "${tree}" && CARGO_TARGET_DIR="${target}" cargo build --release --locked --quiet --bin zylker-portal)
    git worktree remove --force "${tree}"
    cp "${target}/release/zylker-portal" "${WORK}/zylker-portal-$1"
    echo "${WORK}/zylker-portal-$1"
}

echo "building ${OLD_REV} and ${NEW_REV:-the working tree} (release)" >&2
OLD_BIN="$(build "${OLD_REV}")"
NEW_BIN="$(build "${NEW_REV}")"
SANDBOX_BIN="${NEW_BIN}"
WRK_CPU=0

: >"${WORK}/old" && : >"${WORK}/new"
for round in $(seq 1 "${ROUNDS}"); do
    for side in old new; do
        if [ "${side}" = old ]; then BIN="${OLD_BIN}"; else BIN="${NEW_BIN}"; fi
        KEY=""
        bring_up pinned "${side}-${round}"
        echo "round ${round}, ${side}:"
        for _ in $(seq 1 "${RUNS}"); do
            run_wrk "portal GET /crm/Leads" "${CONNECTIONS}" "${DURATION}" "${PORTAL}/crm/Leads" "Cookie: ${COOKIE}"
            echo "${PORTAL_US} ${RPS}" >>"${WORK}/${side}"
        done
        tear_down
    done
done

python3 - "${WORK}/old" "${WORK}/new" "${OLD_REV}" "${NEW_REV:-working tree}" <<'PY'
import statistics, sys
for path, name in ((sys.argv[1], sys.argv[3]), (sys.argv[2], sys.argv[4])):
    rows = [tuple(map(float, line.split())) for line in open(path) if line.strip()]
    us = [r[0] for r in rows]
    rps = [r[1] for r in rows]
    print(f"{name}: portal {min(us):.1f} us a page at least, {statistics.median(us):.1f} median; "
          f"{statistics.median(rps):,.0f} req/s median ({len(rows)} runs)")
PY
