#!/usr/bin/env bash
# The CRM gate's fairness, measured as the report that found the unfair queue measured it: Zoho takes 1 s a
# call (the sandbox, no cap of its own), the portal's gate lets 2 calls through per org, its queue timeout is the default 10 s. Three figures:
#
#   1. Priya floods the gate with 40 Leads pages at once; 0.5 s later Arjun loads his Leads page: how long it
#      takes, its status, and how many of the flood were answered before it.
#   2. The same flood; 0.5 s later Sofia's login comes back from Zoho: how long the callback takes, its status.
#   3. 30 Leads pages with `curl --max-time 1`: the Zoho calls (the sandbox's counter) made after every client
#      had left, within the next 10 s, and the portal's zoho_crm_queue_abandoned_total.
#
# Knobs: BIN (default: a release build made here), PORT (18380; sandbox PORT+1, metrics PORT+2).
# Needs curl and python3.
set -euo pipefail

cd "$(dirname "$0")/.."
PORT="${PORT:-18380}"
PORTAL="http://127.0.0.1:${PORT}"
SANDBOX="http://127.0.0.1:$((PORT + 1))"
METRICS="http://127.0.0.1:$((PORT + 2))/metrics"
if [ -z "${BIN:-}" ]; then
    cargo build --release --locked --quiet --bin zylker-portal
    BIN=target/release/zylker-portal
fi

WORK="$(mktemp -d)"
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

"${BIN}" sandbox --bind "127.0.0.1:$((PORT + 1))" --redirect-uri "${PORTAL}/oauth/callback" \
    --crm-latency-ms 1000 --crm-concurrency 0 >"${WORK}/sandbox.log" 2>&1 &
PIDS+=($!)
wait_for "${SANDBOX}/static/sandbox.css"
RUST_LOG=warn "${BIN}" serve --bind "127.0.0.1:${PORT}" --public-url "${PORTAL}" \
    --client-id 1000.ZYLKERACADEMYDEMO --client-secret zylker-academy-demo-secret --accounts-url "${SANDBOX}" \
    --store "sqlite:${WORK}/tokens.db" --session-key "$("${BIN}" session-key)" \
    --crm-concurrency 2 --metrics-bind "127.0.0.1:$((PORT + 2))" >"${WORK}/portal.log" 2>&1 &
PIDS+=($!)
wait_for "${PORTAL}/healthz"

# start_login JAR EMAIL: /login and Zoho's consent as EMAIL; prints the callback URL.
start_login() {
    local auth_url
    auth_url="$(curl -sS -c "$1" -b "$1" -o /dev/null -w '%{redirect_url}' "${PORTAL}/login")"
    curl -sS -o /dev/null -w '%{redirect_url}' -X POST "${SANDBOX}/oauth/v2/auth" \
        --data "${auth_url#*\?}" --data-urlencode "email=$2" -d decision=accept
}
# login JAR EMAIL: a whole login, then the landing and Leads pages (warm: a Leads page is one CRM call).
login() {
    curl -sS -c "$1" -b "$1" -o /dev/null "$(start_login "$1" "$2")"
    curl -sS -c "$1" -b "$1" -o /dev/null "${PORTAL}/"
    curl -sS -c "$1" -b "$1" -o /dev/null "${PORTAL}/crm/Leads"
}
sandbox_calls() { curl -fsS "${SANDBOX}/_sandbox/counters" | python3 -c "import json,sys; print(json.load(sys.stdin)['crm_calls'])"; }
metric() { curl -fsS "${METRICS}" | awk -v name="$1" 'BEGIN {v = 0} $1 == name {v = $2} END {print v}'; }
# flood JAR: 40 Leads pages at once in the background; each writes its status to WORK/flood.N when answered.
flood() {
    rm -f "${WORK}"/flood.*
    CLIENTS=()
    for n in $(seq 1 40); do
        {
            curl -sS -b "$1" -o /dev/null -w '%{http_code}' "${PORTAL}/crm/Leads" >"${WORK}/flood.${n}.part"
            mv "${WORK}/flood.${n}.part" "${WORK}/flood.${n}"
        } &
        CLIENTS+=($!)
    done
}
answered() { find "${WORK}" -name 'flood.*' ! -name '*.part' | wc -l; }

login "${WORK}/priya" priya.raman@zylker.com
login "${WORK}/arjun" arjun.mehta@zylker.com
echo "Zoho 1 s a call, gate of 2, queue timeout 10 s"

flood "${WORK}/priya"
sleep 0.5
read -r status took < <(curl -sS -b "${WORK}/arjun" -o /dev/null -w '%{http_code} %{time_total}\n' "${PORTAL}/crm/Leads")
echo "  1. Arjun's Leads page during Priya's 40: ${status} in ${took} s, after $(answered) of the 40"
wait "${CLIENTS[@]}"

callback="$(start_login "${WORK}/sofia" sofia.khan@zylker.com)"
flood "${WORK}/priya"
sleep 0.5
read -r status took < <(curl -sS -c "${WORK}/sofia" -b "${WORK}/sofia" -o /dev/null -w '%{http_code} %{time_total}\n' "${callback}")
landing="$(curl -sS -b "${WORK}/sofia" -o /dev/null -w '%{http_code} %{time_total}' "${PORTAL}/")"
echo "  2. Sofia's callback during Priya's 40: ${status} in ${took} s; then her landing page ${landing% *} in ${landing#* } s, after $(answered) of the 40"
wait "${CLIENTS[@]}"

abandoned_before="$(metric zoho_crm_queue_abandoned_total)"
CLIENTS=()
for _ in $(seq 1 30); do
    curl -sS -b "${WORK}/priya" -o /dev/null --max-time 1 "${PORTAL}/crm/Leads" 2>/dev/null &
    CLIENTS+=($!)
done
wait "${CLIENTS[@]}" || true
left="$(sandbox_calls)"
sleep 10
echo "  3. 30 pages with curl --max-time 1: $(($(sandbox_calls) - left)) Zoho calls after every client had left;" \
    "zoho_crm_queue_abandoned_total +$(($(metric zoho_crm_queue_abandoned_total) - abandoned_before))"
