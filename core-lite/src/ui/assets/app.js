// The console: sign-in with the admin token (kept in this tab's sessionStorage, sent as a
// bearer token), then pages chosen by the URL's #fragment:
//   #/offerings, #/offerings/new, #/products, #/channels, #/channels/<id>
'use strict';

(() => {
  const TOKEN_KEY = 'core-lite.adminToken';
  const h = SchemaForm.el;
  const $ = (sel) => document.querySelector(sel);
  let timer = null; // the channel page's refresh

  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.error && body.error.message) || `HTTP ${status}`);
      this.status = status;
      this.body = body;
    }
  }

  async function api(path, init) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) { showLogin(); throw new ApiError(401, null); }
    const headers = { Authorization: 'Bearer ' + token, Accept: 'application/json' };
    if (init && init.body) headers['Content-Type'] = 'application/json';
    const resp = await fetch(path, Object.assign({}, init, { headers, cache: 'no-store' }));
    let body = null;
    try { body = await resp.json(); } catch (_) { body = null; }
    if (resp.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin('The token was refused: sign in again.');
      throw new ApiError(401, body);
    }
    if (!resp.ok) throw new ApiError(resp.status, body);
    return body;
  }

  // ---- formatting -------------------------------------------------------------------------
  const two = (x) => String(x).padStart(2, '0');
  function fmtTime(ms) {
    if (ms === null || ms === undefined) return '—';
    const d = new Date(ms);
    return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ` +
      `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  }
  function fmtBytes(n) {
    const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
    let v = Number(n);
    let i = 0;
    while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
    return (i === 0 ? String(v) : v.toFixed(v >= 100 ? 0 : v >= 10 ? 1 : 2)) + ' ' + units[i];
  }
  const fmtPrix = (base) => (Number(base) / 1e8).toFixed(8).replace(/\.?0+$/, '') + ' PRIX';
  const short = (s, n) => (s && s.length > (n || 12) ? s.slice(0, n || 12) + '…' : s || '');
  const badge = (st) => h('span', { class: 'badge ' + st, text: st });

  function table(head, rows, opts) {
    const o = opts || {};
    return h('table', { id: o.id },
      h('thead', {}, h('tr', {}, head.map((c) => h('th', { class: c.num ? 'num' : null, text: c.label || c })))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: head.length, class: 'muted', text: o.empty || 'none' }))));
  }
  const td = (v, num) => h('td', { class: num ? 'num' : null }, v);

  // ---- pages ------------------------------------------------------------------------------
  async function offeringsPage(view, params) {
    const [offerings, products] = await Promise.all([api('/v1/admin/offerings'), api('/v1/admin/products')]);
    const productName = new Map(products.map((p) => [p.productId, p.name]));
    const highlight = params.get('new');
    const rows = offerings.map((o) => {
      const f = o.signed.offering || {};
      return h('tr', { class: o.offeringHash === highlight ? 'highlight' : null, 'data-hash': o.offeringHash },
        td(h('span', { class: 'mono', title: o.offeringHash, text: short(o.offeringHash, 16) })),
        td(h('span', { title: o.productId, text: productName.get(o.productId) || o.productId })), td(f.serviceName || ''), td(`${f.unitPrice} PRIX / ${f.unitName}`),
        td(f.maxUnits, true), td(`${o.channelsOpen} / ${o.supply}`, true), td(f.country || ''));
    });
    view.append(h('div', { class: 'toolbar' }, h('h1', { text: 'Offerings' }),
      h('a', { class: 'button', href: '#/offerings/new', id: 'new-offering', text: 'Publish an offering' })),
      table(['hash', 'product', 'service', 'unit price', { label: 'max units', num: true },
        { label: 'channels / supply', num: true }, 'country'], rows,
      { id: 'offerings', empty: 'No offering yet.' }));
  }

  async function newOfferingPage(view) {
    const [products, modules] = await Promise.all([api('/v1/admin/products'), api('/v1/admin/modules')]);
    view.append(h('h1', { text: 'Publish an offering' }));
    if (!products.length) {
      view.append(h('p', { text: 'Create a product first (core-lite product create).' }));
      return;
    }
    const select = h('select', { id: 'product' },
      products.map((p) => h('option', { value: p.productId, text: `${p.name} (${p.module})` })));
    const formBox = h('div', { id: 'offering-form' });
    view.append(h('div', { class: 'field' }, h('label', { for: 'product', text: 'Product' }), select), formBox);
    let built = null;
    function render() {
      formBox.textContent = '';
      const product = products.find((p) => p.productId === select.value);
      const module = modules.find((m) => m.module === product.module);
      if (!module) {
        formBox.append(h('p', { class: 'error', text: `Module ${product.module} is not registered.` }));
        return;
      }
      formBox.append(h('p', { class: 'muted' },
        `Module ${module.module} ${module.version}, offering template `,
        h('span', { class: 'mono', text: short(module.offeringTemplateHash, 16) })));
      built = SchemaForm.build(formBox, module.offeringTemplate, module.coreFilled);
      built.form.append(h('button', { type: 'submit', id: 'publish', text: 'Publish' }));
      built.form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        built.clearErrors();
        const button = $('#publish');
        button.disabled = true;
        try {
          const r = await api('/v1/admin/offerings', {
            method: 'POST',
            body: JSON.stringify({ product: select.value, offering: built.collect() }),
          });
          location.hash = '#/offerings?new=' + r.offeringHash;
        } catch (e) {
          const fields = e.body && e.body.error && e.body.error.fields;
          built.showErrors(fields || [{ pointer: '', message: e.message }]);
        } finally {
          button.disabled = false;
        }
      });
    }
    select.addEventListener('change', render);
    render();
  }

  async function productsPage(view) {
    const products = await api('/v1/admin/products');
    view.append(h('h1', { text: 'Products' }), table(['id', 'name', 'module', 'endpoint', 'config keys'],
      products.map((p) => h('tr', {}, td(h('span', { class: 'mono', text: p.productId })), td(p.name),
        td(p.module), td(p.endpoint || '—'), td(Object.keys(p.config || {}).sort().join(', ') || '—'))),
      { id: 'products', empty: 'No product yet.' }));
  }

  async function channelsPage(view) {
    const channels = await api('/v1/admin/channels');
    view.append(h('h1', { text: 'Channels' }), table(['channel', 'client key', 'offering', 'status',
      { label: 'units used', num: true }, { label: 'traffic', num: true }, { label: 'deposit', num: true }, 'session'],
    channels.map((c) => h('tr', { 'data-channel': c.channelId },
      td(h('a', { href: '#/channels/' + encodeURIComponent(c.channelId), class: 'mono', text: c.channelId })),
      td(h('span', { class: 'mono', title: c.clientKey, text: short(c.clientKey, 14) })),
      td(h('span', { class: 'mono', title: c.offeringHash, text: short(c.offeringHash, 12) })),
      td(badge(c.status)), td(c.unitsUsed, true), td(fmtBytes(c.bytesTotal), true),
      td(fmtPrix(c.deposit), true), td(c.openSession ? 'open' : '—'))),
    { id: 'channels', empty: 'No channel yet.' }));
  }

  // Usage per bucket -> cumulative MB and speed in Mbit/s (gaps are buckets without traffic).
  function plotData(series, nowMs) {
    const b = series.buckets;
    const cum = [];
    const inSpeed = [];
    const outSpeed = [];
    if (!b.length) return { cum, inSpeed, outSpeed };
    const width = series.widthMs;
    const byStart = new Map(b.map((x) => [x.startMs, x]));
    const first = b[0].startMs;
    const last = Math.max(b[b.length - 1].startMs, nowMs - (nowMs % width) - width);
    let total = 0;
    cum.push([first, 0]);
    for (let t = first, n = 0; t <= last && n < 2000; t += width, n++) {
      const x = byStart.get(t) || { bytesIn: 0, bytesOut: 0, widthMs: width };
      const secs = (x.widthMs || width) / 1000;
      total += x.bytesIn + x.bytesOut;
      const at = t + (x.widthMs || width);
      cum.push([at, total / 1e6]);
      inSpeed.push([at, (x.bytesIn * 8) / secs / 1e6]);
      outSpeed.push([at, (x.bytesOut * 8) / secs / 1e6]);
    }
    return { cum, inSpeed, outSpeed };
  }

  async function channelPage(view, id) {
    const usageBox = h('div', { class: 'chart-body', id: 'usage-chart' });
    const speedBox = h('div', { class: 'chart-body', id: 'speed-chart' });
    const summary = h('dl', { class: 'summary', id: 'channel-summary' });
    const history = h('div');
    const sessions = h('div');
    view.append(h('div', { class: 'toolbar' }, h('a', { href: '#/channels', text: '← Channels' })),
      h('h1', {}, 'Channel ', h('span', { class: 'mono', text: id })), summary,
      h('h2', { text: 'Usage' }),
      h('div', { class: 'charts' },
        h('div', { class: 'chart' }, h('h3', { text: 'Traffic over the plotted period (in + out)' }), usageBox),
        h('div', { class: 'chart' }, h('h3', { text: 'Speed per bucket' }), speedBox)),
      h('p', { class: 'muted', id: 'usage-note' }),
      h('h2', { text: 'Status history' }), history, h('h2', { text: 'Sessions' }), sessions);
    const enc = encodeURIComponent(id);
    async function refresh() {
      const [c, s, u] = await Promise.all([api('/v1/admin/channels/' + enc),
        api(`/v1/admin/channels/${enc}/sessions`), api(`/v1/admin/channels/${enc}/usage`)]);
      summary.textContent = '';
      const row = (k, v) => [h('dt', { text: k }), h('dd', {}, v)];
      summary.append(...row('status', badge(c.status)), ...row('client key', h('span', { class: 'mono', text: c.clientKey })),
        ...row('offering', h('span', { class: 'mono', text: c.offeringHash || '—' })),
        ...row('units used', String(c.unitsUsed)), ...row('traffic', fmtBytes(c.bytesTotal) + ` (${c.bytesTotal} bytes)`),
        ...row('deposit', fmtPrix(c.deposit)), ...row('open session', c.openSession || '—'));
      const d = plotData(u, Date.now());
      Chart.line(usageBox, { unit: 'MB', series: [{ name: 'MB used', color: '#1f6feb', points: d.cum }] });
      Chart.line(speedBox, { unit: 'Mbit/s', series: [
        { name: 'in', color: '#2e7d32', points: d.inSpeed },
        { name: 'out', color: '#b26a00', points: d.outSpeed }] });
      $('#usage-note').textContent = `Buckets of ${u.widthMs / 1000} s, written by the core every few seconds; ` +
        `speeds are the bucket's average; in and out as the reporting adapter counts them ` +
        `(on the agent, in = from the client).`;
      history.textContent = '';
      history.append(table(['at', 'status', 'reason'], c.history.slice().reverse().map((x) =>
        h('tr', {}, td(fmtTime(x.atMs)), td(badge(x.status)), td(x.reason))), { id: 'history' }));
      sessions.textContent = '';
      sessions.append(table(['session', 'client', 'VPN address', 'started', 'stopped',
        { label: 'in', num: true }, { label: 'out', num: true }],
      s.map((x) => h('tr', {}, td(h('span', { class: 'mono', title: x.connectionId || '', text: x.sessionId })),
        td(x.clientAddr || '—'), td(x.vpnAddr || '—'), td(fmtTime(x.startedAtMs)),
        td(x.stoppedAtMs ? fmtTime(x.stoppedAtMs) : 'open'), td(fmtBytes(x.bytesIn), true), td(fmtBytes(x.bytesOut), true))),
      { id: 'sessions', empty: 'No session yet.' }));
    }
    await refresh();
    timer = setInterval(() => refresh().catch((e) => console.warn('refresh failed', e)), 2000);
  }

  // ---- routing ----------------------------------------------------------------------------
  function showLogin(message) {
    if (timer) { clearInterval(timer); timer = null; }
    $('#view').hidden = true;
    $('#nav').hidden = true;
    $('#logout').hidden = true;
    $('#login').hidden = false;
    const err = $('#login-error');
    err.hidden = !message;
    err.textContent = message || '';
  }

  async function route() {
    if (timer) { clearInterval(timer); timer = null; }
    if (!sessionStorage.getItem(TOKEN_KEY)) { showLogin(); return; }
    $('#login').hidden = true;
    $('#nav').hidden = false;
    $('#logout').hidden = false;
    const view = $('#view');
    view.hidden = false;
    view.textContent = '';
    const [path, query] = (location.hash.replace(/^#/, '') || '/offerings').split('?');
    const params = new URLSearchParams(query || '');
    const parts = path.split('/').filter(Boolean);
    for (const a of document.querySelectorAll('[data-nav]')) {
      a.classList.toggle('current', a.dataset.nav === parts[0]);
    }
    try {
      if (parts[0] === 'offerings' && parts[1] === 'new') await newOfferingPage(view);
      else if (parts[0] === 'products') await productsPage(view);
      else if (parts[0] === 'channels' && parts[1]) await channelPage(view, decodeURIComponent(parts[1]));
      else if (parts[0] === 'channels') await channelsPage(view);
      else await offeringsPage(view, params);
    } catch (e) {
      if (e.status !== 401) view.append(h('p', { class: 'error', text: 'Could not load: ' + e.message }));
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('#login-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const token = $('#token').value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      try {
        await api('/v1/admin/products');
        $('#token').value = '';
        await route();
      } catch (e) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin(e.status === 401 ? 'The token was refused.'
          : e.status === 403 ? 'That token is not the admin token.' : 'Sign-in failed: ' + e.message);
      }
    });
    $('#logout').addEventListener('click', () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin();
    });
    window.addEventListener('hashchange', route);
    route();
  });
})();
