#!/usr/bin/env bash
# Compare this broker with mosquitto and the NATS server (MQTT gateway,
# JetStream on) on the same machine, in the same run, with the same load
# generator (`mqtt bench`). Brokers alternate between repetitions so that
# drift in the machine's load spreads evenly; the table shows medians and
# the ratios ours/mosquitto and ours/NATS. See benches/README.md.
#
#   benches/compare.sh                 # all scenarios, 3 repetitions, 10 s each
#   REPS=5 DURATION=20 benches/compare.sh fanin_qos0 fanout
#
# Scenarios: fanin_qos0 fanin_qos1 fanout latency conns filters.
# MQTT 3.1.1 throughout: the NATS server's MQTT gateway speaks only 3.1.1.
# Installs mosquitto and nats-server with apt-get when missing.
#
# Environment: REPS (3), DURATION (10 s of publishing per run), CONNS
# (10000), FILTERS (100000), BROKERS ("ours mosquitto nats"), OUT (where the
# raw JSON reports, the broker logs and the table are kept:
# target/bench-compare), PORT_OURS/PORT_MOSQ/PORT_NATS, GEN_BIN (the `mqtt`
# binary whose `bench` generates the load; default: the broker's, so that
# two builds of the broker can be compared with one generator), MQTT_BIN (use this
# `mqtt` binary instead of building one), OURS_CONFIG_EXTRA (TOML lines
# appended to our broker's config, for experiments), QUIET_MAX/QUIET_WAIT
# (before each run, wait up to QUIET_WAIT s (60) for a second in which other
# processes use under QUIET_MAX % (20) of the machine).
set -euo pipefail
cd "$(dirname "$0")/.."

REPS=${REPS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-10000}
FILTERS=${FILTERS:-100000}
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(fanin_qos0 fanin_qos1 fanout latency conns filters)
read -r -a BROKERS <<< "${BROKERS:-ours mosquitto nats}"
PORT_OURS=${PORT_OURS:-21883}
PORT_MOSQ=${PORT_MOSQ:-21884}
PORT_NATS=${PORT_NATS:-21885}
PORT_NATS_CLIENT=${PORT_NATS_CLIENT:-24222}
OUT=${OUT:-target/bench-compare}

log() { printf '==> %s\n' "$*" >&2; }

for s in "${SCENARIOS[@]}"; do
    case $s in
        fanin_qos0 | fanin_qos1 | fanout | latency | conns | filters) ;;
        *) log "unknown scenario $s"; exit 2 ;;
    esac
done

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
# The Debian packages start system services on the default ports; ours use
# their own ports, so those may keep running.

if [ -n "${MQTT_BIN:-}" ]; then
    MQTT=$MQTT_BIN   # a binary built beforehand (broker and load generator)
else
    log "building the broker and the load generator (release)"
    cargo build --release -q -p mqtt-cli
    MQTT="${CARGO_TARGET_DIR:-target}/release/mqtt"
fi
GEN=${GEN_BIN:-$MQTT}

# 10,000 connections need as many descriptors in the load generator and in
# each broker; all three inherit this shell's limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((CONNS + 200)) ]; then
    log "warning: ulimit -n is $(ulimit -n), too low for $CONNS connections; the conns scenario will fail"
fi

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d)
PID=""
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every broker with its defaults, except what a scenario needs: enough
# connections, and (ours) enough subscriptions for the filters scenario.
# mosquitto keeps its defaults (max_queued_messages 1000, max_inflight 20):
# its losses are reported, not avoided.
cat > "$WORK/ours.toml" <<TOML
listen = ["127.0.0.1:$PORT_OURS"]
max_connections = $((CONNS * 2 + 1000))
max_subscriptions_per_client = $((FILTERS + 1000))
${OURS_CONFIG_EXTRA:-}
TOML
cat > "$WORK/mosquitto.conf" <<CONF
listener $PORT_MOSQ 127.0.0.1
allow_anonymous true
max_connections -1
persistence false
log_dest none
CONF
# The MQTT gateway needs JetStream (sessions, QoS 1) and a server name.
cat > "$WORK/nats.conf" <<CONF
listen: 127.0.0.1:$PORT_NATS_CLIENT
server_name: bench
max_connections: $((CONNS * 2 + 1000))
jetstream { store_dir: "$WORK/js" }
mqtt { listen: 127.0.0.1:$PORT_NATS }
CONF

port_of() {
    case $1 in
        ours) echo "$PORT_OURS" ;;
        mosquitto) echo "$PORT_MOSQ" ;;
        nats) echo "$PORT_NATS" ;;
    esac
}

