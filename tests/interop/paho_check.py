#!/usr/bin/env python3
"""Interoperability checks of the broker against Eclipse paho-mqtt (Python).

Usage: paho_check.py HOST PORT {3.1.1|5} [TOPIC_PREFIX]

Runs every check for one protocol version, prints "PASS <check>" or
"FAIL <check>: <why>" for each, and exits 1 if any failed (2 on bad usage).
Works with paho-mqtt 1.5+ and 2.x. Every wait is bounded, so the script
ends by itself even against a broker that never answers.
"""

import os
import queue
import sys
import threading
import time
import traceback

import paho.mqtt.client as mqtt

try:  # paho-mqtt >= 1.5
    from paho.mqtt.properties import Properties
    from paho.mqtt.packettypes import PacketTypes
except ImportError:  # pragma: no cover - very old paho
    Properties = None
    PacketTypes = None

try:
    from paho.mqtt.subscribeoptions import SubscribeOptions
except ImportError:  # pragma: no cover
    SubscribeOptions = None

WAIT = 5.0  # seconds any one expected event may take


class CheckFailed(Exception):
    pass


def code_value(code):
    """An int from an int, a paho 1.x ReasonCodes or a paho 2.x ReasonCode."""
    return getattr(code, "value", code)


class Client:
    """A paho client with its events turned into queues and bounded waits."""

    def __init__(self, host, port, version, client_id, clean=True,
                 session_expiry=None):
        self.host, self.port, self.version = host, port, version
        self.v5 = version == "5"
        self.clean = clean
        self.session_expiry = session_expiry
        kwargs = {
            "client_id": client_id,
            "protocol": mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311,
        }
        if not self.v5:
            kwargs["clean_session"] = clean
        if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
            kwargs["callback_api_version"] = mqtt.CallbackAPIVersion.VERSION2
        self.c = mqtt.Client(**kwargs)
        self.messages = queue.Queue()
        self.connack = queue.Queue()
        self.subacks = {}
        self.cond = threading.Condition()
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self.c.on_disconnect = self._on_disconnect
        self.unsubacks = set()
        self.disconnects = queue.Queue()
        self.stop_on_disconnect = False

    # Signatures that fit paho 1.x (3.1.1 and 5) and 2.x (VERSION2).
    def _on_connect(self, client, userdata, flags, rc, properties=None):
        if isinstance(flags, dict):
            present = bool(flags.get("session present"))
        else:
            present = bool(getattr(flags, "session_present", False))
        self.connack.put((code_value(rc), present))

    def _on_message(self, client, userdata, msg):
        self.messages.put(msg)

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        with self.cond:
            self.subacks[mid] = [code_value(g) for g in granted]
            self.cond.notify_all()

    # (client, userdata, mid[, ...]): every paho version and protocol.
    def _on_unsubscribe(self, client, userdata, mid, *rest):
        with self.cond:
            self.unsubacks.add(mid)
            self.cond.notify_all()

    def _on_disconnect(self, client, userdata, *rest):
        self.disconnects.put(rest)
        if self.stop_on_disconnect:
            # Stops paho's loop from reconnecting (and taking the id back).
            client.disconnect()

    def connect(self, clean_start=None):
        """Connects; returns session present. Fails unless CONNACK is 0."""
        kwargs = {"keepalive": 30}
        if self.v5:
            kwargs["clean_start"] = self.clean if clean_start is None else clean_start
            if self.session_expiry is not None:
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.session_expiry
                kwargs["properties"] = props
        self.c.connect(self.host, self.port, **kwargs)
        self.c.loop_start()
        try:
            rc, present = self.connack.get(timeout=WAIT)
        except queue.Empty:
            raise CheckFailed("no CONNACK within %.0f s" % WAIT)
        if rc != 0:
            raise CheckFailed("CONNACK refused with code %r" % rc)
        return present

    def subscribe(self, topics, properties=None):
        """topics: [(filter, qos or SubscribeOptions)]; returns granted codes."""
        if properties is not None:
            rc, mid = self.c.subscribe(topics, properties=properties)
        else:
            rc, mid = self.c.subscribe(topics)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise CheckFailed("subscribe() returned %r" % rc)
        deadline = time.monotonic() + WAIT
        with self.cond:
            while mid not in self.subacks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CheckFailed("no SUBACK within %.0f s" % WAIT)
                self.cond.wait(left)
            return self.subacks.pop(mid)

    def unsubscribe(self, topic):
        rc, mid = self.c.unsubscribe(topic)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise CheckFailed("unsubscribe() returned %r" % rc)
        deadline = time.monotonic() + WAIT
        with self.cond:
            while mid not in self.unsubacks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CheckFailed("no UNSUBACK within %.0f s" % WAIT)
                self.cond.wait(left)

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        """Publishes and, for QoS 1/2, waits for the flow to complete."""
        kwargs = {"qos": qos, "retain": retain}
        if properties is not None:
            kwargs["properties"] = properties
        info = self.c.publish(topic, payload, **kwargs)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise CheckFailed("publish() to %s returned %r" % (topic, info.rc))
        deadline = time.monotonic() + WAIT
        while not info.is_published():
            if time.monotonic() > deadline:
                raise CheckFailed(
                    "QoS %d publish to %s not acknowledged within %.0f s"
                    % (qos, topic, WAIT))
            time.sleep(0.01)

    def expect(self, topic, what="a message"):
        """The next message; fails if none comes or it is on another topic."""
        try:
            msg = self.messages.get(timeout=WAIT)
        except queue.Empty:
            raise CheckFailed("%s on %s did not arrive within %.0f s"
                              % (what, topic, WAIT))
        if msg.topic != topic:
            raise CheckFailed("expected %s on %s, got a message on %s (payload %r)"
                              % (what, topic, msg.topic, msg.payload))
        return msg

    def disconnect(self):
        try:
            self.c.disconnect()
        finally:
            self.c.loop_stop()

    def drop(self):
        """Ends the connection without DISCONNECT (the will is published)."""
        self.c.loop_stop()
        sock = self.c.socket()
        if sock is not None:
            sock.close()


