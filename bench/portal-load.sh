#!/usr/bin/env bash
# The portal under load, side by side with the same load sent straight to the sandbox's CRM endpoint.
#
#   1. throughput: GET /crm/Leads on the portal with a warm token (wrk, CONNECTIONS connections), and the same
#      CRM call the page makes, GET /crm/v8/Leads?fields=…&page=1&per_page=20, straight to the sandbox.
#      Target: the portal serves at least 70% of the sandbox's direct throughput.
#   2. added latency: the same two with one connection (no queueing), p50/p99 of each.
#      Target: the portal adds less than 2 ms at p99.
#   3. stampede: the token expires (in the store and at the sandbox), then 200 concurrent requests.
#      Target: exactly 1 refresh at the sandbox, every answer 200.
#   4. memory: the portal's peak resident set (VmHWM) after all of it. Target: under 50 MB.
#
# Release build; the sandbox runs as its own process (`zylker-portal sandbox`), the portal as another
# (`zylker-portal serve` with the demo client), both on loopback. Everything is bounded and stops by itself.
# Knobs: PORT (18280; the sandbox gets PORT+1), DURATION (10s), CONNECTIONS (64).
# Needs curl, wrk (`apt-get install -y wrk`) and python3.
set -euo pipefail

cd "$(dirname "$0")/.."
PORT="${PORT:-18280}"
SANDBOX_PORT=$((PORT + 1))
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
PORTAL="http://127.0.0.1:${PORT}"
SANDBOX="http://127.0.0.1:${SANDBOX_PORT}"
CLIENT_ID="1000.ZYLKERACADEMYDEMO"
CLIENT_SECRET="zylker-academy-demo-secret"
FIELDS="id,First_Name,Last_Name,Email,Phone,Lead_Status,Lead_Source,Created_Time"
DIRECT="${SANDBOX}/crm/v8/Leads?fields=${FIELDS}&page=1&per_page=20"

command -v wrk >/dev/null || { echo "no load tool: apt-get install -y wrk" >&2; exit 1; }

cargo build --release --locked --quiet --bin zylker-portal
BIN=target/release/zylker-portal
WORK="$(mktemp -d)"
STORE="sqlite:${WORK}/tokens.db"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "${pid}" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "${pid}" 2>/dev/null || true; done
    rm -rf "${WORK}"
}
trap cleanup EXIT

wait_for() {
    for _ in $(seq 1 100); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$1 did not come up" >&2
    return 1
}

"${BIN}" sandbox --bind "127.0.0.1:${SANDBOX_PORT}" --redirect-uri "${PORTAL}/oauth/callback" \
    >"${WORK}/sandbox.log" 2>&1 &
PIDS+=($!)
wait_for "${SANDBOX}/static/sandbox.css"

RUST_LOG=warn "${BIN}" serve --bind "127.0.0.1:${PORT}" --public-url "${PORTAL}" \
    --client-id "${CLIENT_ID}" --client-secret "${CLIENT_SECRET}" --accounts-url "${SANDBOX}" \
    --store "${STORE}" --session-key "$(head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    >"${WORK}/portal.log" 2>&1 &
PORTAL_PID=$!
PIDS+=("${PORTAL_PID}")
wait_for "${PORTAL}/healthz"

