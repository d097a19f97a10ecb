// Flotilla web UI: a hash-routed single-page app over the management API.
// Live updates come from /api/v1/events as Server-Sent Events.

const app = document.getElementById('app');
const state = { token: localStorage.getItem('flotilla.token') || '', stream: null, onEvent: null };
window.__flotillaPage = window.__flotillaPage || Math.random().toString(36).slice(2);

// ---------- helpers ----------
const esc = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const $ = (sel, root = document) => root.querySelector(sel);
const fmtTime = (t) => (t ? new Date(t).toLocaleString() : '—');
const fmtBytes = (n) => (n < 1024 ? n + ' B' : n < 1 << 20 ? (n / 1024).toFixed(1) + ' KiB' : n < 1 << 30 ? (n / (1 << 20)).toFixed(1) + ' MiB' : (n / (1 << 30)).toFixed(2) + ' GiB');
const pill = (s) => `<span class="pill status-${esc(s)}">${esc(s)}</span>`;

function toast(msg, error) {
  const t = $('#toast');
  t.textContent = msg;
  t.className = 'toast' + (error ? ' error' : '');
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 4000);
}

function clearToast() {
  clearTimeout(toast.timer);
  $('#toast').hidden = true;
}

// emptyRow is what a table says when it has nothing to show.
const emptyRow = (cols, text) => `<tr class="empty"><td colspan="${cols}" class="muted">${text}</td></tr>`;

async function api(method, path, body) {
  const opts = { method, headers: { Authorization: 'Bearer ' + state.token } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, opts);
  } catch {
    throw new Error('Cannot reach the server; the page reconnects when it is back.');
  }
  if (resp.status === 401) {
    logout();
    throw new Error('sign in again');
  }
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(data.error ? data.error.message : resp.statusText);
  return data;
}

async function guard(fn) {
  try {
    return await fn();
  } catch (e) {
    toast(e.message, true);
  }
}

// Colours of the SPORE gateway, with waiting and working told apart:
// scheduled grey, pending (offered, not yet fetched) light blue, working
// blue, succeeded green, failed red, canceled or skipped amber.
function colour(stateName) {
  if (stateName === 'succeeded') return 's-green';
  if (['failed', 'timed_out', 'rejected'].includes(stateName)) return 's-red';
  if (['canceled', 'skipped'].includes(stateName)) return 's-amber';
  if (stateName === 'pending') return 's-sky';
  if (['downloading', 'downloaded', 'installing', 'cancel_requested'].includes(stateName)) return 's-blue';
  return 's-grey';
}

const FAILED = ['failed', 'timed_out', 'rejected'];

// countsBar draws a wave's (or rollout's) devices as proportions of its
// size: succeeded, failed, canceled/skipped, working, waiting; what is still
// scheduled is the empty rest of the bar.
function countsBar(counts, total) {
  counts = counts || {};
  total = total || Object.values(counts).reduce((a, b) => a + b, 0);
  const sum = (keys) => keys.reduce((a, k) => a + (counts[k] || 0), 0);
  const parts = [
    ['s-green', sum(['succeeded']), 'succeeded'],
    ['s-red', sum(FAILED), 'failed'],
    ['s-amber', sum(['canceled', 'skipped']), 'canceled or skipped'],
    ['s-blue', sum(['downloading', 'downloaded', 'installing', 'cancel_requested']), 'updating'],
    ['s-sky', sum(['pending']), 'waiting for the device'],
  ];
  const label = parts.filter((p) => p[1]).map((p) => `${p[1]} ${p[2]}`).join(' · ') || 'not started';
  if (!total) return `<div class="bar" title="no devices"></div><span class="muted small">no devices</span>`;
  return `<div class="bar" title="${esc(label)}">${parts
    .filter((p) => p[1])
    .map((p) => `<span class="${p[0]}" style="width:${(p[1] * 100) / total}%"></span>`)
    .join('')}</div><span class="muted small">${esc(label)} of ${total}</span>`;
}

// ---------- live events ----------
function connectEvents(query = '') {
  if (state.stream) state.stream.close();
  const es = new EventSource('/api/v1/events?token=' + encodeURIComponent(state.token) + query);
  state.stream = es;
  const live = $('#live');
  let lost = false;
  es.onopen = () => {
    live.classList.add('on');
    live.title = 'live updates';
    if (lost) {
      // The server came back (a restart, a failover): what the page shows
      // may be stale, so draw it again and say so.
      lost = false;
      route().then(() => toast('Reconnected to the server; the page was refreshed.'));
    } else if (state.onEvent) {
      // What changed between drawing the page and connecting came with no
      // event: let the page look again.
      state.onEvent({ type: 'snapshot' });
    }
  };
  es.onerror = () => {
    live.classList.remove('on');
    live.title = 'not connected: retrying';
    lost = true;
  };
  const handler = (ev) => {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (state.onEvent) state.onEvent(msg);
  };
  for (const t of ['snapshot', 'deployment', 'rollout', 'wave', 'rollout_progress', 'node_status_update', 'device_registered', 'device_updated', 'device_online', 'device_offline', 'artifact_added', 'close'])
    es.addEventListener(t, handler);
}

function debounce(fn, ms) {
  let t;
  return (...a) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...a), ms);
  };
}

