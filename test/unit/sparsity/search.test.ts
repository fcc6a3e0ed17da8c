/**
 * The search's decisions, step by step, against METHOD.md §3 on a scripted model: the
 * loss is a product of per-site factors chosen by the test, so every accept and reject
 * is known in advance. Default mode and --faithful, each quirk included.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  keepGrid,
  mostCommon,
  type PaperOptions,
  paperSearch,
  type SearchEvaluator,
} from '../../../src/sparsity/search.ts';

/**
 * λ encodes K (λ = 1 − K; λ = 0 is dense). loss = 2 × Π over sites of factor(g, K_g),
 * with factor(g, 1) = 1. Records every loss query as [g, K].
 */
class Scripted implements SearchEvaluator {
  readonly siteIds: readonly string[];
  readonly k: number[];
  readonly queries: [number, number][] = [];
  constructor(
    readonly nBlocks: number,
    sites: string[],
    private readonly factor: (g: number, k: number) => number,
  ) {
    this.siteIds = sites;
    this.k = new Array(nBlocks * sites.length).fill(1);
  }
  private lossOf(k: number[]): number {
    return k.reduce((a, kg, g) => a * (kg === 1 ? 1 : this.factor(g, kg)), 2);
  }
  loss(): number {
    return this.lossOf(this.k);
  }
  thresholdsFor(_g: number, keep: readonly number[]): number[] {
    return keep.map((k) => Math.round((1 - k) * 1e6) / 1e6);
  }
  lossWith(g: number, lambda: number): number {
    const k = [...this.k];
    k[g] = Math.round((1 - lambda) * 1e6) / 1e6;
    this.queries.push([g, k[g]]);
    return this.lossOf(k);
  }
  commit(g: number, lambda: number): void {
    this.k[g] = Math.round((1 - lambda) * 1e6) / 1e6;
  }
  blockError(): number {
    return 0;
  }
}

const linear: PaperOptions = {
  grid: 'linear',
  startK: 0.9,
  kNum: 10,
  lossInc: 1.001,
  faithful: false,
};

describe('grids and the warm start', () => {
  test('linear grid from start_k down to 0.1; exp grid as unique(round(geomspace(start_k, 0.01, n), 2))', async () => {
    assert.deepEqual(keepGrid('linear', 0.9, 10), [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]);
    assert.deepEqual(keepGrid('linear', 0.75, 10), [0.75, 0.65, 0.55, 0.45, 0.35, 0.25, 0.15]);
    // Values computed with Python: sorted(set(round(0.9*(0.01/0.9)**(i/9), 2) …), reverse=True)
    assert.deepEqual(
      keepGrid('exp', 0.9, 10),
      [0.9, 0.55, 0.33, 0.2, 0.12, 0.07, 0.04, 0.03, 0.02, 0.01],
    );
    assert.deepEqual(
      keepGrid('exp', 0.9, 20),
      [
        0.9, 0.71, 0.56, 0.44, 0.35, 0.28, 0.22, 0.17, 0.14, 0.11, 0.08, 0.07, 0.05, 0.04, 0.03,
        0.02, 0.01,
      ],
    );
  });
  test('most common K, ties to the smaller K', async () => {
    assert.equal(mostCommon([]), null);
    assert.equal(mostCommon([0.5, 0.7, 0.7]), 0.7);
    assert.equal(mostCommon([0.5, 0.7]), 0.5);
    assert.equal(mostCommon([0.7, 0.5, 0.5, 0.7, 0.9]), 0.5);
  });
});

