/** The command line: real runs of the entry point, exit codes, and messages for mistakes. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { UserError } from '../../src/errors.ts';
import { writeSafetensors } from '../../src/io/safetensors.ts';
import { randomRwkv4 } from '../../src/models/random.ts';
import { runCommand as run } from '../helpers/cli.ts';
import { needsShared, shared, tmpDir } from '../helpers/shared.ts';

async function fails(args: string[], pattern: RegExp): Promise<void> {
  await assert.rejects(run(args), (e: unknown) => {
    assert.ok(e instanceof UserError, `expected a UserError, got ${e}`);
    assert.match(`${e.message} ${e.hint ?? ''}`, pattern);
    return true;
  });
}

const dir = tmpDir();
const model = join(dir, 'random.safetensors');
writeSafetensors(model, randomRwkv4({ nLayer: 2, nEmbd: 32, nVocab: 256, seed: 5 }), {
  dtype: 'f32',
});

describe('cli', () => {
  test('the entry point: exit 0, 2 for a mistake with a hint, never a stack trace', () => {
    const main = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
    const node = (args: string[]) =>
      spawnSync(process.execPath, ['--import', 'tsx', main, ...args], {
        encoding: 'utf8',
        timeout: 60_000,
      });
    const ok = node(['info', model]);
    assert.equal(ok.status, 0, ok.stderr);
    assert.match(ok.stdout, /architecture\s+rwkv4/);
    const bad = node(['info', join(dir, 'nope.pth')]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /nope\.pth: no such file/);
    assert.doesNotMatch(bad.stderr, /\n\s+at /);
    const unknown = node(['frobnicate']);
    assert.equal(unknown.status, 2);
    assert.match(unknown.stderr, /unknown command "frobnicate"/);
  });

  test('info reports dimensions and parameters', async () => {
    const { out } = await run(['info', model]);
    assert.match(out, /layers\s+2/);
    assert.match(out, /n_embd\s+32/);
    assert.match(out, /vocabulary\s+256/);
    // 256·32 emb + head, 2 blocks of 7 d×d-sized layers (4 + 1 + 4 + 4 = 13 d²) and vectors.
    const params = Number(/parameters\s+([\d,]+)/.exec(out)![1].replaceAll(',', ''));
    const d = 32;
    const expected = 2 * 256 * d + 2 * (13 * d * d + 11 * d) + 2 * d + 2 * d;
    assert.equal(params, expected);
  });

  test('logits: sequence and step modes write the same float32 rows', async () => {
    const a = join(dir, 'a.f32');
    const b = join(dir, 'b.f32');
    await run(['logits', model, '--text', 'hey you', '--out', a]);
    await run([
      'logits',
      model,
      '--tokens',
      '104,101,121,32,121,111,117',
      '--out',
      b,
      '--mode',
      'step',
    ]);
    const fa = new Float32Array(readFileSync(a).buffer.slice(0));
    const fb = new Float32Array(readFileSync(b).buffer.slice(0));
    assert.equal(fa.length, 7 * 256);
    let worst = 0;
    for (let i = 0; i < fa.length; i++) worst = Math.max(worst, Math.abs(fa[i] - fb[i]));
    assert.ok(worst < 1e-4, `max diff ${worst}`);
  });

  test('generate is deterministic for a seed', async () => {
    const args = ['generate', model, '--prompt', 'ab', '--tokens', '20', '--seed', '9'];
    const x = await run(args);
    const y = await run(args);
    assert.equal(x.out, y.out);
    assert.ok(x.out.startsWith('ab'));
    assert.match(x.err, /tokens\/s/);
  });

  test('perplexity of a text and of JSON lines', async () => {
    const txt = join(dir, 't.txt');
    writeFileSync(txt, 'the quick brown fox jumps over the lazy dog '.repeat(5));
    const { out } = await run(['perplexity', model, txt, '--ctx', '64']);
    const nll = Number(/mean NLL ([\d.]+)/.exec(out)![1]);
    // An untrained byte model: close to the uniform ln 256 ≈ 5.545, certainly finite.
    assert.ok(nll > 3 && nll < 9, `nll ${nll}`);
    const jl = join(dir, 't.jsonl');
    writeFileSync(jl, '{"text": "a b c"}\n{"text": 5}\n');
    await fails(['perplexity', model, jl], /t\.jsonl:2: no string field "text"/);
  });

  test('mistakes get clear errors', async () => {
    await fails(['info'], /missing MODEL/);
    await fails(['info', model, '--bogus'], /unknown option --bogus/);
    await fails(['generate', model], /--prompt TEXT is required/);
    await fails(
      ['generate', model, '--prompt', 'x', '--tokens', 'many'],
      /--tokens many: expected a whole number/,
    );
    await fails(
      ['logits', model, '--tokens', '1,999', '--out', join(dir, 'x')],
      /item 2 \("999"\)/,
    );
    await fails(
      ['logits', model, '--text', 'a', '--tokens', '1', '--out', join(dir, 'x')],
      /exactly one of/,
    );
    await fails(
      ['info', model, '--backend', 'gpu'],
      /--backend gpu: expected one of auto, native, wasm, js/,
    );
    const latin1 = join(dir, 'latin1.txt');
    writeFileSync(latin1, Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x6f, 0x6b]));
    await fails(['perplexity', model, latin1], /latin1\.txt.*byte offset 3/);
    const garbage = join(dir, 'garbage.bin');
    writeFileSync(garbage, 'this is not a model at all');
    await fails(['info', garbage], /not a checkpoint format/);
    await fails(['convert', model, model.replace('.safetensors', '.safetensors')], /same file/);
  });

  test('calibrate writes a run directory; --thresholds is used by perplexity and refused for another model', async () => {
    const txt = join(dir, 'cal.txt');
    writeFileSync(txt, 'a model of sparse activations and their thresholds, '.repeat(40));
    const out = join(dir, 'run');
    const cal = await run([
      'calibrate',
      model,
      '--data',
      txt,
      '--ctx',
      '32',
      '--windows',
      '4',
      '--loss-inc',
      '1.01',
      '--out',
      out,
    ]);
    assert.match(cal.out, /sparsity, MAC-weighted over block sites: [\d.]+% \(natural [\d.]+%\)/);
    assert.match(cal.out, /the authors' way/);
    const dense = await run(['perplexity', model, txt, '--ctx', '32']);
    const sparse = await run([
      'perplexity',
      model,
      txt,
      '--ctx',
      '32',
      '--thresholds',
      join(out, 'thresholds.json'),
    ]);
    assert.notEqual(dense.out, sparse.out);
    await fails(
      ['calibrate', model, '--data', txt, '--ctx', '32', '--windows', '4', '--out', out],
      /already holds/,
    );
    const other = join(dir, 'other.safetensors');
    writeSafetensors(other, randomRwkv4({ nLayer: 2, nEmbd: 32, nVocab: 256, seed: 6 }), {
      dtype: 'f32',
    });
    await fails(
      ['generate', other, '--prompt', 'x', '--thresholds', join(out, 'thresholds.json')],
      /other weights/,
    );
    await fails(
      ['calibrate', model, '--out', join(dir, 'r2'), '--method', 'magic'],
      /--method magic/,
    );
  });

  test(
    'a tokenizer that does not fit the model is refused',
    needsShared('tokenizers/20B_tokenizer.json'),
    async () => {
      await fails(
        [
          'generate',
          model,
          '--prompt',
          'x',
          '--tokenizer',
          shared('tokenizers/20B_tokenizer.json'),
        ],
        /50277.*256|256.*50277/,
      );
    },
  );
});
