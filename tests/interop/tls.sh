#!/usr/bin/env bash
# Interoperability over TLS: the broker's mqtts listeners against
# mosquitto_pub/mosquitto_sub (OpenSSL underneath).
#
#   tests/interop/tls.sh
#
# Makes a CA, a server certificate (localhost, 127.0.0.1) and a client
# certificate (CN interop-client) with openssl in a temporary directory,
# starts the broker (`cargo build -p mqtt-cli`) with a config file holding
# two mqtts listeners: one plain TLS, one mutual TLS with
# use_identity_as_username and allow_anonymous = false. Then:
#   - TLS: mosquitto_sub/mosquitto_pub --cafile, MQTT 3.1.1 and 5.0;
#   - mutual TLS: the same with --cert/--key; the client sends no user
#     name, so it is accepted only because its certificate names it;
#   - mutual TLS without a client certificate is refused;
#   - a client that does not trust the CA is refused.
# Every client runs under `timeout`. Exits 0 if every check passed, 1 naming
# the failed ones otherwise.
#
# A missing tool (openssl, mosquitto_pub/mosquitto_sub) skips the script
# with a loud SKIP line and exit 0, or fails it with INTEROP_REQUIRE=1.
#
# Environment:
#   MQTT_BROKER_BIN     use this broker binary instead of building one
#   INTEROP_REQUIRE=1   a missing tool is a failure
#   INTEROP_TIMEOUT     seconds one client may run (default 10)
#   INTEROP_KEEP=1      keep the work directory (certificates, logs)
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT" || exit 1

TIMEOUT=${INTEROP_TIMEOUT:-10}
HOST=localhost
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mqtt-interop-tls.XXXXXX") || exit 1
BROKER_PID=""
BROKER_LOG="$WORK/broker.log"
PASSED=()
FAILED=()

log() { printf '\n== %s\n' "$*"; }

cleanup() {
    if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
        kill -TERM "$BROKER_PID" 2>/dev/null
        for _ in $(seq 1 50); do
            kill -0 "$BROKER_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$BROKER_PID" 2>/dev/null
        wait "$BROKER_PID" 2>/dev/null
    fi
    if [ ${#FAILED[@]} -eq 0 ] && [ "${INTEROP_KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        echo "work directory kept: $WORK (broker log: $BROKER_LOG)" >&2
    fi
}
trap cleanup EXIT

skip_all() {
    echo "SKIP: $* ********************************************" >&2
    if [ "${INTEROP_REQUIRE:-0}" = 1 ]; then
        echo "FAILED: required tool missing (INTEROP_REQUIRE=1)" >&2
        exit 1
    fi
    exit 0
}

for tool in openssl mosquitto_pub mosquitto_sub; do
    command -v "$tool" >/dev/null 2>&1 ||
        skip_all "$tool not found (apt-get install openssl mosquitto-clients): TLS interop checks not run"
done

die() {
    echo "tls interop: $*" >&2
    FAILED+=("setup")
    exit 1
}

# ---- certificates -------------------------------------------------------------

log "certificates (openssl, in $WORK)"
CERTS="$WORK/certs"
mkdir -p "$CERTS"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
{
    openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=mqtt interop CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$CERTS/ca.key" -out "$CERTS/ca.crt" &&
        openssl req "${ec[@]}" -subj "/CN=localhost" \
            -keyout "$CERTS/server.key" -out "$CERTS/server.csr" &&
        printf 'basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$CERTS/server.ext" &&
        openssl x509 -req -in "$CERTS/server.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" \
            -CAcreateserial -days 2 -extfile "$CERTS/server.ext" -out "$CERTS/server.crt" &&
        openssl req "${ec[@]}" -subj "/CN=interop-client" \
            -keyout "$CERTS/client.key" -out "$CERTS/client.csr" &&
        printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' >"$CERTS/client.ext" &&
        openssl x509 -req -in "$CERTS/client.csr" -CA "$CERTS/ca.crt" -CAkey "$CERTS/ca.key" \
            -CAcreateserial -days 2 -extfile "$CERTS/client.ext" -out "$CERTS/client.crt" &&
        # A CA the broker does not know, for the negative check.
        openssl req -x509 "${ec[@]}" -days 2 -subj "/CN=another CA" \
            -keyout "$CERTS/other-ca.key" -out "$CERTS/other-ca.crt"
} >"$WORK/openssl.log" 2>&1 || {
    cat "$WORK/openssl.log" >&2
    die "openssl failed"
}

# ---- the broker ---------------------------------------------------------------

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

tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ -n "${MQTT_BROKER_BIN:-}" ]; then
    BROKER_BIN=$MQTT_BROKER_BIN
else
    log "building the broker: cargo build -p mqtt-cli"
    cargo build -p mqtt-cli || die "cargo build -p mqtt-cli failed"
    BROKER_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/mqtt"
fi
[ -x "$BROKER_BIN" ] || die "no broker binary at $BROKER_BIN"

start_broker() {
    local attempt i
    for attempt in 1 2 3 4 5; do
        PLAIN=$(free_port)
        TLS=$(free_port)
        MTLS=$(free_port)
        cat >"$WORK/broker.toml" <<EOF
listen = ["127.0.0.1:$PLAIN"]

[[listener]]
kind = "mqtts"
address = "127.0.0.1:$TLS"
certfile = "$CERTS/server.crt"
keyfile = "$CERTS/server.key"

[[listener]]
kind = "mqtts"
address = "127.0.0.1:$MTLS"
certfile = "$CERTS/server.crt"
keyfile = "$CERTS/server.key"
cafile = "$CERTS/ca.crt"
require_certificate = true
use_identity_as_username = true
allow_anonymous = false
EOF
        "$BROKER_BIN" broker --config "$WORK/broker.toml" --log-level debug >"$BROKER_LOG" 2>&1 &
        BROKER_PID=$!
        for i in $(seq 1 100); do # up to 10 s
            kill -0 "$BROKER_PID" 2>/dev/null || break
            if tcp_open "$PLAIN" && tcp_open "$TLS" && tcp_open "$MTLS"; then
                return 0
            fi
            sleep 0.1
        done
        echo "broker did not start (attempt $attempt):" >&2
        tail -n 5 "$BROKER_LOG" >&2
        kill -9 "$BROKER_PID" 2>/dev/null
        wait "$BROKER_PID" 2>/dev/null
        BROKER_PID=""
    done
    return 1
}

log "starting the broker"
start_broker || die "the broker did not start"
echo "broker pid $BROKER_PID: mqtt 127.0.0.1:$PLAIN, mqtts $HOST:$TLS, mutual TLS $HOST:$MTLS"

# ---- checks -------------------------------------------------------------------

fail() {
    echo "    $*" >&2
    return 1
}

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
    kill -0 "$BROKER_PID" 2>/dev/null || {
        FAILED+=("the broker died during: $name")
        tail -n 30 "$BROKER_LOG" >&2
        exit 1
    }
}

