'use strict';
// The console's page: log in, then views routed by the URL's fragment
// (#/overview, #/clients, #/client/ID, #/sessions, #/subscriptions,
// #/retained, #/mqtt), all fed by the JSON API with the token in an
// Authorization header. Live updates come as server-sent events from
// /api/v1/events, read with fetch (EventSource cannot send the header).
// Data is put in the page with textContent only, never as HTML.

(function () {
  const $ = (id) => document.getElementById(id);
  const { LineChart, formatNumber, formatBytes } = window.Charts;
  const TOKEN_KEY = 'mqtt-console-token';
  const PAGE = 50;

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    info: null,
    infoAt: 0,
    stream: null,
    last: null,
    view: null,
    arg: null,
    clients: { sort: 'client_id', order: 'asc', offset: 0 },
    sessions: { offset: 0 },
    subscriptions: { offset: 0 },
    retained: { offset: 0 },
    mqtt: null,
  };

  // ---- helpers ----

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    Object.assign(e, props || {});
    for (const c of children) e.append(c == null ? '' : c);
    return e;
  }

  function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

  function debounce(f, ms) {
    let t = null;
    return (...args) => { clearTimeout(t); t = setTimeout(() => f(...args), ms); };
  }

  function duration(secs) {
    if (secs == null) return '–';
    if (secs < 60) return secs + ' s';
    if (secs < 3600) return Math.floor(secs / 60) + ' min';
    if (secs < 86400) return (secs / 3600).toFixed(1) + ' h';
    return (secs / 86400).toFixed(1) + ' d';
  }

  function since(unix) {
    if (!unix) return '–';
    return duration(Math.max(0, Math.round(Date.now() / 1000 - unix))) + ' ago';
  }

  let noticeTimer = null;
  function notice(text) {
    const n = $('notice');
    n.textContent = text;
    n.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { n.hidden = true; }, 6000);
  }

  function topicPath(topic) {
    return '/api/v1/retained/' + topic.split('/').map(encodeURIComponent).join('/');
  }

  async function api(method, path, body) {
    const headers = { Authorization: 'Bearer ' + state.token };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(path, {
      method, headers, cache: 'no-store',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (res.status === 401) {
      logout('The console did not accept the token (it may have expired): log in again.');
      throw new Error('unauthorized');
    }
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!res.ok) throw new Error((data && data.error) || res.status + ' ' + res.statusText);
    return data;
  }

  // A destructive button asks again: the first press arms it for a few
  // seconds, the second does it.
  function confirmButton(label, what, action) {
    const b = el('button', { type: 'button', className: 'danger', textContent: label });
    b.setAttribute('aria-label', label + ' ' + what);
    let armed = null;
    b.addEventListener('click', async () => {
      if (!armed) {
        b.classList.add('confirm');
        b.textContent = 'Confirm';
        b.setAttribute('aria-label', 'Confirm: ' + label.toLowerCase() + ' ' + what);
        armed = setTimeout(() => {
          armed = null;
          b.classList.remove('confirm');
          b.textContent = label;
          b.setAttribute('aria-label', label + ' ' + what);
        }, 5000);
        return;
      }
      clearTimeout(armed);
      armed = null;
      b.classList.remove('confirm');
      b.textContent = label;
      b.disabled = true;
      try { await action(); } catch (e) { notice(label + ' ' + what + ': ' + e.message); b.disabled = false; }
    });
    return b;
  }

  function pager(id, page, onMove) {
    const box = $(id);
    const from = page.total ? page.offset + 1 : 0;
    const to = Math.min(page.offset + page.items.length, page.total);
    const prev = el('button', { type: 'button', className: 'ghost', textContent: 'Previous', disabled: page.offset === 0 });
    const next = el('button', { type: 'button', className: 'ghost', textContent: 'Next', disabled: to >= page.total });
    prev.addEventListener('click', () => onMove(Math.max(0, page.offset - page.limit)));
    next.addEventListener('click', () => onMove(page.offset + page.limit));
    box.replaceChildren(prev, el('span', { textContent: from + '–' + to + ' of ' + page.total }), next);
  }

  function emptyRow(tbody, columns, text) {
    tbody.replaceChildren(el('tr', {}, el('td', { colSpan: columns, className: 'empty', textContent: text })));
  }

  // ---- login ----

  function showLogin(message) {
    $('tabs').hidden = true;
    $('logout').hidden = true;
    for (const v of document.querySelectorAll('.view')) v.hidden = true;
    $('view-login').hidden = false;
    $('login-error').textContent = message || '';
    $('login-token').focus();
  }

  function logout(message) {
    if (state.token) {
      fetch('/api/v1/logout', { method: 'POST', headers: { Authorization: 'Bearer ' + state.token } }).catch(() => {});
    }
    state.token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    if (state.stream) state.stream.abort();
    state.stream = null;
    setLive(false);
    showLogin(message);
  }

  async function tryToken(token) {
    state.token = token;
    try {
      state.info = await api('GET', '/api/v1/broker');
    } catch (e) {
      state.token = null;
      throw e;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    start();
  }

  $('login-token-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try { await tryToken($('login-token').value.trim()); } catch (_) {
      showLogin('That token was not accepted.');
    }
  });

  $('login-user-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const res = await fetch('/api/v1/login', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username: $('login-user').value, password: $('login-password').value }),
    });
    if (!res.ok) {
      showLogin(res.status === 403 ? 'This user does not have the admin role.' : 'Wrong user name or password.');
      return;
    }
    const { token } = await res.json();
    $('login-password').value = '';
    try { await tryToken(token); } catch (_) { showLogin('Login failed.'); }
  });

  $('logout').addEventListener('click', () => logout('Logged out.'));

  // ---- live updates ----

  function setLive(on) {
    const s = $('live-status');
    s.textContent = on ? 'live' : 'offline';
    s.classList.toggle('on', on);
  }

  const charts = {
    connections: new LineChart($('chart-connections'), $('legend-connections'),
      [{ name: 'connected clients', color: '#1f6feb' }]),
    messages: new LineChart($('chart-messages'), $('legend-messages'),
      [{ name: 'in', color: '#2e9e5b' }, { name: 'out', color: '#e07b00' }]),
    drops: new LineChart($('chart-drops'), $('legend-drops'), [
      { name: 'queue full', color: '#d32f2f' }, { name: 'ACL publish', color: '#8e24aa' },
      { name: 'ACL read', color: '#5e35b1' }, { name: 'publish wait timeout', color: '#f9a825' }]),
    queued: new LineChart($('chart-queued'), $('legend-queued'),
      [{ name: 'queued messages', color: '#00897b' }]),
    memory: new LineChart($('chart-memory'), $('legend-memory'),
      [{ name: 'resident memory', color: '#6d4c41' }], formatBytes, 1024),
  };

  function rate(now, prev, pick) {
    if (!prev) return null;
    const dt = (now.t - prev.t) / 1000;
    return dt > 0 ? Math.max(0, (pick(now) - pick(prev)) / dt) : null;
  }

  function addSample(s) {
    const p = state.last;
    const inRate = rate(s, p, (x) => x.received);
    const outRate = rate(s, p, (x) => x.sent);
    charts.connections.push(s.t, [s.connections]);
    charts.messages.push(s.t, [inRate, outRate]);
    charts.drops.push(s.t, ['queue_full', 'acl_publish', 'acl_read', 'publish_wait_timeout']
      .map((k) => rate(s, p, (x) => x.dropped[k])));
    charts.queued.push(s.t, [s.queued]);
    charts.memory.push(s.t, [s.memory_bytes]);
    $('stat-connections').textContent = formatNumber(s.connections);
    $('stat-sessions').textContent = formatNumber(s.sessions);
    $('stat-in').textContent = formatNumber(inRate);
    $('stat-out').textContent = formatNumber(outRate);
    $('stat-queued').textContent = formatNumber(s.queued);
    $('stat-subscriptions').textContent = formatNumber(s.subscriptions);
    $('stat-retained').textContent = formatNumber(s.retained);
    $('stat-memory').textContent = formatBytes(s.memory_bytes);
    if (state.info) brokerLine(state.info.uptime_secs + Math.round((Date.now() - state.infoAt) / 1000));
    state.last = s;
    return p;
  }

  // What a new sample changes in the view on screen.
  function refreshView(s, p) {
    // Not while a button waits for its confirmation: the list would be
    // redrawn under it.
    if (document.querySelector('.view:not([hidden]) button.confirm')) return;
    const changed = (...keys) => !p || keys.some((k) => s[k] !== p[k]);
    switch (state.view) {
      case 'clients': if (changed('connections', 'connections_total')) loadClients(); break;
      case 'client': loadClient(); break;
      case 'sessions': if (changed('sessions', 'connections', 'connections_total', 'queued')) loadSessions(); break;
      case 'subscriptions': if (changed('subscriptions')) loadSubscriptions(); break;
      case 'retained': if (changed('retained', 'received')) loadRetained(); break;
      default: break;
    }
  }

  function onEvent(block) {
    let name = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) name = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    if (!data.length) return;
    const value = JSON.parse(data.join('\n'));
    if (name === 'history') {
      Object.values(charts).forEach((c) => c.clear());
      state.last = null;
      for (const s of value) addSample(s);
    } else if (name === 'sample') {
      const prev = addSample(value);
      refreshView(value, prev);
    }
  }

  async function stream() {
    const ctrl = new AbortController();
    state.stream = ctrl;
    const decoder = new TextDecoder();
    let backoff = 1000;
    while (!ctrl.signal.aborted) {
      try {
        const res = await fetch('/api/v1/events', {
          headers: { Authorization: 'Bearer ' + state.token }, signal: ctrl.signal, cache: 'no-store',
        });
        if (res.status === 401) { logout('The console did not accept the token: log in again.'); return; }
        if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
        setLive(true);
        backoff = 1000;
        const reader = res.body.getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            onEvent(block);
          }
        }
      } catch (_) {
        if (ctrl.signal.aborted) return;
      }
      setLive(false);
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 15000);
    }
  }

  // ---- views ----

  async function loadClients() {
    const c = state.clients;
    const q = new URLSearchParams({ sort: c.sort, order: c.order, offset: c.offset, limit: PAGE });
    const prefix = $('clients-search').value.trim();
    const user = $('clients-user').value.trim();
    if (prefix) q.set('client_id_prefix', prefix);
    if (user) q.set('username', user);
    let page;
    try { page = await api('GET', '/api/v1/clients?' + q); } catch (e) { notice('Clients: ' + e.message); return; }
    $('clients-total').textContent = '(' + page.total + ')';
    const tbody = $('clients-table').tBodies[0];
    if (!page.items.length) emptyRow(tbody, 8, prefix || user ? 'No connected client matches.' : 'No client is connected.');
    else {
      tbody.replaceChildren(...page.items.map((x) => {
        const link = el('a', { href: '#/client/' + encodeURIComponent(x.client_id), textContent: x.client_id });
        const tr = el('tr', {},
          el('td', {}, link),
          el('td', { textContent: x.username == null ? '–' : x.username }),
          el('td', { textContent: x.address || '–' }),
          el('td', { textContent: x.protocol || '–' }),
          el('td', { className: 'num', textContent: x.keep_alive == null ? '–' : x.keep_alive + ' s' }),
          el('td', { textContent: since(x.connected_at) }),
          el('td', { className: 'num', textContent: formatNumber(x.mailbox) }),
          el('td', {}, confirmButton('Disconnect', x.client_id, async () => {
            await api('DELETE', '/api/v1/clients/' + encodeURIComponent(x.client_id));
            // Closing takes a moment: the next sample redraws the list.
          })));
        tr.dataset.clientId = x.client_id;
        return tr;
      }));
    }
    for (const th of $('clients-table').tHead.rows[0].cells) {
      const b = th.querySelector('button[data-sort]');
      if (!b) continue;
      if (b.dataset.sort === c.sort) th.setAttribute('aria-sort', c.order === 'asc' ? 'ascending' : 'descending');
      else th.removeAttribute('aria-sort');
    }
    pager('clients-pager', page, (o) => { c.offset = o; loadClients(); });
  }

  for (const b of document.querySelectorAll('#clients-table button[data-sort]')) {
    b.addEventListener('click', () => {
      const c = state.clients;
      if (c.sort === b.dataset.sort) c.order = c.order === 'asc' ? 'desc' : 'asc';
      else { c.sort = b.dataset.sort; c.order = 'asc'; }
      c.offset = 0;
      loadClients();
    });
  }
  const reloadClients = debounce(() => { state.clients.offset = 0; loadClients(); }, 200);
  $('clients-search').addEventListener('input', reloadClients);
  $('clients-user').addEventListener('input', reloadClients);

  async function loadClient() {
    const id = state.arg;
    let d;
    try { d = await api('GET', '/api/v1/sessions/' + encodeURIComponent(id)); } catch (e) {
      $('client-title').textContent = id;
      $('client-details').replaceChildren(el('dt', { textContent: 'State' }), el('dd', { textContent: e.message }));
      $('client-actions').replaceChildren();
      $('client-subscriptions').tBodies[0].replaceChildren();
      return;
    }
    $('client-title').textContent = d.client_id;
    const rows = [
      ['State', d.connected ? 'connected' : 'offline'],
      ['User', d.username == null ? '–' : d.username],
      ['Address', d.address || '–'],
      ['Listener', d.listener || '–'],
      ['Protocol', d.protocol ? 'MQTT ' + d.protocol : '–'],
      ['Keep alive', d.keep_alive == null ? '–' : d.keep_alive + ' s'],
      ['Clean start', d.clean_start == null ? '–' : String(d.clean_start)],
      [d.connected ? 'Connected' : 'Last connected', since(d.connected_at)],
      ['Persistent', String(d.persistent)],
      ['In flight', d.inflight == null ? '–' : formatNumber(d.inflight)],
      ['Queued', d.queued == null ? '–' : formatNumber(d.queued)],
      ['Mailbox', formatNumber(d.mailbox) + ' (' + formatBytes(d.mailbox_bytes) + ')'],
    ];
    if (!d.connected) rows.push(['Expires in', d.expires_in == null ? 'never' : duration(d.expires_in)]);
    $('client-details').replaceChildren(...rows.flatMap(([k, v]) => [el('dt', { textContent: k }), el('dd', { textContent: v })]));
    const actions = d.connected
      ? [confirmButton('Disconnect', d.client_id, async () => {
        await api('DELETE', '/api/v1/clients/' + encodeURIComponent(d.client_id));
      })]
      : [confirmButton('Delete session', d.client_id, async () => {
        await api('DELETE', '/api/v1/sessions/' + encodeURIComponent(d.client_id));
        location.hash = '#/sessions';
      })];
    if (!$('client-actions').querySelector('.confirm')) $('client-actions').replaceChildren(...actions);
    const tbody = $('client-subscriptions').tBodies[0];
    if (!d.subscriptions.length) emptyRow(tbody, 3, 'No subscription.');
    else tbody.replaceChildren(...d.subscriptions.map((s) => el('tr', {},
      el('td', { textContent: s.filter }), el('td', { className: 'num', textContent: s.qos }),
      el('td', { textContent: s.shared ? 'yes' : 'no' }))));
  }

  async function loadSessions() {
    const s = state.sessions;
    const q = new URLSearchParams({ offset: s.offset, limit: PAGE });
    const prefix = $('sessions-search').value.trim();
    if (prefix) q.set('client_id_prefix', prefix);
    if ($('sessions-state').value) q.set('connected', $('sessions-state').value);
    let page;
    try { page = await api('GET', '/api/v1/sessions?' + q); } catch (e) { notice('Sessions: ' + e.message); return; }
    $('sessions-total').textContent = '(' + page.total + ')';
    const tbody = $('sessions-table').tBodies[0];
    if (!page.items.length) { emptyRow(tbody, 6, 'No session.'); } else {
      tbody.replaceChildren(...page.items.map((x) => {
        const tr = el('tr', {},
          el('td', {}, el('a', { href: '#/client/' + encodeURIComponent(x.client_id), textContent: x.client_id })),
          el('td', {}, el('span', { className: 'badge' + (x.connected ? ' on' : ''), textContent: x.connected ? 'connected' : 'offline' })),
          el('td', { textContent: x.persistent ? 'yes' : 'no' }),
          el('td', { className: 'num', textContent: formatNumber(x.queued == null ? x.mailbox : x.queued) }),
          el('td', { className: 'num', textContent: x.connected ? '–' : (x.expires_in == null ? 'never' : duration(x.expires_in)) }),
          el('td', {}, x.connected ? '' : confirmButton('Delete', x.client_id, async () => {
            await api('DELETE', '/api/v1/sessions/' + encodeURIComponent(x.client_id));
            loadSessions();
          })));
        tr.dataset.clientId = x.client_id;
        return tr;
      }));
    }
    pager('sessions-pager', page, (o) => { s.offset = o; loadSessions(); });
  }
  const reloadSessions = debounce(() => { state.sessions.offset = 0; loadSessions(); }, 200);
  $('sessions-search').addEventListener('input', reloadSessions);
  $('sessions-state').addEventListener('change', reloadSessions);

  async function loadSubscriptions() {
    const s = state.subscriptions;
    const q = new URLSearchParams({ offset: s.offset, limit: PAGE });
    const client = $('subscriptions-client').value.trim();
    const filter = $('subscriptions-filter').value.trim();
    if (client) q.set('client_id', client);
    if (filter) q.set('filter', filter);
    let page;
    try { page = await api('GET', '/api/v1/subscriptions?' + q); } catch (e) { notice('Subscriptions: ' + e.message); return; }
    $('subscriptions-total').textContent = '(' + page.total + ')';
    const tbody = $('subscriptions-table').tBodies[0];
    if (!page.items.length) emptyRow(tbody, 4, 'No subscription.');
    else tbody.replaceChildren(...page.items.map((x) => el('tr', {},
      el('td', { textContent: x.filter }),
      el('td', {}, el('a', { href: '#/client/' + encodeURIComponent(x.client_id), textContent: x.client_id })),
      el('td', { className: 'num', textContent: x.qos }),
      el('td', { textContent: x.shared ? 'yes' : 'no' }))));
    pager('subscriptions-pager', page, (o) => { s.offset = o; loadSubscriptions(); });
  }
  const reloadSubscriptions = debounce(() => { state.subscriptions.offset = 0; loadSubscriptions(); }, 250);
  $('subscriptions-client').addEventListener('input', reloadSubscriptions);
  $('subscriptions-filter').addEventListener('input', reloadSubscriptions);

  async function loadRetained() {
    const r = state.retained;
    const filter = $('retained-filter').value.trim() || '#';
    const q = new URLSearchParams({ filter, offset: r.offset, limit: PAGE });
    let page;
    try { page = await api('GET', '/api/v1/retained?' + q); } catch (e) {
      $('retained-total').textContent = '';
      emptyRow($('retained-table').tBodies[0], 5, e.message);
      return;
    }
    $('retained-total').textContent = '(' + page.total + ')';
    const tbody = $('retained-table').tBodies[0];
    if (!page.items.length) emptyRow(tbody, 5, 'No retained message matches ' + filter + '.');
    else tbody.replaceChildren(...page.items.map((m) => {
      const show = el('button', { type: 'button', className: 'ghost', textContent: m.topic });
      show.setAttribute('aria-label', 'Show the whole payload of ' + m.topic);
      show.addEventListener('click', async () => {
        try {
          const full = await api('GET', topicPath(m.topic));
          const pre = $('retained-payload');
          pre.textContent = full.topic + ' (' + full.payload_encoding + ', ' + full.size + ' bytes)\n\n' + full.payload;
          pre.hidden = false;
        } catch (e) { notice(e.message); }
      });
      const preview = m.payload_encoding === 'base64' ? 'base64: ' + m.payload : m.payload;
      const tr = el('tr', {},
        el('td', {}, show),
        el('td', { className: 'num', textContent: m.qos }),
        el('td', { className: 'num', textContent: formatBytes(m.size) }),
        el('td', { className: 'payload-cell', textContent: preview + (m.truncated ? '…' : '') }),
        el('td', {}, confirmButton('Delete', m.topic, async () => {
          await api('DELETE', topicPath(m.topic));
          loadRetained();
        })));
      tr.dataset.topic = m.topic;
      return tr;
    }));
    pager('retained-pager', page, (o) => { r.offset = o; loadRetained(); });
  }
  $('retained-filter').addEventListener('input', debounce(() => { state.retained.offset = 0; loadRetained(); }, 300));

  // ---- the in-page MQTT client ----

  function defaultMqttUrl() {
    const ws = (state.info && state.info.listeners || []).find((l) => l.kind === 'ws' || l.kind === 'wss');
    if (!ws) return '';
    const cut = ws.address.lastIndexOf(':');
    let host = ws.address.slice(0, cut);
    if (host === '0.0.0.0' || host === '[::]') host = location.hostname;
    return (ws.kind === 'wss' ? 'wss://' : 'ws://') + host + ':' + ws.address.slice(cut + 1) + (ws.websocket_path || '/mqtt');
  }

  function mqttControls(connected) {
    $('mqtt-connect').disabled = connected;
    $('mqtt-disconnect').disabled = !connected;
    $('mqtt-subscribe').disabled = !connected;
    $('mqtt-publish').disabled = !connected;
  }

  function showMessage(m) {
    let text;
    try { text = new TextDecoder('utf-8', { fatal: true }).decode(m.payload); } catch (_) {
      text = 'hex: ' + Array.from(m.payload, (b) => b.toString(16).padStart(2, '0')).join(' ');
    }
    const li = el('li', {},
      el('span', { className: 'meta', textContent: new Date().toLocaleTimeString() + ' ' }),
      el('span', { className: 'topic', textContent: m.topic }),
      el('span', { className: 'meta', textContent: ' QoS ' + m.qos + (m.retain ? ' retained' : '') + ': ' }),
      el('span', { className: 'payload', textContent: text }));
    li.dataset.topic = m.topic;
    const list = $('mqtt-messages');
    list.prepend(li);
    while (list.children.length > 200) list.lastChild.remove();
  }

  function mqttClient() {
    if (!state.mqtt) {
      state.mqtt = new window.MqttClient({
        onState: (text, connected) => { $('mqtt-status').textContent = text; mqttControls(connected); },
        onMessage: showMessage,
        onLog: (text) => { $('mqtt-status').textContent = text; },
      });
    }
    return state.mqtt;
  }

  $('mqtt-connect-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await mqttClient().connect($('mqtt-url').value.trim(), $('mqtt-client-id').value.trim(),
        $('mqtt-username').value, $('mqtt-password').value);
    } catch (e) { $('mqtt-status').textContent = 'not connected: ' + e.message; }
  });
  $('mqtt-disconnect').addEventListener('click', () => mqttClient().disconnect());
  $('mqtt-subscribe-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const filter = $('mqtt-sub-filter').value.trim();
    try {
      const granted = await mqttClient().subscribe(filter, Number($('mqtt-sub-qos').value));
      $('mqtt-status').textContent = 'subscribed to ' + filter + ' (QoS ' + granted + ')';
    } catch (e) { $('mqtt-status').textContent = 'subscribe ' + filter + ': ' + e.message; }
  });
  $('mqtt-publish-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const topic = $('mqtt-pub-topic').value.trim();
    try {
      await mqttClient().publish(topic, $('mqtt-pub-payload').value, Number($('mqtt-pub-qos').value), $('mqtt-pub-retain').checked);
      $('mqtt-status').textContent = 'published to ' + topic;
    } catch (e) { $('mqtt-status').textContent = 'publish ' + topic + ': ' + e.message; }
  });

  // ---- routing ----

  const loaders = {
    overview: () => Object.values(charts).forEach((c) => c.schedule()),
    clients: loadClients,
    client: loadClient,
    sessions: loadSessions,
    subscriptions: loadSubscriptions,
    retained: loadRetained,
    mqtt: () => {
      if (!$('mqtt-url').value) $('mqtt-url').value = defaultMqttUrl();
      if (!$('mqtt-client-id').value) $('mqtt-client-id').value = 'console-' + Math.random().toString(16).slice(2, 8);
    },
  };

  function route() {
    if (!state.token) return;
    const [, view = 'overview', ...rest] = location.hash.split('/');
    const name = loaders[view] ? view : 'overview';
    state.view = name;
    state.arg = rest.length ? decodeURIComponent(rest.join('/')) : null;
    for (const v of document.querySelectorAll('.view')) v.hidden = v.id !== 'view-' + name;
    const tab = name === 'client' ? 'clients' : name;
    for (const a of document.querySelectorAll('#tabs a')) {
      if (a.dataset.view === tab) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    }
    loaders[name]();
  }
  window.addEventListener('hashchange', route);

  function brokerLine(uptime) {
    const i = state.info;
    const listeners = i.listeners.map((l) => l.kind + ' ' + l.address).join(', ');
    $('broker-line').textContent = 'v' + i.version + ' · up ' + duration(Math.max(0, uptime)) + ' · ' + listeners;
  }

  function start() {
    $('view-login').hidden = true;
    $('tabs').hidden = false;
    $('logout').hidden = false;
    $('login-token').value = '';
    state.infoAt = Date.now();
    brokerLine(state.info.uptime_secs);
    if (!state.stream) stream();
    route();
  }

  if (state.token) {
    tryToken(state.token).catch(() => showLogin(''));
  } else {
    showLogin('');
  }
})();
