#!/usr/bin/env bash
# Interoperability checks: the broker against third-party clients.
#
#   tests/interop/run.sh
#
# Builds the broker (`cargo build -p mqtt-cli`), starts it on a free port of
# 127.0.0.1, and talks to it with mosquitto_pub/mosquitto_sub (MQTT 3.1.1 and
# 5.0) and Python paho-mqtt (tests/interop/paho_check.py, and
# tests/interop/paho_crash.py: persistent QoS 2 clients across a SIGKILL of
# a broker with --data-dir). Every client runs
# under `timeout`, so the script ends by itself. Exits 0 if every check
# passed, 1 naming the failed checks otherwise.
#
# A missing tool skips its checks with a loud SKIP line (CI installs them:
# apt-get install mosquitto-clients python3-paho-mqtt).
#
# Environment:
#   MQTT_BROKER_BIN     use this broker binary instead of building one
#   INTEROP_REQUIRE=1   a skipped tool is a failure
#   INTEROP_TIMEOUT     seconds one client may run (default 10)
#   INTEROP_LOG_LEVEL   the broker's --log-level (default debug)
#   INTEROP_KEEP=1      keep the work directory (logs) even on success
#   PYTHON              try this interpreter first for paho-mqtt
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT" || exit 1

TIMEOUT=${INTEROP_TIMEOUT:-10}
HOST=127.0.0.1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mqtt-interop.XXXXXX") || exit 1
PREFIX="interop/$$-$RANDOM"
BROKER_PID=""
BROKER_LOG="$WORK/broker.log"
PORT=""
BG_PIDS=()
PASSED=()
FAILED=()
SKIPPED=()

log() { printf '\n== %s\n' "$*"; }