# Log in as a person would: /login, accept on the sandbox's consent form, back to the callback.
JAR="${WORK}/cookies"
AUTH_URL="$(curl -sS -c "${JAR}" -b "${JAR}" -o /dev/null -w '%{redirect_url}' "${PORTAL}/login")"
CALLBACK="$(curl -sS -o /dev/null -w '%{redirect_url}' -X POST "${SANDBOX}/oauth/v2/auth" \
    --data "${AUTH_URL#*\?}" --data-urlencode "email=priya.raman@zylker.com" -d decision=accept)"
curl -sS -c "${JAR}" -b "${JAR}" -o /dev/null "${CALLBACK}"
# The first page shows (and so removes) the "signed in" flash: keep the cookie a browser would keep after it.
STATUS="$(curl -sS -c "${JAR}" -b "${JAR}" -o /dev/null -w '%{http_code}' "${PORTAL}/crm/Leads")"
[ "${STATUS}" = 200 ] || { echo "the Leads page answered ${STATUS}" >&2; exit 1; }
COOKIE="$(awk '$6 == "zylker_session" {print $6 "=" $7}' "${JAR}")"
[ -n "${COOKIE}" ] || { echo "login failed: no session cookie" >&2; exit 1; }
TOKEN="$("${BIN}" tokens --store "${STORE}" list --json --reveal |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["access_token"])')"

# run_wrk LABEL CONNECTIONS DURATION URL HEADER -> prints a summary, sets RPS, P50, P99 (ms)
run_wrk() {
    local out
    out="$(timeout 120 wrk -t1 -c"$2" -d"$3" --latency -H "$5" "$4")"
    if echo "${out}" | grep -q "Non-2xx"; then
        echo "$1: some answers were not 2xx" >&2
        echo "${out}" | grep -iv "cookie\|authorization" >&2
        exit 1
    fi
    RPS="$(echo "${out}" | awk '/Requests\/sec/ {print $2}')"
    P50="$(echo "${out}" | awk '$1 == "50%" {print $2}')"
    P99="$(echo "${out}" | awk '$1 == "99%" {print $2}')"
    printf '  %-28s %10s req/s   p50 %8s   p99 %8s\n' "$1" "${RPS}" "${P50}" "${P99}"
}
to_ms() { # wrk prints 812.00us, 1.52ms or 1.01s
    python3 -c 'import re,sys; v,u=re.match(r"([\d.]+)(us|ms|s)",sys.argv[1]).groups(); print(float(v)*{"us":0.001,"ms":1,"s":1000}[u])' "$1"
}

echo "throughput, ${CONNECTIONS} connections, ${DURATION} each:"
run_wrk "sandbox direct (CRM call)" "${CONNECTIONS}" "${DURATION}" "${DIRECT}" "Authorization: Zoho-oauthtoken ${TOKEN}"
DIRECT_RPS="${RPS}"
run_wrk "portal GET /crm/Leads" "${CONNECTIONS}" "${DURATION}" "${PORTAL}/crm/Leads" "Cookie: ${COOKIE}"
PORTAL_RPS="${RPS}"

echo "latency, 1 connection, ${DURATION} each:"
run_wrk "sandbox direct (CRM call)" 1 "${DURATION}" "${DIRECT}" "Authorization: Zoho-oauthtoken ${TOKEN}"
DIRECT_P99="$(to_ms "${P99}")"
run_wrk "portal GET /crm/Leads" 1 "${DURATION}" "${PORTAL}/crm/Leads" "Cookie: ${COOKIE}"
PORTAL_P99="$(to_ms "${P99}")"

# The stampede: expire the token in the store and at the sandbox, then 200 requests at once.
python3 - "${WORK}/tokens.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=5)
db.execute("update oauthtoken set expiry_time = '0'")
db.commit()
PY
curl -fsS -o /dev/null -X POST "${SANDBOX}/_sandbox/expire-access-tokens"
refreshes() { curl -fsS "${SANDBOX}/_sandbox/counters" | python3 -c 'import json,sys; print(json.load(sys.stdin)["refreshes"])'; }
BEFORE="$(refreshes)"
seq 200 | xargs -P 200 -I{} curl -sS -o /dev/null -w '%{http_code}\n' -H "Cookie: ${COOKIE}" \
    "${PORTAL}/crm/Leads" >"${WORK}/stampede"
AFTER="$(refreshes)"
OK="$(grep -c '^200$' "${WORK}/stampede" || true)"
echo "stampede: 200 concurrent requests after expiry: ${OK} answered 200, $((AFTER - BEFORE)) refresh(es) at the sandbox"

HWM_KB="$(awk '/VmHWM/ {print $2}' "/proc/${PORTAL_PID}/status")"
RSS_KB="$(awk '/VmRSS/ {print $2}' "/proc/${PORTAL_PID}/status")"

python3 - "${DIRECT_RPS}" "${PORTAL_RPS}" "${DIRECT_P99}" "${PORTAL_P99}" "${HWM_KB}" "${RSS_KB}" <<'PY'
import sys
direct, portal, dp99, pp99, hwm, rss = map(float, sys.argv[1:])
print(f"portal/direct throughput: {100 * portal / direct:.0f}% (target >= 70%)")
print(f"added p99 latency (1 connection): {pp99 - dp99:.2f} ms (target < 2 ms)")
print(f"portal memory: peak {hwm / 1024:.1f} MB, now {rss / 1024:.1f} MB (target < 50 MB)")
PY
[ "$((AFTER - BEFORE))" = 1 ] && [ "${OK}" = 200 ] || { echo "stampede target missed" >&2; exit 1; }
