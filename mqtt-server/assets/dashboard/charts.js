'use strict';
// Line charts drawn on <canvas>: a few series over the last minutes, sized
// to the element (and its pixel density), redrawn when it is resized. The
// legend is HTML beside the canvas; the canvas's aria-label says the
// latest values, for screen readers.

(function () {
  const WINDOW_SECS = 300;

  function formatNumber(n) {
    if (n == null || Number.isNaN(n)) return '–';
    const a = Math.abs(n);
    if (a >= 1e9) return (n / 1e9).toFixed(1) + ' G';
    if (a >= 1e6) return (n / 1e6).toFixed(1) + ' M';
    if (a >= 1e4) return (n / 1e3).toFixed(1) + ' k';
    if (Number.isInteger(n)) return String(n);
    return a >= 100 ? n.toFixed(0) : n.toFixed(1);
  }

  function formatBytes(n) {
    if (n == null) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    const text = i === 0 || n >= 100 ? n.toFixed(0) : n.toFixed(1).replace(/\.0$/, '');
    return text + ' ' + units[i];
  }

  // A round step for about four grid lines up to `max`: 1, 2, 2.5 or 5
  // times a power of `base`'s units (ten, or 1024 for bytes).
  function niceStep(max, base) {
    const raw = max / 4;
    if (!(raw > 0)) return base === 1024 ? 256 : 0.25;
    let unit = 1;
    if (base === 1024) while (raw / unit >= 1024) unit *= 1024;
    const scaled = raw / unit;
    const p = Math.pow(10, Math.floor(Math.log10(scaled)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= scaled) return m * p * unit;
    return 10 * p * unit;
  }

  class LineChart {
    // series: [{name, color}]; format: value -> text; base: 1024 for
    // bytes (grid lines at round numbers of KiB, MiB...), else 10.
    constructor(canvas, legend, series, format, base) {
      this.canvas = canvas;
      this.series = series;
      this.format = format || formatNumber;
      this.base = base || 10;
      this.times = [];
      this.values = series.map(() => []);
      this.label = canvas.getAttribute('aria-label') || '';
      this.pending = false;
      if (legend) {
        legend.replaceChildren(...series.map((s) => {
          const li = document.createElement('li');
          const swatch = document.createElement('i');
          swatch.style.background = s.color;
          li.append(swatch, s.name);
          return li;
        }));
      }
      if (window.ResizeObserver) {
        new ResizeObserver(() => this.schedule()).observe(canvas);
      }
    }

    clear() {
      this.times = [];
      this.values = this.series.map(() => []);
      this.schedule();
    }

    // t: milliseconds; values: one number (or null) per series.
    push(t, values) {
      this.times.push(t);
      values.forEach((v, i) => this.values[i].push(v));
      const oldest = t - WINDOW_SECS * 1000;
      while (this.times.length > 2 && this.times[0] < oldest) {
        this.times.shift();
        this.values.forEach((vs) => vs.shift());
      }
      this.schedule();
    }

    schedule() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => { this.pending = false; this.draw(); });
    }

    draw() {
      const c = this.canvas;
      const w = c.clientWidth, h = c.clientHeight;
      if (!w || !h) return;
      const dpr = window.devicePixelRatio || 1;
      if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
        c.width = Math.round(w * dpr);
        c.height = Math.round(h * dpr);
      }
      const ctx = c.getContext('2d');
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.clearRect(0, 0, w, h);
      const style = getComputedStyle(document.documentElement);
      const muted = style.getPropertyValue('--muted').trim() || '#888';
      const line = style.getPropertyValue('--line').trim() || '#ddd';
      let max = 0;
      for (const vs of this.values) for (const v of vs) if (v != null && v > max) max = v;
      // Small counts get whole steps; rates below one, fractions.
      const highest = max || 1;
      const step = this.base === 10 && highest >= 1 && highest <= 4 ? 1 : niceStep(highest, this.base);
      const lines = Math.max(1, Math.ceil(highest / step - 1e-9));
      max = step * lines;
      ctx.font = '11px system-ui, sans-serif';
      const labels = [];
      for (let i = 0; i <= lines; i++) labels.push(this.format(step * i));
      const left = 10 + Math.max(...labels.map((l) => ctx.measureText(l).width)), right = 10, top = 8, bottom = 20;
      const pw = w - left - right, ph = h - top - bottom;
      ctx.textBaseline = 'middle';
      ctx.lineWidth = 1;
      for (let i = 0; i <= lines; i++) {
        const y = top + ph - (ph * i) / lines;
        ctx.strokeStyle = line;
        ctx.beginPath(); ctx.moveTo(left, Math.round(y) + 0.5); ctx.lineTo(left + pw, Math.round(y) + 0.5); ctx.stroke();
        ctx.fillStyle = muted;
        ctx.textAlign = 'right';
        ctx.fillText(labels[i], left - 6, y);
      }
      // The window: the samples there are, from half a minute up to five.
      const end = this.times.length ? this.times[this.times.length - 1] : Date.now();
      const first = this.times.length ? this.times[0] : end;
      const span = Math.min(WINDOW_SECS * 1000, Math.max(30 * 1000, end - first));
      const ago = Math.round(span / 1000);
      ctx.textAlign = 'left';
      ctx.textBaseline = 'alphabetic';
      ctx.fillText(ago >= 120 ? Math.round(ago / 60) + ' min ago' : ago + ' s ago', left, h - 4);
      ctx.textAlign = 'right';
      ctx.fillText('now', left + pw, h - 4);
      const x = (t) => left + pw - ((end - t) / span) * pw;
      const y = (v) => top + ph - (v / max) * ph;
      ctx.lineWidth = 2;
      ctx.lineJoin = 'round';
      this.series.forEach((s, i) => {
        ctx.strokeStyle = s.color;
        ctx.beginPath();
        let drawing = false;
        this.values[i].forEach((v, j) => {
          if (v == null) { drawing = false; return; }
          const px = x(this.times[j]), py = y(v);
          if (drawing) ctx.lineTo(px, py); else ctx.moveTo(px, py);
          drawing = true;
        });
        ctx.stroke();
      });
      const latest = this.series.map((s, i) => {
        const vs = this.values[i];
        return s.name + ' ' + this.format(vs.length ? vs[vs.length - 1] : null);
      });
      c.setAttribute('aria-label', this.label + ': ' + latest.join(', '));
      c.dataset.samples = String(this.times.length);
    }
  }

  window.Charts = { LineChart, formatNumber, formatBytes };
})();