// ---------- pages ----------
function loginPage() {
  app.innerHTML = `<div class="login card">
    <h1>Sign in</h1>
    <p class="muted">Paste an API token. The admin token is printed when the server first starts and saved in <span class="mono">flotilla-data/admin-token</span>.</p>
    <form id="login-form" class="row">
      <input id="token" type="password" placeholder="flt_…" style="flex:1" autocomplete="off">
      <button id="login" class="primary">Sign in</button>
    </form></div>`;
  $('#login-form').onsubmit = async (e) => {
    e.preventDefault();
    state.token = $('#token').value.trim();
    try {
      await api('GET', '/api/v1/tenants');
      localStorage.setItem('flotilla.token', state.token);
      clearToast();
      location.hash = '#/';
      route();
    } catch (err) {
      toast('That token was not accepted: ' + err.message, true);
    }
  };
}

function logout() {
  localStorage.removeItem('flotilla.token');
  state.token = '';
  if (state.stream) state.stream.close();
  location.hash = '#/login';
}

async function dashboard() {
  const [fleet, rollouts] = await Promise.all([api('GET', '/api/v1/fleet'), api('GET', '/api/v1/rollouts')]);
  const running = rollouts.items.filter((r) => ['running', 'paused', 'creating'].includes(r.status));
  const versions = Object.entries(fleet.versions).sort((a, b) => b[1] - a[1]);
  const max = Math.max(1, ...versions.map((v) => v[1]));
  const bars = versions
    .slice(0, 12)
    .map(([v, n], i) => `<g transform="translate(0,${i * 26})"><text x="0" y="15">${esc(v)}</text>
      <rect x="110" y="3" height="16" width="${(n / max) * 300}" fill="#2f7de1" rx="3"></rect><text x="${118 + (n / max) * 300}" y="15">${n}</text></g>`)
    .join('');
  app.innerHTML = `<h1>Fleet</h1>
    <div class="cards">
      <div class="card"><div class="muted">Devices</div><div class="n" id="fleet-total">${fleet.total}</div></div>
      <div class="card"><div class="muted">Online</div><div class="n" style="color:var(--green)">${fleet.online}</div></div>
      <div class="card"><div class="muted">Offline</div><div class="n" style="color:var(--red)">${fleet.offline}</div></div>
      <div class="card"><div class="muted">Never seen</div><div class="n muted">${fleet.never_seen}</div></div>
    </div>
    <h2>Devices by version</h2>
    <div class="card scroll"><svg id="versions-chart" width="460" height="${Math.max(30, versions.length * 26)}">${bars || '<text x="0" y="15">no devices yet</text>'}</svg></div>
    <h2>Rollouts in progress</h2>
    ${running.length ? `<table><tr><th>Name</th><th>Status</th><th class="hide-narrow">Artifact</th><th>Progress</th></tr>${running
      .map((r) => `<tr><td><a href="#/rollouts/${esc(r.id)}">${esc(r.name)}</a></td><td>${pill(r.status)}</td><td class="hide-narrow">${esc(r.artifact.name)} ${esc(r.artifact.version)}</td><td>${countsBar(r.counts, r.total)}</td></tr>`)
      .join('')}</table>` : '<p class="muted">None. <a href="#/rollouts/new">Start one</a>.</p>'}`;
  connectEvents('&type=rollout,wave,device_online,device_offline,device_registered');
  state.onEvent = debounce(() => location.hash.startsWith('#/') && location.hash.length <= 2 && dashboard(), 1000);
}