start() {
    local broker=$1 log_file="$OUT/$1.log"
    PORT=$(port_of "$broker")
    if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        log "port $PORT is already in use"; return 1
    fi
    case $broker in
        ours) "$MQTT" broker --config "$WORK/ours.toml" --log-level error >>"$log_file" 2>&1 & ;;
        mosquitto) "$MOSQUITTO" -c "$WORK/mosquitto.conf" >>"$log_file" 2>&1 & ;;
        nats) rm -rf "$WORK/js"; "$NATS" -c "$WORK/nats.conf" >>"$log_file" 2>&1 & ;;
    esac
    PID=$!
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            # One MQTT round trip: the NATS server creates its MQTT streams
            # on the first connection; no scenario should pay for that.
            if "$GEN" bench conn -h 127.0.0.1 -p "$PORT" -V mqttv311 -c 1 --connect-timeout 30 \
                --json >/dev/null 2>&1; then
                return 0
            fi
        fi
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.1
    done
    log "$broker did not start (see $log_file)"; stop; return 1
}
stop() {
    if [ -n "$PID" ]; then
        kill "$PID" 2>/dev/null || true
        # A broker that does not stop within 10 s is killed.
        for _ in $(seq 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$PID" 2>/dev/null || true
        wait "$PID" 2>/dev/null || true
    fi
    PID=""
}
# Busy and total clock ticks of the whole machine so far.
machine_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
# Other engineers' builds on a shared machine skew every number: wait (a
# while) for a quiet second before each run.
QUIET_MAX=${QUIET_MAX:-20}
QUIET_WAIT=${QUIET_WAIT:-60}
wait_quiet() {
    local waited=0 b0 t0 b1 t1 pct
    while :; do
        read -r b0 t0 < <(machine_ticks); sleep 1; read -r b1 t1 < <(machine_ticks)
        pct=$(( (b1 - b0) * 100 / ((t1 - t0) > 0 ? (t1 - t0) : 1) ))
        [ "$pct" -lt "$QUIET_MAX" ] && return 0
        waited=$((waited + 1))
        if [ "$waited" -ge "$QUIET_WAIT" ]; then
            log "machine still ${pct}% busy after ${QUIET_WAIT} s; running anyway"; return 0
        fi
    done
}
# CPU seconds (user + system) the broker has used so far.
cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$PID/stat" 2>/dev/null || echo nan
}

B=(-h 127.0.0.1 -V mqttv311 --json)
# Every run is bounded: the load generator stops itself after DURATION plus
# its drain time, and `timeout` catches anything that hangs.
T_PUB=$((DURATION + 60))
# Each scenario prints "metric value" lines; the first metric is the headline.
run() {
    local broker=$1 scenario=$2 rep=$3 cpu0 cpu1 m0 m1 raw="$OUT/$2.$1.$3.json"
    cpu0=$(cpu_s)
    m0=$(machine_ticks)
    case $scenario in
        fanin_qos0)
            timeout "$T_PUB" "$GEN" bench pubsub "${B[@]}" -p "$PORT" -c 4 -S 1 -q 0 \
                -t 'bench/%i' -f 'bench/#' -d "$DURATION" --drain 2 >"$raw" 2>/dev/null || true
            metrics "$raw" received_rate losses loss_pct sent_rate ;;
        fanin_qos1)
            timeout "$T_PUB" "$GEN" bench pubsub "${B[@]}" -p "$PORT" -c 4 -S 1 -q 1 --inflight 64 \
                -t 'bench/%i' -f 'bench/#' -d "$DURATION" --drain 5 >"$raw" 2>/dev/null || true
            metrics "$raw" received_rate losses duplicates sent_rate ;;
        fanout)
            timeout "$T_PUB" "$GEN" bench pubsub "${B[@]}" -p "$PORT" -c 1 -S 32 -q 0 \
                -t 'bench/x' -f 'bench/x' -d "$DURATION" --drain 2 >"$raw" 2>/dev/null || true
            metrics "$raw" received_rate losses loss_pct sent_rate ;;
        latency)
            timeout "$T_PUB" "$GEN" bench pubsub "${B[@]}" -p "$PORT" -c 1 -S 1 -q 0 -R 10000 \
                -t 'bench/lat' -f 'bench/lat' -d "$DURATION" --drain 2 >"$raw" 2>/dev/null || true
            metrics "$raw" latency.p99_us latency.p50_us latency.p999_us received_rate losses ;;
        conns)
            # At most 100 handshakes at once: below every broker's listen
            # backlog (mosquitto's is 100), so the rate is the broker's, not
            # the kernel's SYN retransmission timer.
            timeout 600 "$GEN" bench conn "${B[@]}" -p "$PORT" -c "$CONNS" -R 0 --concurrency 100 \
                --hold 3 --rss-pid "$PID" >"$raw" 2>/dev/null || true
            metrics "$raw" connect_rate rss_per_conn_bytes connect_failures disconnects ;;
        filters)
            timeout $((T_PUB + 300)) "$GEN" bench filters "${B[@]}" -p "$PORT" --filters "$FILTERS" \
                --subscribe-timeout 300 -d "$DURATION" --drain 2 >"$raw" 2>/dev/null || true
            metrics "$raw" subscribe_s publish_rate losses loss_pct filters_granted ;;
    esac
    cpu1=$(cpu_s)
    m1=$(machine_ticks)
    # CPU seconds of the broker, of the load generator, and of anything else
    # on the machine during the run (should be near 0).
    python3 - "$raw" "$cpu0" "$cpu1" "$m0" "$m1" "$(getconf CLK_TCK)" <<'PY'
