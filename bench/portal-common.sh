#!/usr/bin/env bash
# What the portal benchmarks share (sourced by portal-load.sh and portal-ab.sh, never run on its own): the
# settings, bringing up a sandbox and a portal with a real login, wrk with the CPU each server spent per request.
# The caller sets BIN (the zylker-portal binary) before bring_up; SANDBOX_BIN, when set, runs the sandbox instead.
# SANDBOX_FLAGS and PORTAL_FLAGS, when set, are more flags for the sandbox and the portal (split on spaces).
# PORTAL_RUST_LOG is the portal's log filter (warn unless set; `serve` itself defaults to info).

cd "$(dirname "${BASH_SOURCE[0]}")/.."
DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
CLIENT_ID="1000.ZYLKERACADEMYDEMO"
CLIENT_SECRET="zylker-academy-demo-secret"
FIELDS="id,First_Name,Last_Name,Email,Phone,Lead_Status,Lead_Source,Created_Time"

# use_port N: the next bring_up puts the portal on port N and its sandbox on N+1 (PORTAL, SANDBOX, DIRECT).
use_port() {
    PORT="$1"
    SANDBOX_PORT=$((PORT + 1))
    PORTAL="http://127.0.0.1:${PORT}"
    SANDBOX="http://127.0.0.1:${SANDBOX_PORT}"
    DIRECT="${SANDBOX}/crm/v8/Leads?fields=${FIELDS}&page=1&per_page=20"
}
use_port "${PORT:-18280}"

command -v wrk >/dev/null || { echo "no load tool: apt-get install -y wrk" >&2; exit 1; }

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "${pid}" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "${pid}" 2>/dev/null || true; done
    rm -rf "${WORK}"
}
trap cleanup EXIT

wait_for() { # up to WAIT_TRIES (100) tries, 0.1 s apart
    for _ in $(seq 1 "${WAIT_TRIES:-100}"); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$1 did not come up" >&2
    return 1
}

current_token() { # the stored access token, for the direct calls
    "${BIN}" tokens --store "${STORE}" list --json --reveal |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["access_token"])'
}