class Runner:
    def __init__(self, host, port, version, prefix):
        self.host, self.port, self.version = host, port, version
        self.v5 = version == "5"
        self.prefix = "%s/paho-v%s" % (prefix, "5" if self.v5 else "311")
        self.failures = []
        self.clients = []

    def client(self, name, **kwargs):
        cid = "paho-%s-%d-%s" % ("v5" if self.v5 else "v311", os.getpid(), name)
        c = Client(self.host, self.port, self.version, cid, **kwargs)
        self.clients.append(c)
        return c

    def topic(self, name):
        return "%s/%s" % (self.prefix, name)

    def run(self, name, fn):
        label = "paho MQTT %s: %s" % (self.version, name)
        try:
            fn()
        except CheckFailed as e:
            print("FAIL %s: %s" % (label, e), flush=True)
            self.failures.append(label)
        except Exception as e:  # a paho error is a failed check too
            print("FAIL %s: %s: %s" % (label, type(e).__name__, e), flush=True)
            traceback.print_exc()
            self.failures.append(label)
        else:
            print("PASS %s" % label, flush=True)
        finally:
            for c in self.clients:
                try:
                    c.disconnect()
                except Exception:
                    pass
            self.clients = []

    # ---- the checks -------------------------------------------------------

    def check_connect_subscribe(self):
        c = self.client("sub")
        present = c.connect()
        if present:
            raise CheckFailed("session present on a clean connection")
        granted = c.subscribe([(self.topic("s/0"), 0), (self.topic("s/1"), 1),
                               (self.topic("s/2"), 2)])
        if granted != [0, 1, 2]:
            raise CheckFailed("SUBACK granted %r, expected [0, 1, 2]" % granted)

    def check_round_trip(self):
        sub = self.client("rt-sub")
        sub.connect()
        granted = sub.subscribe([(self.topic("rt/+"), 2)])
        if granted != [2]:
            raise CheckFailed("SUBACK granted %r, expected [2]" % granted)
        pub = self.client("rt-pub")
        pub.connect()
        for qos in (0, 1, 2):
            topic = self.topic("rt/q%d" % qos)
            payload = ("qos %d from paho" % qos).encode()
            pub.publish(topic, payload, qos=qos)
            msg = sub.expect(topic, "the QoS %d message" % qos)
            if msg.payload != payload:
                raise CheckFailed("QoS %d payload %r, expected %r"
                                  % (qos, msg.payload, payload))
            if msg.qos != qos:
                raise CheckFailed("QoS %d message delivered at QoS %d" % (qos, msg.qos))
            if msg.retain:
                raise CheckFailed("QoS %d message delivered with retain set" % qos)
        # A QoS 2 subscription caps nothing, a QoS 0 one downgrades.
        low = self.client("rt-low")
        low.connect()
        low.subscribe([(self.topic("rt/q2"), 0)])
        pub.publish(self.topic("rt/q2"), b"downgraded", qos=2)
        msg = low.expect(self.topic("rt/q2"), "the downgraded message")
        if msg.qos != 0:
            raise CheckFailed("QoS 2 message to a QoS 0 subscription arrived at QoS %d"
                              % msg.qos)
        sub.expect(self.topic("rt/q2"), "the second QoS 2 message")

    def check_retained(self):
        topic = self.topic("retained")
        pub = self.client("ret-pub")
        pub.connect()
        pub.publish(topic, b"kept", qos=1, retain=True)
        sub = self.client("ret-sub")
        sub.connect()
        sub.subscribe([(topic, 1)])
        msg = sub.expect(topic, "the retained message")
        if msg.payload != b"kept" or not msg.retain:
            raise CheckFailed("retained message arrived as payload %r retain %r"
                              % (msg.payload, msg.retain))
        # Clear it; a new subscriber must get only the live marker.
        pub.publish(topic, b"", qos=1, retain=True)
        sub2 = self.client("ret-sub2")
        sub2.connect()
        sub2.subscribe([(topic, 1)])
        pub.publish(topic, b"marker", qos=1)
        msg = sub2.expect(topic, "the marker")
        if msg.payload != b"marker":
            raise CheckFailed("after clearing, a new subscriber got %r (retain %r) "
                              "before the marker" % (msg.payload, msg.retain))

    def check_will(self):
        topic = self.topic("will")
        watcher = self.client("will-watch")
        watcher.connect()
        watcher.subscribe([(topic, 1)])
        dying = self.client("will-dying")
        dying.c.will_set(topic, b"paho went away", qos=1)
        dying.connect()
        dying.drop()
        msg = watcher.expect(topic, "the will")
        if msg.payload != b"paho went away":
            raise CheckFailed("will payload %r" % msg.payload)

    def check_unsubscribe(self):
        sub = self.client("unsub")
        sub.connect()
        sub.subscribe([(self.topic("unsub/a"), 1), (self.topic("unsub/b"), 1)])
        sub.unsubscribe(self.topic("unsub/a"))
        pub = self.client("unsub-pub")
        pub.connect()
        pub.publish(self.topic("unsub/a"), b"after unsubscribe", qos=1)
        pub.publish(self.topic("unsub/b"), b"marker", qos=1)
        msg = sub.expect(self.topic("unsub/b"), "the marker")
        if msg.payload != b"marker":
            raise CheckFailed("got %r instead of the marker" % msg.payload)

    def check_takeover(self):
        first = self.client("takeover")
        first.stop_on_disconnect = True
        first.connect()
        second = self.client("takeover")
        second.connect()
        try:
            first.disconnects.get(timeout=WAIT)
        except queue.Empty:
            raise CheckFailed("the first connection with the client id was not "
                              "closed when a second one connected")
        topic = self.topic("takeover")
        second.subscribe([(topic, 1)])
        second.publish(topic, b"still here", qos=1)
        msg = second.expect(topic, "the new connection's own message")
        if msg.payload != b"still here":
            raise CheckFailed("got %r" % msg.payload)

    def check_v5_properties(self):
        topic = self.topic("props")
        sub = self.client("props-sub")
        sub.connect()
        sub.subscribe([(topic, 1)])
        pub = self.client("props-pub")
        pub.connect()
        props = Properties(PacketTypes.PUBLISH)
        user = [("k", "v"), ("k2", "second value"), ("k", "duplicate key")]
        props.UserProperty = user
        props.ContentType = "application/json"
        props.ResponseTopic = self.topic("reply")
        props.CorrelationData = b"\x00\x01corr\xff"
        props.PayloadFormatIndicator = 1
        props.MessageExpiryInterval = 120
        pub.publish(topic, b'{"v": 1}', qos=1, properties=props)
        msg = sub.expect(topic, "the message with properties")
        got = msg.properties
        if got is None:
            raise CheckFailed("the message arrived without properties")
        problems = []

        def field(name):
            return getattr(got, name, None)
        got_user = [tuple(p) for p in (field("UserProperty") or [])]
        if got_user != user:
            problems.append("user properties %r, expected %r" % (got_user, user))
        if field("ContentType") != "application/json":
            problems.append("content type %r" % field("ContentType"))
        if field("ResponseTopic") != self.topic("reply"):
            problems.append("response topic %r" % field("ResponseTopic"))
        if field("CorrelationData") != b"\x00\x01corr\xff":
            problems.append("correlation data %r" % field("CorrelationData"))
        if field("PayloadFormatIndicator") != 1:
            problems.append("payload format indicator %r" % field("PayloadFormatIndicator"))
        expiry = field("MessageExpiryInterval")
        if expiry is None or not 115 <= expiry <= 120:
            problems.append("message expiry interval %r, expected 115..120" % expiry)
        if problems:
            raise CheckFailed("; ".join(problems))

    def check_v5_subscription_options(self):
        topic = self.topic("nolocal")
        c = self.client("nolocal")
        c.connect()
        props = Properties(PacketTypes.SUBSCRIBE)
        props.SubscriptionIdentifier = 42
        granted = c.subscribe([(topic, SubscribeOptions(qos=1, noLocal=True))],
                              properties=props)
        if granted != [1]:
            raise CheckFailed("SUBACK granted %r, expected [1]" % granted)
        c.publish(topic, b"own message", qos=1)
        other = self.client("nolocal-other")
        other.connect()
        other.publish(topic, b"from another client", qos=1)
        msg = c.expect(topic, "the other client's message")
        if msg.payload != b"from another client":
            raise CheckFailed("no local subscription received %r" % msg.payload)
        ids = getattr(msg.properties, "SubscriptionIdentifier", None)
        if ids not in ([42], 42):
            raise CheckFailed("subscription identifier %r, expected [42]" % ids)

    def check_persistent_session(self):
        topic = self.topic("persist")
        expiry = 300 if self.v5 else None
        # Start from a clean slate, then leave a session behind.
        if self.v5:
            c = self.client("persist", clean=True, session_expiry=expiry)
        else:
            wipe = self.client("persist", clean=True)
            wipe.connect()
            wipe.disconnect()
            c = self.client("persist", clean=False)
        c.connect()
        c.subscribe([(topic, 1)])
        c.disconnect()
        pub = self.client("persist-pub")
        pub.connect()
        pub.publish(topic, b"while you were away", qos=1)
        # Back with the same client id, without a clean start.
        c2 = self.client("persist", clean=False, session_expiry=expiry)
        present = c2.connect()
        if not present:
            raise CheckFailed("CONNACK session present is 0 on resuming the session")
        msg = c2.expect(topic, "the QoS 1 message published while offline")
        if msg.payload != b"while you were away" or msg.qos != 1:
            raise CheckFailed("offline message arrived as %r at QoS %d"
                              % (msg.payload, msg.qos))
        # The subscription is still there: a live message arrives too.
        pub.publish(topic, b"now online", qos=1)
        msg = c2.expect(topic, "a message after resuming")
        if msg.payload != b"now online":
            raise CheckFailed("after resuming, got %r" % msg.payload)
        c2.disconnect()
        # Leave nothing behind.
        c3 = self.client("persist", clean=True, session_expiry=0 if self.v5 else None)
        c3.connect()


