/** The log-likelihood scorer: lm-eval's token split, shared contexts equal to naive runs, greedy. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { encodeRequest, scoreNaive, scoreRequests } from '../../../src/eval/scorer.ts';
import { memoryCheckpoint } from '../../../src/io/memory.ts';
import { loadTokenizer } from '../../../src/io/tokenizer.ts';
import { sequenceLogits, step } from '../../../src/models/model.ts';
import { randomRwkv4 } from '../../../src/models/random.ts';
import { Rwkv4 } from '../../../src/models/rwkv4.ts';
import { jsBackend } from '../../../src/tensor/select.ts';
import { logitsOf } from '../../helpers/model.ts';
import { needsShared, shared } from '../../helpers/shared.ts';

const bytes = loadTokenizer('bytes');
const model = Rwkv4.load(
  memoryCheckpoint(randomRwkv4({ nLayer: 2, nEmbd: 32, nVocab: 256, seed: 21 })),
  jsBackend,
);

describe('scorer', () => {
  test('token split: prefix first, trailing context whitespace moves to the continuation', async () => {
    const e = encodeRequest({ context: 'Q: a?\nAnswer: ', continuation: 'yes' }, bytes);
    assert.deepEqual(e.context, [10, ...Buffer.from('Q: a?\nAnswer:')]);
    assert.deepEqual(e.continuation, [...Buffer.from(' yes')]);
    // An empty context is the prefix token alone.
    assert.deepEqual(encodeRequest({ context: '', continuation: 'x' }, bytes).context, [10]);
  });

  test(
    'NeoX: the continuation is whole[len(enc(context)):]',
    needsShared('tokenizers/20B_tokenizer.json'),
    async () => {
      const neox = loadTokenizer(shared('tokenizers/20B_tokenizer.json'));
      const req = { context: 'Question: What is 2+2?\nAnswer:', continuation: ' four' };
      const e = encodeRequest(req, neox);
      const whole = neox.encode(req.context + req.continuation);
      assert.equal(e.context[0], 187);
      assert.deepEqual([...e.context.slice(1), ...e.continuation], whole);
      assert.equal(neox.decode(e.continuation), ' four');
    },
  );

  test('shared-context scoring equals scoring every request whole', async () => {
    const reqs = [
      { context: 'The cat sat on the', continuation: ' mat' },
      { context: 'The cat sat on the', continuation: ' hat, then slept' },
      { context: 'The cat sat on the ', continuation: 'roof' },
      { context: 'Another context', continuation: ' x' },
      { context: '', continuation: 'empty context' },
    ];
    const a = await scoreRequests(model, bytes, reqs);
    const b = await scoreNaive(model, bytes, reqs);
    a.forEach((s, i) => {
      assert.ok(
        Math.abs(s.logLikelihood - b[i].logLikelihood) < 1e-4,
        `${i}: ${s.logLikelihood} vs ${b[i].logLikelihood}`,
      );
      assert.equal(s.greedy, b[i].greedy);
      assert.equal(s.tokens, b[i].tokens);
    });
    assert.ok(a.every((s) => s.logLikelihood < 0));
  });

  test('a request longer than the model takes is cut on the left, as lm-eval does', async () => {
    // The same weights, seen as a model of at most 8 positions.
    const short = Object.assign(Object.create(model), { maxContext: 8 }) as typeof model;
    const req = { context: 'a long context of many bytes', continuation: ' end' };
    const [got] = await scoreRequests(short, bytes, [req]);
    const all = [10, ...Buffer.from(req.context + req.continuation)];
    const input = all.slice(all.length - 9, -1);
    const logits = await logitsOf(model, input);
    let ll = 0;
    const V = 256;
    for (let i = 0; i < 4; i++) {
      const row = logits.subarray((input.length - 4 + i) * V, (input.length - 3 + i) * V);
      const max = Math.max(...row);
      const lse = max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0));
      ll += row[all[all.length - 4 + i]] - lse;
    }
    assert.ok(Math.abs(got.logLikelihood - ll) < 1e-4, `${got.logLikelihood} vs ${ll}`);
    assert.ok(
      Math.abs((await scoreNaive(short, bytes, [req]))[0].logLikelihood - got.logLikelihood) < 1e-4,
    );
    // A continuation longer than the model's context: its last 8 tokens are scored.
    const [long] = await scoreRequests(short, bytes, [
      { context: 'x', continuation: ' a continuation far too long' },
    ]);
    assert.equal(long.tokens, 8);
    assert.ok(Number.isFinite(long.logLikelihood));
  });

  test('greedy is true exactly when every continuation token is the argmax', async () => {
    // Generate the greedy continuation of a context, then score it and a changed copy.
    const ctx = 'Once upon a time';
    const state = model.newState();
    let logits = await sequenceLogits(model, [10, ...Buffer.from(ctx)], state, 'last');
    const gen: number[] = [];
    for (let i = 0; i < 6; i++) {
      const next = logits.indexOf(Math.max(...logits));
      gen.push(next);
      logits = await step(model, next, state);
    }
    // Keep to tokens that survive a UTF-8 round trip so the request text is exact.
    const text = Buffer.from(gen).toString('latin1');
    const cont = Buffer.from(text, 'latin1');
    const asBytes = { ...bytes, encode: (s: string) => [...Buffer.from(s, 'latin1')] };
    const [hit] = await scoreRequests(model, asBytes, [{ context: ctx, continuation: text }]);
    assert.equal(hit.tokens, cont.length);
    assert.equal(hit.greedy, true);
    const changed = String.fromCharCode(text.charCodeAt(0) ^ 1) + text.slice(1);
    const [miss] = await scoreRequests(model, asBytes, [{ context: ctx, continuation: changed }]);
    assert.equal(miss.greedy, false);
    assert.ok(miss.logLikelihood < hit.logLikelihood);
  });

  /** The window the scorer keeps: the last maxLength + 1 tokens and the continuation's. */
  const kept = (e: { context: number[]; continuation: number[] }, maxLength: number) => {
    const all = [...e.context, ...e.continuation];
    return { window: all.slice(-(maxLength + 1)), continuation: e.continuation };
  };
  /** Hostile contexts: long, with runs of spaces, digits, accents, emoji, no spaces at all. */
  const hostile = (n: number) => {
    const words = ['the', 'Zoë', '  ', '1234', 'naïve', '—', '🙂', 'x\ny', "it's", ' ', 'Ω'];
    let s = '';
    for (let i = 0; s.length < n; i++) s += words[(i * 7919) % words.length] + (i % 5 ? ' ' : '');
    return s;
  };

  for (const [name, file] of [
    ['bytes', null],
    ['neox', 'tokenizers/20B_tokenizer.json'],
    ['gpt2-fairseq', 'tokenizers/encoder.json'],
  ] as const) {
    test(
      `${name}: an over-long context is cut before tokenizing, the kept tokens unchanged`,
      file ? needsShared(file) : {},
      () => {
        const tok = file ? loadTokenizer(shared(file)) : bytes;
        const maxLength = 64;
        // [context, continuation, whether a safe cut exists far enough from the end]
        for (const [context, continuation, cuts] of [
          [hostile(40_000), ' answer', true],
          [`${'a'.repeat(30_000)} then words and more words`, ' end', name === 'bytes'],
          [hostile(9000).replaceAll(' ', ''), ' x', name === 'bytes'],
        ] as const) {
          const full = encodeRequest({ context, continuation }, tok);
          const cut = encodeRequest({ context, continuation }, tok, maxLength);
          assert.equal(cut.context.length < full.context.length, cuts);
          assert.deepEqual(kept(cut, maxLength), kept(full, maxLength));
        }
      },
    );
  }

  test('a hostile choice or an uncuttable tokenizer is refused in one line', () => {
    const long = 'y'.repeat(64 * 65 + 1);
    assert.throws(
      () => encodeRequest({ context: 'a', continuation: long }, bytes, 64),
      /a choice of 4,161 characters/,
    );
  });
});
