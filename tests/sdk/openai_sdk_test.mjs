// The official `openai` npm SDK against the gateway.
//   node tests/sdk/openai_sdk_test.mjs http://127.0.0.1:PORT sk-gw-...
// stdout: only "N passed, N failed"; progress on stderr.
import OpenAI from 'openai';

const [gatewayURL, apiKey] = process.argv.slice(2);
if (!gatewayURL || !apiKey) {
  console.error('usage: openai_sdk_test.mjs GATEWAY_URL VIRTUAL_KEY');
  console.log('0 passed, 1 failed');
  process.exit(2);
}
const baseURL = gatewayURL.replace(/\/+$/, '') + '/v1';
// maxRetries: 0 so that a gateway error is seen, not retried away.
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 20000 });
const MODEL = process.env.SDK_TEST_MODEL || 'gpt-4o-mini';

function assert(cond, msg) { if (!cond) throw new Error('assertion failed: ' + msg); }

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

test('chat_completion_nonstreaming', async () => {
  const { data, response } = await client.chat.completions
    .create({ model: MODEL, messages: [{ role: 'user', content: 'hello from the sdk' }] })
    .withResponse();
  assert(response.status === 200, `status ${response.status}`);
  const msg = data.choices?.[0]?.message;
  assert(msg && msg.role === 'assistant', `message ${JSON.stringify(data)}`);
  assert(typeof msg.content === 'string' && msg.content.includes('hello from the sdk'),
    `content ${JSON.stringify(msg.content)}`);
  assert(Number.isInteger(data.usage?.total_tokens), `usage ${JSON.stringify(data.usage)}`);
  assert(response.headers.get('x-gateway-request-id'), 'no X-Gateway-Request-Id');
});

test('chat_completion_streaming', async () => {
  const stream = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'stream it MOCK_CHUNKS=4 MOCK_GAP_MS=20' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let chunks = 0;
  let usage = null;
  for await (const chunk of stream) {
    chunks++;
    assert(chunk.object === 'chat.completion.chunk', `chunk ${JSON.stringify(chunk)}`);
    if (chunk.choices?.length) text += chunk.choices[0].delta?.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  assert(chunks >= 4, `only ${chunks} chunks`);
  assert(text === 'chunk-0 chunk-1 chunk-2 chunk-3 ', `streamed text ${JSON.stringify(text)}`);
  assert(usage && Number.isInteger(usage.total_tokens), `usage ${JSON.stringify(usage)}`);
});

test('embeddings_default_base64', async () => {
  // The SDK asks for encoding_format: base64 by default and decodes it.
  const res = await client.embeddings.create({ model: 'text-embedding', input: ['alpha', 'beta'] });
  assert(res.data?.length === 2, `data ${JSON.stringify(res).slice(0, 300)}`);
  for (const d of res.data) {
    assert(Array.isArray(d.embedding) && d.embedding.length === 8, `embedding ${JSON.stringify(d.embedding)}`);
    assert(d.embedding.every((x) => typeof x === 'number' && x >= -1 && x <= 1), `values ${d.embedding}`);
  }
});

test('bad_key_raises_authentication_error', async () => {
  const bad = new OpenAI({ baseURL, apiKey: 'sk-gw-' + 'x'.repeat(43), maxRetries: 0, timeout: 20000 });
  try {
    await bad.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }] });
  } catch (e) {
    assert(e instanceof OpenAI.AuthenticationError, `got ${e?.constructor?.name}: ${e?.message}`);
    assert(e.status === 401, `status ${e.status}`);
    assert(typeof e.error?.message === 'string', `error body ${JSON.stringify(e.error)}`);
    return;
  }
  throw new Error('a bad key was accepted');
});

let passed = 0, failed = 0;
for (const { name, fn } of tests) {
  try {
    await fn();
    passed++;
    console.error(`ok - sdk ${name}`);
  } catch (e) {
    failed++;
    console.error(`FAIL - sdk ${name}: ${e?.stack || e}`);
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