# Stops the background clients of the current check. SIGTERM first: a
# `timeout` passes it on to its client, a SIGKILL would orphan the client.
kill_bg() {
    local pid i
    [ ${#BG_PIDS[@]} -gt 0 ] || return 0
    kill -TERM "${BG_PIDS[@]}" 2>/dev/null
    for i in $(seq 1 20); do
        kill -0 "${BG_PIDS[@]}" 2>/dev/null || break
        sleep 0.05
    done
    kill -9 "${BG_PIDS[@]}" 2>/dev/null
    for pid in "${BG_PIDS[@]}"; do
        { wait "$pid"; } 2>/dev/null
    done
    BG_PIDS=()
}

stop_broker() {
    [ -n "$BROKER_PID" ] || return 0
    if kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null
        local i
        for i in $(seq 1 50); do
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$BROKER_PID" 2>/dev/null
    fi
    wait "$BROKER_PID" 2>/dev/null
    BROKER_PID=""
}

cleanup() {
    kill_bg
    stop_broker
    if [ ${#FAILED[@]} -eq 0 ] && [ "${INTEROP_KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        echo "logs kept in $WORK (broker log: $BROKER_LOG)" >&2
    fi
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; FAILED+=("interrupted"); exit 130' INT TERM

die() {
    echo "interop: $*" >&2
    FAILED+=("setup")
    exit 1
}

# ---- the broker -------------------------------------------------------------

free_port() {
    local py
    for py in python3 /usr/bin/python3 python; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null; then
            return 0
        fi
    done
    echo $((20000 + RANDOM % 40000))
}

tcp_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

if [ -n "${MQTT_BROKER_BIN:-}" ]; then
    BROKER_BIN=$MQTT_BROKER_BIN
else
    log "building the broker: cargo build -p mqtt-cli"
    cargo build -p mqtt-cli || die "cargo build -p mqtt-cli failed"
    target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
    BROKER_BIN="$target_dir/debug/mqtt"
fi
[ -x "$BROKER_BIN" ] || die "no broker binary at $BROKER_BIN"

start_broker() {
    local attempt i
    for attempt in 1 2 3 4 5; do
        PORT=$(free_port)
        "$BROKER_BIN" broker --listen "$HOST:$PORT" \
            --log-level "${INTEROP_LOG_LEVEL:-debug}" >"$BROKER_LOG" 2>&1 &
        BROKER_PID=$!
        for i in $(seq 1 100); do # up to 10 s
            if ! kill -0 "$BROKER_PID" 2>/dev/null; then
                break # exited: the port may have been taken meanwhile
            fi
            if tcp_open "$PORT"; then
                sleep 0.1
                if kill -0 "$BROKER_PID" 2>/dev/null; then
                    return 0
                fi
                break
            fi
            sleep 0.1
        done
        echo "broker did not start on port $PORT (attempt $attempt):" >&2
        tail -n 5 "$BROKER_LOG" >&2
        stop_broker
    done
    return 1
}

log "starting the broker"
start_broker || die "the broker did not accept connections"
echo "broker $BROKER_BIN pid $BROKER_PID on $HOST:$PORT, log $BROKER_LOG"

# ---- helpers for checks -----------------------------------------------------

# Prints why a check failed; returns 1 so `fail ... ; return` propagates.
fail() {
    echo "    $*" >&2
    return 1
}

# check NAME FUNCTION ARGS...: runs one check and records its outcome.
check() {
    local name=$1
    shift
    echo "-- $name"
    if "$@"; then
        PASSED+=("$name")
        echo "   ok"
    else
        FAILED+=("$name")
        echo "FAIL: $name" >&2
    fi
    kill_bg
    if ! kill -0 "$BROKER_PID" 2>/dev/null; then
        FAILED+=("broker still running after: $name")
        echo "FAIL: the broker died during: $name; last lines of its log:" >&2
        tail -n 30 "$BROKER_LOG" >&2
        exit 1
    fi
}

skip() {
    echo "SKIP: $* ********************************************" >&2
    SKIPPED+=("$*")
}

# wait_for FILE PATTERN [PID]: waits (5 s at most) until FILE has a line
# matching PATTERN; fails early if PID exits without writing it.
wait_for() {
    local file=$1 pattern=$2 pid=${3:-} i
    for i in $(seq 1 100); do
        grep -q -- "$pattern" "$file" 2>/dev/null && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            grep -q -- "$pattern" "$file" 2>/dev/null && return 0
            break
        fi
        sleep 0.05
    done
    return 1
}

# mosquitto_sub's stdout is a file: without line buffering, its debug lines
# (and messages) would only appear when it exits.
LINEBUF=""
command -v stdbuf >/dev/null 2>&1 && LINEBUF="stdbuf -oL"

SUB_PID=""
# sub_start OUT ARGS...: mosquitto_sub in the background, -d so that its
# SUBACK is visible; returns once subscribed (or once it received a message:
# a resumed session may deliver queued messages before the SUBACK).
# Messages are lines "MSG|...".
sub_start() {
    local out=$1
    shift
    timeout "$TIMEOUT" $LINEBUF mosquitto_sub -h "$HOST" -p "$PORT" -d "$@" >"$out" 2>&1 &
    SUB_PID=$!
    BG_PIDS+=("$SUB_PID")
    if ! wait_for "$out" 'received SUBACK\|^MSG|' "$SUB_PID"; then
        fail "mosquitto_sub $* got no SUBACK; its output:"
        sed 's/^/      /' "$out" >&2
        return 1
    fi
}

# sub_wait PID: waits for a subscriber started with -C to exit. Not in a
# $(...) subshell: only this shell can wait for its children.
sub_wait() {
    wait "$1"
    if [ $? -eq 124 ]; then
        echo "    (the subscriber timed out after ${TIMEOUT} s)" >&2
    fi
}

# sub_messages OUT: the messages a subscriber received, without "MSG|".
sub_messages() {
    grep '^MSG|' "$1" | sed 's/^MSG|//'
}

# expect_messages PID OUT EXPECTED...: the subscriber's messages are exactly
# the EXPECTED lines, in order.
expect_messages() {
    local pid=$1 out=$2
    shift 2
    local got want
    sub_wait "$pid"
    got=$(sub_messages "$out")
    want=$(printf '%s\n' "$@")
    if [ "$got" != "$want" ]; then
        fail "expected the subscriber to receive:"
        printf '      %s\n' "$@" >&2
        echo "    it received:" >&2
        if [ -n "$got" ]; then printf '%s\n' "$got" | sed 's/^/      /' >&2; else echo "      (nothing)" >&2; fi
        echo "    its output:" >&2
        sed 's/^/      /' "$out" >&2
        return 1
    fi
}

# pub ARGS...: mosquitto_pub, which must succeed.
pub() {
    local out rc
    out=$(timeout "$TIMEOUT" mosquitto_pub -h "$HOST" -p "$PORT" "$@" 2>&1)
    rc=$?
    if [ "$rc" -ne 0 ]; then
        fail "mosquitto_pub $* failed (exit $rc$([ "$rc" -eq 124 ] && echo ", timed out")): $out"
        return 1
    fi
}

FMT='MSG|%t|%q|%r|%p'
FMT5='MSG|%t|%q|%r|%p|%P|%C|%R|%D|%F|%E'

# ---- mosquitto_pub / mosquitto_sub checks -------------------------------------

# m_qos VERSION QOS
m_qos() {
    local v=$1 q=$2 t="$PREFIX/$1/qos$2" out="$WORK/$1-qos$2.out"
    sub_start "$out" -V "$v" -t "$t" -q 2 -C 1 -W "$TIMEOUT" -F "$FMT" || return 1
    local pid=$SUB_PID
    pub -V "$v" -t "$t" -q "$q" -m "payload at qos $q" || return 1
    expect_messages "$pid" "$out" "$t|$q|0|payload at qos $q"
}

# m_qos_downgrade VERSION: a QoS 2 publish to a QoS 1 subscription arrives at 1.
m_qos_downgrade() {
    local v=$1 t="$PREFIX/$1/downgrade" out="$WORK/$1-downgrade.out"
    sub_start "$out" -V "$v" -t "$t" -q 1 -C 1 -W "$TIMEOUT" -F "$FMT" || return 1
    local pid=$SUB_PID
    pub -V "$v" -t "$t" -q 2 -m down || return 1
    expect_messages "$pid" "$out" "$t|1|0|down"
}

m_wildcards() {
    local v=$1 t="$PREFIX/$1/wild" out="$WORK/$1-wild.out"
    sub_start "$out" -V "$v" -t "$t/+/x" -t "$t/deep/#" -q 1 -C 3 -W "$TIMEOUT" -F "$FMT" || return 1
    local pid=$SUB_PID
    pub -V "$v" -t "$t/a/x" -q 1 -m 1 || return 1
    pub -V "$v" -t "$t/a/y" -q 1 -m no || return 1
    pub -V "$v" -t "$t/a/b/x" -q 1 -m no || return 1
    pub -V "$v" -t "$t/b/x" -q 1 -m 2 || return 1
    pub -V "$v" -t "$t/deep/1/2/3" -q 1 -m 3 || return 1
    expect_messages "$pid" "$out" "$t/a/x|1|0|1" "$t/b/x|1|0|2" "$t/deep/1/2/3|1|0|3"
}

m_retained_set() {
    local v=$1 t="$PREFIX/$1/retained" out="$WORK/$1-retained.out"
    pub -V "$v" -t "$t" -q 1 -r -m "kept for later" || return 1
    sub_start "$out" -V "$v" -t "$t" -q 1 -C 1 -W "$TIMEOUT" -F "$FMT" || return 1
    expect_messages "$SUB_PID" "$out" "$t|1|1|kept for later"
}

# After m_retained_set: an empty retained message clears it, so a new
# subscriber gets only the live marker published after it subscribed.
m_retained_clear() {
    local v=$1 t="$PREFIX/$1/retained" out="$WORK/$1-retained-clear.out"
    pub -V "$v" -t "$t" -q 1 -r -n || return 1
    sub_start "$out" -V "$v" -t "$t" -q 1 -C 1 -W "$TIMEOUT" -F "$FMT" || return 1
    local pid=$SUB_PID
    pub -V "$v" -t "$t" -q 1 -m marker || return 1
    expect_messages "$pid" "$out" "$t|1|0|marker"
}

# m_will_kill VERSION: a client killed with SIGKILL has its will published.
m_will_kill() {
    local v=$1 t="$PREFIX/$1/will" out="$WORK/$1-will.out" dout="$WORK/$1-will-dying.out"
    local fmt=$FMT extra=() want="$t|1|0|client $1 died"
    if [ "$v" = mqttv5 ]; then
        fmt='MSG|%t|%q|%r|%p|%P|%C'
        extra=(-D will user-property cause sigkill -D will content-type text/plain)
        want="$want|cause:sigkill|text/plain"
    fi
    sub_start "$out" -V "$v" -t "$t" -q 1 -C 1 -W "$TIMEOUT" -F "$fmt" || return 1
    local watcher=$SUB_PID
    # Not under `timeout`: SIGKILL must reach mosquitto_sub itself (stdbuf
    # execs it, keeping the pid). -W bounds it.
    $LINEBUF mosquitto_sub -h "$HOST" -p "$PORT" -d -V "$v" -t "$PREFIX/$1/dying" -W 30 \
        --will-topic "$t" --will-payload "client $1 died" --will-qos 1 "${extra[@]}" \
        >"$dout" 2>&1 &
    local dying=$!
    BG_PIDS+=("$dying")
    if ! wait_for "$dout" 'received SUBACK' "$dying"; then
        fail "the client with a will did not subscribe; its output:"
        sed 's/^/      /' "$dout" >&2
        return 1
    fi
    kill -9 "$dying"
    { wait "$dying"; } 2>/dev/null # reaps it without bash's "Killed" line
    expect_messages "$watcher" "$out" "$want"
}

# m_will_clean VERSION: a client that disconnects normally has no will sent.
m_will_clean() {
    local v=$1 t="$PREFIX/$1/will-clean" out="$WORK/$1-will-clean.out" dout="$WORK/$1-will-clean-client.out"
    sub_start "$out" -V "$v" -t "$t" -q 1 -C 1 -W "$TIMEOUT" -F "$FMT" || return 1
    local watcher=$SUB_PID
    sub_start "$dout" -V "$v" -t "$PREFIX/$1/will-clean-go" -C 1 -W "$TIMEOUT" \
        --will-topic "$t" --will-payload "should not be sent" --will-qos 1 || return 1
    local leaver=$SUB_PID
    pub -V "$v" -t "$PREFIX/$1/will-clean-go" -m go || return 1 # it exits with DISCONNECT
    wait "$leaver"
    sleep 0.2
    pub -V "$v" -t "$t" -q 1 -m marker || return 1
    expect_messages "$watcher" "$out" "$t|1|0|marker"
}

m_v5_properties() {
    local t="$PREFIX/mqttv5/props" out="$WORK/v5-props.out" line want
    sub_start "$out" -V mqttv5 -t "$t" -q 1 -C 1 -W "$TIMEOUT" -F "$FMT5" || return 1
    local pid=$SUB_PID
    pub -V mqttv5 -t "$t" -q 1 -m '{"v": 1}' \
        -D publish user-property k v \
        -D publish user-property k2 "second value" \
        -D publish content-type application/json \
        -D publish response-topic "$PREFIX/mqttv5/reply" \
        -D publish correlation-data corr-1234 \
        -D publish payload-format-indicator 1 \
        -D publish message-expiry-interval 60 || return 1
    sub_wait "$pid"
    line=$(sub_messages "$out")
    want="$t|1|0|{\"v\": 1}|k:v k2:second value|application/json|$PREFIX/mqttv5/reply|corr-1234|1|"
    case "$line" in
    "$want"60 | "$want"59 | "$want"58) return 0 ;;
    esac
    fail "expected (topic|qos|retain|payload|user properties|content type|response topic|correlation data|payload format|expiry):"
    echo "      ${want}58..60" >&2
    echo "    got:" >&2
    echo "      ${line:-(nothing)}" >&2
    sed 's/^/      /' "$out" >&2
    return 1
}

# m_large VERSION: a 300 kB payload (many TCP reads) arrives intact.
m_large() {
    local v=$1 t="$PREFIX/$1/large" out="$WORK/$1-large.out" file="$WORK/large.payload"
    [ -f "$file" ] || head -c 230000 /dev/urandom | base64 -w0 >"$file"
    sub_start "$out" -V "$v" -t "$t" -q 1 -C 1 -W "$TIMEOUT" -F 'MSG|%t|%l|%p' || return 1
    local pid=$SUB_PID
    pub -V "$v" -t "$t" -q 1 -f "$file" || return 1
    sub_wait "$pid"
    local want got
    want="$t|$(wc -c <"$file")|$(cat "$file")"
    got=$(sub_messages "$out")
    if [ "$got" != "$want" ]; then
        fail "the $(wc -c <"$file")-byte payload did not arrive intact; received (first 200 bytes):"
        printf '      %.200s\n' "${got:-(nothing)}" >&2
        return 1
    fi
}

# A 5.0 will with a will delay is sent after the delay, not at once.
m_v5_will_delay() {
    local t="$PREFIX/mqttv5/will-delay" out="$WORK/v5-will-delay.out" dout="$WORK/v5-will-delay-client.out"
    local id="interop-will-delay-$$"
    sub_start "$out" -V mqttv5 -t "$t" -q 1 -C 1 -W "$TIMEOUT" -F "$FMT" || return 1
    local watcher=$SUB_PID
    $LINEBUF mosquitto_sub -h "$HOST" -p "$PORT" -d -V mqttv5 -i "$id" -x 30 -t "$t/unused" -W 30 \
        --will-topic "$t" --will-payload "delayed will" --will-qos 1 \
        -D will will-delay-interval 2 >"$dout" 2>&1 &
    local dying=$!
    BG_PIDS+=("$dying")
    if ! wait_for "$dout" 'received SUBACK' "$dying"; then
        fail "the client with a will did not subscribe; its output:"
        sed 's/^/      /' "$dout" >&2
        return 1
    fi
    kill -9 "$dying"
    { wait "$dying"; } 2>/dev/null
    sleep 1
    if [ -n "$(sub_messages "$out")" ]; then
        fail "the will (delay 2 s, session expiry 30 s) was published within 1 s of the connection dropping:"
        sub_messages "$out" | sed 's/^/      /' >&2
        return 1
    fi
    expect_messages "$watcher" "$out" "$t|1|0|delayed will" || return 1
    # End the session the will delay kept alive.
    timeout "$TIMEOUT" mosquitto_sub -h "$HOST" -p "$PORT" -V mqttv5 -i "$id" -t "$t/unused" -E >/dev/null 2>&1
    return 0
}

# A retained 5.0 message whose message expiry has passed is not sent to a
# new subscriber.
m_v5_retained_expiry() {
    local t="$PREFIX/mqttv5/retained-expiry" out="$WORK/v5-retained-expiry.out"
    pub -V mqttv5 -t "$t" -q 1 -r -m "expires" -D publish message-expiry-interval 1 || return 1
    sleep 2.2
    sub_start "$out" -V mqttv5 -t "$t" -q 1 -C 1 -W "$TIMEOUT" -F "$FMT" || return 1
    local pid=$SUB_PID
    pub -V mqttv5 -t "$t" -q 1 -m marker || return 1
    expect_messages "$pid" "$out" "$t|1|0|marker" || return 1
    pub -V mqttv5 -t "$t" -q 1 -r -n
}

# A 5.0 publish with properties reaches a 3.1.1 subscriber, and back.
m_cross_version() {
    local t="$PREFIX/cross" out="$WORK/cross.out" out5="$WORK/cross5.out"
    sub_start "$out" -V mqttv311 -t "$t/to311" -q 1 -C 1 -W "$TIMEOUT" -F "$FMT" || return 1
    local p311=$SUB_PID
    sub_start "$out5" -V mqttv5 -t "$t/to5" -q 1 -C 1 -W "$TIMEOUT" -F "$FMT5" || return 1
    local p5=$SUB_PID
    pub -V mqttv5 -t "$t/to311" -q 1 -m from5 -D publish user-property k v \
        -D publish content-type text/plain || return 1
    pub -V mqttv311 -t "$t/to5" -q 1 -m from311 || return 1
    expect_messages "$p311" "$out" "$t/to311|1|0|from5" || return 1
    expect_messages "$p5" "$out5" "$t/to5|1|0|from311||||||"
}

# A persistent 3.1.1 / 5.0 session (-c, a fixed client id) gets the QoS 1
# message published while it was offline.
m_persistent() {
    local v=$1 t="$PREFIX/$1/persist" out="$WORK/$1-persist.out" out2="$WORK/$1-persist2.out"
    local id="interop-persist-$1-$$" expiry=()
    [ "$v" = mqttv5 ] && expiry=(-x 300)
    sub_start "$out" -V "$v" -i "$id" -c "${expiry[@]}" -t "$t" -q 1 -E || return 1
    wait "$SUB_PID"
    pub -V "$v" -t "$t" -q 1 -m "sent while offline" || return 1
    sub_start "$out2" -V "$v" -i "$id" -c "${expiry[@]}" -t "$t" -q 1 -C 1 -W "$TIMEOUT" -F "$FMT" || return 1
    expect_messages "$SUB_PID" "$out2" "$t|1|0|sent while offline" || return 1
    # Leave no session behind.
    timeout "$TIMEOUT" mosquitto_sub -h "$HOST" -p "$PORT" -V "$v" -i "$id" -t "$t" -E >/dev/null 2>&1
    return 0
}

if command -v mosquitto_sub >/dev/null 2>&1 && command -v mosquitto_pub >/dev/null 2>&1; then
    for v in mqttv311 mqttv5; do
        name=${v#mqttv}
        [ "$name" = 311 ] && name=3.1.1 || name=5.0
        log "mosquitto clients, MQTT $name"
        for q in 0 1 2; do
            check "mosquitto MQTT $name: QoS $q round trip" m_qos "$v" "$q"
        done
        check "mosquitto MQTT $name: QoS 2 publish to a QoS 1 subscription arrives at QoS 1" m_qos_downgrade "$v"
        check "mosquitto MQTT $name: + and # wildcards" m_wildcards "$v"
        check "mosquitto MQTT $name: 300 kB payload arrives intact" m_large "$v"
        check "mosquitto MQTT $name: retained message reaches a new subscriber" m_retained_set "$v"
        check "mosquitto MQTT $name: empty retained message clears it" m_retained_clear "$v"
        check "mosquitto MQTT $name: will published when the client is killed (SIGKILL)" m_will_kill "$v"
        check "mosquitto MQTT $name: no will after a normal DISCONNECT" m_will_clean "$v"
        check "mosquitto MQTT $name: persistent session gets QoS 1 sent while offline" m_persistent "$v"
    done
    check "mosquitto MQTT 5.0: publish properties reach the subscriber" m_v5_properties
    check "mosquitto MQTT 5.0: will delay interval delays the will" m_v5_will_delay
    check "mosquitto MQTT 5.0: expired retained message is not sent" m_v5_retained_expiry
    check "mosquitto MQTT 5.0 <-> 3.1.1 across versions" m_cross_version
else
    skip "mosquitto_pub/mosquitto_sub not found (apt-get install mosquitto-clients): mosquitto checks not run"
fi

# ---- paho-mqtt ----------------------------------------------------------------

PAHO_PY=""
for py in ${PYTHON:-} python3 /usr/bin/python3 python; do
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import paho.mqtt.client' >/dev/null 2>&1; then
        PAHO_PY=$py
        break
    fi
done

paho() {
    timeout 60 "$PAHO_PY" "$HERE/paho_check.py" "$HOST" "$PORT" "$1" "$PREFIX/paho" 2>&1 | sed 's/^/   /'
}

paho_crash() {
    timeout 300 "$PAHO_PY" "$HERE/paho_crash.py" "$BROKER_BIN" 2>&1 | sed 's/^/   /'
}

if [ -n "$PAHO_PY" ]; then
    log "paho-mqtt ($PAHO_PY), MQTT 3.1.1 and 5.0"
    check "paho-mqtt MQTT 3.1.1 (paho_check.py)" paho 3.1.1
    check "paho-mqtt MQTT 5.0 (paho_check.py)" paho 5
    # Starts brokers of its own (with --data-dir) to kill with SIGKILL.
    check "paho-mqtt persistent QoS 2 across SIGKILL with a backlog (paho_crash.py)" paho_crash
else
    skip "no Python with paho-mqtt (apt-get install python3-paho-mqtt, or pip install paho-mqtt): paho checks not run"
fi

# ---- shutdown -----------------------------------------------------------------

# SIGTERM stops the broker within its grace period (5 s) plus a margin.
m_sigterm() {
    local i
    kill -TERM "$BROKER_PID" 2>/dev/null
    for i in $(seq 1 80); do
        if ! kill -0 "$BROKER_PID" 2>/dev/null; then
            wait "$BROKER_PID"
            local rc=$?
            BROKER_PID=""
            [ "$rc" -eq 0 ] || fail "the broker exited with status $rc after SIGTERM"
            return
        fi
        sleep 0.1
    done
    fail "the broker was still running 8 s after SIGTERM"
}

log "shutdown"
echo "-- broker exits with status 0 on SIGTERM"
if m_sigterm; then
    PASSED+=("broker exits on SIGTERM")
    echo "   ok"
else
    FAILED+=("broker exits with status 0 on SIGTERM")
    echo "FAIL: broker exits with status 0 on SIGTERM" >&2
fi

# ---- summary ------------------------------------------------------------------

stop_broker
log "summary: ${#PASSED[@]} passed, ${#FAILED[@]} failed, ${#SKIPPED[@]} skipped"
for s in "${SKIPPED[@]}"; do echo "SKIP: $s"; done
if [ ${#SKIPPED[@]} -gt 0 ] && [ "${INTEROP_REQUIRE:-0}" = 1 ]; then
    FAILED+=("required tools missing (INTEROP_REQUIRE=1)")
fi
if [ ${#FAILED[@]} -gt 0 ]; then
    for f in "${FAILED[@]}"; do echo "FAILED: $f" >&2; done
    exit 1
fi
echo "all interoperability checks passed"