async function devicesPage() {
  const params = new URLSearchParams(location.hash.split('?')[1] || '');
  const sel = params.get('selector') || '';
  const prefix = params.get('prefix') || '';
  const sort = params.get('sort') || 'id';
  const pageSize = 50;
  const go = (changes) => {
    const p = new URLSearchParams({ selector: sel, prefix, sort, ...changes });
    for (const [k, v] of [...p]) if (!v || (k === 'sort' && v === 'id')) p.delete(k);
    location.hash = '#/devices' + (p.toString() ? '?' + p : '');
  };
  const header = (key, title) => {
    const active = sort.replace('-', '') === key;
    const next = active && !sort.startsWith('-') ? '-' + key : key;
    return `<th><a href="#" data-sort="${next}" id="sort-${key}" class="sort${active ? ' active' : ''}">${title}${active ? (sort.startsWith('-') ? ' ↓' : ' ↑') : ''}</a></th>`;
  };
  app.innerHTML = `<h1>Devices <span class="muted small" id="dev-count"></span></h1>
    <form id="sel-form" class="filters">
      <label>Device id starts with<input id="prefix" value="${esc(prefix)}" placeholder="kiosk-0"></label>
      <label style="flex:1">Selector<input id="selector" placeholder="app=kiosk,region in (eu,us),!legacy" value="${esc(sel)}">
        <span class="field-error" id="selector-error" hidden></span></label>
      <label>&nbsp;<button id="search">Search</button></label>
    </form>
    <div class="scroll"><table id="devices"><thead><tr>${header('id', 'Id')}<th>Status</th>${header('version', 'Version')}<th>Current deployment</th>
      <th class="hide-narrow">Labels</th>${header('last_seen', 'Last seen')}</tr></thead><tbody></tbody></table></div>
    <div class="row pager"><button id="prev" disabled>← Previous</button><button id="next" disabled>Next →</button><span class="muted small" id="page-info"></span></div>
    <h2>Pre-register a device</h2>
    <form id="new-device" class="grid"><label>Device id<input name="id" required></label><label>Labels (k=v,k2=v2)<input name="labels"></label><label>Push address (optional)<input name="address" placeholder="http://10.0.1.134:8080"></label><label>&nbsp;<button class="primary">Register</button></label></form>
    <div id="new-token"></div>`;
  // Pages go forward by cursor; the cursors seen are kept to go back.
  const cursors = [''];
  let at = 0;
  const load = async () => {
    const q = new URLSearchParams({ limit: pageSize, sort });
    if (sel) q.set('selector', sel);
    if (prefix) q.set('prefix', prefix);
    if (cursors[at]) q.set('cursor', cursors[at]);
    let page;
    try {
      page = await api('GET', '/api/v1/devices?' + q);
    } catch (e) {
      // A bad selector is shown where it was typed, not in a passing toast.
      $('#selector-error').textContent = e.message;
      $('#selector-error').hidden = false;
      $('#devices tbody').innerHTML = emptyRow(6, 'Fix the selector to see devices.');
      return;
    }
    $('#selector-error').hidden = true;
    $('#devices tbody').innerHTML = page.items.map(deviceRow).join('') ||
      emptyRow(6, sel || prefix ? 'No device matches this search.' : 'No devices yet. Register one below, or let devices register themselves with a gateway token.');
    cursors[at + 1] = page.next_cursor || '';
    $('#next').disabled = !page.next_cursor;
    $('#prev').disabled = at === 0;
    $('#page-info').textContent = `page ${at + 1}` + (page.total !== undefined ? ` · ${page.total} devices in all` : '');
    $('#dev-count').textContent = page.total !== undefined ? `(${page.total})` : '';
  };
  $('#next').onclick = () => guard(async () => { at++; await load(); });
  $('#prev').onclick = () => guard(async () => { at = Math.max(0, at - 1); await load(); });
  app.querySelectorAll('[data-sort]').forEach((a) => (a.onclick = (e) => { e.preventDefault(); go({ sort: a.dataset.sort }); }));
  $('#sel-form').onsubmit = (e) => {
    e.preventDefault();
    go({ selector: $('#selector').value.trim(), prefix: $('#prefix').value.trim() });
  };
  $('#new-device').onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    guard(async () => {
      const d = await api('POST', '/api/v1/devices', { id: f.get('id'), labels: parseKV(f.get('labels')), address: f.get('address') || undefined });
      $('#new-token').innerHTML = `<p>Device <b>${esc(d.id)}</b> registered. Its DDI token, shown once:</p><div class="secret mono">${esc(d.token)}</div>` +
        (d.node_token ? `<p>Its push-node token (<span class="mono">flotilla agent --listen-token</span>), shown once:</p><div class="secret mono">${esc(d.node_token)}</div>` : '');
      e.target.reset();
      load();
    });
  };
  await load();
  connectEvents('&type=device_online,device_offline,device_updated,device_registered,deployment');
  state.onEvent = (m) => {
    const row = document.querySelector(`tr[data-device="${CSS.escape(m.deviceId || '')}"]`);
    if (!row) return;
    if (m.type === 'device_online') row.querySelector('.st').innerHTML = pill('online');
    if (m.type === 'device_offline') row.querySelector('.st').innerHTML = pill('offline');
    if (m.type === 'deployment') row.querySelector('.dep').innerHTML = depCell({ state: m.state, artifact: m.artifact, rollout_id: m.rolloutId });
  };
}

function depCell(dep) {
  if (!dep || !dep.state) return '<span class="muted">—</span>';
  const art = dep.artifact ? `${esc(dep.artifact.name)} ${esc(dep.artifact.version)} ` : '';
  const link = dep.rollout_id ? ` <a class="small" href="#/rollouts/${esc(dep.rollout_id)}">rollout</a>` : '';
  return `${art}<span class="pill ${colour(dep.state)}-soft">${esc(dep.state)}</span>${link}`;
}

function deviceRow(d) {
  return `<tr data-device="${esc(d.id)}"><td><a href="#/devices/${encodeURIComponent(d.id)}">${esc(d.id)}</a></td><td class="st">${pill(d.status)}</td>
    <td>${esc(d.version || '—')}</td><td class="dep">${depCell(d.deployment)}</td>
    <td class="hide-narrow mono">${esc(Object.entries(d.labels || {}).map(([k, v]) => k + '=' + v).join(', '))}</td>
    <td>${fmtTime(d.last_seen_at)}</td></tr>`;
}

function parseKV(s) {
  const out = {};
  (s || '').split(',').map((x) => x.trim()).filter(Boolean).forEach((kv) => {
    const [k, ...v] = kv.split('=');
    out[k.trim()] = v.join('=').trim();
  });
  return out;
}

