#!/usr/bin/env bash
# The CPU a warm Leads page costs the portal with its tokens on a database server, against the same portal with
# them in a SQLite file, measured alternately in one run so that the shared machine's drift falls on all alike.
#
#   bash bench/portal-store-ab.sh                  PostgreSQL, without TLS and with it (POSTGRES_ADMIN_URL:
#                                                  default postgres://postgres@127.0.0.1:5432/postgres)
#   bash bench/portal-store-ab.sh --store SPEC     the store SPEC (postgres://… or mysql://…) instead.
#                                                  It empties SPEC's token table first: give it a database of
#                                                  its own.
#
# Builds the working tree in release mode. Without --store, creates a database of its own on the PostgreSQL
# server (dropped at the end) and measures it twice: `sslmode=disable`, and `sslmode=require` when the server
# offers TLS (rustls encrypts each query and its answer). Then ROUNDS times (3), SQLite then each database side:
# a fresh sandbox on CPU 0 and portal on CPU 1 (one worker each), a real login, RUNS (4) runs of wrk (64
# connections, DURATION 4s, on the sandbox's CPU). Prints the least and the median CPU per page of each, and
# each database side's median over SQLite's (the target: at most 115%).
#
# The database server itself is not pinned: it is the machine's, and it runs where the kernel puts it, on the
# portal's CPU too. Its CPU is not counted, but it competes with the portal for CPU 1, so the figures lean
# against the database sides.
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
RUNS="${RUNS:-4}"
DURATION="${DURATION:-4s}"
CONNECTIONS="${CONNECTIONS:-64}"
ADMIN="${POSTGRES_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
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
    DATABASE="zp_bench_$$"
    trap 'cleanup; psql -q "${ADMIN}" -c "DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
    psql -q "${ADMIN}" -c "CREATE DATABASE ${DATABASE}" >/dev/null
    SIDES=(postgres)
    SPECS[postgres]="${ADMIN%/*}/${DATABASE}?sslmode=disable"
    if [ "$(psql -Atq "${ADMIN}" -c "SHOW ssl")" = on ]; then
        SIDES+=(postgres-tls)
        SPECS[postgres-tls]="${ADMIN%/*}/${DATABASE}?sslmode=require"
    else
        echo "(the server offers no TLS: measuring PostgreSQL without it only)"
    fi
fi

cargo build --release --locked --quiet --bin zylker-portal
BIN="target/release/zylker-portal"
WRK_CPU=0

for side in sqlite "${SIDES[@]}"; do : >"${WORK}/${side}.runs"; done
for round in $(seq 1 "${ROUNDS}"); do
    for side in sqlite "${SIDES[@]}"; do
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
