#!/usr/bin/env python3
"""A crash of the broker under paho-mqtt's persistent QoS 2 clients.

Usage: paho_crash.py BROKER_BINARY [MESSAGES] [KILL_AFTER ...]

For each KILL_AFTER (default: 100 and 1500, with 3000 messages): starts
`BROKER_BINARY broker --data-dir DIR` on a free port of 127.0.0.1; a
persistent MQTT 5.0 subscriber (clean start off, Session Expiry Interval
3600) takes QoS 2 on one topic and stays connected (paho reconnects by
itself); a persistent publisher with paho's max_inflight_messages 20 queues
MESSAGES numbered QoS 2 messages at once. Once KILL_AFTER are complete
(PUBCOMP), the broker is killed with SIGKILL and restarted on the same
directory and port. paho then resends its whole backlog at once, beyond the
broker's Receive Maximum (its reconnection resets its in-flight count).

Passes when every message completes, each reaches the subscriber exactly
once, and the publisher connected twice only (no protocol-error loop).
The clients reconnect once, 3 s after the kill, when the broker listens
again: after a *failed* reconnection attempt paho resends a message it had
already released (PUBREL sent, PUBCOMP lost with the broker) as a new
PUBLISH without DUP, a paho bug no broker can tell from a new message.
Prints "PASS ..." or "FAIL ...: why" per kill point; exits 1 if any failed
(2 on bad usage). Works with paho-mqtt 1.6 and 2.x; every wait is bounded.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TOPIC = "crash/paho"
WAIT = 60.0  # seconds the whole backlog may take after the restart
RECONNECT_DELAY = 3  # seconds; the restart takes well under a second


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_broker(binary, port, data_dir, config, log):
    proc = subprocess.Popen(
        [binary, "broker", "--listen", "127.0.0.1:%d" % port,
         "--data-dir", data_dir, "--config", config, "--log-level", "info"],
        stdout=log, stderr=log)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError("the broker exited with %r" % proc.returncode)
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the broker did not listen on port %d" % port)


def client(client_id):
    kwargs = {"client_id": client_id, "protocol": mqtt.MQTTv5}
    if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
        kwargs["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION2
    c = mqtt.Client(**kwargs)
    # One reconnection, once the restarted broker listens: after a failed
    # attempt paho resends a message it had already released (PUBREL sent,
    # PUBCOMP not received) as a new PUBLISH without DUP (its reconnection
    # reset turns "resend PUBREL" into "publish" on the second pass), which
    # no broker can tell from a new message with a free identifier.
    c.reconnect_delay_set(RECONNECT_DELAY, RECONNECT_DELAY)
    return c


def persistent_connect(c, port):
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    c.connect("127.0.0.1", port, keepalive=30, clean_start=False,
              properties=props)
    c.loop_start()


def run(binary, n, kill_after):
    work = tempfile.mkdtemp(prefix="paho-crash.")
    data_dir = os.path.join(work, "data")
    log = open(os.path.join(work, "broker.log"), "ab")
    # The subscriber's queue holds the whole backlog: a full queue drops by
    # policy (counted), which is not what this test is about.
    config = os.path.join(work, "broker.toml")
    with open(config, "w") as f:
        f.write("max_queued_messages = 100000\n")
    port = free_port()
    broker = start_broker(binary, port, data_dir, config, log)
    lock = threading.Lock()
    received = {}
    completed = set()
    connects = {"sub": 0, "pub": 0}
    subscribed = threading.Event()
    sub = pub = None
    try:
        def on_message(c, userdata, msg):
            with lock:
                received[msg.payload] = received.get(msg.payload, 0) + 1

        def on_sub_connect(c, userdata, flags, rc, properties=None):
            connects["sub"] += 1
            if connects["sub"] == 1:
                c.subscribe(TOPIC, qos=2)

        def on_subscribe(c, userdata, mid, *rest):
            subscribed.set()

        def on_pub_connect(c, userdata, flags, rc, properties=None):
            connects["pub"] += 1

        def on_publish(c, userdata, mid, *rest):
            with lock:
                completed.add(mid)

        sub = client("paho-crash-sub")
        sub.on_message = on_message
        sub.on_connect = on_sub_connect
        sub.on_subscribe = on_subscribe
        persistent_connect(sub, port)
        if not subscribed.wait(10):
            return "the subscriber got no SUBACK"

        pub = client("paho-crash-pub")
        pub.max_inflight_messages_set(20)
        pub.max_queued_messages_set(0)
        pub.on_connect = on_pub_connect
        pub.on_publish = on_publish
        persistent_connect(pub, port)
        payload_of = {}
        for i in range(n):
            info = pub.publish(TOPIC, b"m%d" % i, qos=2)
            payload_of[info.mid] = b"m%d" % i
        deadline = time.time() + WAIT
        while len(completed) < kill_after:
            if time.time() > deadline:
                return "only %d of %d completed before the kill" % (
                    len(completed), kill_after)
            time.sleep(0.001)
        broker.send_signal(signal.SIGKILL)
        broker.wait()
        broker = start_broker(binary, port, data_dir, config, log)
        deadline = time.time() + WAIT
        while time.time() < deadline:
            with lock:
                if len(completed) == n and len(received) >= n:
                    break
            time.sleep(0.05)
        time.sleep(0.5)  # duplicates, if any, would arrive now
        with lock:
            if len(completed) != n:
                return "%d of %d messages completed (PUBCOMP) within %.0f s" % (
                    len(completed), n, WAIT)
            lost = [m for m in completed if payload_of[m] not in received]
            dups = {p: c for p, c in received.items() if c > 1}
            if lost:
                return "%d completed messages never delivered" % len(lost)
            if dups:
                return "%d messages delivered more than once (QoS 2), e.g. %s" % (
                    len(dups), sorted(dups.items())[:5])
            if connects["pub"] != 2:
                return "the publisher connected %d times, not 2 (a reconnect loop)" % connects["pub"]
        return None
    finally:
        for c in (pub, sub):
            if c is not None:
                c.loop_stop()
                c.disconnect()
        broker.kill()
        broker.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    kills = [int(k) for k in sys.argv[3:]] or [100, 1500]
    failed = 0
    for kill_after in kills:
        name = "SIGKILL after %d of %d QoS 2 messages completed" % (kill_after, n)
        why = run(binary, n, kill_after)
        if why is None:
            print("PASS %s: every message exactly once, no reconnect loop" % name)
        else:
            print("FAIL %s: %s" % (name, why))
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
