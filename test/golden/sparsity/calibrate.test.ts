/**
 * Calibration end to end on a small random model: the run directory, kill-and-resume,
 * the thresholds file (round trip, refused for another model), the statistics, the
 * data pipeline and its errors.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { brownDocuments, detag } from '../../../src/data/brown.ts';
import { splitDocuments } from '../../../src/data/documents.ts';
import { tokenWindows } from '../../../src/data/windows.ts';
import { UserError } from '../../../src/errors.ts';
import { readThresholds } from '../../../src/formats/thresholds.ts';
import { memoryCheckpoint } from '../../../src/io/memory.ts';
import { loadTokenizer } from '../../../src/io/tokenizer.ts';
import { randomRwkv4 } from '../../../src/models/random.ts';
import { Rwkv4 } from '../../../src/models/rwkv4.ts';
import { type CalibrationConfig, calibrate } from '../../../src/sparsity/calibrate.ts';
import { applyThresholds, macWeighted, measureSparsity } from '../../../src/sparsity/plan.ts';
import {
  perTokenQuantileThresholds,
  pooledQuantileThresholds,
  quantileSorted,
} from '../../../src/sparsity/quantile.ts';
import { jsBackend } from '../../../src/tensor/select.ts';
import { rng } from '../../../src/util/random.ts';
import { tmpDir } from '../../helpers/shared.ts';

const dir = tmpDir();
const text = join(dir, 'corpus.jsonl');
// 12 documents of English-like text: 11 for calibration, the last one held out.
const words =
  'the of and to in is was that for it with as his on be at by had are but from or have an they which'.split(
    ' ',
  );
const r = rng(3);
writeFileSync(
  text,
  Array.from({ length: 12 }, (_, d) =>
    JSON.stringify({
      text:
        Array.from({ length: 60 }, () => words[Math.floor(r() * words.length)]).join(' ') +
        ` doc${d}.`,
    }),
  ).join('\n'),
);
const bytes = loadTokenizer('bytes');
const model = (seed = 9) =>
  Rwkv4.load(memoryCheckpoint(randomRwkv4({ nLayer: 2, nEmbd: 32, nVocab: 256, seed })), jsBackend);
const cfg: CalibrationConfig = {
  method: 'paper',
  data: text,
  docs: 11,
  ctx: 48,
  windows: 6,
  seed: 1,
  statistic: 'per-token',
  lossInc: 1.01,
  grid: 'linear',
  startK: 0.9,
  kNum: 10,
  faithful: false,
  keep: 0.5,
  targetSparsity: 0.5,
};
const source = { file: 'random', fileSha256: '0', tool: { name: 'actsparse', version: 'test' } };
const files = (d: string) =>
  ['thresholds.json', 'calibration.csv', 'config.json'].map((f) =>
    readFileSync(join(d, f), 'utf8'),
  );

describe('calibrate (paper method) on a random model', () => {
  const full = join(dir, 'full');
  let plan: Awaited<ReturnType<typeof calibrate>>['plan'];
  before(async () => {
    plan = (await calibrate(model(), bytes, source, cfg, full, { resume: false })).plan;
  });

  test('thresholds.json describes every site, measured sparsity, loss within the budget', async () => {
    assert.equal(plan.sites.length, 14);
    assert.equal(plan.model.architecture, 'rwkv4');
    assert.equal(plan.data.windows, 6);
    // Each accepted step grows the loss by < loss_inc: the total is bounded by loss_inc^sites.
    assert.ok(plan.results.lossGrowth < 1.01 ** 14, `growth ${plan.results.lossGrowth}`);
    assert.ok(plan.results.sparsity.macWeighted > plan.results.sparsity.naturalMacWeighted);
    for (const s of plan.sites)
      if (s.k < 1) assert.ok(s.lambda > 0 && s.sparsity > 0.05, JSON.stringify(s));
    assert.ok(plan.results.work.blockTokens < plan.results.work.authorsBlockTokens);
    const csv = readFileSync(join(full, 'calibration.csv'), 'utf8').trim().split('\n');
    assert.equal(csv[0], 'block,site,k,lambda,loss,ratio,accepted');
    assert.equal(csv.length - 1, plan.results.work.lossEvaluations);
  });

  test('kill and resume: a journal cut after some sites (and mid-line) finishes byte-identically', async () => {
    const cut = join(dir, 'cut');
    await calibrate(model(), bytes, source, cfg, cut, { resume: false });
    // Simulate a kill after 5 sites, the 6th line half written, no outputs yet.
    const journal = readFileSync(join(cut, 'journal.jsonl'), 'utf8').split('\n');
    writeFileSync(
      join(cut, 'journal.jsonl'),
      `${journal.slice(0, 6).join('\n')}\n${journal[6].slice(0, 40)}`,
    );
    for (const f of ['thresholds.json', 'calibration.csv', 'config.json']) rmSync(join(cut, f));
    await assert.rejects(
      () => calibrate(model(), bytes, source, cfg, cut, { resume: false }),
      /unfinished calibration/,
    );
    const { decidedNow } = await calibrate(model(), bytes, source, cfg, cut, { resume: true });
    assert.equal(decidedNow, 14 - 5);
    assert.deepEqual(files(cut), files(full));
  });

  test('a finished run is never overwritten; resume with another configuration is refused', async () => {
    await assert.rejects(
      () => calibrate(model(), bytes, source, cfg, full, { resume: false }),
      /already holds/,
    );
    const other = join(dir, 'other');
    await calibrate(model(), bytes, source, { ...cfg, method: 'none' }, other, { resume: false });
    rmSync(join(other, 'thresholds.json'));
    await assert.rejects(
      () => calibrate(model(), bytes, source, cfg, other, { resume: true }),
      /another model, data or configuration/,
    );
  });

  test('the thresholds file round-trips and reproduces the measured sparsity', async () => {
    const m = model();
    const read = readThresholds(join(full, 'thresholds.json'));
    assert.deepEqual(read, plan);
    applyThresholds(m, read, 'thresholds.json');
    assert.deepEqual(
      Array.from(m.thresholds),
      plan.sites.map((s) => Math.fround(s.lambda)),
    );
  });

  test('a thresholds file made for other weights or another shape is refused', async () => {
    const read = readThresholds(join(full, 'thresholds.json'));
    assert.throws(() => applyThresholds(model(10), read, 't.json'), /made for other weights/);
    const bigger = Rwkv4.load(
      memoryCheckpoint(randomRwkv4({ nLayer: 3, nEmbd: 32, nVocab: 256, seed: 9 })),
      jsBackend,
    );
    assert.throws(() => applyThresholds(bigger, read, 't.json'), /made for rwkv4 2x32/);
    const bad = join(dir, 'bad.json');
    writeFileSync(bad, JSON.stringify({ ...read, formatVersion: 2 }));
    assert.throws(
      () => readThresholds(bad),
      (e: unknown) => e instanceof UserError && /formatVersion/.test(e.message),
    );
  });
});

describe('other methods in the same harness', () => {
  test('none: every λ is 0 and the model is exactly the dense one', async () => {
    const m = model();
    const { plan } = await calibrate(
      m,
      bytes,
      source,
      { ...cfg, method: 'none' },
      join(dir, 'none'),
      {
        resume: false,
      },
    );
    assert.ok(plan.sites.every((s) => s.lambda === 0 && s.k === 1));
    assert.equal(plan.results.finalLoss, plan.results.denseLoss);
    assert.equal(plan.results.sparsity.macWeighted, plan.results.sparsity.naturalMacWeighted);
  });

  test('uniform: every site near the target sparsity, without loss feedback', async () => {
    const { plan } = await calibrate(
      model(),
      bytes,
      source,
      { ...cfg, method: 'uniform', keep: 0.4 },
      join(dir, 'uni'),
      {
        resume: false,
      },
    );
    assert.equal(plan.results.work.lossEvaluations, 0);
    for (const s of plan.sites)
      assert.ok(Math.abs(s.sparsity - 0.6) < 0.12, `${s.site}: ${s.sparsity}`);
  });

  test('teal: each block reaches the MAC-weighted target, greedy steps logged', async () => {
    const m = model();
    const { plan } = await calibrate(
      m,
      bytes,
      source,
      { ...cfg, method: 'teal', targetSparsity: 0.4 },
      join(dir, 'teal'),
      {
        resume: false,
      },
    );
    const nominal = macWeighted(
      m,
      plan.sites.map((s) => 1 - s.k),
    );
    assert.ok(nominal >= 0.4 - 1e-9 && nominal < 0.5, `nominal ${nominal}`);
    assert.ok(
      plan.results.sparsity.macWeighted > 0.3,
      `measured ${plan.results.sparsity.macWeighted}`,
    );
    const csv = readFileSync(join(dir, 'teal', 'calibration.csv'), 'utf8')
      .trim()
      .split('\n')
      .slice(1);
    assert.ok(csv.some((l) => l.endsWith(',true')) && csv.some((l) => l.endsWith(',false')));
  });
});

describe('statistics', () => {
  test('per-token quantile equals a direct sort with linear interpolation', async () => {
    const T = 7;
    const C = 13;
    const rr = rng(5);
    const x = Float32Array.from({ length: T * C }, () => rr() * 4 - 2);
    const keep = [0.9, 0.5, 0.25, 0.1];
    const got = perTokenQuantileThresholds(x, T, C, keep);
    keep.forEach((k, i) => {
      let sum = 0;
      for (let t = 0; t < T; t++) {
        const row = Array.from(x.subarray(t * C, (t + 1) * C), Math.abs).sort((a, b) => a - b);
        const h = (C - 1) * (1 - k);
        const lo = Math.floor(h);
        sum += row[lo] + (h - lo) * ((row[lo + 1] ?? row[lo]) - row[lo]);
      }
      assert.ok(Math.abs(got[i] - sum / T) < 1e-6, `K ${k}: ${got[i]} vs ${sum / T}`);
    });
    assert.equal(quantileSorted([1, 2, 3, 4], 0.5), 2.5);
    assert.deepEqual(
      pooledQuantileThresholds([Float32Array.of(-4, 1), Float32Array.of(2, -3)], [0.5]),
      [2.5],
    );
  });

  test('measured sparsity follows λ: λ = 0 gives the natural zeros only', async () => {
    const m = model();
    const windows = [Array.from({ length: 20 }, (_, i) => (i * 31) % 256)];
    const natural = await measureSparsity(m, windows);
    for (let g = 0; g < natural.length; g++) if (g % 7 !== 6) assert.equal(natural[g], 0);
    m.setThresholds(new Float32Array(m.thresholds.length).fill(0.5));
    const sparse = await measureSparsity(m, windows);
    assert.ok(sparse.every((s, g) => s >= natural[g]));
    assert.ok(macWeighted(m, sparse) > macWeighted(m, natural) + 0.1);
  });
});

describe('calibration data', () => {
  test('Brown: 500 documents, tags removed, held-out documents are cn18…cr09', async () => {
    const docs = brownDocuments();
    assert.equal(docs.length, 500);
    assert.equal(detag('The/at jury/nn ,/, ``/`` yes/rb ;/. ;/.'), 'The jury, "yes;;');
    const split = splitDocuments(docs, 1000, 42);
    assert.equal(split.heldOut[0].id, 'cn18');
    assert.equal(split.heldOut.at(-1)!.id, 'cr09');
    assert.equal(split.calibration.length, 450);
    assert.ok(split.calibration.every((d) => d.id < 'cn18'));
    // Seeded: the same seed picks the same documents, another seed others.
    assert.deepEqual(
      splitDocuments(docs, 5, 42).calibration.map((d) => d.id),
      splitDocuments(docs, 5, 42).calibration.map((d) => d.id),
    );
    assert.notDeepEqual(
      splitDocuments(docs, 5, 42).calibration.map((d) => d.id),
      splitDocuments(docs, 5, 43).calibration.map((d) => d.id),
    );
  });

  test('windows of ctx + 1 tokens without overlap; too little data is a clear error', async () => {
    assert.deepEqual(tokenWindows([1, 2, 3, 4, 5, 6, 7], 3, 10), [
      [1, 2, 3],
      [4, 5, 6],
    ]);
    await assert.rejects(
      () =>
        calibrate(model(), bytes, source, { ...cfg, windows: 500 }, join(dir, 'small'), {
          resume: false,
        }),
      (e: unknown) =>
        e instanceof UserError &&
        /500 were requested/.test(e.message) &&
        /--docs/.test(e.hint ?? ''),
    );
  });
});
