'use strict';
// A minimal MQTT 3.1.1 client over WebSocket (subprotocol "mqtt"), for the
// console's page: CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH at QoS 0, 1
// and 2 both ways (PUBACK, PUBREC/PUBREL/PUBCOMP), PINGREQ, DISCONNECT.
// One packet's framing: a fixed header byte, the remaining length as a
// variable byte integer (at most 4 bytes), then the packet's own fields;
// strings are UTF-8 with a two-byte length. WebSocket messages may carry
// part of a packet or several: bytes are gathered and cut into packets.

(function () {
  const enc = new TextEncoder();
  const dec = new TextDecoder();
  const CONNACK_CODES = [
    'accepted', 'unacceptable protocol version', 'client identifier rejected',
    'server unavailable', 'bad user name or password', 'not authorized',
  ];

  function str(s) {
    const b = enc.encode(s);
    if (b.length > 65535) throw new Error('string longer than 65535 bytes');
    return [b.length >> 8, b.length & 255, ...b];
  }

  function u16(n) { return [n >> 8, n & 255]; }

  function packet(first, body) {
    const len = [];
    let n = body.length;
    if (n > 268435455) throw new Error('packet too large');
    do {
      let byte = n % 128;
      n = Math.floor(n / 128);
      if (n > 0) byte |= 128;
      len.push(byte);
    } while (n > 0);
    const out = new Uint8Array(1 + len.length + body.length);
    out[0] = first;
    out.set(len, 1);
    out.set(body, 1 + len.length);
    return out;
  }

  function concat(a, b) {
    const out = new Uint8Array(a.length + b.length);
    out.set(a, 0);
    out.set(b, a.length);
    return out;
  }

  class MqttClient {
    // handlers: {onState(text, connected), onMessage({topic, payload (Uint8Array), qos, retain}), onLog(text)}
    constructor(handlers) {
      this.h = handlers;
      this.ws = null;
      this.buf = new Uint8Array(0);
      this.nextId = 1;
      this.pending = new Map(); // packet id -> {resolve, reject, kind}
      this.keepAlive = 60;
      this.ping = null;
      this.connected = false;
    }

    id() {
      const id = this.nextId;
      this.nextId = this.nextId === 65535 ? 1 : this.nextId + 1;
      return id;
    }

    connect(url, clientId, username, password) {
      return new Promise((resolve, reject) => {
        let ws;
        try {
          ws = new WebSocket(url, ['mqtt']);
        } catch (e) {
          reject(e);
          return;
        }
        ws.binaryType = 'arraybuffer';
        this.ws = ws;
        this.buf = new Uint8Array(0);
        this.connack = { resolve, reject };
        this.h.onState('connecting to ' + url, false);
        ws.onopen = () => {
          let flags = 0x02; // clean session
          const payload = [...str(clientId)];
          if (username) { flags |= 0x80; payload.push(...str(username)); }
          if (username && password) { flags |= 0x40; payload.push(...str(password)); }
          const body = [...str('MQTT'), 4, flags, ...u16(this.keepAlive), ...payload];
          this.send(packet(0x10, body));
        };
        ws.onmessage = (ev) => {
          this.buf = concat(this.buf, new Uint8Array(ev.data));
          try {
            this.drain();
          } catch (e) {
            this.h.onLog('protocol error: ' + e.message);
            ws.close();
          }
        };
        ws.onerror = () => this.h.onLog('WebSocket error');
        ws.onclose = (ev) => {
          const was = this.connected;
          this.connected = false;
          clearInterval(this.ping);
          for (const p of this.pending.values()) p.reject(new Error('connection closed'));
          this.pending.clear();
          if (this.connack) { this.connack.reject(new Error('connection closed before CONNACK')); this.connack = null; }
          this.h.onState(was ? 'disconnected by the broker (code ' + ev.code + ')' : 'disconnected', false);
        };
      });
    }

    send(bytes) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
    }

    // Cuts whole packets off the front of the buffer.
    drain() {
      for (;;) {
        const b = this.buf;
        if (b.length < 2) return;
        let len = 0, mult = 1, i = 1;
        for (;;) {
          if (i >= b.length) return;
          if (i > 4) throw new Error('malformed remaining length');
          const byte = b[i++];
          len += (byte & 127) * mult;
          mult *= 128;
          if ((byte & 128) === 0) break;
        }
        if (b.length < i + len) return;
        const body = b.subarray(i, i + len);
        this.handle(b[0], body);
        this.buf = b.slice(i + len);
      }
    }

    handle(first, body) {
      const type = first >> 4;
      const id = body.length >= 2 ? (body[0] << 8) | body[1] : 0;
      switch (type) {
        case 2: { // CONNACK
          const code = body[1];
          const c = this.connack;
          this.connack = null;
          if (code === 0) {
            this.connected = true;
            this.ping = setInterval(() => this.send(new Uint8Array([0xc0, 0])), (this.keepAlive * 1000) / 2);
            this.h.onState('connected', true);
            if (c) c.resolve();
          } else {
            const why = CONNACK_CODES[code] || 'refused (' + code + ')';
            if (c) c.reject(new Error(why));
            this.ws.close();
          }
          break;
        }
        case 3: { // PUBLISH
          const qos = (first >> 1) & 3;
          const tlen = (body[0] << 8) | body[1];
          const topic = dec.decode(body.subarray(2, 2 + tlen));
          let at = 2 + tlen;
          let pid = 0;
          if (qos > 0) { pid = (body[at] << 8) | body[at + 1]; at += 2; }
          const payload = body.slice(at);
          if (qos === 1) this.send(packet(0x40, u16(pid)));
          if (qos === 2) this.send(packet(0x50, u16(pid)));
          this.h.onMessage({ topic, payload, qos, retain: (first & 1) === 1 });
          break;
        }
        case 4: case 7: this.settle(id); break; // PUBACK, PUBCOMP
        case 5: this.send(packet(0x62, u16(id))); break; // PUBREC: PUBREL
        case 6: this.send(packet(0x70, u16(id))); break; // PUBREL: PUBCOMP
        case 9: { // SUBACK
          const granted = body[2];
          const p = this.pending.get(id);
          this.pending.delete(id);
          if (p) { if (granted === 0x80) p.reject(new Error('subscription refused')); else p.resolve(granted); }
          break;
        }
        case 13: break; // PINGRESP
        default: throw new Error('unexpected packet type ' + type);
      }
    }

    settle(id) {
      const p = this.pending.get(id);
      this.pending.delete(id);
      if (p) p.resolve();
    }

    subscribe(filter, qos) {
      const id = this.id();
      const done = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
      this.send(packet(0x82, [...u16(id), ...str(filter), qos]));
      return done;
    }

    // Resolves when the flow of its QoS is complete.
    publish(topic, payload, qos, retain) {
      const data = typeof payload === 'string' ? enc.encode(payload) : payload;
      const head = [...str(topic)];
      let done = Promise.resolve();
      if (qos > 0) {
        const id = this.id();
        head.push(...u16(id));
        done = new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
      }
      const body = new Uint8Array(head.length + data.length);
      body.set(head, 0);
      body.set(data, head.length);
      this.send(packet(0x30 | (qos << 1) | (retain ? 1 : 0), body));
      return done;
    }

    disconnect() {
      if (!this.ws) return;
      this.send(new Uint8Array([0xe0, 0]));
      this.connected = false;
      this.ws.close();
    }
  }

  window.MqttClient = MqttClient;
})();
