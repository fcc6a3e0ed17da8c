/**
 * The search evaluator on a real model and calibration windows. A site in block b only
 * changes blocks b … N−1, so the input of block b is computed once and reused for every
 * candidate of every site in that block (the authors' code re-runs the whole model per
 * candidate); calibrate.ts counts the work in block-token forwards.
 */
import type { LanguageModel, ModelState } from '../models/model.ts';
import { nll } from '../tensor/reference.ts';
import { perTokenQuantileThresholds, pooledQuantileThresholds } from './quantile.ts';
import type { SearchEvaluator } from './search.ts';

export class ModelEvaluator implements SearchEvaluator {
  readonly nBlocks: number;
  readonly siteIds: readonly string[];
  private readonly tokensPerPass: number;
  /** Block whose input `cache` holds, and that input per window ([ctx, d] each). */
  private cachedBlock = -1;
  private cache: Float32Array[] = [];

  constructor(
    private readonly model: LanguageModel,
    /** Windows of ctx + 1 tokens: the first ctx are input, the last ctx targets. */
    private readonly windows: readonly (readonly number[])[],
    private readonly statistic: 'per-token' | 'pooled' = 'per-token',
  ) {
    this.nBlocks = model.sites.nBlocks;
    this.siteIds = model.sites.perBlock.map((s) => s.id);
    this.tokensPerPass = windows.reduce((a, w) => a + w.length - 1, 0);
  }

  private blockOf(g: number): number {
    return Math.floor(g / this.siteIds.length);
  }

  /** Makes `cache` hold the input of block b under the committed thresholds. */
  private inputOf(b: number): Float32Array[] {
    if (this.cachedBlock > b || this.cachedBlock < 0) {
      this.cache = this.windows.map((w) => this.model.embed(w.slice(0, -1)));
      this.cachedBlock = 0;
    }
    // Advance block by block; a fresh zero state per window, as every window starts anew.
    for (; this.cachedBlock < b; this.cachedBlock++) {
      for (const x of this.cache) {
        this.model.block(this.cachedBlock, x, x.length / this.model.nEmbd, this.model.newState());
      }
    }
    return this.cache;
  }

  /** Mean next-token NLL running blocks b … N−1 from the cached input of block b. */
  private lossFrom(b: number): number {
    const inputs = this.inputOf(b);
    const { nEmbd: d, nVocab: V } = this.model;
    let sum = 0;
    for (let w = 0; w < inputs.length; w++) {
      const x = inputs[w].slice();
      const T = x.length / d;
      const state: ModelState = this.model.newState();
      for (let k = b; k < this.nBlocks; k++) this.model.block(k, x, T, state);
      const logits = this.model.logits(x, T);
      const targets = this.windows[w];
      for (let t = 0; t < T; t++) sum += nll(logits, t * V, V, targets[t + 1]);
    }

    return sum / this.tokensPerPass;
  }

  loss(): number {
    return this.lossFrom(0);
  }

  lossWith(g: number, lambda: number): number {
    const saved = this.model.thresholds[g];
    this.setOne(g, lambda);
    try {
      return this.lossFrom(this.blockOf(g));
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

  private denseOut: { block: number; out: Float32Array[] } | null = null;

  blockError(b: number, lambdas: readonly number[]): number {
    const inputs = this.inputOf(b);
    const S = this.siteIds.length;
    const saved = Float32Array.from(this.model.thresholds);
    const run = (lam: readonly number[]) => {
      const t = Float32Array.from(saved);
      for (let s = 0; s < S; s++) t[b * S + s] = lam[s];
      this.model.setThresholds(t);
      return inputs.map((x) => {
        const y = x.slice();
        this.model.block(b, y, y.length / this.model.nEmbd, this.model.newState());
        return y;
      });
    };
    try {
      if (this.denseOut?.block !== b) this.denseOut = { block: b, out: run(new Array(S).fill(0)) };
      const ref = this.denseOut.out;
      const got = run(lambdas);
      let num = 0;
      let den = 0;
      for (let w = 0; w < ref.length; w++) {
        for (let i = 0; i < ref[w].length; i++) {
          const e = got[w][i] - ref[w][i];
          num += e * e;
          den += ref[w][i] * ref[w][i];
        }
      }
      return den ? num / den : 0;
    } finally {
      this.model.setThresholds(saved);
    }
  }

  thresholdsFor(g: number, keep: readonly number[]): number[] {
    const b = this.blockOf(g);
    const inputs = this.inputOf(b);
    const saved = this.model.thresholds[g];
    const cols = this.model.sites.perBlock[g % this.siteIds.length].cols;
    this.setOne(g, 0);
    // Streamed per window: per-token quantiles are summed, never stored ([ctx, cols] at a time).
    const sums = new Float64Array(keep.length);
    const pooled: Float32Array[] = [];
    let tokens = 0;
    const prev = this.model.observer;
    this.model.observer = (site, x, T) => {
      if (site !== g) return;
      if (this.statistic === 'pooled') pooled.push(x.slice(0, T * cols));
      else {
        const l = perTokenQuantileThresholds(x, T, cols, keep);
        for (let i = 0; i < l.length; i++) sums[i] += l[i] * T;
      }
      tokens += T;
    };
    try {
      for (const x of inputs)
        this.model.block(b, x.slice(), x.length / this.model.nEmbd, this.model.newState());
    } finally {
      this.model.observer = prev;
      this.setOne(g, saved);
    }

    if (this.statistic === 'pooled') return pooledQuantileThresholds(pooled, keep);
    return Array.from(sums, (s) => s / tokens);
  }
}
