// The official `openai` and `@anthropic-ai/sdk` npm SDKs against the gateway,
// once per provider behind it (each alias is served by a mock speaking that
// provider's wire format: see tests/integration/mock_dialects.py).
//   node tests/sdk/providers_sdk_test.mjs http://127.0.0.1:PORT sk-gw-... alias:provider ...
// stdout: only "N passed, N failed"; progress on stderr.
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';

const [gatewayURL, apiKey, ...aliases] = process.argv.slice(2);
if (!gatewayURL || !apiKey || aliases.length === 0) {
  console.error('usage: providers_sdk_test.mjs GATEWAY_URL VIRTUAL_KEY alias:provider...');
  console.log('0 passed, 1 failed');
  process.exit(2);
}
const root = gatewayURL.replace(/\/+$/, '');
// maxRetries: 0 so that a gateway error is seen, not retried away.
const openai = new OpenAI({ baseURL: root + '/v1', apiKey, maxRetries: 0, timeout: 20000 });
const anthropic = new Anthropic({ baseURL: root, apiKey, maxRetries: 0, timeout: 20000 });
// Anthropic SDKs may authenticate with a bearer token as well
const anthropicBearer = new Anthropic({ baseURL: root, authToken: apiKey, apiKey: null, maxRetries: 0, timeout: 20000 });

function assert(cond, msg) { if (!cond) throw new Error('assertion failed: ' + msg); }
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const WEATHER_ARGS = { city: 'Paris', unit: 'celsius' };
const oaiTools = [{
  type: 'function',
  function: {
    name: 'get_weather', description: 'Weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string' } }, required: ['city'] },
  },
}];
const anTools = [{
  name: 'get_weather', description: 'Weather for a city',
  input_schema: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string' } }, required: ['city'] },
}];

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

async function expectError(fn, Cls, status, what) {
  try {
    await fn();
  } catch (e) {
    assert(e instanceof Cls, `${what}: got ${e?.constructor?.name} ${e?.status}: ${e?.message}`);
    assert(e.status === status, `${what}: status ${e.status}, want ${status}`);
    return e;
  }
  throw new Error(`${what}: no error raised`);
}

