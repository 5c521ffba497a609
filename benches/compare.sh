#!/usr/bin/env bash
# Compare this broker with mosquitto and the NATS server (MQTT gateway,
# JetStream on) on the same machine, in the same run, with the same load
# generator (`mqtt bench`). Brokers alternate between repetitions so that
# drift in the machine's load spreads evenly; the table shows medians and
# the ratios ours/mosquitto and ours/NATS.
#
#   benches/compare.sh                 # all scenarios, 3 repetitions, 10 s each
#   REPS=5 DURATION=20 benches/compare.sh fanin_qos0 fanout
#
# Scenarios: fanin_qos0 fanin_qos1 fanout latency conns filters.
# MQTT 3.1.1 throughout: the NATS server's MQTT gateway speaks only 3.1.1.
# Installs mosquitto and nats-server with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-10000}
FILTERS=${FILTERS:-100000}
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(fanin_qos0 fanin_qos1 fanout latency conns filters)
BROKERS=(ours mosquitto nats)
PORT_OURS=${PORT_OURS:-21883}
PORT_MOSQ=${PORT_MOSQ:-21884}
PORT_NATS=${PORT_NATS:-21885}

log() { printf '==> %s\n' "$*" >&2; }

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || need+=(nats-server)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
NATS=$(command -v nats-server || echo /usr/sbin/nats-server)

log "building the broker and the load generator (release)"
cargo build --release -q -p mqtt-cli
MQTT="${CARGO_TARGET_DIR:-target}/release/mqtt"

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

WORK=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

cat > "$WORK/ours.toml" <<TOML
listen = ["127.0.0.1:$PORT_OURS"]
max_connections = 100000
TOML
cat > "$WORK/mosquitto.conf" <<CONF
listener $PORT_MOSQ 127.0.0.1
allow_anonymous true
max_connections -1
CONF
cat > "$WORK/nats.conf" <<CONF
listen: 127.0.0.1:24222
server_name: bench
jetstream { store_dir: "$WORK/js" }
mqtt { listen: 127.0.0.1:$PORT_NATS }
CONF

start() {
    case $1 in
        ours) "$MQTT" broker --config "$WORK/ours.toml" --log-level error & PORT=$PORT_OURS ;;
        mosquitto) "$MOSQUITTO" -c "$WORK/mosquitto.conf" >/dev/null 2>&1 & PORT=$PORT_MOSQ ;;
        nats) rm -rf "$WORK/js"; "$NATS" -c "$WORK/nats.conf" >/dev/null 2>&1 & PORT=$PORT_NATS ;;
    esac
    PID=$!
    for _ in $(seq 100); do
        if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    log "$1 did not start"; return 1
}
stop() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; PID=""; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }

B=(-h 127.0.0.1 -V mqttv311 --json)
# Each scenario prints "metric value" lines; the first metric is the headline.
run() {
    local broker=$1 scenario=$2 out
    case $scenario in
        fanin_qos0)
            out=$("$MQTT" bench pubsub "${B[@]}" -p "$PORT" -c 4 -S 1 -q 0 -t 'bench/%i' -f 'bench/#' -d "$DURATION" --drain 2 2>/dev/null) || true
            jq_like "$out" received_rate losses ;;
        fanin_qos1)
            out=$("$MQTT" bench pubsub "${B[@]}" -p "$PORT" -c 4 -S 1 -q 1 --inflight 64 -t 'bench/%i' -f 'bench/#' -d "$DURATION" --drain 5 2>/dev/null) || true
            jq_like "$out" received_rate losses ;;
        fanout)
            out=$("$MQTT" bench pubsub "${B[@]}" -p "$PORT" -c 1 -S 32 -q 0 -t 'bench/x' -f 'bench/x' -d "$DURATION" --drain 2 2>/dev/null) || true
            jq_like "$out" received_rate losses ;;
        latency)
            out=$("$MQTT" bench pubsub "${B[@]}" -p "$PORT" -c 1 -S 1 -q 0 -R 10000 -t 'bench/lat' -f 'bench/lat' -d "$DURATION" --drain 2 2>/dev/null) || true
            jq_like "$out" latency.p99_us latency.p50_us latency.p999_us losses ;;
        conns)
            local before after
            before=$(rss_kb)
            out=$("$MQTT" bench conn "${B[@]}" -p "$PORT" -c "$CONNS" -R 0 --hold 3 --rss-pid "$PID" 2>/dev/null) || true
            jq_like "$out" connect_rate rss_per_conn_bytes connect_failures ;;
        filters)
            out=$("$MQTT" bench filters "${B[@]}" -p "$PORT" --filters "$FILTERS" -d "$DURATION" 2>/dev/null) || true
            jq_like "$out" subscribe_s publish_rate ;;
    esac
}
jq_like() {
    local json=$1; shift
    python3 - "$json" "$@" <<'PY'
import json, sys
raw = sys.argv[1]
try:
    d = json.loads(raw)
except Exception:
    d = {}
for key in sys.argv[2:]:
    v = d
    for part in key.split('.'):
        v = v.get(part) if isinstance(v, dict) else None
    print(key, 'nan' if v is None else v)
PY
}

RESULTS="$WORK/results"
: > "$RESULTS"
for scenario in "${SCENARIOS[@]}"; do
    for rep in $(seq "$REPS"); do
        # Rotate the starting broker each repetition.
        order=("${BROKERS[@]:$(( (rep - 1) % 3 ))}" "${BROKERS[@]:0:$(( (rep - 1) % 3 ))}")
        for broker in "${order[@]}"; do
            log "$scenario rep $rep: $broker"
            start "$broker" || continue
            run "$broker" "$scenario" | while read -r metric value; do
                echo "$scenario $broker $metric $value" >> "$RESULTS"
            done
            stop
        done
    done
done

python3 - "$RESULTS" <<'PY'
import statistics, sys
from collections import defaultdict
vals = defaultdict(list)
order = []
for line in open(sys.argv[1]):
    scenario, broker, metric, value = line.split()
    key = (scenario, metric)
    if key not in order:
        order.append(key)
    try:
        vals[(scenario, metric, broker)].append(float(value))
    except ValueError:
        pass
def med(k):
    v = [x for x in vals.get(k, []) if x == x]
    return statistics.median(v) if v else float('nan')
def fmt(x):
    if x != x: return 'n/a'
    return f'{x:,.0f}' if abs(x) >= 100 else f'{x:.3g}'
def ratio(a, b):
    return 'n/a' if a != a or b != b or b == 0 else f'{a / b:.2f}x'
print(f"{'scenario':<12} {'metric':<22} {'ours':>14} {'mosquitto':>14} {'nats':>14} {'ours/mosq':>10} {'ours/nats':>10}")
for scenario, metric in order:
    o, m, n = (med((scenario, metric, b)) for b in ('ours', 'mosquitto', 'nats'))
    print(f"{scenario:<12} {metric:<22} {fmt(o):>14} {fmt(m):>14} {fmt(n):>14} {ratio(o, m):>10} {ratio(o, n):>10}")
PY
