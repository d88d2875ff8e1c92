// The official `openai` npm SDK's Responses API (client.responses.*) against
// the gateway, once per provider behind it (each alias is served by a mock
// speaking that provider's wire format: see tests/integration/mock_dialects.py)
// and once through the built-in mock provider.
//   node tests/sdk/responses_sdk_test.mjs http://127.0.0.1:PORT sk-gw-... alias:provider ...
// stdout: only "N passed, N failed"; progress on stderr.
import OpenAI from 'openai';

const [gatewayURL, apiKey, ...aliases] = process.argv.slice(2);
if (!gatewayURL || !apiKey || aliases.length === 0) {
  console.error('usage: responses_sdk_test.mjs GATEWAY_URL VIRTUAL_KEY alias:provider...');
  console.log('0 passed, 1 failed');
  process.exit(2);
}
const root = gatewayURL.replace(/\/+$/, '');
// maxRetries: 0 so that a gateway error is seen, not retried away.
const openai = new OpenAI({ baseURL: root + '/v1', apiKey, maxRetries: 0, timeout: 20000 });

function assert(cond, msg) { if (!cond) throw new Error('assertion failed: ' + msg); }
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const WEATHER_ARGS = { city: 'Paris', unit: 'celsius' };
const tools = [{
  type: 'function', name: 'get_weather', description: 'Weather for a city', strict: false,
  parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string' } }, required: ['city'] },
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

// The text of a response's message items (the SDK adds output_text only to some answers).
const textOf = (r) => r.output.filter((o) => o.type === 'message').flatMap((o) => o.content)
  .filter((c) => c.type === 'output_text').map((c) => c.text).join('');

// Collects a stream's events and checks what every Responses stream must hold.
async function drain(stream) {
  const events = [];
  for await (const ev of stream) events.push(ev);
  events.forEach((ev, i) => assert(ev.sequence_number === i, `sequence_number ${ev.sequence_number} at ${i}`));
  assert(events[0]?.type === 'response.created', `first event ${events[0]?.type}`);
  assert(events[1]?.type === 'response.in_progress', `second event ${events[1]?.type}`);
  return events;
}

for (const spec of aliases) {
  const [model, provider] = spec.split(':');
  const cachedOk = provider !== 'ollama' && provider !== 'mock';   // ollama and the mock report no cached tokens

  test(`${provider}: responses.create`, async () => {
    const { data, response } = await openai.responses.create({
      model, instructions: 'be brief', temperature: 0.2, max_output_tokens: 200, metadata: { run: 'sdk' },
      input: [{ role: 'user', content: 'hello there' }, { role: 'assistant', content: 'hi' },
              { role: 'user', content: [{ type: 'input_text', text: 'hello again MOCK_CACHED=2' }] }],
    }).withResponse();
    assert(response.headers.get('x-gateway-provider') === provider, `provider header ${response.headers.get('x-gateway-provider')}`);
    assert(Number(response.headers.get('x-gateway-cost-usd')) >= 0, 'cost header');
    assert(data.object === 'response' && data.id.startsWith('resp_'), `object ${data.object} ${data.id}`);
    assert(data.status === 'completed' && data.incomplete_details === null, `status ${data.status}`);
    const want = provider === 'mock' ? 'You said: hello again' : 'reply to: hello again';
    assert(data.output_text.includes(want), `output_text ${JSON.stringify(data.output_text)}`);
    const msg = data.output[0];
    assert(msg.type === 'message' && msg.role === 'assistant' && msg.content[0].type === 'output_text', `item ${JSON.stringify(msg)}`);
    assert(same(msg.content[0].annotations, []), 'annotations');
    const u = data.usage;
    assert(u.input_tokens > 0 && u.output_tokens > 0 && u.total_tokens === u.input_tokens + u.output_tokens, `usage ${JSON.stringify(u)}`);
    assert(!cachedOk || u.input_tokens_details.cached_tokens === 2, `cached ${JSON.stringify(u)}`);
    assert(u.output_tokens_details.reasoning_tokens === 0, 'reasoning tokens');
    assert(data.instructions === 'be brief' && data.temperature === 0.2 && data.max_output_tokens === 200, 'echo');
    assert(same(data.metadata, { run: 'sdk' }) && data.store === true, `metadata/store ${JSON.stringify(data.metadata)}`);
  });

  test(`${provider}: responses stream`, async () => {
    const events = await drain(await openai.responses.create({
      model, stream: true, input: 'stream this MOCK_CHUNKS=4',
    }));
    const deltas = events.filter((e) => e.type === 'response.output_text.delta');
    const text = deltas.map((e) => e.delta).join('');
    assert(deltas.length >= 2 || provider === 'mock', `only ${deltas.length} deltas`);
    const done = events.find((e) => e.type === 'response.output_text.done');
    assert(done && done.text === text, `done ${JSON.stringify(done)} vs ${JSON.stringify(text)}`);
    const types = events.map((e) => e.type);
    for (const t of ['response.output_item.added', 'response.content_part.added', 'response.content_part.done', 'response.output_item.done'])
      assert(types.includes(t), `no ${t} in ${types}`);
    const last = events[events.length - 1];
    assert(last.type === 'response.completed', `last ${last.type}`);
    assert(textOf(last.response) === text, 'final text');
    assert(last.response.usage.input_tokens > 0 && last.response.usage.output_tokens > 0, `usage ${JSON.stringify(last.response.usage)}`);
    assert(text.includes(provider === 'mock' ? 'You said: stream this' : 'reply to: stream this'), `text ${JSON.stringify(text)}`);
  });

  test(`${provider}: responses.stream helper`, async () => {
    const stream = openai.responses.stream({ model, input: 'helper MOCK_CHUNKS=3' });
    let deltas = '';
    stream.on('response.output_text.delta', (e) => { deltas += e.delta; });
    const final = await stream.finalResponse();
    assert(final.status === 'completed' && textOf(final) === deltas && deltas.length > 0, `final ${JSON.stringify(textOf(final))} vs ${JSON.stringify(deltas)}`);
  });

  if (provider === 'mock') continue;   // the mock provider has no tools and no failure directives

  test(`${provider}: tool round trip with previous_response_id`, async () => {
    const r1 = await openai.responses.create({ model, tools, tool_choice: 'auto', input: 'what is the weather? MOCK_TOOL' });
    const call = r1.output.find((o) => o.type === 'function_call');
    assert(call && call.name === 'get_weather' && call.call_id && call.status === 'completed', `output ${JSON.stringify(r1.output)}`);
    assert(same(JSON.parse(call.arguments), WEATHER_ARGS), `args ${call.arguments}`);
    assert(same(r1.tools.map((t) => t.name), ['get_weather']), 'tools echoed');
    const r2 = await openai.responses.create({
      model, tools, previous_response_id: r1.id,
      input: [{ type: 'function_call_output', call_id: call.call_id, output: 'sunny 21C' }],
    });
    assert(r2.output_text.includes('tool said: sunny 21C'), `reply ${JSON.stringify(r2.output)}`);
    assert(r2.previous_response_id === r1.id, 'previous_response_id echoed');
  });

  test(`${provider}: tool round trip with explicit history, store false`, async () => {
    const r1 = await openai.responses.create({ model, tools, store: false, input: 'weather? MOCK_TOOL' });
    const call = r1.output.find((o) => o.type === 'function_call');
    assert(call, `output ${JSON.stringify(r1.output)}`);
    const r2 = await openai.responses.create({
      model, tools, store: false,
      input: [{ role: 'user', content: 'weather? MOCK_TOOL' }, ...r1.output,
              { type: 'function_call_output', call_id: call.call_id, output: 'rain 12C' }],
    });
    assert(r2.output_text.includes('tool said: rain 12C'), `reply ${JSON.stringify(r2.output)}`);
    await expectError(() => openai.responses.retrieve(r1.id), OpenAI.NotFoundError, 404, 'store:false is not kept');
  });

  test(`${provider}: streamed tool call`, async () => {
    const events = await drain(await openai.responses.create({ model, stream: true, tools, input: 'weather please MOCK_TOOL' }));
    const added = events.find((e) => e.type === 'response.output_item.added' && e.item.type === 'function_call');
    assert(added && added.item.name === 'get_weather', `added ${JSON.stringify(added)}`);
    const args = events.filter((e) => e.type === 'response.function_call_arguments.delta').map((e) => e.delta).join('');
    const done = events.find((e) => e.type === 'response.function_call_arguments.done');
    assert(done && done.arguments === args && same(JSON.parse(args), WEATHER_ARGS), `args ${args}`);
    const last = events[events.length - 1];
    assert(last.type === 'response.completed', `last ${last.type}`);
    const fc = last.response.output.find((o) => o.type === 'function_call');
    assert(fc && fc.call_id === added.item.call_id && fc.arguments === args, `final ${JSON.stringify(last.response.output)}`);
  });

  test(`${provider}: retrieve, input_items and delete`, async () => {
    const r = await openai.responses.create({ model, input: 'keep me' });
    // two workers serve the gateway: every retrieve must find it whichever answers
    for (let i = 0; i < 6; i++) {
      const g = await openai.responses.retrieve(r.id);
      assert(g.id === r.id && textOf(g) === r.output_text && r.output_text.includes('keep me'), `retrieve ${JSON.stringify(g).slice(0, 200)}`);
    }
    const items = await openai.responses.inputItems.list(r.id);
    assert(items.data.length === 1 && items.data[0].content[0].text === 'keep me', `items ${JSON.stringify(items.data)}`);
    const d = await openai.responses.del(r.id);
    assert(d === undefined || d === '' || d.deleted === true || typeof d === 'object', `delete ${JSON.stringify(d)}`);
    await expectError(() => openai.responses.retrieve(r.id), OpenAI.NotFoundError, 404, 'deleted');
  });

  test(`${provider}: max_output_tokens stop is incomplete`, async () => {
    const r = await openai.responses.create({ model, input: 'long story MOCK_STOP=length' });
    assert(r.status === 'incomplete' && r.incomplete_details?.reason === 'max_output_tokens', `status ${r.status} ${JSON.stringify(r.incomplete_details)}`);
  });

  test(`${provider}: provider errors mapped`, async () => {
    const mk = (st) => () => openai.responses.create({ model, input: `x MOCK_STATUS=${st}` });
    const e400 = await expectError(mk(400), OpenAI.BadRequestError, 400, '400');
    assert(String(e400.message).includes('mock upstream answered 400'), `400 message ${e400.message}`);
    await expectError(mk(429), OpenAI.RateLimitError, 429, '429');
    await expectError(mk(503), OpenAI.InternalServerError, 502, '503');
  });

  test(`${provider}: truncated stream fails`, async () => {
    const stream = await openai.responses.create({ model, stream: true, input: 'cut MOCK_TRUNCATE MOCK_CHUNKS=3' });
    const seen = [];
    try {
      for await (const ev of stream) seen.push(ev.type);
    } catch (e) {
      assert(seen.includes('response.failed'), `events before the error ${seen}`);
      assert(!seen.includes('response.completed'), 'completed and failed');
      assert(/ended before|stream/.test(String(e.message)), `message ${e.message}`);
      return;
    }
    throw new Error(`a truncated stream ended cleanly: ${seen}`);
  });
}

// hostile or unsupported bodies: 400s in the OpenAI shape, naming the parameter
const model = aliases[0].split(':')[0];
const bad = [
  [{ model, input: 'x', tools: [{ type: 'web_search_preview' }] }, 'tools'],
  [{ model, input: [{ type: 'file_search_call', id: 'x' }] }, 'input'],
  [{ model, input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'file-1' }] }] }, 'input'],
  [{ model, input: 'x', temperature: 9 }, 'temperature'],
  [{ model, input: 'x', max_output_tokens: 0 }, 'max_output_tokens'],
  [{ model, input: 'x', text: { format: { type: 'json_schema', name: 'x' } } }, 'text.format.schema'],
  [{ model, input: 'x', metadata: { k: 1 } }, 'metadata'],
  [{ model, input: 'x', background: true }, 'background'],
  [{ model, input: 42 }, 'input'],
  [{ model }, 'input'],
];
for (const [body, param] of bad) {
  test(`hostile: ${JSON.stringify(body).slice(0, 80)} -> 400 ${param}`, async () => {
    const e = await expectError(() => openai.responses.create(body), OpenAI.BadRequestError, 400, param);
    assert(e.param === param, `param ${e.param}, want ${param}`);
  });
}
test('unknown previous_response_id -> 404', async () => {
  const e = await expectError(() => openai.responses.create({ model, input: 'x', previous_response_id: 'resp_nope' }),
    OpenAI.NotFoundError, 404, 'previous');
  assert(e.param === 'previous_response_id', `param ${e.param}`);
});

let passed = 0, failed = 0;
for (const t of tests) {
  try {
    await t.fn();
    passed++;
    console.error(`ok   ${t.name}`);
  } catch (e) {
    failed++;
    console.error(`FAIL ${t.name}: ${e?.stack || e}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