async function deviceDetail(id) {
  const [d, deps, arts] = await Promise.all([
    api('GET', '/api/v1/devices/' + encodeURIComponent(id)),
    api('GET', '/api/v1/devices/' + encodeURIComponent(id) + '/deployments'),
    api('GET', '/api/v1/artifacts?limit=1000'),
  ]);
  const kv = (m) => Object.entries(m || {}).map(([k, v]) => `<tr><td class="mono">${esc(k)}</td><td class="mono">${esc(v)}</td></tr>`).join('') || '<tr><td class="muted">none</td></tr>';
  app.innerHTML = `<h1 id="device-page">${esc(d.id)} ${pill(d.status)}</h1>
    <div class="cards"><div class="card"><div class="muted">Version</div><div class="n">${esc(d.version || '—')}</div></div>
    <div class="card"><div class="muted">Last seen</div><div>${fmtTime(d.last_seen_at)}</div></div>
    ${d.address ? `<div class="card"><div class="muted">Push address</div><div class="mono">${esc(d.address)}</div></div>` : ''}
    ${d.dmf ? `<div class="card" id="device-dmf"><div class="muted">Reached over DMF (AMQP)</div><div class="mono">${esc(d.dmf.exchange)}</div><div class="muted">link ${esc(d.dmf.link)}</div></div>` : ''}</div>
    <h2>Labels</h2><table>${kv(d.labels)}</table>
    <h2>Attributes</h2><table>${kv(d.attributes)}</table>
    <h2>Assign an update</h2>
    <form id="assign" class="grid"><label>Artifact<select name="artifact">${arts.items.map((a) => `<option value="${esc(a.name)}|${esc(a.version)}">${esc(a.name)} ${esc(a.version)}</option>`).join('')}</select></label>
    <label>Type<select name="type"><option>forced</option><option>soft</option><option>downloadonly</option></select></label><label>&nbsp;<button class="primary">Assign</button></label></form>
    <h2>Deployments</h2>
    ${deps.items.map((x) => `<div class="card" style="margin-bottom:.6rem"><div class="row"><b>#${x.id}</b> ${esc(x.artifact.name)} ${esc(x.artifact.version)} ${pill(x.state)}
      ${x.rollout_id ? `<a href="#/rollouts/${esc(x.rollout_id)}">rollout</a>` : ''} <span class="muted">${fmtTime(x.created_at)}</span>
      ${['pending', 'downloading', 'downloaded', 'installing', 'scheduled'].includes(x.state) ? `<button data-cancel="${x.id}" class="danger">Cancel</button>` : ''}</div>
      <table style="margin-top:.4rem"><tr><th>When</th><th>State</th><th>From</th><th>Messages</th></tr>${x.history
        .map((h) => `<tr><td>${fmtTime(h.at)}</td><td>${esc(h.state)}${h.execution ? ` <span class="muted">(${esc(h.execution)}${h.finished ? '/' + esc(h.finished) : ''})</span>` : ''}</td><td>${esc(h.source)}</td><td>${esc((h.details || []).join(' · ').slice(0, 400))}</td></tr>`)
        .join('')}</table></div>`).join('') || '<p class="muted">None yet.</p>'}`;
  $('#assign').onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const [name, version] = String(f.get('artifact')).split('|');
    guard(async () => {
      await api('POST', `/api/v1/devices/${encodeURIComponent(id)}/deployments`, { artifact: { name, version }, type: f.get('type') });
      deviceDetail(id);
    });
  };
  app.querySelectorAll('[data-cancel]').forEach((b) => (b.onclick = () => guard(async () => {
    await api('POST', `/api/v1/devices/${encodeURIComponent(id)}/deployments/${b.dataset.cancel}/cancel`);
    deviceDetail(id);
  })));
  connectEvents('&device=' + encodeURIComponent(id));
  state.onEvent = debounce(() => location.hash === '#/devices/' + encodeURIComponent(id) && deviceDetail(id), 500);
}

async function artifactsPage() {
  const list = await api('GET', '/api/v1/artifacts?limit=1000');
  app.innerHTML = `<h1>Artifacts</h1>
    <form id="upload" class="grid">
      <label>File<input id="file" type="file" required></label>
      <label>Name<input id="art-name" name="name" required placeholder="kiosk-fw"></label>
      <label>Version<input id="art-version" name="version" required placeholder="1.2.0"></label>
      <label>Type<select name="type"><option>binary</option><option>swu</option><option>oci-image</option></select></label>
      <label>Labels (k=v,…)<input name="labels"></label>
      <label>&nbsp;<button id="upload-btn" class="primary">Upload</button></label>
      <div style="grid-column:1/-1"><div class="progress"><div id="upload-progress"></div></div><span id="upload-status" class="muted"></span></div>
    </form>
    <h2>Registry</h2><div class="scroll"><table id="artifacts"><tr><th>Name</th><th>Version</th><th>Type</th><th class="hide-narrow">Size</th><th class="hide-narrow">SHA-256</th><th class="hide-narrow">Created</th></tr>
    ${list.items.map((a) => {
      // A release of several modules has no file of its own.
      const multi = !a.sha256;
      return `<tr data-artifact="${esc(a.name)}/${esc(a.version)}"><td>${esc(a.name)}</td><td>${esc(a.version)}</td><td>${esc(a.type)}</td>
      <td class="hide-narrow">${multi ? 'modules' : fmtBytes(a.size)}</td>
      <td class="hide-narrow mono" title="${esc(a.sha256)}">${multi ? '—' : esc(a.sha256.slice(0, 12)) + '…'}</td><td class="hide-narrow">${fmtTime(a.created_at)}</td></tr>`;
    }).join('') || emptyRow(6, 'No artifacts yet: upload one above.')}</table></div>`;
  $('#upload').onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const file = $('#file').files[0];
    if (!file) return;
    const q = new URLSearchParams({ filename: file.name, type: f.get('type') });
    if (f.get('labels')) q.set('labels', f.get('labels'));
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', `/api/v1/artifacts/${encodeURIComponent(f.get('name'))}/${encodeURIComponent(f.get('version'))}?${q}`);
    xhr.setRequestHeader('Authorization', 'Bearer ' + state.token);
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable) {
        $('#upload-progress').style.width = (ev.loaded * 100) / ev.total + '%';
        $('#upload-status').textContent = `${fmtBytes(ev.loaded)} of ${fmtBytes(ev.total)}`;
      }
    };
    xhr.onload = () => {
      const body = JSON.parse(xhr.responseText || '{}');
      if (xhr.status >= 300) return toast(body.error ? body.error.message : 'upload failed', true);
      toast(`Uploaded ${body.name} ${body.version}`);
      artifactsPage();
    };
    xhr.onerror = () => toast('upload failed', true);
    xhr.send(file);
  };
}