import json, sys
raw, c0, c1, m0, m1, hz = sys.argv[1:]
try:
    gen = json.load(open(raw)).get('generator_cpu_s')
except Exception:
    gen = None
try:
    broker = float(c1) - float(c0)
except ValueError:
    broker = None
busy = (float(m1.split()[0]) - float(m0.split()[0])) / float(hz)
print('broker_cpu_s', 'nan' if broker is None else round(broker, 2))
print('generator_cpu_s', 'nan' if gen is None else round(gen, 2))
other = None if broker is None or gen is None else max(0.0, busy - broker - gen)
print('other_cpu_s', 'nan' if other is None else round(other, 2))
PY
}
# Picks metrics (dotted paths) out of a JSON report; "nan" when absent.
# loss_pct is derived: losses / expected, in percent.
metrics() {
    python3 - "$@" <<'PY'
import json, sys
try:
    d = json.load(open(sys.argv[1]))
except Exception:
    d = {}
for key in sys.argv[2:]:
    if key == 'loss_pct':
        e, l = d.get('expected'), d.get('losses')
        v = 100.0 * l / e if e and l is not None else None
    else:
        v = d
        for part in key.split('.'):
            v = v.get(part) if isinstance(v, dict) else None
    print(key, 'nan' if v is None else v)
PY
}

RESULTS="$OUT/results.txt"
: > "$RESULTS"
rm -f "$OUT"/*.json "$OUT"/*.log
log "raw reports in $OUT"
for scenario in "${SCENARIOS[@]}"; do
    for rep in $(seq "$REPS"); do
        # Rotate the starting broker each repetition.
        n=${#BROKERS[@]}
        k=$(( (rep - 1) % n ))
        order=("${BROKERS[@]:$k}" "${BROKERS[@]:0:$k}")
        for broker in "${order[@]}"; do
            log "$scenario rep $rep/$REPS: $broker"
            wait_quiet
            start "$broker" || continue
            run "$broker" "$scenario" "$rep" | while read -r metric value; do
                echo "$scenario $broker $metric $value" >> "$RESULTS"
            done
            stop
        done
    done
done

python3 - "$RESULTS" "$REPS" "$DURATION" "$CONNS" "$FILTERS" <<'PY' | tee "$OUT/table.txt"
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
# Which way is better, for reading the ratios.
lower = ('latency.', 'rss_', 'subscribe_s', 'losses', 'loss_pct', 'connect_failures',
         'disconnects', 'duplicates', 'broker_cpu_s', 'generator_cpu_s', 'other_cpu_s')
def better(metric):
    if metric == 'filters_granted':
        return 'higher'
    return 'lower' if metric.startswith(lower) else 'higher'
def med(k):
    v = [x for x in vals.get(k, []) if x == x]
    return statistics.median(v) if v else float('nan')
def fmt(x):
    if x != x: return 'n/a'
    if x == 0: return '0'
    return f'{x:,.0f}' if abs(x) >= 100 else f'{x:.3g}'
def ratio(a, b):
    return 'n/a' if a != a or b != b or b == 0 else f'{a / b:.2f}x'
print(f"REPS={sys.argv[2]} DURATION={sys.argv[3]} s CONNS={sys.argv[4]} FILTERS={sys.argv[5]}; medians of the repetitions")
print(f"{'scenario':<11} {'metric':<19} {'better':<6} {'ours':>12} {'mosquitto':>12} {'nats':>12} {'ours/mosq':>10} {'ours/nats':>10}")
for scenario, metric in order:
    o, m, n = (med((scenario, metric, b)) for b in ('ours', 'mosquitto', 'nats'))
    print(f"{scenario:<11} {metric:<19} {better(metric):<6} {fmt(o):>12} {fmt(m):>12} {fmt(n):>12} {ratio(o, m):>10} {ratio(o, n):>10}")
PY