describe('paper search, default mode', () => {
  test('denser → sparser, stop at the first ratio ≥ loss_inc; the base compounds', async () => {
    // Site 0: 0.9 and 0.8 pass (×1.0004, ×1.0009), 0.7 fails (×1.002).
    // Site 1: 0.9 fails at once.
    const f: Record<string, number> = {
      '0:0.9': 1.0004,
      '0:0.8': 1.0009,
      '0:0.7': 1.002,
      '1:0.9': 1.0011,
    };
    const ev = new Scripted(1, ['a', 'b'], (g, k) => f[`${g}:${k}`] ?? 1.01);
    const d = await paperSearch(ev, linear);
    assert.deepEqual(ev.queries, [
      [0, 0.9],
      [0, 0.8],
      [0, 0.7],
      [1, 0.9],
    ]);
    assert.equal(d[0].k, 0.8);
    assert.equal(d[0].loss, 2 * 1.0009);
    assert.deepEqual(
      d[0].candidates.map((c) => c.accepted),
      [true, true, false],
    );
    // Site 1's ratio is measured against site 0's loss, not the dense one.
    assert.ok(Math.abs(d[1].candidates[0].ratio - 1.0011) < 1e-12);
    // Fixed quirk 1: nothing passed, so the site stays dense and the loss is unchanged.
    assert.equal(d[1].k, 1);
    assert.equal(d[1].lambda, 0);
    assert.equal(d[1].loss, d[0].loss);
    assert.equal(ev.k[1], 1);
  });

  test('warm start: the most common K of the site so far; sparser while it holds, else denser', async () => {
    // Block 0 chooses 0.6 for site a. Block 1: from 0.6, 0.5 passes and 0.4 fails.
    // Block 2: the warm 0.6 (tie 0.6/0.5 → 0.5) fails; going denser 0.6 fails, 0.7 passes.
    const ok = (g: number, k: number) => {
      if (g === 0) return k >= 0.6 ? 1.0001 : 1.01;
      if (g === 1) return k >= 0.5 ? 1.0001 : 1.01;
      return k >= 0.7 ? 1.0001 : 1.01;
    };
    const ev = new Scripted(3, ['a'], ok);
    const d = await paperSearch(ev, linear);
    assert.deepEqual(
      d.map((x) => x.k),
      [0.6, 0.5, 0.7],
    );
    assert.deepEqual(
      d[1].candidates.map((c) => c.k),
      [0.6, 0.5, 0.4],
    );
    assert.deepEqual(
      d[2].candidates.map((c) => [c.k, c.accepted]),
      [
        [0.5, false],
        [0.6, false],
        [0.7, true],
      ],
    );
  });

  test('warm start equal to K[0] scans from the top as usual', async () => {
    const ev = new Scripted(2, ['a'], (_g, k) => (k >= 0.9 ? 1.0001 : 1.01));
    const d = await paperSearch(ev, linear);
    assert.deepEqual(
      d[1].candidates.map((c) => c.k),
      [0.9, 0.8],
    );
  });

  test('exp grid uses the warm start in the default mode', async () => {
    const ev = new Scripted(2, ['a'], (_g, k) => (k >= 0.33 ? 1.0001 : 1.01));
    const d = await paperSearch(ev, { ...linear, grid: 'exp' });
    assert.equal(d[0].k, 0.33);
    assert.deepEqual(
      d[1].candidates.map((c) => c.k),
      [0.33, 0.2],
    );
  });
});

describe('paper search, --faithful (the authors’ three quirks)', () => {
  const faithful = { ...linear, faithful: true };

  test('quirks 1 and 2: nothing passes → K[0] applied anyway, base keeps the old loss', async () => {
    // Site 0 fails everywhere (0.9 costs ×1.005). Site 1: 0.9 costs ×1.0004.
    const ev = new Scripted(1, ['a', 'b'], (g, k) => (g === 0 ? 1.005 : k >= 0.9 ? 1.0004 : 1.01));
    const d = await paperSearch(ev, faithful);
    assert.equal(d[0].k, 0.9);
    assert.equal(ev.k[0], 0.9, 'λ of K[0] is applied');
    assert.equal(d[0].loss, 2, 'the base stays at the dense loss');
    // Site 1 is judged against the stale base 2 while the model's loss is already 2×1.005:
    // its first candidate's ratio is 1.005×1.0004 ≥ 1.001, so it fails too.
    assert.ok(Math.abs(d[1].candidates[0].ratio - 1.005 * 1.0004) < 1e-12);
    assert.equal(d[1].candidates[0].accepted, false);
    assert.equal(d[1].k, 0.9);
  });

  test('quirk 3: the exp grid never uses the warm start', async () => {
    const ev = new Scripted(2, ['a'], (_g, k) => (k >= 0.33 ? 1.0001 : 1.01));
    const d = await paperSearch(ev, { ...faithful, grid: 'exp' });
    assert.deepEqual(
      d[1].candidates.map((c) => c.k),
      [0.9, 0.55, 0.33, 0.2],
    );
  });

  test('linear grid warm start is the same in both modes', async () => {
    const f = (_g: number, k: number) => (k >= 0.5 ? 1.0001 : 1.01);
    const a = await paperSearch(new Scripted(3, ['a'], f), linear);
    const b = await paperSearch(new Scripted(3, ['a'], f), faithful);
    assert.deepEqual(a, b);
  });
});

describe('resume replays the journal without evaluating', () => {
  test('same decisions, no loss queries for the replayed sites', async () => {
    const f = (g: number, k: number) => 1 + (g + 1) * 0.0001 * (1 / k);
    const full = await paperSearch(new Scripted(2, ['a', 'b'], f), linear);
    const ev = new Scripted(2, ['a', 'b'], f);
    const resumed = await paperSearch(ev, linear, { done: full.slice(0, 3) });
    assert.deepEqual(resumed, full);
    assert.ok(
      ev.queries.every(([g]) => g >= 3),
      'only the fourth site was searched',
    );
  });
});