async function rolloutsPage() {
  const list = await api('GET', '/api/v1/rollouts');
  app.innerHTML = `<div class="row"><h1 style="flex:1">Rollouts</h1><a class="btn" href="#/rollouts/new">New rollout</a></div>
    <div class="scroll"><table id="rollouts"><tr><th>Name</th><th>Status</th><th class="hide-narrow">Artifact</th><th>Progress</th><th class="hide-narrow">Created</th></tr>
    ${list.items.map((r) => `<tr data-rollout="${esc(r.id)}"><td><a href="#/rollouts/${esc(r.id)}">${esc(r.name)}</a></td><td>${pill(r.status)}</td><td class="hide-narrow">${esc(r.artifact.name)} ${esc(r.artifact.version)}</td>
      <td style="min-width:180px">${countsBar(r.counts, r.total)}</td><td class="hide-narrow">${fmtTime(r.created_at)}</td></tr>`).join('') ||
      emptyRow(5, 'No rollouts yet. <a href="#/rollouts/new">Create one</a>.')}</table></div>`;
  connectEvents('&type=rollout,wave');
  state.onEvent = debounce(() => location.hash === '#/rollouts' && rolloutsPage(), 1000);
}

async function newRollout() {
  const [arts, pols] = await Promise.all([api('GET', '/api/v1/artifacts?limit=1000'), api('GET', '/api/v1/policies')]);
  app.innerHTML = `<h1>New rollout</h1>
    <form id="rollout-form" class="grid">
      <label>Name<input id="ro-name" name="name" required></label>
      <label>Artifact<select id="ro-artifact" name="artifact">${arts.items.map((a) => `<option value="${esc(a.name)}|${esc(a.version)}">${esc(a.name)} ${esc(a.version)}</option>`).join('')}</select></label>
      <label>Selector<input id="ro-selector" name="selector" placeholder="app=kiosk,region in (eu,us)"><span class="field-error" id="ro-selector-error" hidden></span></label>
      <label>Waves<input id="ro-waves" name="waves" type="number" min="1" max="1000" value="3"></label>
      <label>Type<select name="type"><option>forced</option><option>soft</option><option>downloadonly</option></select></label>
      <label>Named policy<select name="policy_name"><option value="">(inline below)</option>${pols.items.map((p) => `<option>${esc(p.name)}</option>`).join('')}</select></label>
      <label>Success threshold %<input name="success_threshold" type="number" min="0" max="100" value="100"></label>
      <label>Grace seconds<input name="grace_seconds" type="number" min="0" value="0"></label>
      <label>Error threshold %<input name="error_threshold" type="number" min="0" max="100" placeholder="none"></label>
      <label>On error<select name="error_action"><option>pause</option><option>abort</option></select></label>
      <label>Max in flight<input name="max_in_flight" type="number" min="0" value="0"></label>
      <label>Min success ratio<input name="min_success_ratio" type="number" min="0" max="1" step="0.01" value="1"></label>
      <label>Device timeout<input name="device_timeout" placeholder="e.g. 30m"></label>
      <label><span><input name="require_ok" type="checkbox"> require healthy devices</span><span><input name="skip_offline" type="checkbox"> skip offline devices</span></label>
      <label><span><input id="ro-start" name="start" type="checkbox" checked> start now</span></label>
      <label>&nbsp;<button id="ro-create" class="primary">Create rollout</button></label>
    </form>
    <h2>Preview</h2><div id="preview" class="card muted">…</div>`;
  const form = $('#rollout-form');
  const preview = debounce(async () => {
    const f = new FormData(form);
    let pv;
    try {
      pv = await api('POST', '/api/v1/rollouts/preview', { selector: f.get('selector'), waves: Number(f.get('waves')) || 1 });
    } catch (e) {
      $('#ro-selector-error').textContent = e.message;
      $('#ro-selector-error').hidden = false;
      $('#preview').innerHTML = 'Fix the selector to see which devices the rollout covers.';
      return;
    }
    $('#ro-selector-error').hidden = true;
    $('#preview').innerHTML = `<b id="preview-total">${pv.total}</b> matching devices
      ${(pv.warnings || []).map((w) => `<p class="warning">${esc(w)}</p>`).join('')}
      <table style="margin-top:.5rem"><tr><th>Wave</th><th>Devices</th><th class="hide-narrow">Examples</th></tr>${pv.waves
      .map((w) => `<tr><td>${esc(w.name)}</td><td>${w.size}</td><td class="hide-narrow mono">${esc(w.sample.join(', '))}${w.size > w.sample.length ? ', …' : ''}</td></tr>`).join('')}</table>`;
  }, 250);
  form.oninput = preview;
  preview();
  form.onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const [name, version] = String(f.get('artifact')).split('|');
    const num = (k) => (f.get(k) === '' || f.get(k) === null ? undefined : Number(f.get(k)));
    const body = { name: f.get('name'), artifact: { name, version }, selector: f.get('selector'), waves: num('waves'), type: f.get('type'), start: f.get('start') === 'on' };
    if (f.get('policy_name')) body.policy_name = f.get('policy_name');
    else
      body.policy = {
        success_threshold: num('success_threshold'), grace_seconds: num('grace_seconds'), error_threshold: num('error_threshold'),
        error_action: f.get('error_action'), max_in_flight: num('max_in_flight'), min_success_ratio: num('min_success_ratio'),
        device_timeout: f.get('device_timeout') || undefined, require_ok: f.get('require_ok') === 'on', skip_offline: f.get('skip_offline') === 'on',
      };
    guard(async () => {
      const r = await api('POST', '/api/v1/rollouts', body);
      location.hash = '#/rollouts/' + r.id;
    });
  };
}

