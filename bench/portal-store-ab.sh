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
# measures it twice: `sslmode=disable`, and `sslmode=require` (rustls encrypts each query and its answer). Then
# ROUNDS times (3), SQLite and each database side in turn, each round starting with the next side: a fresh
# sandbox on CPU 0 and portal on CPU 1 (one worker each), a real login, RUNS (4) runs of wrk (64 connections,
# DURATION 4s, on the sandbox's CPU). Prints the least and the median CPU per page of each, and each database
# side's median over SQLite's (the target: at most 115%).
#
# The server of its own runs on CPU 0 beside the sandbox and wrk, as the other machines of a deployment: CPU 1
# is the portal's alone. A server given with --store runs wherever it runs; when it is on this machine it
# competes with the portal for CPU 1, which leans the figures against it.
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
RUNS="${RUNS:-4}"
DURATION="${DURATION:-4s}"
CONNECTIONS="${CONNECTIONS:-64}"
GIVEN=""
while [ $# -gt 0 ]; do
    case "$1" in
        --store) GIVEN="${2:?--store needs a spec}"; shift 2 ;;
        *) echo "usage: bash bench/portal-store-ab.sh [--store postgres://…|mysql://…]" >&2; exit 2 ;;
    esac
done
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
    SIDES=(postgres postgres-tls)
    SPECS[postgres]="postgres://postgres@127.0.0.1:${PG_PORT}/postgres?sslmode=disable"
    SPECS[postgres-tls]="postgres://postgres@127.0.0.1:${PG_PORT}/postgres?sslmode=require"
fi

cargo build --release --locked --quiet --bin zylker-portal
BIN="target/release/zylker-portal"
WRK_CPU=0

ALL=(sqlite "${SIDES[@]}")
for side in "${ALL[@]}"; do : >"${WORK}/${side}.runs"; done
for round in $(seq 1 "${ROUNDS}"); do
    # Each round starts with the next side, so that no side is always measured first or last.
    first=$(((round - 1) % ${#ALL[@]}))
    for side in "${ALL[@]:${first}}" "${ALL[@]:0:${first}}"; do
        STORE_SPEC="${SPECS[${side}]:-}"
        KEY=""
        bring_up pinned "${side}-${round}"
        echo "round ${round}, ${side} (${STORE}):" | sed -E 's#(//[^:/@]+):[^@/]*@#\1:***@#'
        for _ in $(seq 1 "${RUNS}"); do
            run_wrk "portal GET /crm/Leads" "${CONNECTIONS}" "${DURATION}" "${PORTAL}/crm/Leads" "Cookie: ${COOKIE}"
            echo "${PORTAL_US} ${RPS}" >>"${WORK}/${side}.runs"
        done
        tear_down
    done
done

python3 - "${WORK}" sqlite "${SIDES[@]}" <<'PY'
import statistics, sys
work, sides = sys.argv[1], sys.argv[2:]
median = {}
for side in sides:
    rows = [tuple(map(float, line.split())) for line in open(f"{work}/{side}.runs") if line.strip()]
    us = [r[0] for r in rows]
    median[side] = statistics.median(us)
    print(f"{side}: portal {min(us):.1f} us a page at least, {median[side]:.1f} median; "
          f"{statistics.median([r[1] for r in rows]):,.0f} req/s median ({len(rows)} runs)")
for side in sides[1:]:
    print(f"{side} over sqlite, median CPU per page: {median[side] / median['sqlite'] * 100:.0f}% (target at most 115%)")
PY
