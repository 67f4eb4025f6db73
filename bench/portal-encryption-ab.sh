#!/usr/bin/env bash
# The CPU a warm Leads page costs the portal with token encryption on (--token-encryption-keys), against the
# same portal with it off, on a SQLite file each, measured alternately in one run so that the shared machine's
# drift falls on both alike.
#
#   bash bench/portal-encryption-ab.sh
#
# Builds the working tree in release mode. Each side gets a sandbox on CPU 0 and a portal on CPU 1 of its own
# (one worker each, ports PORT and PORT+10) and a real login, both up for the whole bench (an idle portal costs
# nothing). Then RUNS times (12), one run of wrk (64 connections, DURATION 4s, on the sandbox's CPU) on each
# side in turn, each run starting with the next side. Prints the least and the median CPU per page of each, and
# the encrypted side's median over the plain one's. Needs what portal-load.sh needs, and two CPUs.
set -euo pipefail

RUNS="${RUNS:-12}"
DURATION="${DURATION:-4s}"
CONNECTIONS="${CONNECTIONS:-64}"
cd "$(dirname "$0")/.."
# shellcheck source=bench/portal-common.sh
source bench/portal-common.sh

cargo build --release --locked --quiet --bin zylker-portal
BIN="target/release/zylker-portal"
WRK_CPU=0
KEYRING="$("${BIN}" token-key)"

SIDES=(plain encrypted)
BASE_PORT="${PORT}"
declare -A SANDBOX_PIDS PORTAL_PIDS PORTAL_LOGS PORTALS COOKIES
for n in "${!SIDES[@]}"; do
    side="${SIDES[${n}]}"
    use_port $((BASE_PORT + 10 * n))
    # The keyring reaches `serve` and the `tokens list` that reads the token back, through the environment.
    if [ "${side}" = encrypted ]; then export TOKEN_ENCRYPTION_KEYS="${KEYRING}"; fi
    bring_up pinned "${side}"
    unset TOKEN_ENCRYPTION_KEYS
    # The row as stored (read without the keyring): encrypted on one side only.
    stored="$("${BIN}" tokens --store "${STORE}" list --json --reveal |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["access_token"][:7])')"
    if [ "${side}" = encrypted ] && [ "${stored}" != "enc:v1:" ]; then
        echo "the encrypted side stored its token in plaintext" >&2
        exit 1
    fi
    SANDBOX_PIDS[${side}]="${SANDBOX_PID}"
    PORTAL_PIDS[${side}]="${PORTAL_PID}"
    PORTAL_LOGS[${side}]="${PORTAL_LOG}"
    PORTALS[${side}]="${PORTAL}"
    COOKIES[${side}]="${COOKIE}"
    : >"${WORK}/${side}.runs"
done
for run in $(seq 1 "${RUNS}"); do
    # Each run starts with the next side, so that no side is always measured first or last.
    first=$(((run - 1) % ${#SIDES[@]}))
    for side in "${SIDES[@]:${first}}" "${SIDES[@]:0:${first}}"; do
        SANDBOX_PID="${SANDBOX_PIDS[${side}]}"
        PORTAL_PID="${PORTAL_PIDS[${side}]}"
        PORTAL_LOG="${PORTAL_LOGS[${side}]}"
        run_wrk "run ${run}, ${side}" "${CONNECTIONS}" "${DURATION}" "${PORTALS[${side}]}/crm/Leads" \
            "Cookie: ${COOKIES[${side}]}"
        echo "${PORTAL_US} ${RPS}" >>"${WORK}/${side}.runs"
    done
done

python3 - "${WORK}" "${SIDES[@]}" <<'PY'
import statistics, sys
work, sides = sys.argv[1], sys.argv[2:]
median, us = {}, {}
for side in sides:
    rows = [tuple(map(float, line.split())) for line in open(f"{work}/{side}.runs") if line.strip()]
    us[side] = [r[0] for r in rows]
    median[side] = statistics.median(us[side])
    print(f"{side}: portal {min(us[side]):.1f} us a page at least, {median[side]:.1f} median; "
          f"{statistics.median([r[1] for r in rows]):,.0f} req/s median ({len(rows)} runs)")
paired = statistics.median(e / p for e, p in zip(us["encrypted"], us["plain"]))
print(f"encrypted over plain, median CPU per page: {median['encrypted'] / median['plain'] * 100:.0f}%; "
      f"median of the runs' ratios: {paired * 100:.0f}%")
PY