for (const spec of aliases) {
  const [model, provider] = spec.split(':');
  // translated pairs end a broken provider stream with an error event the SDK raises
  const oaiTranslated = !['openai_compatible', 'azure', 'openai'].includes(provider);
  const anTranslated = provider !== 'anthropic';

  // ---------------- OpenAI SDK ----------------
  test(`${provider}: openai chat`, async () => {
    const { data, response } = await openai.chat.completions.create({
      model, temperature: 0.2, max_tokens: 200, stop: ['END'],
      messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hello there' },
                 { role: 'assistant', content: 'hi' }, { role: 'user', content: 'hello again MOCK_CACHED=2' }],
    }).withResponse();
    assert(response.headers.get('x-gateway-provider') === provider, `provider header ${response.headers.get('x-gateway-provider')}`);
    const msg = data.choices[0].message;
    assert(msg.role === 'assistant' && msg.content.includes('reply to: hello again'), `content ${JSON.stringify(msg)}`);
    assert(data.choices[0].finish_reason === 'stop', `finish ${data.choices[0].finish_reason}`);
    assert(data.usage.prompt_tokens > 0 && data.usage.completion_tokens > 0, `usage ${JSON.stringify(data.usage)}`);
    assert(data.usage.total_tokens === data.usage.prompt_tokens + data.usage.completion_tokens, 'total');
    assert(data.usage.prompt_tokens_details?.cached_tokens === 2 || provider === 'ollama', `cached ${JSON.stringify(data.usage)}`);
    assert(Number(response.headers.get('x-gateway-cost-usd')) >= 0, 'cost header');
  });

  test(`${provider}: openai stream with usage`, async () => {
    const stream = await openai.chat.completions.create({
      model, stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'stream this MOCK_CHUNKS=4' }],
    });
    let text = '', usage = null, finish = null, chunks = 0;
    for await (const c of stream) {
      chunks++;
      assert(c.object === 'chat.completion.chunk', `chunk ${JSON.stringify(c)}`);
      if (c.choices?.length) {
        text += c.choices[0].delta?.content ?? '';
        finish = c.choices[0].finish_reason ?? finish;
      }
      if (c.usage) usage = c.usage;
    }
    assert(chunks >= 4, `only ${chunks} chunks`);
    assert(text.includes('reply to: stream this MOCK_CHUNKS=4'), `text ${JSON.stringify(text)}`);
    assert(finish === 'stop', `finish ${finish}`);
    assert(usage && usage.prompt_tokens > 0 && usage.completion_tokens > 0, `usage ${JSON.stringify(usage)}`);
  });

  test(`${provider}: openai tool round trip`, async () => {
    const messages = [{ role: 'user', content: 'what is the weather? MOCK_TOOL' }];
    const r1 = await openai.chat.completions.create({ model, messages, tools: oaiTools, tool_choice: 'auto' });
    const c = r1.choices[0];
    assert(c.finish_reason === 'tool_calls', `finish ${c.finish_reason}`);
    const call = c.message.tool_calls?.[0];
    assert(call && call.function.name === 'get_weather' && call.id, `call ${JSON.stringify(c.message)}`);
    assert(same(JSON.parse(call.function.arguments), WEATHER_ARGS), `args ${call.function.arguments}`);
    messages.push(c.message, { role: 'tool', tool_call_id: call.id, content: 'sunny 21C' });
    const r2 = await openai.chat.completions.create({ model, messages, tools: oaiTools });
    assert(r2.choices[0].message.content.includes('tool said: sunny 21C'), `reply ${JSON.stringify(r2.choices[0].message)}`);
  });

  test(`${provider}: openai streamed tool call`, async () => {
    const stream = await openai.chat.completions.create({
      model, stream: true, tools: oaiTools, messages: [{ role: 'user', content: 'weather please MOCK_TOOL' }],
    });
    let args = '', name = null, id = null, finish = null;
    for await (const c of stream) {
      const d = c.choices?.[0]?.delta;
      for (const tc of d?.tool_calls ?? []) {
        if (tc.function?.name) name = tc.function.name;
        if (tc.id) id = tc.id;
        args += tc.function?.arguments ?? '';
      }
      finish = c.choices?.[0]?.finish_reason ?? finish;
    }
    assert(name === 'get_weather' && id, `name ${name} id ${id}`);
    assert(same(JSON.parse(args), WEATHER_ARGS), `args ${args}`);
    assert(finish === 'tool_calls', `finish ${finish}`);
  });

  test(`${provider}: openai errors mapped`, async () => {
    const mk = (st) => () => openai.chat.completions.create({ model, messages: [{ role: 'user', content: `x MOCK_STATUS=${st}` }] });
    const e400 = await expectError(mk(400), OpenAI.BadRequestError, 400, '400');
    assert(String(e400.message).includes('mock upstream answered 400'), `400 message ${e400.message}`);
    await expectError(mk(429), OpenAI.RateLimitError, 429, '429');
    await expectError(mk(503), OpenAI.InternalServerError, 502, '503');
  });

  if (oaiTranslated) {
    test(`${provider}: openai truncated stream raises`, async () => {
      const stream = await openai.chat.completions.create({
        model, stream: true, messages: [{ role: 'user', content: 'cut MOCK_TRUNCATE MOCK_CHUNKS=3' }],
      });
      try {
        for await (const c of stream) void c;
      } catch (e) {
        assert(/ended before|stream/.test(String(e.message)), `message ${e.message}`);
        return;
      }
      throw new Error('a truncated stream ended cleanly');
    });
  }

  if (['gemini', 'ollama', 'openai_compatible', 'azure'].includes(provider)) {
    test(`${provider}: openai embeddings`, async () => {
      if (provider === 'openai_compatible' || provider === 'azure') return;   // pass-through: covered by openai_sdk_test
      // the SDK asks for base64 and decodes it; then plain floats when asked for
      const r = await openai.embeddings.create({ model, input: ['alpha', 'beta'] });
      assert(r.data.length === 2 && r.data[1].index === 1, `data ${JSON.stringify(r).slice(0, 300)}`);
      assert(r.data[0].embedding.length === 8 && r.data[0].embedding.every((x) => x >= -1 && x <= 1), `vector ${r.data[0].embedding}`);
      const f = await openai.embeddings.create({ model, input: 'alpha', encoding_format: 'float' });
      assert(f.data[0].embedding.every((x, i) => Math.abs(x - r.data[0].embedding[i]) < 1e-6), 'float and base64 differ');
      assert(Number.isInteger(r.usage.prompt_tokens), `usage ${JSON.stringify(r.usage)}`);
    });
  }

  // ---------------- Anthropic SDK ----------------
  test(`${provider}: anthropic message`, async () => {
    const { data, response } = await anthropic.messages.create({
      model, max_tokens: 256, system: 'be brief', temperature: 0.5, stop_sequences: ['END'],
      messages: [{ role: 'user', content: 'hello there' }, { role: 'assistant', content: 'hi' },
                 { role: 'user', content: [{ type: 'text', text: 'hello again MOCK_CACHED=2' }] }],
    }).withResponse();
    assert(response.headers.get('x-gateway-provider') === provider, 'provider header');
    assert(data.type === 'message' && data.role === 'assistant', `message ${JSON.stringify(data)}`);
    assert(data.content[0].type === 'text' && data.content[0].text.includes('reply to: hello again'), `content ${JSON.stringify(data.content)}`);
    assert(data.stop_reason === 'end_turn', `stop ${data.stop_reason}`);
    assert(data.usage.input_tokens > 0 && data.usage.output_tokens > 0, `usage ${JSON.stringify(data.usage)}`);
    assert(data.usage.cache_read_input_tokens === 2 || provider === 'ollama', `cached ${JSON.stringify(data.usage)}`);
  });

  test(`${provider}: anthropic bearer auth`, async () => {
    const m = await anthropicBearer.messages.create({ model, max_tokens: 64, messages: [{ role: 'user', content: 'bearer hello' }] });
    assert(m.content[0].text.includes('bearer hello'), `content ${JSON.stringify(m.content)}`);
  });

  test(`${provider}: anthropic stream`, async () => {
    const stream = anthropic.messages.stream({
      model, max_tokens: 256, messages: [{ role: 'user', content: 'stream this MOCK_CHUNKS=4' }],
    });
    let deltas = 0;
    stream.on('text', () => { deltas++; });
    const m = await stream.finalMessage();
    const text = m.content.filter((b) => b.type === 'text').map((b) => b.text).join('');
    assert(text.includes('reply to: stream this MOCK_CHUNKS=4'), `text ${JSON.stringify(text)}`);
    assert(deltas >= 2, `only ${deltas} text deltas`);
    assert(m.stop_reason === 'end_turn', `stop ${m.stop_reason}`);
    assert(m.usage.output_tokens > 0, `usage ${JSON.stringify(m.usage)}`);
    assert(m.usage.input_tokens > 0, `input usage ${JSON.stringify(m.usage)}`);
  });

  test(`${provider}: anthropic tool round trip`, async () => {
    const messages = [{ role: 'user', content: 'what is the weather? MOCK_TOOL' }];
    const r1 = await anthropic.messages.create({ model, max_tokens: 256, messages, tools: anTools });
    assert(r1.stop_reason === 'tool_use', `stop ${r1.stop_reason}`);
    const tu = r1.content.find((b) => b.type === 'tool_use');
    assert(tu && tu.name === 'get_weather' && tu.id && same(tu.input, WEATHER_ARGS), `tool_use ${JSON.stringify(r1.content)}`);
    messages.push({ role: 'assistant', content: r1.content },
                  { role: 'user', content: [{ type: 'tool_result', tool_use_id: tu.id, content: 'sunny 21C' }] });
    const r2 = await anthropic.messages.create({ model, max_tokens: 256, messages, tools: anTools });
    assert(r2.content[0].text.includes('tool said: sunny 21C'), `reply ${JSON.stringify(r2.content)}`);
  });

  test(`${provider}: anthropic streamed tool call`, async () => {
    const stream = anthropic.messages.stream({
      model, max_tokens: 256, tools: anTools, messages: [{ role: 'user', content: 'weather please MOCK_TOOL' }],
    });
    const m = await stream.finalMessage();
    const tu = m.content.find((b) => b.type === 'tool_use');
    assert(tu && tu.name === 'get_weather' && same(tu.input, WEATHER_ARGS), `content ${JSON.stringify(m.content)}`);
    assert(m.stop_reason === 'tool_use', `stop ${m.stop_reason}`);
  });

  test(`${provider}: anthropic errors mapped`, async () => {
    const mk = (st) => () => anthropic.messages.create({ model, max_tokens: 16, messages: [{ role: 'user', content: `x MOCK_STATUS=${st}` }] });
    const e400 = await expectError(mk(400), Anthropic.BadRequestError, 400, '400');
    assert(e400.error?.type === 'error' && e400.error?.error?.type === 'invalid_request_error', `shape ${JSON.stringify(e400.error)}`);
    assert(String(e400.message).includes('mock upstream answered 400'), `400 message ${e400.message}`);
    await expectError(mk(429), Anthropic.RateLimitError, 429, '429');
    await expectError(mk(503), Anthropic.InternalServerError, 502, '503');
  });

  if (anTranslated) {
    test(`${provider}: anthropic truncated stream raises`, async () => {
      const stream = anthropic.messages.stream({ model, max_tokens: 64, messages: [{ role: 'user', content: 'cut MOCK_TRUNCATE' }] });
      try {
        await stream.finalMessage();
      } catch (e) {
        assert(/ended before|stream/.test(String(e.message)), `message ${e.message}`);
        return;
      }
      throw new Error('a truncated stream ended cleanly');
    });
  }
}