# round_trip PORT VERSION TLS-ARGS...: a subscriber and a publisher with
# the same TLS arguments; the message must arrive.
round_trip() {
    local port=$1 v=$2
    shift 2
    local t="interop/tls/$port/$v/$$" out="$WORK/sub-$port-$v.out" i
    timeout "$TIMEOUT" $LINEBUF mosquitto_sub -h "$HOST" -p "$port" -V "$v" "$@" -d -t "$t" -q 1 -C 1 \
        -F 'MSG|%t|%p' >"$out" 2>&1 &
    local sub=$!
    for i in $(seq 1 100); do
        grep -q 'received SUBACK' "$out" 2>/dev/null && break
        kill -0 "$sub" 2>/dev/null || break
        sleep 0.05
    done
    grep -q 'received SUBACK' "$out" || {
        kill "$sub" 2>/dev/null
        wait "$sub" 2>/dev/null
        fail "mosquitto_sub got no SUBACK:"
        sed 's/^/      /' "$out" >&2
        return 1
    }
    local pout
    pout=$(timeout "$TIMEOUT" mosquitto_pub -h "$HOST" -p "$port" -V "$v" "$@" -t "$t" -q 1 \
        -m "secret $v" 2>&1) || {
        kill "$sub" 2>/dev/null
        wait "$sub" 2>/dev/null
        fail "mosquitto_pub failed: $pout"
        return 1
    }
    wait "$sub"
    grep -q "^MSG|$t|secret $v\$" "$out" || {
        fail "the message did not arrive; subscriber output:"
        sed 's/^/      /' "$out" >&2
        return 1
    }
}

# refused PORT ARGS...: mosquitto_pub must fail.
refused() {
    local port=$1 out
    shift
    if out=$(timeout "$TIMEOUT" mosquitto_pub -h "$HOST" -p "$port" "$@" -t interop/tls/no -m no 2>&1); then
        fail "mosquitto_pub $* was accepted"
        return 1
    fi
    echo "    refused as expected: ${out:-(no output)}" | head -n 2
}

# mosquitto_sub's stdout is a file: without line buffering, its SUBACK line
# would only appear when it exits.
LINEBUF=""
command -v stdbuf >/dev/null 2>&1 && LINEBUF="stdbuf -oL"

CA=(--cafile "$CERTS/ca.crt")
CLIENT=(--cert "$CERTS/client.crt" --key "$CERTS/client.key")

log "mqtts (TLS)"
check "TLS, MQTT 3.1.1: round trip with --cafile" round_trip "$TLS" mqttv311 "${CA[@]}"
check "TLS, MQTT 5.0: round trip with --cafile" round_trip "$TLS" mqttv5 "${CA[@]}"
check "TLS: a client that does not trust the CA is refused" \
    refused "$TLS" --cafile "$CERTS/other-ca.crt"
check "TLS: plain MQTT on the TLS port is refused" refused "$TLS"

log "mqtts (mutual TLS, use_identity_as_username, allow_anonymous = false)"
check "mutual TLS, MQTT 3.1.1: round trip with --cert/--key, no user name" \
    round_trip "$MTLS" mqttv311 "${CA[@]}" "${CLIENT[@]}"
check "mutual TLS, MQTT 5.0: round trip with --cert/--key, no user name" \
    round_trip "$MTLS" mqttv5 "${CA[@]}" "${CLIENT[@]}"
check "mutual TLS: a client without a certificate is refused" \
    refused "$MTLS" "${CA[@]}" -u someone -P secret

# ---- summary ------------------------------------------------------------------

log "summary: ${#PASSED[@]} passed, ${#FAILED[@]} failed"
if [ ${#FAILED[@]} -gt 0 ]; then
    for f in "${FAILED[@]}"; do echo "FAILED: $f" >&2; done
    exit 1
fi
echo "all TLS interoperability checks passed"