# bring_up shared|pinned [NAME]: a fresh sandbox, portal and store (in WORK/NAME, NAME defaulting to the mode),
# and a login; sets SANDBOX_PID, PORTAL_PID, PORTAL_LOG, COOKIE, TOKEN and STORE. shared: every process free to use every CPU, the sandbox with its default two workers and
# the portal with one per CPU. pinned: the sandbox on CPU 0 and the portal on CPU 1, one worker each, as a
# server given one CPU is run.
bring_up() {
    local sandbox_cmd=(env) portal_cmd=(env) workers=()
    if [ "$1" = pinned ]; then
        sandbox_cmd=(taskset -c 0)
        portal_cmd=(taskset -c 1)
        workers=(--workers 1)
    fi
    local dir="${WORK}/${2:-$1}"
    KEY="${KEY:-$("${BIN}" session-key)}"
    mkdir -p "${dir}"
    # STORE_SPEC (a postgres:// or mysql:// spec) puts the tokens there instead, emptied first.
    STORE="${STORE_SPEC:-sqlite:${dir}/tokens.db}"
    if [ -n "${STORE_SPEC:-}" ]; then
        "${BIN}" tokens --store "${STORE}" delete-all --yes >/dev/null 2>&1 || true
    fi
    "${sandbox_cmd[@]}" "${SANDBOX_BIN:-${BIN}}" sandbox --bind "127.0.0.1:${SANDBOX_PORT}" \
        --redirect-uri "${PORTAL}/oauth/callback" "${workers[@]}" ${SANDBOX_FLAGS:-} >"${dir}/sandbox.log" 2>&1 &
    SANDBOX_PID=$!
    PIDS+=("${SANDBOX_PID}")
    wait_for "${SANDBOX}/static/sandbox.css"
    RUST_LOG="${PORTAL_RUST_LOG:-warn}" "${portal_cmd[@]}" "${BIN}" serve --bind "127.0.0.1:${PORT}" --public-url "${PORTAL}" \
        --client-id "${CLIENT_ID}" --client-secret "${CLIENT_SECRET}" --accounts-url "${SANDBOX}" \
        --store "${STORE}" --session-key "${KEY}" "${workers[@]}" ${PORTAL_FLAGS:-} >"${dir}/portal.log" 2>&1 &
    PORTAL_PID=$!
    PORTAL_LOG="${dir}/portal.log"
    PIDS+=("${PORTAL_PID}")
    wait_for "${PORTAL}/healthz"

    # Log in as a person would: /login, accept on the sandbox's consent form, back to the callback.
    local jar="${dir}/cookies" auth_url callback status
    auth_url="$(curl -sS -c "${jar}" -b "${jar}" -o /dev/null -w '%{redirect_url}' "${PORTAL}/login")"
    callback="$(curl -sS -o /dev/null -w '%{redirect_url}' -X POST "${SANDBOX}/oauth/v2/auth" \
        --data "${auth_url#*\?}" --data-urlencode "email=priya.raman@zylker.com" -d decision=accept)"
    curl -sS -c "${jar}" -b "${jar}" -o /dev/null "${callback}"
    # As a browser does: the callback sends it to the landing page, which lists the user's modules into the
    # session and shows (and so removes) the "signed in" flash; then the Leads page. The cookie it then holds is
    # the one used.
    curl -sS -c "${jar}" -b "${jar}" -o /dev/null "${PORTAL}/"
    status="$(curl -sS -c "${jar}" -b "${jar}" -o /dev/null -w '%{http_code}' "${PORTAL}/crm/Leads")"
    [ "${status}" = 200 ] || { echo "the Leads page answered ${status}" >&2; exit 1; }
    COOKIE="$(awk '$6 == "zylker_session" {print $6 "=" $7}' "${jar}")"
    [ -n "${COOKIE}" ] || { echo "login failed: no session cookie" >&2; exit 1; }
    TOKEN="$(current_token)"
}

# under_callgrind REAL_BIN: sets BIN to a wrapper that runs `serve` under valgrind's callgrind, instrumentation
# off until `callgrind_control --instr=on` (profiles in WORK/callgrind.PID.N), and the other commands (session-key,
# tokens) as they are; servers then start some 20 times slower, so wait_for waits longer.
under_callgrind() {
    BIN="${WORK}/under-callgrind"
    cat >"${BIN}" <<WRAPPER
#!/usr/bin/env bash
if [ "\$1" = serve ]; then
    exec valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="${WORK}/callgrind.%p" "$1" "\$@"
fi
exec "$1" "\$@"
WRAPPER
    chmod +x "${BIN}"
    WAIT_TRIES=600
}

# callgrind_total FILE: the instructions a callgrind profile counted in all (read to the end: an early exit would
# end callgrind_annotate with SIGPIPE, which pipefail turns into a failure).
callgrind_total() {
    callgrind_annotate "$1" | awk '/PROGRAM TOTALS/ && !seen {gsub(",", "", $1); print $1; seen = 1}'
}

tear_down() {
    kill "${SANDBOX_PID}" "${PORTAL_PID}"
    wait "${SANDBOX_PID}" "${PORTAL_PID}" 2>/dev/null || true
}

TICKS="$(getconf CLK_TCK)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user + system time of a process, in clock ticks

# run_wrk LABEL CONNECTIONS DURATION URL HEADER -> prints a summary, sets RPS, P50, P99 (ms), and the CPU time
# each request cost the sandbox and the portal (SANDBOX_US, PORTAL_US), from /proc/PID/stat.
# WRK_CPU (a CPU list for taskset) pins wrk.
run_wrk() {
    local out sandbox0 portal0 requests
    sandbox0="$(cpu_ticks "${SANDBOX_PID}")"
    portal0="$(cpu_ticks "${PORTAL_PID}")"
    out="$(timeout 120 ${WRK_CPU:+taskset -c "${WRK_CPU}"} wrk -t1 -c"$2" -d"$3" --latency -H "$5" "$4")"
    if echo "${out}" | grep -q "Non-2xx"; then
        echo "$1: some answers were not 2xx" >&2
        echo "${out}" | grep -iv "cookie\|authorization" >&2
        if [ -n "${PORTAL_LOG:-}" ]; then
            echo "the portal's log (its warnings and errors) ends:" >&2
            tail -n 20 "${PORTAL_LOG}" >&2
        fi
        exit 1
    fi
    requests="$(echo "${out}" | awk '/requests in/ {print $1}')"
    SANDBOX_US="$(python3 -c "print(f'{($(cpu_ticks "${SANDBOX_PID}") - ${sandbox0}) / ${TICKS} / ${requests} * 1e6:.1f}')")"
    PORTAL_US="$(python3 -c "print(f'{($(cpu_ticks "${PORTAL_PID}") - ${portal0}) / ${TICKS} / ${requests} * 1e6:.1f}')")"
    RPS="$(echo "${out}" | awk '/Requests\/sec/ {print $2}')"
    P50="$(echo "${out}" | awk '$1 == "50%" {print $2}')"
    P99="$(echo "${out}" | awk '$1 == "99%" {print $2}')"
    printf '  %-28s %10s req/s   p50 %8s   p99 %8s   CPU per request: sandbox %5s us, portal %5s us\n' \
        "$1" "${RPS}" "${P50}" "${P99}" "${SANDBOX_US}" "${PORTAL_US}"
}
to_ms() { # wrk prints 812.00us, 1.52ms or 1.01s
    python3 -c 'import re,sys; v,u=re.match(r"([\d.]+)(us|ms|s)",sys.argv[1]).groups(); print(float(v)*{"us":0.001,"ms":1,"s":1000}[u])' "$1"
}

