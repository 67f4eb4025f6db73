#!/usr/bin/env bash
# The CPU a warm Leads page costs the portal with its tokens on a database server, against the same portal with
# them in a SQLite file, measured alternately in one run so that the shared machine's drift falls on all alike.
#
#   bash bench/portal-store-ab.sh                  PostgreSQL, without TLS and with it, on a server of its own
#   bash bench/portal-store-ab.sh --store SPEC     the store SPEC (postgres://… or mysql://…) instead.
#                                                  It empties SPEC's token table first: give it a database of
#                                                  its own.
#
# Builds the working tree in release mode. Without --store, starts a PostgreSQL server of its own (initdb in a
# temporary folder, Debian's server programs, a self-signed certificate for TLS), stopped at the end, and
# measures it twice: `sslmode=disable`, and `sslmode=require` (rustls encrypts each query and its answer).
# Each side (SQLite and each database side) gets a sandbox on CPU 0 and a portal on CPU 1 of its own (one
# worker each, ports PORT, PORT+10, …) and a real login, all up for the whole bench. Then RUNS times (12), one
# run of wrk (64 connections, DURATION 4s, on the sandbox's CPU) on each side in turn, each time starting with
# the next side: the sides alternate every few seconds, so the shared machine's drift falls on all alike. An
# idle portal costs nothing. Prints the least and the median CPU per page of each, and each database side's
# median over SQLite's (the target: at most 115%).
#
#   bash bench/portal-store-ab.sh --instructions [--store SPEC]
#       instead of CPU time, counts the instructions the portal runs in user space per warm Leads page, under
#       valgrind's callgrind (started with instrumentation off, switched on for the measured load only): the
#       same count on every run whatever else the machine does, where CPU time on a shared virtual machine
#       moves by 10% and more. The kernel's share (system calls, the network) is not in it. Each side in turn:
#       5 warm pages, then wrk with CONNECTIONS (4) connections for DURATION (20s), then the count is dumped.
#
# The server of its own runs on CPU 0 beside the sandbox and wrk, as the other machines of a deployment: CPU 1
# is the portal's alone. A server given with --store runs wherever it runs; when it is on this machine it
# competes with the portal for CPU 1, which leans the figures against it.
set -euo pipefail

RUNS="${RUNS:-12}"
DURATION_GIVEN="${DURATION:-}"
CONNECTIONS_GIVEN="${CONNECTIONS:-}"
DURATION="${DURATION:-4s}"
CONNECTIONS="${CONNECTIONS:-64}"
GIVEN=""
INSTRUCTIONS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --store) GIVEN="${2:?--store needs a spec}"; shift 2 ;;
        --instructions) INSTRUCTIONS=1; shift ;;
        *) echo "usage: bash bench/portal-store-ab.sh [--instructions] [--store postgres://…|mysql://…]" >&2; exit 2 ;;
    esac
done
if [ -n "${INSTRUCTIONS}" ]; then
    command -v callgrind_control >/dev/null || { echo "no valgrind: apt-get install -y valgrind" >&2; exit 1; }
    # Counted, not timed: a few connections are enough, and a longer run gives a steadier count per page.
    CONNECTIONS="${CONNECTIONS_GIVEN:-4}"
    DURATION="${DURATION_GIVEN:-20s}"
fi
cd "$(dirname "$0")/.."
# shellcheck source=bench/portal-common.sh
source bench/portal-common.sh

declare -A SPECS
if [ -n "${GIVEN}" ]; then
    SIDES=(given)
    SPECS[given]="${GIVEN}"
else
    PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)"
    [ -n "${PG_BIN}" ] || { echo "no PostgreSQL server programs: apt-get install -y postgresql" >&2; exit 1; }
    # The server refuses to run as root: as root, it runs as the postgres user, in a folder of its own.
    as_server() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    PG_DIR="$(mktemp -d)"
    chmod 755 "${PG_DIR}"
    if [ "$(id -u)" -eq 0 ]; then chown postgres "${PG_DIR}"; fi
    trap 'cleanup; as_server "${PG_BIN}/pg_ctl" -D "${PG_DIR}/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "${PG_DIR}"' EXIT
    as_server "${PG_BIN}/initdb" -D "${PG_DIR}/data" --auth=trust -U postgres --no-sync >/dev/null
    as_server openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=127.0.0.1" \
        -keyout "${PG_DIR}/data/server.key" -out "${PG_DIR}/data/server.crt" >/dev/null 2>&1
    as_server chmod 600 "${PG_DIR}/data/server.key"
    PG_PORT=$((PORT + 3))
    as_server taskset -c 0 "${PG_BIN}/pg_ctl" -D "${PG_DIR}/data" -l "${PG_DIR}/server.log" -w -o \
        "-p ${PG_PORT} -k ${PG_DIR} -c listen_addresses=127.0.0.1 -c ssl=on" start >/dev/null
    # A database for each side: the portals run side by side, and each empties its token table when it starts.
    as_server "${PG_BIN}/createdb" -h 127.0.0.1 -p "${PG_PORT}" -U postgres plain
    as_server "${PG_BIN}/createdb" -h 127.0.0.1 -p "${PG_PORT}" -U postgres tls
    SIDES=(postgres postgres-tls)
    SPECS[postgres]="postgres://postgres@127.0.0.1:${PG_PORT}/plain?sslmode=disable"
    SPECS[postgres-tls]="postgres://postgres@127.0.0.1:${PG_PORT}/tls?sslmode=require"
