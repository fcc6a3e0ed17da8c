/**
 * The search evaluator on a real model and calibration windows. A site in block b only
 * changes blocks b … N−1, so the input of block b is computed once and reused for every
 * candidate of every site in that block (the authors' code re-runs the whole model per
 * candidate); calibrate.ts counts the work in block-token forwards.
 *
 * Windows run in batches (many windows per matrix product), and everything stays on the
 * backend: the loss is the fused log-softmax + NLL op summed into a tally, the
 * statistics are quantile sums in a tally; each evaluation reads back a few numbers.
 */
import { tallyHeadNll, type WindowBatch, windowBatches } from '../models/loss.ts';
import type { LanguageModel, SiteHook } from '../models/model.ts';
import type { Buf } from '../tensor/backend.ts';
import { quantileSorted } from '../tensor/reference.ts';
import type { SearchEvaluator } from './search.ts';

export class ModelEvaluator implements SearchEvaluator {
  readonly nBlocks: number;
  readonly siteIds: readonly string[];
  private readonly tokensPerPass: number;
  private readonly batches: WindowBatch[];
  /** Block whose input `cache` holds, and that input per batch ([rows, d] each). */
  private cachedBlock = -1;
  private cache: Buf[] = [];

  constructor(
    private readonly model: LanguageModel,
    /** Windows of ctx + 1 tokens: the first ctx are input, the last ctx targets. */
    windows: readonly (readonly number[])[],
    private readonly statistic: 'per-token' | 'pooled' = 'per-token',
    maxRows = model.backend.batchRows,
    /** Sees every site's input during loss passes (zero counts in `eval`). */
    private readonly hook?: SiteHook,
  ) {
    this.nBlocks = model.sites.nBlocks;
    this.siteIds = model.sites.perBlock.map((s) => s.id);
    this.batches = windowBatches(model, windows, maxRows);
    this.tokensPerPass = this.batches.reduce((a, w) => a + w.targets.length, 0);
  }

  /** Gives the cached activations and batches back to the backend. */
  free(): void {
    const be = this.model.backend;
    for (const x of this.cache) be.free(x);
    this.cache = [];
    this.cachedBlock = -1;
    for (const w of this.batches) be.free(w.batch.ids);
  }

  private blockOf(g: number): number {
    return Math.floor(g / this.siteIds.length);
  }

  /** Runs blocks from … to−1 on x in place, from a fresh state per window. */
  private runBlocks(from: number, to: number, x: Buf, w: WindowBatch, hook?: SiteHook): void {
    const state = this.model.newState(w.batch.seqs.count);
    for (let k = from; k < to; k++) this.model.block(k, x, w.batch, state, hook);
    state.free();
  }

  /** Makes `cache` hold the input of block b under the committed thresholds. */
  private inputOf(b: number): Buf[] {
    const be = this.model.backend;
    if (this.cachedBlock > b || this.cachedBlock < 0) {
      for (const x of this.cache) be.free(x);
      // Every window starts anew: a fresh state for each.
      this.cache = this.batches.map((w) => {
        const state = this.model.newState(w.batch.seqs.count);
        const x = this.model.embed(w.batch, state);
        state.free();
        return x;
      });
      this.cachedBlock = 0;
    }
    for (; this.cachedBlock < b; this.cachedBlock++) {
      for (let i = 0; i < this.batches.length; i++)
        this.runBlocks(this.cachedBlock, this.cachedBlock + 1, this.cache[i], this.batches[i]);
    }
    return this.cache;
  }

  /** Mean next-token NLL running blocks b … N−1 from the cached input of block b. */
  private async lossFrom(b: number): Promise<number> {
    const inputs = this.inputOf(b);
    const be = this.model.backend;
    const t = be.tally(1);
    this.batches.forEach((w, i) => {
      const x = be.alloc(inputs[i].length);
      be.copy(x, inputs[i]);
      this.runBlocks(b, this.nBlocks, x, w, b === 0 ? this.hook : undefined);
      tallyHeadNll(this.model, t, 0, x, w.targets);
      be.free(x);
    });
    const [sum] = await be.readTally(t);
    return sum / this.tokensPerPass;
  }

  loss(): Promise<number> {
    return this.lossFrom(0);
  }