async function rolloutDetail(id) {
  let r = await api('GET', '/api/v1/rollouts/' + id);
  const devs = await api('GET', `/api/v1/rollouts/${id}/devices?limit=1000`);
  const chip = (d) => `<a class="dev state-${esc(d.state)}" data-device="${esc(d.device_id)}" href="#/devices/${encodeURIComponent(d.device_id)}" title="${esc(d.device_id)} · wave ${d.wave + 1} · ${esc(d.state)}">${esc(d.device_id)}</a>`;
  app.innerHTML = `<div class="row"><h1 style="flex:1">${esc(r.name)} <span id="ro-status">${pill(r.status)}</span></h1>
      <span class="row" id="actions">${['start', 'pause', 'resume', 'abort', 'retry', 'next-wave'].map((a) => `<button data-op="${a}" id="btn-${a}">${a}</button>`).join('')}</span></div>
    <p class="muted" id="ro-reason">${esc(r.reason || '')}</p>
    <p>${esc(r.artifact.name)} ${esc(r.artifact.version)} · selector <span class="mono">${esc(r.selector || '(all)')}</span> · ${r.total} devices · ${esc(r.type)} · ${esc(r.delivery)}</p>
    <h2>Waves</h2><div id="waves"></div>
    <h2>Devices that need attention</h2><div id="attention"></div>
    <h2>Devices</h2>
    <div class="legend"><span><i class="s-grey"></i>scheduled</span><span><i class="s-sky"></i>waiting for the device</span><span><i class="s-blue"></i>updating</span><span><i class="s-green"></i>succeeded</span><span><i class="s-red"></i>failed</span><span><i class="s-amber"></i>canceled / skipped</span></div>
    <div class="devgrid" id="devgrid">${devs.items.map(chip).join('') || '<p class="muted">No devices in this rollout.</p>'}</div>
    ${devs.next_cursor ? '<p class="muted small">The first 1000 devices are shown; see the devices that need attention above, or <span class="mono">flotilla rollout devices</span>.</p>' : ''}
    <h2>Progress over time</h2><div class="card"><svg id="chart" viewBox="0 0 640 180" class="chart"></svg></div>
    <h2>Wave history</h2><div id="runs"></div>`;
  const attention = async () => {
    const states = ['failed', 'timed_out', 'rejected', 'canceled', 'skipped'];
    const lists = await Promise.all(states.map((st) => api('GET', `/api/v1/rollouts/${id}/devices?state=${st}&limit=200`)));
    const rows = lists.flatMap((l) => l.items);
    $('#attention').innerHTML = `<table id="failed-devices"><tr><th>Device</th><th>Wave</th><th>State</th><th>Last message</th><th class="hide-narrow">When</th></tr>${rows
      .map((d) => `<tr data-failed="${esc(d.device_id)}"><td><a href="#/devices/${encodeURIComponent(d.device_id)}">${esc(d.device_id)}</a></td><td>${d.wave + 1}</td>
        <td><span class="pill ${colour(d.state)}-soft">${esc(d.state)}</span></td><td class="msg">${esc(d.message || '')}</td><td class="hide-narrow">${fmtTime(d.updated_at)}</td></tr>`)
      .join('') || emptyRow(5, 'None: no device failed, was canceled or skipped.')}</table>`;
  };
  // Chips follow events, and are redrawn on every refresh too: a device
  // that changed before the event stream connected is not left stale.
  const chips = async () => {
    const d = await api('GET', `/api/v1/rollouts/${id}/devices?limit=1000`);
    for (const x of d.items) {
      const el = document.querySelector(`.dev[data-device="${CSS.escape(x.device_id)}"]`);
      if (el) {
        el.className = 'dev state-' + x.state;
        el.title = `${x.device_id} · wave ${x.wave + 1} · ${x.state}`;
      }
    }
  };
  const chart = async () => {
    const h = await api('GET', `/api/v1/rollouts/${id}/history?points=120`);
    drawChart(h);
  };
  const render = async () => {
    r = await api('GET', '/api/v1/rollouts/' + id);
    $('#ro-status').innerHTML = pill(r.status);
    $('#ro-reason').textContent = r.reason || '';
    const enabled = { start: ['ready', 'draft'], pause: ['running'], resume: ['paused'], abort: ['ready', 'running', 'paused', 'draft'], retry: ['running', 'paused', 'completed', 'partial', 'failed'], 'next-wave': ['running', 'paused'] };
    for (const [op, sts] of Object.entries(enabled)) $('#btn-' + op).disabled = !sts.includes(r.status);
    $('#waves').innerHTML = `<table><tr><th>Wave</th><th>Status</th><th>Devices</th><th>Progress</th><th class="hide-narrow">Reason</th></tr>${(r.waves || [])
      .map((w) => `<tr><td>${esc(w.name)}</td><td>${pill(w.status)}</td><td>${w.size}</td><td class="wave-bar">${countsBar(w.counts, w.size)}${w.waiting ? `<div class="muted small">${w.waiting} not polled yet</div>` : ''}</td><td class="hide-narrow">${esc(w.reason || '')}</td></tr>`)
      .join('') || emptyRow(5, 'The device snapshot is being taken.')}</table>`;
    const runs = await api('GET', `/api/v1/rollouts/${id}/runs`);
    $('#runs').innerHTML = `<table><tr><th>Wave</th><th>Started</th><th>Ended</th><th class="hide-narrow">Counts</th><th>Why it ended</th></tr>${runs.items
      .map((x) => `<tr><td>${x.wave + 1}</td><td>${fmtTime(x.started_at)}</td><td>${fmtTime(x.ended_at)}</td><td class="hide-narrow mono">${esc(Object.entries(x.counts).map(([k, v]) => k + ' ' + v).join(' · '))}</td><td>${esc(x.reason || '')}</td></tr>`)
      .join('') || emptyRow(5, 'No wave has started yet.')}</table>`;
    await Promise.all([attention(), chart(), chips()]);
  };
  app.querySelectorAll('[data-op]').forEach((b) => (b.onclick = () => guard(async () => {
    if (b.dataset.op === 'abort' && !confirm('Abort this rollout?')) return;
    await api('POST', `/api/v1/rollouts/${id}/${b.dataset.op}`);
    render();
  })));
  await render();
  const refresh = debounce(render, 300);
  connectEvents('&rollout=' + encodeURIComponent(id));
  state.onEvent = (m) => {
    if (m.type === 'deployment' && m.deviceId) {
      const el = document.querySelector(`.dev[data-device="${CSS.escape(m.deviceId)}"]`);
      if (el) {
        el.className = 'dev state-' + m.state;
        el.title = `${m.deviceId} · ${m.state}`;
      }
    }
    if (['deployment', 'rollout', 'wave', 'snapshot'].includes(m.type)) refresh();
  };
}