fi

cargo build --release --locked --quiet --bin zylker-portal
BIN="target/release/zylker-portal"
WRK_CPU=0

ALL=(sqlite "${SIDES[@]}")
BASE_PORT="${PORT}"
# bring_up_side N: the Nth side's sandbox and portal, on ports of their own (PORT + 10 N), on its store.
bring_up_side() {
    side="${ALL[$1]}"
    use_port $((BASE_PORT + 10 * $1))
    STORE_SPEC="${SPECS[${side}]:-}"
    bring_up pinned "${side}"
}

if [ -n "${INSTRUCTIONS}" ]; then
    under_callgrind "$(pwd)/${BIN}"
    for n in "${!ALL[@]}"; do
        bring_up_side "${n}"
        for _ in 1 2 3 4 5; do curl -fsS -o /dev/null -H "Cookie: ${COOKIE}" "${PORTAL}/crm/Leads"; done
        callgrind_control --instr=on "${PORTAL_PID}" >/dev/null 2>&1
        out="$(taskset -c "${WRK_CPU}" wrk -t1 -c"${CONNECTIONS}" -d"${DURATION}" -H "Cookie: ${COOKIE}" "${PORTAL}/crm/Leads")"
        callgrind_control --instr=off "${PORTAL_PID}" >/dev/null 2>&1
        if echo "${out}" | grep -q "Non-2xx"; then echo "${side}: some answers were not 2xx" >&2; exit 1; fi
        callgrind_control --dump "${PORTAL_PID}" >/dev/null 2>&1
        pages="$(echo "${out}" | awk '/requests in/ {print $1}')"
        total="$(callgrind_total "${WORK}/callgrind.${PORTAL_PID}.1")"
        echo "${total} ${pages}" >"${WORK}/${side}.count"
        printf '%-14s %6s pages, %s instructions a page\n' "${side}" "${pages}" \
            "$(python3 -c "print(f'{${total} / ${pages}:,.0f}')")"
        tear_down
    done
    python3 - "${WORK}" "${ALL[@]}" <<'PY'
import sys
work, sides = sys.argv[1], sys.argv[2:]
per_page = {}
for side in sides:
    total, pages = map(float, open(f"{work}/{side}.count").read().split())
    per_page[side] = total / pages
for side in sides[1:]:
    print(f"{side} over sqlite, user-space instructions a page: {per_page[side] / per_page['sqlite'] * 100:.1f}%")
PY
    exit 0
fi

declare -A SANDBOX_PIDS PORTAL_PIDS PORTAL_LOGS PORTALS COOKIES
for n in "${!ALL[@]}"; do
    bring_up_side "${n}"
    echo "${side}: ${STORE} on ${PORTAL}" | sed -E 's#(//[^:/@]+):[^@/]*@#\1:***@#'
    SANDBOX_PIDS[${side}]="${SANDBOX_PID}"
    PORTAL_PIDS[${side}]="${PORTAL_PID}"
    PORTAL_LOGS[${side}]="${PORTAL_LOG}"
    PORTALS[${side}]="${PORTAL}"
    COOKIES[${side}]="${COOKIE}"
    : >"${WORK}/${side}.runs"
done
for run in $(seq 1 "${RUNS}"); do
    # Each run starts with the next side, so that no side is always measured first or last.
    first=$(((run - 1) % ${#ALL[@]}))
    for side in "${ALL[@]:${first}}" "${ALL[@]:0:${first}}"; do
        SANDBOX_PID="${SANDBOX_PIDS[${side}]}"
        PORTAL_PID="${PORTAL_PIDS[${side}]}"
        PORTAL_LOG="${PORTAL_LOGS[${side}]}"
        run_wrk "run ${run}, ${side}" "${CONNECTIONS}" "${DURATION}" "${PORTALS[${side}]}/crm/Leads" \
            "Cookie: ${COOKIES[${side}]}"
        echo "${PORTAL_US} ${RPS}" >>"${WORK}/${side}.runs"
    done
done

python3 - "${WORK}" sqlite "${SIDES[@]}" <<'PY'
import statistics, sys
work, sides = sys.argv[1], sys.argv[2:]
median, us = {}, {}
for side in sides:
    rows = [tuple(map(float, line.split())) for line in open(f"{work}/{side}.runs") if line.strip()]
    us[side] = [r[0] for r in rows]
    median[side] = statistics.median(us[side])
    print(f"{side}: portal {min(us[side]):.1f} us a page at least, {median[side]:.1f} median; "
          f"{statistics.median([r[1] for r in rows]):,.0f} req/s median ({len(rows)} runs)")
for side in sides[1:]:
    # Also the median of each run's ratio to the SQLite run beside it, which the drift between runs moves less.
    paired = statistics.median(s / q for s, q in zip(us[side], us["sqlite"]))
    print(f"{side} over sqlite, median CPU per page: {median[side] / median['sqlite'] * 100:.0f}% "
          f"(target at most 115%); median of the runs' ratios: {paired * 100:.0f}%")
PY