  async lossWith(g: number, lambda: number): Promise<number> {
    const saved = this.model.thresholds[g];
    this.setOne(g, lambda);
    try {
      return await this.lossFrom(this.blockOf(g));
    } finally {
      this.setOne(g, saved);
    }
  }

  commit(g: number, lambda: number): void {
    this.setOne(g, lambda);
    // A cached input of a later block no longer holds; the input of g's own block does.
    if (this.cachedBlock > this.blockOf(g)) this.cachedBlock = -1;
  }

  private setOne(g: number, lambda: number): void {
    const t = Float32Array.from(this.model.thresholds);
    t[g] = lambda;
    this.model.setThresholds(t);
  }

  /** Block b's output per batch with its sites at `lambdas` (the rest as committed). */
  private blockOutputs(b: number, lambdas: readonly number[]): Buf[] {
    const be = this.model.backend;
    const inputs = this.inputOf(b);
    const S = this.siteIds.length;
    const saved = Float32Array.from(this.model.thresholds);
    const t = Float32Array.from(saved);
    for (let s = 0; s < S; s++) t[b * S + s] = lambdas[s];
    this.model.setThresholds(t);
    try {
      return this.batches.map((w, i) => {
        const y = be.alloc(inputs[i].length);
        be.copy(y, inputs[i]);
        this.runBlocks(b, b + 1, y, w);
        return y;
      });
    } finally {
      this.model.setThresholds(saved);
    }
  }

  private denseOut: { block: number; out: Buf[] } | null = null;

  async blockError(b: number, lambdas: readonly number[]): Promise<number> {
    const be = this.model.backend;
    if (this.denseOut?.block !== b) {
      for (const y of this.denseOut?.out ?? []) be.free(y);
      this.denseOut = {
        block: b,
        out: this.blockOutputs(b, new Array(this.siteIds.length).fill(0)),
      };
    }
    const ref = this.denseOut.out;
    const got = this.blockOutputs(b, lambdas);
    // Σ(y − y₀)² and Σ y₀², on the backend.
    const t = be.tally(2);
    got.forEach((y, i) => {
      be.binary('sub', y, y, ref[i]);
      be.binary('mul', y, y, y);
      be.tallySum(t, 0, y);
      const r2 = be.alloc(ref[i].length);
      be.binary('mul', r2, ref[i], ref[i]);
      be.tallySum(t, 1, r2);
      be.free(r2);
      be.free(y);
    });
    const [num, den] = await be.readTally(t);
    return den ? num / den : 0;
  }

  async thresholdsFor(g: number, keep: readonly number[]): Promise<number[]> {
    const b = this.blockOf(g);
    const be = this.model.backend;
    const inputs = this.inputOf(b);
    const saved = this.model.thresholds[g];
    this.setOne(g, 0);
    // Per-token quantiles are summed on the backend, never stored; the pooled statistic
    // keeps |x| of every token (as the authors' alternative needs).
    const qs = keep.map((k) => 1 - k);
    const t = be.tally(qs.length);
    const pooled: Buf[] = [];
    let tokens = 0;
    const hook = (site: number, x: Buf, rows: number, cols: number) => {
      if (site !== g) return;
      if (this.statistic === 'pooled') {
        const c = be.alloc(rows * cols);
        be.unary('abs', c, x, rows * cols);
        pooled.push(c);
      } else be.tallyQuantiles(t, 0, x, rows, cols, qs);
      tokens += rows;
    };
    try {
      this.batches.forEach((w, i) => {
        const x = be.alloc(inputs[i].length);
        be.copy(x, inputs[i]);
        const state = this.model.newState(w.batch.seqs.count);
        this.model.block(b, x, w.batch, state, hook);
        state.free();
        be.free(x);
      });
    } finally {
      this.setOne(g, saved);
    }
    if (this.statistic === 'pooled') {
      const parts = await Promise.all(pooled.map((p) => be.read(p)));
      for (const p of pooled) be.free(p);
      const all = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
      let o = 0;
      for (const p of parts) {
        all.set(p, o);
        o += p.length;
      }
      all.sort();
      return qs.map((q) => quantileSorted(all, q));
    }
    const sums = await be.readTally(t);
    return Array.from(sums, (s) => s / tokens);
  }
}
