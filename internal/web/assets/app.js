// app.js keeps the page in step with the controller: it reads
// /api/v1/events (server-sent events, through fetch so that a bearer
// token can be sent), reconnects when the stream breaks, and renders each
// document it receives. It writes the DOM with textContent only.
'use strict';

(() => {
  const TOKEN_KEY = 'gitmesh.adminToken';
  // A stream silent for this long (the server comments every 15s) is
  // considered dead and opened again.
  const WATCHDOG_MS = 45000;
  const doc = {vocab: null, status: null, history: null, graph: null};
  let retryMs = 2000;

  const $ = id => document.getElementById(id);

  // el builds an element: attrs are attributes (class, data-*, title),
  // children are nodes or strings (as text).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function badge(text, tone) {
    return el('span', {class: `badge tone-${tone || 'info'}`}, text);
  }

  function vocab(kind, value) {
    const v = doc.vocab && doc.vocab[kind] && doc.vocab[kind][value];
    if (kind === 'phases') return v || {tone: 'info', done: false};
    return v || 'info';
  }

  function shortRev(rev) {
    if (!rev) return '';
    const i = rev.indexOf(':');
    return i >= 0 ? rev.slice(0, i + 1) + rev.slice(i + 1, i + 9) : rev;
  }

  function shortVersion(v) {
    if (!v) return '';
    return v.split('.').map(p => p.slice(0, 8)).join('.');
  }

  function time(t) {
    if (!t || t.startsWith('0001-')) return '';
    return new Date(t).toLocaleTimeString();
  }

  function since(from, to) {
    if (!from || from.startsWith('0001-')) return '';
    const end = to && !to.startsWith('0001-') ? new Date(to) : new Date();
    const s = Math.max(0, (end - new Date(from)) / 1000);
    return s < 90 ? `${s.toFixed(1)}s` : `${Math.round(s / 60)}m`;
  }

  function number(v) {
    return String(Math.round(v * 1000) / 1000);
  }

  // --- rendering ---------------------------------------------------------

  function renderHeader() {
    const st = doc.status;
    const ready = st.ready;
    const r = $('ready');
    r.className = `badge tone-${ready ? vocab('conditions', ready.status) : 'info'}`;
    r.textContent = ready ? `${ready.type} ${ready.status}: ${ready.reason}` : 'starting';
    r.title = ready ? ready.message : '';
    const s = st.status;
    $('applied').textContent = s.lastAppliedRevision ? `serving ${shortRev(s.lastAppliedRevision)}` : 'no revision served yet';
  }

  function renderRollout() {
    const box = $('rollout');
    const st = doc.status;
    const ro = st.status.rollout, view = st.rollout;
    if (!ro || !view) {
      box.replaceChildren(el('p', {class: 'muted'}, 'No rollout yet.'));
      return;
    }
    const phase = vocab('phases', ro.phase);
    const head = el('div', {class: 'rollout-head'},
      el('strong', {}, `#${ro.id}`), el('span', {class: 'mono', title: ro.revision}, shortRev(ro.revision)),
      el('span', {class: 'muted'}, ro.trigger), badge(ro.phase, phase.tone), el('span', {class: 'muted'}, view.done ? 'finished' : 'in flight'));
    const parts = [head];
    if (ro.waiting && !view.done) parts.push(el('p', {class: 'waiting'}, `Waiting: ${ro.waiting}`));
    if (ro.reason) parts.push(el('p', {class: 'reason'}, `Reason: ${ro.reason}`));

    const total = view.waves.length;
    const pct = total ? Math.round((100 * view.wavesDone) / total) : 0;
    const bar = el('div', {class: `progress tone-${view.tone}`, 'data-done': view.wavesDone, 'data-total': total});
    const fill = el('div');
    fill.style.width = `${pct}%`;
    bar.append(fill);
    parts.push(el('div', {class: 'wave-progress'}, `${view.wavesDone}/${total} waves done`), bar);

    const waves = el('div', {class: 'waves'});
    view.waves.forEach((w, i) => {
      const card = el('div', {class: `wave ${w.state}`, 'data-wave': i + 1},
        el('div', {class: 'name'}, `${i + 1}. ${w.name}`),
        el('div', {class: 'muted'}, `${w.target}${w.proxies ? ` · ${w.proxies} prox${w.proxies === 1 ? 'y' : 'ies'}` : ''}`),
        el('div', {class: 'state'}, w.state));
      if (w.state === 'current' && w.bakeSeconds > 0 && w.syncedAt) {
        const baked = Math.min(1, (Date.now() - new Date(w.syncedAt)) / 1000 / w.bakeSeconds);
        const b = el('div', {class: 'bake', title: `bake ${w.bakeSeconds}s`});
        const f = el('div');
        f.style.width = `${Math.round(baked * 100)}%`;
        b.append(f);
        card.append(b);
      }
      waves.append(card);
    });
    parts.push(waves);

    const readings = ro.readings || [];
    if (readings.length) {
      const body = el('tbody');
      for (const r of readings) {
        // A built-in metric over no request measured nothing: no value.
        const measured = !(r.requests === 0 && r.unit);
        body.append(el('tr', {'data-metric': r.metric},
          el('td', {}, r.metric),
          el('td', {class: 'value'}, measured ? `${number(r.value)}${r.unit || ''}` : '–'),
          el('td', {class: 'threshold'}, r.threshold || ''),
          el('td', {}, r.unit ? number(r.requests) : ''),
          el('td', {}, badge(r.result, vocab('results', r.result))),
          el('td', {class: 'muted'}, r.message || '')));
      }
      parts.push(el('table', {class: 'readings'},
        el('thead', {}, el('tr', {}, ...['Gate', 'Reading', 'Threshold', 'Requests', 'Result', ''].map(h => el('th', {}, h)))), body));
    } else if (!view.done) {
      parts.push(el('p', {class: 'muted'}, 'No gate readings yet.'));
    }
    box.replaceChildren(...parts);
  }

  function renderDiagnostics() {
    const box = $('diagnostics');
    const st = doc.status;
    const s = st.status;
    const diags = s.diagnostics || [];
    const parts = [];
    if (st.refused && st.ready) {
      parts.push(el('div', {class: 'refused'},
        el('strong', {}, `Revision ${shortRev(s.lastAttemptedRevision)} was refused`), ` (${st.ready.reason}): `, st.ready.message));
    }
    if (diags.length === 0) {
      parts.push(el('p', {class: 'muted'}, 'No findings.'));
    } else {
      if (!st.refused) parts.push(el('p', {class: 'muted'}, `Findings on ${shortRev(s.lastAttemptedRevision)}:`));
      parts.push(diagList(diags));
    }
    // A refusal stays in view after a later revision is applied: the last
    // Refused history record keeps its first diagnostics.
    const last = !st.refused && (doc.history || []).find(ro => ro.phase === 'Refused');
    if (last) {
      parts.push(el('div', {class: 'refused earlier', 'data-rollout': last.id},
        el('strong', {}, `Last refused: ${shortRev(last.revision)}`), ` (#${last.id}, ${time(last.startedAt)}): `, last.reason || ''));
      if ((last.diagnostics || []).length) parts.push(diagList(last.diagnostics));
    }
    box.replaceChildren(...parts);
  }

  // diagList lists diagnostics as file:line, severity, code, object, field
  // and message.
  function diagList(diags) {
    const ul = el('ul', {class: 'diags'});
    for (const d of diags) {
      const origin = d.origin && d.origin.file ? (d.origin.line > 0 ? `${d.origin.file}:${d.origin.line}` : d.origin.file) : '';
      const object = d.kind ? `${d.kind} ${d.namespace ? d.namespace + '/' : ''}${d.name}` : '';
      ul.append(el('li', {class: 'diag', 'data-code': d.code},
        el('span', {class: 'origin mono'}, origin), ' ', badge(d.severity, vocab('severities', d.severity)), ' ',
        el('span', {class: 'mono'}, d.code), ' ', object, d.field ? el('span', {class: 'mono muted'}, ` ${d.field}`) : null,
        el('div', {class: 'message'}, d.message)));
    }
    return ul;
  }

  function renderFleet() {
    const proxies = doc.status.status.proxies || [];
    $('fleet-count').textContent = `(${proxies.length})`;
    const rows = proxies.map(p => {
      const labels = Object.entries(p.labels || {}).map(([k, v]) => `${k}=${v}`).join(',');
      const detail = [];
      if (p.nack) {
        detail.push(el('div', {class: 'nack error'}, `NACK ${p.nack.TypeURL.split('.').pop()} ${shortVersion(p.nack.Version)}: ${p.nack.Error}`));
      }
      if (!p.connected) detail.push(el('div', {class: 'muted'}, 'disconnected'));
      return el('tr', {'data-proxy': p.id, 'data-state': p.state},
        el('td', {class: 'mono'}, p.id),
        el('td', {}, `${p.role} ${p.namespace}/${p.service}`, labels ? el('div', {class: 'muted mono'}, labels) : null),
        el('td', {class: 'mono', title: p.revision || ''}, shortRev(p.revision)),
        el('td', {class: 'mono', title: `assigned ${p.assigned || '-'}, acked ${p.acked || '-'}`}, shortVersion(p.acked || p.assigned)),
        el('td', {}, badge(p.state, vocab('states', p.state))),
        el('td', {}, ...detail));
    });
    if (rows.length === 0) rows.push(el('tr', {}, el('td', {colspan: 6, class: 'muted'}, 'No proxy has connected.')));
    $('fleet').tBodies[0].replaceChildren(...rows);
  }

  function renderHistory() {
    const rows = (doc.history || []).map(ro => el('tr', {'data-rollout': ro.id, 'data-phase': ro.phase},
      el('td', {}, ro.id),
      el('td', {class: 'mono', title: ro.revision}, shortRev(ro.revision)),
      el('td', {}, ro.trigger),
      el('td', {class: 'outcome'}, badge(ro.phase, vocab('phases', ro.phase).tone)),
      el('td', {class: 'reason'}, ro.reason || ''),
      el('td', {}, time(ro.startedAt)),
      el('td', {}, since(ro.startedAt, ro.finishedAt))));
    if (rows.length === 0) rows.push(el('tr', {}, el('td', {colspan: 7, class: 'muted'}, 'No rollout yet.')));
    $('history').tBodies[0].replaceChildren(...rows);
  }

  function renderGraph() {
    const g = doc.graph;
    window.gitmeshGraph.render($('graph'), g, doc.vocab && doc.vocab.nodeShapes);
    const meta = [`${g.proxies} prox${g.proxies === 1 ? 'y' : 'ies'} scraped`];
    meta.push(g.windowSeconds > 0 ? `rates over the last ${Math.round(g.windowSeconds)}s` : 'cumulative counts (one scrape so far)');
    if (g.errors && g.errors.length) meta.push(`${g.errors.length} could not be scraped: ${g.errors[0]}`);
    $('graph-meta').textContent = meta.join(' · ');
  }

  function render(name) {
    if (!doc.vocab) return;
    if ((name === 'status' || name === 'vocab') && doc.status) {
      renderHeader();
      renderRollout();
      renderDiagnostics();
      renderFleet();
    }
    if ((name === 'history' || name === 'vocab') && doc.history) {
      renderHistory();
      if (doc.status) renderDiagnostics();
    }
    if ((name === 'graph' || name === 'vocab') && doc.graph) renderGraph();
  }

  // The bake bar moves between events.
  setInterval(() => { if (doc.vocab && doc.status) renderRollout(); }, 1000);

  // --- the event stream ----------------------------------------------------

  function setLive(state, text) {
    const l = $('live');
    l.dataset.state = state;
    l.textContent = text || state;
  }

  function dispatch(block) {
    let name = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue; // a comment: keep-alive
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? '' : line.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') name = value;
      else if (field === 'data') data.push(value);
      else if (field === 'retry' && /^\d+$/.test(value)) retryMs = Number(value);
    }
    if (data.length === 0 || !(name in doc)) return;
    doc[name] = JSON.parse(data.join('\n'));
    render(name);
  }

  function headers() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return token ? {Authorization: `Bearer ${token}`} : {};
  }

  function showLogin(message) {
    $('main').hidden = true;
    $('login').hidden = false;
    $('signout').hidden = true;
    $('login-error').textContent = message || '';
    setLive('signed-out', 'token needed');
    $('token').focus();
  }

  // stream reads the event stream until it ends; it returns 'auth' when
  // the controller wants a (different) token.
  async function stream() {
    const abort = new AbortController();
    let watchdog;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => abort.abort(), WATCHDOG_MS);
    };
    arm();
    try {
      const resp = await fetch('/api/v1/events', {headers: headers(), cache: 'no-store', signal: abort.signal});
      if (resp.status === 401) return 'auth';
      if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
      setLive('live');
      $('signout').hidden = !sessionStorage.getItem(TOKEN_KEY);
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        arm();
        buf += value.replace(/\r\n?/g, '\n');
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          dispatch(buf.slice(0, i));
          buf = buf.slice(i + 2);
        }
      }
    } catch (e) {
      // network error or watchdog: reconnect below
    } finally {
      clearTimeout(watchdog);
    }
    return 'closed';
  }

  async function connect() {
    for (;;) {
      const why = await stream();
      if (why === 'auth') {
        const had = sessionStorage.getItem(TOKEN_KEY);
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin(had ? 'That token was refused.' : '');
        return;
      }
      setLive('reconnecting');
      await new Promise(r => setTimeout(r, retryMs));
    }
  }

  $('login-form').addEventListener('submit', ev => {
    ev.preventDefault();
    const token = $('token').value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    $('token').value = '';
    $('login').hidden = true;
    $('main').hidden = false;
    setLive('connecting');
    connect();
  });
  $('signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    location.reload();
  });

  connect();
})();
