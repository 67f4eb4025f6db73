#!/usr/bin/env bash
# Throughput of the sandbox's CRM list endpoint, the call the portal makes most:
#   GET /crm/v8/Leads?fields=First_Name,Last_Name,Email&per_page=20  with a Zoho-oauthtoken header.
# Builds the release binary, starts `zylker-portal sandbox` on a loopback port, gets a token through the real
# flow (consent form POST, code exchange), loads it with wrk (or oha) for DURATION, stops the sandbox and
# prints requests/s. Target: at least 10,000 requests/s on a 2-core machine.
#
# Knobs (environment): PORT (18181), DURATION (10s), CONNECTIONS (64), LOAD_THREADS (1), SANDBOX_WORKERS (2).
# Needs curl and wrk (`apt-get install -y wrk`) or oha (`cargo install oha`).
set -euo pipefail

cd "$(dirname "$0")/.."
PORT="${PORT:-18181}"
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
LOAD_THREADS="${LOAD_THREADS:-1}"
export SANDBOX_WORKERS="${SANDBOX_WORKERS:-2}"
BASE="http://127.0.0.1:${PORT}"
REDIRECT="http://127.0.0.1:9/oauth/callback"
CLIENT_ID="1000.ZYLKERACADEMYDEMO"
CLIENT_SECRET="zylker-academy-demo-secret"
TARGET="${BASE}/crm/v8/Leads?fields=First_Name,Last_Name,Email&per_page=20"

if command -v wrk >/dev/null; then
    TOOL=wrk
elif command -v oha >/dev/null; then
    TOOL=oha
else
    echo "no load tool: apt-get install -y wrk (or cargo install oha)" >&2
    exit 1
fi

cargo build --release --locked --quiet --bin zylker-portal
LOG="$(mktemp)"
target/release/zylker-portal sandbox --bind "127.0.0.1:${PORT}" --redirect-uri "${REDIRECT}" >"${LOG}" 2>&1 &
SANDBOX_PID=$!
cleanup() {
    kill "${SANDBOX_PID}" 2>/dev/null || true
    wait "${SANDBOX_PID}" 2>/dev/null || true
    rm -f "${LOG}"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "${BASE}/static/sandbox.css" 2>/dev/null && break
    sleep 0.1
done
curl -fsS -o /dev/null "${BASE}/static/sandbox.css" || { echo "sandbox did not start:" >&2; cat "${LOG}" >&2; exit 1; }

# The real flow: accept on the consent form, read the code from the redirect, exchange it.
LOCATION="$(curl -sS -o /dev/null -w '%{redirect_url}' -X POST "${BASE}/oauth/v2/auth" \
    --data-urlencode "client_id=${CLIENT_ID}" -d response_type=code \
    --data-urlencode "redirect_uri=${REDIRECT}" \
    --data-urlencode "scope=ZohoCRM.modules.ALL,ZohoCRM.users.READ,ZohoCRM.org.READ" \
    -d access_type=offline -d state=bench \
    --data-urlencode "email=priya.raman@zylker.com" -d decision=accept)"
CODE="$(printf '%s' "${LOCATION}" | sed -n 's/.*[?&]code=\([^&]*\).*/\1/p')"
[ -n "${CODE}" ] || { echo "no code in ${LOCATION}" >&2; exit 1; }
ANSWER="$(curl -sS -X POST "${BASE}/oauth/v2/token" -d grant_type=authorization_code \
    --data-urlencode "client_id=${CLIENT_ID}" --data-urlencode "client_secret=${CLIENT_SECRET}" \
    --data-urlencode "redirect_uri=${REDIRECT}" --data-urlencode "code=${CODE}")"
TOKEN="$(printf '%s' "${ANSWER}" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')"
[ -n "${TOKEN}" ] || { echo "no access token in the answer" >&2; exit 1; }

STATUS="$(curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Zoho-oauthtoken ${TOKEN}" "${TARGET}")"
[ "${STATUS}" = 200 ] || { echo "warm-up call answered ${STATUS}" >&2; exit 1; }

echo "load: ${TOOL}, ${CONNECTIONS} connections, ${DURATION}, sandbox workers ${SANDBOX_WORKERS}"
echo "GET ${TARGET}"
if [ "${TOOL}" = wrk ]; then
    OUT="$(timeout 120 wrk -t"${LOAD_THREADS}" -c"${CONNECTIONS}" -d"${DURATION}" --latency \
        -H "Authorization: Zoho-oauthtoken ${TOKEN}" "${TARGET}")"
    echo "${OUT}" | grep -v -i "authorization"
    RPS="$(echo "${OUT}" | awk '/Requests\/sec/ {print $2}')"
    if echo "${OUT}" | grep -q "Non-2xx"; then
        echo "some answers were not 2xx" >&2
        exit 1
    fi
else
    OUT="$(timeout 120 oha --no-tui -c "${CONNECTIONS}" -z "${DURATION}" \
        -H "Authorization: Zoho-oauthtoken ${TOKEN}" "${TARGET}")"
    echo "${OUT}"
    RPS="$(echo "${OUT}" | awk '/Requests\/sec/ {print $2}')"
fi
echo "sandbox Leads list: ${RPS} requests/s (target >= 10000)"