test('anthropic: bad key is an authentication_error', async () => {
  const bad = new Anthropic({ baseURL: root, apiKey: 'sk-gw-' + 'x'.repeat(43), maxRetries: 0, timeout: 20000 });
  const [model] = aliases[0].split(':');
  const e = await expectError(() => bad.messages.create({ model, max_tokens: 8, messages: [{ role: 'user', content: 'x' }] }),
    Anthropic.AuthenticationError, 401, 'bad key');
  assert(e.error?.error?.type === 'authentication_error', `shape ${JSON.stringify(e.error)}`);
});

test('anthropic: missing max_tokens is a 400 in Anthropic shape', async () => {
  const res = await fetch(root + '/v1/messages', {
    method: 'POST',
    headers: { 'x-api-key': apiKey, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    body: JSON.stringify({ model: aliases[0].split(':')[0], messages: [{ role: 'user', content: 'x' }] }),
  });
  const body = await res.json();
  assert(res.status === 400 && body.type === 'error' && body.error.type === 'invalid_request_error', `got ${res.status} ${JSON.stringify(body)}`);
});

let passed = 0, failed = 0;
for (const { name, fn } of tests) {
  try {
    await fn();
    passed++;
    console.error(`ok - ${name}`);
  } catch (e) {
    failed++;
    console.error(`not ok - ${name}: ${e?.stack || e}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
