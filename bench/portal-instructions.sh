#!/usr/bin/env bash
# What a warm page costs the portal, counted rather than timed: the user-space instructions per page under
# valgrind's callgrind, for each page below and for the pass-through floor (`examples/passthrough.rs`: the
# same CRM call and nothing else) in the same run; then wrk's throughput of the Leads page beside the
# pass-through's, at 64 connections.
#
#   bash bench/portal-instructions.sh
#
# The pages: the Leads list (`/crm/Leads`), a record page (the first lead's), the landing page (`/`), and a
# search page when the portal has search (`/crm/Leads?q=…`: it answers 200 there). Each is warmed with five
# requests, then counted over wrk's load (CONNECTIONS, 4; DURATION, 10s) with instrumentation switched on for
# that load only. The count moves by well under 1% between runs, whatever else the machine does; the kernel's
# share (system calls, the network) is not in it.
#
# Then the throughput: the portal and the pass-through, each alone on CPU 1 with one worker (the sandbox and
# wrk on CPU 0), wrk with 64 connections for WRK_DURATION (5s), alternately RUNS (3) times; the median of the
# runs' ratios portal / pass-through. RUNS=0 counts only. For a page with encryption on, set
# TOKEN_ENCRYPTION_KEYS="$(zylker-portal token-key)": the portal and the script's own `tokens` calls read it.
#
# Builds the working tree in release mode. Prints a line per page, ready for the table in docs/benchmarks.md.
# PROFILES=DIR keeps each page's callgrind profile there (`callgrind_annotate --inclusive=yes DIR/FILE`).
set -euo pipefail

CONNECTIONS_COUNTED="${CONNECTIONS:-4}"
DURATION_COUNTED="${DURATION:-10s}"
WRK_DURATION="${WRK_DURATION:-5s}"
RUNS="${RUNS:-3}"
cd "$(dirname "$0")/.."
# shellcheck source=bench/portal-common.sh
source bench/portal-common.sh
command -v callgrind_control >/dev/null || { echo "no valgrind: apt-get install -y valgrind" >&2; exit 1; }

# Two builds: an example takes the dev-dependencies' features too (reqwest's cookie layer, for the tests), and
# the portal is measured as `cargo run --release` builds it, without them.
cargo build --release --locked --quiet --bin zylker-portal
cp target/release/zylker-portal "${WORK}/zylker-portal"
cargo build --release --locked --quiet --example passthrough
REAL_BIN="${WORK}/zylker-portal"
PASSTHROUGH_BIN="$(pwd)/target/release/examples/passthrough"
PASSTHROUGH_PORT=$((PORT + 2))
PASSTHROUGH="http://127.0.0.1:${PASSTHROUGH_PORT}/"

under_callgrind "${REAL_BIN}"
# The portal logs as `serve` does by default (info: a line per request), to a file.
export PORTAL_RUST_LOG="${PORTAL_RUST_LOG:-info}"
bring_up pinned counted

# count LABEL PID URL HEADER: the instructions PID ran per request of URL under wrk's load; appends to counts.
DUMPS=0
declare -A DUMPED
count() {
    local label="$1" pid="$2" url="$3" header="$4" out pages total file
    for _ in 1 2 3 4 5; do curl -fsS -o /dev/null -H "${header}" "${url}"; done
    callgrind_control --instr=on "${pid}" >/dev/null 2>&1
    out="$(taskset -c 0 wrk -t1 -c"${CONNECTIONS_COUNTED}" -d"${DURATION_COUNTED}" -H "${header}" "${url}")"
    callgrind_control --instr=off "${pid}" >/dev/null 2>&1
    if echo "${out}" | grep -q "Non-2xx"; then echo "${label}: some answers were not 2xx" >&2; exit 1; fi
    callgrind_control --dump "${pid}" >/dev/null 2>&1
    DUMPED[${pid}]=$((${DUMPED[${pid}]:-0} + 1))
    file="${WORK}/callgrind.${pid}.${DUMPED[${pid}]}"
    for _ in $(seq 1 100); do [ -s "${file}" ] && break; sleep 0.1; done
    pages="$(echo "${out}" | awk '/requests in/ {print $1}')"
    total="$(callgrind_total "${file}")"
    echo "${label}|${total}|${pages}" >>"${WORK}/counts"
    if [ -n "${PROFILES:-}" ]; then # keep the profile for callgrind_annotate
        mkdir -p "${PROFILES}"
        cp "${file}" "${PROFILES}/$(echo "${label}" | tr -c 'A-Za-z0-9\n' '-' | tr -s '-').callgrind"
    fi
    DUMPS=$((DUMPS + 1))
}