// drawChart plots a rollout's recorded history from its start: succeeded
// as an area, finished and failed as lines.
function drawChart(h) {
  const svg = $('#chart');
  if (!svg) return;
  const w = 640, ht = 180, left = 40, bottom = 24, top = 28;
  const pts = h.points || [];
  if (!h.started_at || pts.length < 2 || !h.total) {
    svg.innerHTML = `<text x="${left}" y="40">The chart starts when the rollout does.</text>`;
    return;
  }
  const t0 = new Date(pts[0].at).getTime(), span = Math.max(1000, new Date(pts[pts.length - 1].at).getTime() - t0);
  const x = (p) => left + ((new Date(p.at).getTime() - t0) / span) * (w - left - 12);
  const y = (n) => ht - bottom - (n / h.total) * (ht - bottom - top);
  const line = (key) => pts.map((p) => `${x(p).toFixed(1)},${y(p[key]).toFixed(1)}`).join(' ');
  const area = `${left},${ht - bottom} ${line('succeeded')} ${x(pts[pts.length - 1]).toFixed(1)},${ht - bottom}`;
  const secs = span / 1000;
  const fmtSpan = (s) => (s < 120 ? `${Math.round(s)}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${(s / 3600).toFixed(1)}h`);
  svg.innerHTML = `<line x1="${left}" y1="${ht - bottom}" x2="${w - 10}" y2="${ht - bottom}" stroke="#ccc"/><line x1="${left}" y1="${top}" x2="${left}" y2="${ht - bottom}" stroke="#ccc"/>
    <line x1="${left}" y1="${top}" x2="${w - 10}" y2="${top}" stroke="#eee"/>
    <text x="2" y="${top + 4}">${h.total}</text><text x="${left - 12}" y="${ht - bottom + 4}">0</text>
    <text x="${left}" y="${ht - 6}">start</text><text x="${w - 60}" y="${ht - 6}">+${fmtSpan(secs)}</text>
    <polygon class="area-ok" points="${area}"/>
    <polyline id="line-finished" fill="none" stroke="#2f7de1" stroke-width="2" stroke-dasharray="5 3" points="${line('finished')}"/>
    <polyline id="line-failed" fill="none" stroke="#d64545" stroke-width="2" points="${line('failed')}"/>
    <g class="chart-legend"><rect x="${left + 6}" y="6" width="10" height="10" class="area-ok"/><text x="${left + 20}" y="15">succeeded</text>
    <line x1="${left + 96}" y1="11" x2="${left + 116}" y2="11" stroke="#2f7de1" stroke-width="2" stroke-dasharray="5 3"/><text x="${left + 120}" y="15">finished</text>
    <line x1="${left + 186}" y1="11" x2="${left + 206}" y2="11" stroke="#d64545" stroke-width="2"/><text x="${left + 210}" y="15">failed</text></g>`;
}

async function policiesPage() {
  const list = await api('GET', '/api/v1/policies');
  app.innerHTML = `<h1>Policies</h1>
    <form id="policy-form" class="grid"><label>Name<input name="name" required></label>
    <label style="grid-column:1/-1">Policy (JSON)<textarea name="policy">{"success_threshold": 95, "grace_seconds": 300, "error_threshold": 10, "error_action": "pause", "min_success_ratio": 0.95}</textarea></label>
    <label>&nbsp;<button class="primary">Save</button></label></form>
    <h2>Saved</h2><table><tr><th>Name</th><th>Policy</th><th></th></tr>${list.items.map((p) => `<tr><td>${esc(p.name)}</td><td class="mono">${esc(JSON.stringify(p.policy))}</td><td><button class="danger" data-del="${esc(p.name)}">Delete</button></td></tr>`).join('')}</table>`;
  $('#policy-form').onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    guard(async () => {
      let policy;
      try {
        policy = JSON.parse(f.get('policy'));
      } catch (err) {
        throw new Error('The policy is not valid JSON: ' + err.message);
      }
      await api('PUT', '/api/v1/policies/' + encodeURIComponent(f.get('name')), { policy });
      policiesPage();
    });
  };
  app.querySelectorAll('[data-del]').forEach((b) => (b.onclick = () => guard(async () => {
    await api('DELETE', '/api/v1/policies/' + encodeURIComponent(b.dataset.del));
    policiesPage();
  })));
}