def main():
    if len(sys.argv) not in (4, 5) or sys.argv[3] not in ("3.1.1", "5"):
        print(__doc__, file=sys.stderr)
        return 2
    host, port, version = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    prefix = sys.argv[4] if len(sys.argv) == 5 else "interop/%d" % os.getpid()
    r = Runner(host, port, version, prefix)
    r.run("connect and subscribe", r.check_connect_subscribe)
    r.run("QoS 0/1/2 round trip", r.check_round_trip)
    r.run("retained message set and cleared", r.check_retained)
    r.run("will on a dropped connection", r.check_will)
    r.run("unsubscribe stops delivery", r.check_unsubscribe)
    r.run("a second connection with the same client id takes over",
          r.check_takeover)
    if version == "5":
        if Properties is None or SubscribeOptions is None:
            print("FAIL paho MQTT 5: this paho-mqtt has no MQTT 5 support", flush=True)
            r.failures.append("paho MQTT 5 support")
        else:
            r.run("publish properties reach the subscriber", r.check_v5_properties)
            r.run("no local and subscription identifier",
                  r.check_v5_subscription_options)
    r.run("persistent session gets QoS 1 sent while offline",
          r.check_persistent_session)
    if r.failures:
        print("paho MQTT %s: %d check(s) failed: %s"
              % (version, len(r.failures), ", ".join(r.failures)), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
