#!/usr/bin/env bash
# The portal in front of a Zoho as slow and strict as the real one: each CRM call takes 150 ms and the org
# allows 10 at once, so no portal can serve more than 10 / 0.150 s = 66.7 pages a second that each call Zoho
# once. The Leads page (one CRM call when warm) under two loads, each for DURATION:
#
#   1. 100 connections. Targets: every page 200, no 429 at Zoho, at least 90% of the ceiling.
#   2. 1,000 connections (wrk's timeout 30 s). Targets: no 429 at Zoho; a page that cannot get its turn within
#      the queue timeout (10 s by default) gets the "Zoho is busy" page (503), every other page is 200.
#
# Reported per run: pages/s (200s only) against the ceiling, the pages by status, Zoho's 429s (the sandbox's
# counter), p50/p99 (of every answer), and the portal's peak resident memory (VmHWM) at the end. Target: under
# 100 MB.
#
# The sandbox runs as its own process (`zylker-portal sandbox --crm-latency-ms 150 --crm-concurrency 10`), the
# portal as another with its defaults (`--crm-concurrency 10`, `--crm-queue-timeout-ms 10000`), plus a metrics
# listener whose queue-timeout counter is printed beside wrk's 503s. Release build, loopback, bounded.
# Knobs: PORT (18280; the sandbox gets PORT+1, metrics PORT+2), DURATION (20s), PORTAL_FLAGS (more flags for the
# portal, e.g. `--crm-concurrency 1000` to see the portal without its gate).
# Needs curl, wrk (`apt-get install -y wrk`) and python3.
set -euo pipefail

cd "$(dirname "$0")/.."
DURATION="${DURATION:-20s}"
# shellcheck source=bench/portal-common.sh
source bench/portal-common.sh

LATENCY_MS=150
ZOHO_CAP=10
METRICS="http://127.0.0.1:$((PORT + 2))/metrics"
CEILING="$(python3 -c "print(${ZOHO_CAP} / (${LATENCY_MS} / 1000))")"

# wrk counts answers by status (it reports only "Non-2xx" otherwise); one thread, so one table.
cat >"${WORK}/statuses.lua" <<'LUA'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} end
function response(status, headers, body) statuses[status] = (statuses[status] or 0) + 1 end
function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      io.write(string.format("status %d %d\n", status, count))
    end
  end
end
LUA

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --locked --quiet --bin zylker-portal
BIN=target/release/zylker-portal
SANDBOX_FLAGS="--crm-latency-ms ${LATENCY_MS} --crm-concurrency ${ZOHO_CAP}"
PORTAL_FLAGS="--metrics-bind 127.0.0.1:$((PORT + 2)) ${PORTAL_FLAGS:-}"

bring_up shared

control() { # POST to the sandbox's control surface
    curl -fsS -o /dev/null -H 'Content-Type: application/json' -H 'X-Sandbox-Control: 1' -d '{}' "${SANDBOX}/_sandbox/$1"
}
sandbox_counter() { curl -fsS "${SANDBOX}/_sandbox/counters" | python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
queue_timeouts() { curl -fsS "${METRICS}" | awk '$1 == "zoho_crm_queue_timeouts_total" {print $2}'; }
peak_rss_mb() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/${PORTAL_PID}/status"; }

echo "the Leads page, warm; Zoho: ${LATENCY_MS} ms a call, ${ZOHO_CAP} at once (ceiling $(printf '%.1f' "${CEILING}") pages/s); ${DURATION} a run"
for connections in 100 1000; do
    control reset
    timeouts_before="$(queue_timeouts)"
    out="$(timeout 300 wrk -t1 -c"${connections}" -d"${DURATION}" --timeout 30s --latency \
        -s "${WORK}/statuses.lua" -H "Cookie: ${COOKIE}" "${PORTAL}/crm/Leads")"
    seconds="$(echo "${out}" | awk '/requests in/ {sub(/s,?$/, "", $4); print $4}')"
    ok="$(echo "${out}" | awk '$1 == "status" && $2 == 200 {print $3}')"
    statuses="$(echo "${out}" | awk '$1 == "status" {printf "%s%s: %s", sep, $2, $3; sep = ", "}')"
    errors="$(echo "${out}" | awk '/Socket errors/ {sub(/^ */, ""); print}')"
    p50="$(echo "${out}" | awk '$1 == "50%" {print $2}')"
    p99="$(echo "${out}" | awk '$1 == "99%" {print $2}')"
    zoho_429="$(sandbox_counter crm_429)"
    most="$(sandbox_counter max_concurrent_crm)"
    busy=$(($(queue_timeouts) - timeouts_before))
    python3 - "${connections}" "${ok:-0}" "${seconds}" "${CEILING}" <<'PY'
import sys
connections, ok, seconds, ceiling = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rate = ok / seconds
print(f"  {connections:>5} connections: {rate:6.1f} pages/s of 200 = {100 * rate / ceiling:5.1f}% of the ceiling")
PY
    echo "        answers by status: ${statuses:-none}${errors:+; ${errors}}"
    echo "        Zoho: ${zoho_429} answers 429, at most ${most} calls at once; the portal's queue timeouts: ${busy}"
    echo "        latency p50 ${p50}, p99 ${p99}; portal peak RSS so far $(peak_rss_mb) MB"
done
echo "portal peak resident memory over both runs: $(peak_rss_mb) MB (target: under 100 MB)"