async function channelsPage() {
  const [list, arts] = await Promise.all([api('GET', '/api/v1/channels'), api('GET', '/api/v1/artifacts?limit=1000')]);
  app.innerHTML = `<h1>Channels</h1>
    <p class="muted">Devices follow a channel with the label <span class="mono">channel=NAME</span>. Publishing a version starts a rollout to them.</p>
    <form id="channel-form" class="grid"><label>Channel<input name="name" required placeholder="stable"></label>
    <label>Artifact<select name="artifact">${arts.items.map((a) => `<option value="${esc(a.name)}|${esc(a.version)}">${esc(a.name)} ${esc(a.version)}</option>`).join('')}</select></label>
    <label>Waves<input name="waves" type="number" min="1" value="3"></label><label>&nbsp;<button class="primary">Publish</button></label></form>
    <h2>Channels</h2><table><tr><th>Name</th><th>Version</th><th>Selector</th><th>Rollout</th></tr>${list.items.map((c) => `<tr><td>${esc(c.name)}</td><td>${esc(c.artifact.name)} ${esc(c.artifact.version)}</td><td class="mono">${esc(c.selector)}</td><td>${c.rollout_id ? `<a href="#/rollouts/${esc(c.rollout_id)}">${esc(c.rollout_id)}</a>` : ''}</td></tr>`).join('')}</table>`;
  $('#channel-form').onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const [name, version] = String(f.get('artifact')).split('|');
    guard(async () => {
      await api('PUT', '/api/v1/channels/' + encodeURIComponent(f.get('name')), { artifact: { name, version }, waves: Number(f.get('waves')) });
      channelsPage();
    });
  };
}

async function tenantsPage() {
  const scopes = ['artifacts:read', 'artifacts:write', 'devices:read', 'devices:write', 'devices:tokens', 'nodes:write', 'rollouts:read', 'rollouts:write', 'tokens:write', 'tenants:write', 'admin', 'gateway'];
  const [tenants, tokens] = await Promise.all([api('GET', '/api/v1/tenants'), api('GET', '/api/v1/tokens').catch(() => ({ items: [] }))]);
  app.innerHTML = `<h1>Tenants &amp; tokens</h1>
    <h2>Tenants</h2><table><tr><th>Name</th><th>Anonymous devices</th><th>Created</th></tr>${tenants.items.map((t) => `<tr><td>${esc(t.name)}</td><td>${t.anonymous_ddi ? 'allowed' : 'no'}</td><td>${fmtTime(t.created_at)}</td></tr>`).join('')}</table>
    <form id="tenant-form" class="row" style="margin-top:.6rem"><input name="name" placeholder="new tenant name"><button>Create tenant</button></form>
    <h2>Create a token</h2>
    <form id="token-form" class="grid"><label>Tenant<select name="tenant">${tenants.items.map((t) => `<option>${esc(t.name)}</option>`).join('')}</select></label>
      <label>Name<input name="name" placeholder="ci-pipeline"></label><label>Expires<input name="expires" type="datetime-local"></label>
      <div style="grid-column:1/-1" class="row">${scopes.map((s) => `<label style="flex-direction:row;gap:.3rem"><input type="checkbox" name="scope" value="${s}">${s}</label>`).join('')}</div>
      <label>&nbsp;<button class="primary">Create token</button></label></form>
    <div id="token-secret"></div>
    <h2>Tokens</h2><table><tr><th>Name</th><th>Tenant</th><th>Scopes</th><th class="hide-narrow">Expires</th><th></th></tr>${tokens.items.map((t) => `<tr><td>${esc(t.name || t.id)}</td><td>${esc(t.tenant)}</td><td class="mono">${esc(t.scopes.join(' '))}</td>
      <td class="hide-narrow">${t.revoked_at ? 'revoked' : fmtTime(t.expires_at)}</td><td>${t.revoked_at ? '' : `<button class="danger" data-revoke="${esc(t.id)}">Revoke</button>`}</td></tr>`).join('')}</table>`;
  $('#tenant-form').onsubmit = (e) => {
    e.preventDefault();
    guard(async () => {
      await api('POST', '/api/v1/tenants', { name: new FormData(e.target).get('name') });
      tenantsPage();
    });
  };
  $('#token-form').onsubmit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const body = { tenant: f.get('tenant'), name: f.get('name'), scopes: f.getAll('scope') };
    if (f.get('expires')) body.expires_at = new Date(f.get('expires')).toISOString();
    guard(async () => {
      const t = await api('POST', '/api/v1/tokens', body);
      await tenantsPage();
      $('#token-secret').innerHTML = `<p>Token created. It is shown only now:</p><div class="secret mono" id="new-secret">${esc(t.token)}</div>`;
    });
  };
  app.querySelectorAll('[data-revoke]').forEach((b) => (b.onclick = () => guard(async () => {
    await api('DELETE', '/api/v1/tokens/' + b.dataset.revoke);
    tenantsPage();
  })));
}

// ---------- router ----------
async function route() {
  const hash = location.hash || '#/';
  document.body.classList.toggle('signed-out', !state.token || hash === '#/login');
  document.querySelectorAll('#nav a').forEach((a) => a.classList.toggle('active', hash.startsWith(a.getAttribute('href')) && (a.getAttribute('href') !== '#/' || hash === '#/')));
  state.onEvent = null;
  if (!state.token && hash !== '#/login') {
    location.hash = '#/login';
    return;
  }
  const path = hash.slice(1).split('?')[0];
  const parts = path.split('/').filter(Boolean);
  const page = {
    login: loginPage,
    devices: () => (parts[1] ? deviceDetail(decodeURIComponent(parts[1])) : devicesPage()),
    artifacts: artifactsPage,
    rollouts: () => (parts[1] === 'new' ? newRollout() : parts[1] ? rolloutDetail(parts[1]) : rolloutsPage()),
    policies: policiesPage,
    channels: channelsPage,
    tenants: tenantsPage,
  }[parts[0] || ''] || dashboard;
  await guard(page);
}

$('#logout').onclick = logout;
window.addEventListener('hashchange', route);
route();