LEAD_ID="$(curl -fsS -H "Authorization: Zoho-oauthtoken ${TOKEN}" "${DIRECT}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])')"
: >"${WORK}/counts"
count "Leads list (/crm/Leads)" "${PORTAL_PID}" "${PORTAL}/crm/Leads" "Cookie: ${COOKIE}"
count "record page (/crm/Leads/ID)" "${PORTAL_PID}" "${PORTAL}/crm/Leads/${LEAD_ID}" "Cookie: ${COOKIE}"
count "landing page (/)" "${PORTAL_PID}" "${PORTAL}/" "Cookie: ${COOKIE}"
SEARCH="${PORTAL}/crm/Leads?q=Kavya"
if [ "$(curl -sS -o /dev/null -w '%{http_code}' -H "Cookie: ${COOKIE}" "${SEARCH}")" = 200 ] &&
    curl -fsS -H "Cookie: ${COOKIE}" "${SEARCH}" | grep -q 'type="search"'; then
    count "search page (/crm/Leads?q=…)" "${PORTAL_PID}" "${SEARCH}" "Cookie: ${COOKIE}"
fi

# The floor, under callgrind too, on the portal's CPU.
PASSTHROUGH_BIND="127.0.0.1:${PASSTHROUGH_PORT}" PASSTHROUGH_TARGET="${DIRECT}" PASSTHROUGH_TOKEN="${TOKEN}" \
    taskset -c 1 valgrind --tool=callgrind --instr-atstart=no \
    --callgrind-out-file="${WORK}/callgrind.%p" "${PASSTHROUGH_BIN}" >"${WORK}/passthrough.log" 2>&1 &
PASSTHROUGH_PID=$!
PIDS+=("${PASSTHROUGH_PID}")
wait_for "${PASSTHROUGH}"
count "pass-through floor" "${PASSTHROUGH_PID}" "${PASSTHROUGH}" "X-Load: pass-through"
kill "${PASSTHROUGH_PID}"
wait "${PASSTHROUGH_PID}" 2>/dev/null || true
tear_down

echo "user-space instructions a warm page ($(git rev-parse --short HEAD)$(git diff --quiet || echo ', with uncommitted changes')):"
python3 - "${WORK}/counts" <<'PY'
import sys
rows = [line.rstrip("\n").split("|") for line in open(sys.argv[1]) if line.strip()]
per_page = {label: int(total) / int(pages) for label, total, pages in rows}
floor = per_page["pass-through floor"]
for label, total, pages in rows:
    print(f"  {label:32} {per_page[label]:>10,.0f}   {per_page[label] / floor:5.2f} x the pass-through   ({pages} pages)")
PY

# Throughput: the portal and the pass-through alternately, each on CPU 1 alone with one worker (RUNS=0: none).
if [ "${RUNS}" -eq 0 ]; then exit 0; fi
BIN="${REAL_BIN}"
WAIT_TRIES=100
bring_up pinned timed
PASSTHROUGH_BIND="127.0.0.1:${PASSTHROUGH_PORT}" PASSTHROUGH_TARGET="${DIRECT}" PASSTHROUGH_TOKEN="${TOKEN}" \
    taskset -c 1 "${PASSTHROUGH_BIN}" >"${WORK}/passthrough-timed.log" 2>&1 &
PASSTHROUGH_PID=$!
PIDS+=("${PASSTHROUGH_PID}")
wait_for "${PASSTHROUGH}"
WRK_CPU=0
: >"${WORK}/throughput"
SERVING_PID="${PORTAL_PID}"
for run in $(seq 1 "${RUNS}"); do
    PORTAL_PID="${SERVING_PID}"
    run_wrk "run ${run}, portal /crm/Leads" 64 "${WRK_DURATION}" "${PORTAL}/crm/Leads" "Cookie: ${COOKIE}"
    portal_rps="${RPS}"
    PORTAL_PID="${PASSTHROUGH_PID}"
    run_wrk "run ${run}, pass-through" 64 "${WRK_DURATION}" "${PASSTHROUGH}" "X-Load: pass-through"
    echo "${portal_rps} ${RPS}" >>"${WORK}/throughput"
done
PORTAL_PID="${SERVING_PID}"
python3 - "${WORK}/throughput" <<'PY'
import statistics, sys
rows = [tuple(map(float, line.split())) for line in open(sys.argv[1]) if line.strip()]
ratio = statistics.median(portal / floor for portal, floor in rows)
print(f"throughput at 64 connections, portal / pass-through: {ratio:.2f} (median of {len(rows)} runs; "
      f"portal {statistics.median(r[0] for r in rows):,.0f} req/s, pass-through {statistics.median(r[1] for r in rows):,.0f})")
PY
