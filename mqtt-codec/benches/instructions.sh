#!/usr/bin/env bash
# Instructions per PUBLISH decoded and encoded, ours against mqttbytes,
# counted by callgrind: the same figures on a busy machine as on a quiet
# one (wall time on a shared 2-core machine moves by ±30 % between runs).
# Instructions are not time (a cache miss or an atomic costs more than an
# add), so this complements `cargo bench -p mqtt-codec`, it does not
# replace it.
#
#   mqtt-codec/benches/instructions.sh            # every PUBLISH case
#   mqtt-codec/benches/instructions.sh v5-qos1-props-64B
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
bin=$(cargo bench -p mqtt-codec --bench codec --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "codec" and m.get("executable"):
        print(m["executable"])')
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(v3.1.1-qos1-64B v3.1.1-qos1-4KiB v5-qos1-props-64B v5-qos1-props-4KiB)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
count() { # case function -> instructions inside the function (inclusive)
    CODEC_INSTRUCTIONS=$1 valgrind --tool=callgrind --callgrind-out-file="$out/cg" \
        --toggle-collect="*$2*" "$bin" >"$out/stdout" 2>/dev/null
    awk '/^summary:/ {print $2}' "$out/cg"
}
printf '%-22s %-6s %14s %14s %8s\n' case op "ours instr/pkt" "mqttbytes" "ratio"
for c in "${cases[@]}"; do
    for op in decode encode; do
        ours=$(count "$c" "instr_${op}_ours")
        theirs=$(count "$c" "instr_${op}_theirs")
        if [ $op = decode ]; then
            n=$(sed -n 's/.*: \([0-9]*\) packets decoded.*/\1/p' "$out/stdout")
        else
            n=$(sed -n 's/.*decoded, \([0-9]*\) encoded.*/\1/p' "$out/stdout")
        fi
        python3 - "$c" "$op" "$ours" "$theirs" "$n" <<'PY'
import sys
c, op, ours, theirs, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
print(f"{c:<22} {op:<6} {ours / n:14.1f} {theirs / n:14.1f} {theirs / ours:7.2f}x")
PY
    done
done
