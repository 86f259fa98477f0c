// The Roost playground (docs/playground.md): streams one request at a time
// over the WebSocket (/v1/stream, JSON frames; docs/api.md), shows each token
// as it arrives shaded by its probability with its alternatives on hover, and
// the novelty of the output (the longest copied span highlighted). The
// fields go to the server as typed, so a bad value gets the server's own
// error message.
'use strict';

const $ = (id) => document.getElementById(id);
const state = { ws: null, id: 0, running: null, tokens: [], text: '', started: 0, firstAt: 0 };

function apiKey() {
  return $('api-key').value;
}

async function getJson(path) {
  const headers = apiKey() ? { Authorization: `Bearer ${apiKey()}` } : {};
  const r = await fetch(path, { headers });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error ? body.error.message : `${path}: HTTP ${r.status}`);
  return body;
}

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = false;
}

async function loadModels() {
  try {
    const models = await getJson('/v1/models');
    $('model').replaceChildren(...models.data.map((m) => new Option(m.id, m.id)));
    $('error').hidden = true;
  } catch (e) {
    showError(e.message);
  }
}

async function init() {
  const config = await getJson('/playground/config');
  $('key-row').hidden = !config.api_key_required;
  for (const name of config.corpora) $('corpus').add(new Option(name, name));
  if (config.corpora.length > 0) $('corpus').value = config.corpora[0];
  $('api-key').addEventListener('change', loadModels);
  $('generate').addEventListener('click', generate);
  $('stop').addEventListener('click', stop);
  if (!config.api_key_required) await loadModels();
  document.body.dataset.ready = 'true';
}

/** A field as JSON: a number when it reads as one, else the text (the server says what is wrong); empty: absent. */
function field(id) {
  const v = $(id).value.trim();
  if (v === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : v;
}

function socket() {
  if (state.ws && state.ws.readyState <= WebSocket.OPEN) return Promise.resolve(state.ws);
  const url = new URL('/v1/stream', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  if (apiKey()) url.searchParams.set('api_key', apiKey());
  const ws = new WebSocket(url);
  ws.onmessage = (m) => onEvent(JSON.parse(m.data));
  ws.onclose = () => {
    if (state.running) finish({ finish_reason: 'connection closed' });
    state.ws = null;
  };
  state.ws = ws;
  return new Promise((resolve, reject) => {
    ws.onopen = () => resolve(ws);
    ws.onerror = () => reject(new Error('the WebSocket could not be opened (a wrong API key?)'));
  });
}

async function generate() {
  $('error').hidden = true;
  $('novelty').hidden = true;
  $('out-tokens').replaceChildren();
  $('stats').textContent = '';
  state.tokens = [];
  state.text = '';
  const chat = $('chat').checked;
  const suffix = chat ? '' : $('suffix').value;
  $('out-prompt').textContent = chat ? '' : $('prompt').value;
  $('out-suffix').textContent = suffix;
  const sampling = {
    model: $('model').value || undefined,
    max_tokens: field('max_tokens'),
    temperature: field('temperature'),
    top_p: field('top_p'),
    top_k: field('top_k'),
    seed: field('seed'),
  };
  const id = `p${++state.id}`;
  const alternatives = field('logprobs');
  // A chat message takes the chat API's log-prob fields: a boolean, and the count as top_logprobs.
  const msg = chat
    ? {
        type: 'chat',
        id,
        messages: [{ role: 'user', content: $('prompt').value }],
        ...sampling,
        ...(alternatives === undefined || alternatives === 0 ? {} : { logprobs: true, top_logprobs: alternatives }),
      }
    : {
        type: 'request',
        id,
        prompt: $('prompt').value,
        suffix: suffix === '' ? undefined : suffix,
        ...sampling,
        logprobs: alternatives,
        novelty: $('corpus').value ? { corpus: $('corpus').value } : undefined,
      };
  try {
    const ws = await socket();
    state.running = msg.id;
    state.started = performance.now();
    state.firstAt = 0;
    $('generate').disabled = true;
    $('stop').disabled = false;
    document.body.dataset.state = 'running';
    ws.send(JSON.stringify(msg));
  } catch (e) {
    showError(e.message);
  }
}

function stop() {
  if (state.running && state.ws) state.ws.send(JSON.stringify({ type: 'cancel', id: state.running }));
}

function onEvent(e) {
  if (e.id !== state.running) return;
  if (e.type === 'token') return addToken(e);
  if (e.type === 'error') {
    showError(e.message);
    return finish({ finish_reason: 'error' });
  }
  if (e.type === 'done') finish(e);
}

function addToken(e) {
  if (!state.firstAt) state.firstAt = performance.now();
  const span = document.createElement('span');
  span.className = 'tok';
  span.textContent = e.text;
  span.dataset.start = String(state.text.length);
  const p = Math.exp(e.logprob);
  if (Number.isFinite(p)) span.style.background = `rgba(70, 110, 200, ${(0.45 * (1 - p)).toFixed(3)})`;
  const alts = e.top_logprobs ? Object.entries(e.top_logprobs).sort((a, b) => b[1] - a[1]) : [];
  span.title = [`p = ${p.toFixed(3)}`, ...alts.map(([t, lp]) => `${JSON.stringify(t)}: ${Math.exp(lp).toFixed(3)}`)].join('\n');
  state.text += e.text;
  state.tokens.push(span);
  $('out-tokens').append(span);
}

function finish(e) {
  state.running = null;
  $('generate').disabled = false;
  $('stop').disabled = true;
  document.body.dataset.state = e.finish_reason;
  const ms = performance.now() - state.started;
  const parts = [`finish: ${e.finish_reason}`];
  if (e.usage) parts.push(`prompt ${e.usage.prompt_tokens} + completion ${e.usage.completion_tokens} tokens`);
  if (state.firstAt) parts.push(`first token ${(state.firstAt - state.started).toFixed(0)} ms`);
  if (state.tokens.length > 1 && state.firstAt) parts.push(`${((1000 * (state.tokens.length - 1)) / (performance.now() - state.firstAt)).toFixed(1)} tokens/s`);
  parts.push(`total ${ms.toFixed(0)} ms`);
  $('stats').textContent = parts.join(' · ');
  if (e.novelty) showNovelty(e.novelty);
}

function showNovelty(nov) {
  const head = $('novelty').querySelector('thead tr');
  const row = $('novelty').querySelector('tbody tr');
  head.replaceChildren(head.firstElementChild, ...nov.ngrams.map((g) => Object.assign(document.createElement('th'), { textContent: g.n })));
  row.replaceChildren(
    row.firstElementChild,
    ...nov.ngrams.map((g) => Object.assign(document.createElement('td'), { textContent: g.novel === null ? '-' : `${(100 * g.novel).toFixed(0)}%` })),
  );
  const c = nov.longest_copy;
  $('copy').textContent = c && c.length > 0 ? `Longest copy: ${c.length} ${nov.unit} at corpus offset ${c.offset}: ${JSON.stringify(c.text)}` : 'Nothing copied.';
  $('novelty').hidden = false;
  if (!c || c.length === 0) return;
  // Highlight the tokens the copied span covers (its first place in the output).
  const from = state.text.indexOf(c.text);
  if (from < 0) return;
  const to = from + c.text.length;
  for (const span of state.tokens) {
    const s = Number(span.dataset.start);
    if (s < to && s + span.textContent.length > from && span.textContent.length > 0) span.classList.add('copied');
  }
}

init().catch((e) => showError(e.message));
