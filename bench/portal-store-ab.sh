#!/usr/bin/env bash
# The CPU a warm Leads page costs the portal with its tokens in PostgreSQL, against the same portal with them in a
# SQLite file, measured alternately in one run so that the shared machine's drift falls on both alike.
#
#   bash bench/portal-store-ab.sh            (POSTGRES_ADMIN_URL: default postgres://postgres@127.0.0.1:5432/postgres)
#
# Builds the working tree in release mode, creates a database of its own on the PostgreSQL server (dropped at the
# end), then ROUNDS times (3), SQLite then PostgreSQL: a fresh sandbox on CPU 0 and portal on CPU 1 (one worker
# each), a real login, RUNS (4) runs of wrk (64 connections, DURATION 4s, on the sandbox's CPU). Prints the least
# and the median CPU per page of each, and PostgreSQL's over SQLite's.
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
RUNS="${RUNS:-4}"
DURATION="${DURATION:-4s}"
CONNECTIONS="${CONNECTIONS:-64}"
ADMIN="${POSTGRES_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
cd "$(dirname "$0")/.."
# shellcheck source=bench/portal-common.sh
source bench/portal-common.sh
DATABASE="zp_bench_$$"
trap 'cleanup; psql -q "${ADMIN}" -c "DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)" >/dev/null 2>&1 || true' EXIT
psql -q "${ADMIN}" -c "CREATE DATABASE ${DATABASE}" >/dev/null
POSTGRES_SPEC="${ADMIN%/*}/${DATABASE}"

cargo build --release --locked --quiet --bin zylker-portal
BIN="target/release/zylker-portal"
WRK_CPU=0

: >"${WORK}/sqlite" && : >"${WORK}/postgres"
for round in $(seq 1 "${ROUNDS}"); do
    for side in sqlite postgres; do
        if [ "${side}" = postgres ]; then STORE_SPEC="${POSTGRES_SPEC}"; else STORE_SPEC=""; fi
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

python3 - "${WORK}/sqlite" "${WORK}/postgres" <<'PY'
import statistics, sys
median = {}
for path, name in ((sys.argv[1], "sqlite"), (sys.argv[2], "postgres")):
    rows = [tuple(map(float, line.split())) for line in open(path) if line.strip()]
    us = [r[0] for r in rows]
    median[name] = statistics.median(us)
    print(f"{name}: portal {min(us):.1f} us a page at least, {median[name]:.1f} median; "
          f"{statistics.median([r[1] for r in rows]):,.0f} req/s median ({len(rows)} runs)")
print(f"postgres over sqlite, median CPU per page: {median['postgres'] / median['sqlite'] * 100:.0f}% (target at most 115%)")
PY
