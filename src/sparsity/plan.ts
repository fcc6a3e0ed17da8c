/**
 * Using a sparsity plan: thresholds from a thresholds.json applied to a model (refused for
 * a model it was not made for), and the sparsity figures of METHOD.md §4.
 */
import { UserError } from '../errors.ts';
import type { ThresholdsFile } from '../formats/thresholds.ts';
import { windowBatches } from '../models/loss.ts';
import { forward, type LanguageModel, type SiteHook } from '../models/model.ts';

/** Sets the model's λ from a thresholds file, after checking it was made for this model. */
export function applyThresholds(model: LanguageModel, plan: ThresholdsFile, path: string): void {
  const m = plan.model;
  const sites = model.sites.perBlock.map((s) => s.id);
  if (
    m.architecture !== model.arch ||
    m.nLayer !== model.nLayer ||
    m.nEmbd !== model.nEmbd ||
    m.nVocab !== model.nVocab
  ) {
    throw new UserError(
      `${path} was made for ${m.architecture} ${m.nLayer}x${m.nEmbd} (vocab ${m.nVocab}), not this ${model.arch} ${model.nLayer}x${model.nEmbd} (vocab ${model.nVocab})`,
      'Calibrate this model with `actsparse calibrate`.',
    );
  }
  if (m.fingerprint !== model.fingerprint) {
    throw new UserError(
      `${path} was made for other weights (${m.file}, fingerprint ${m.fingerprint}; this model's is ${model.fingerprint})`,
      'Thresholds depend on the exact weights: calibrate this checkpoint with `actsparse calibrate`.',
    );
  }
  if (m.sitesPerBlock.join() !== sites.join() || plan.sites.length !== model.thresholds.length) {
    throw new UserError(`${path}: its site list does not match this model's (${sites.join(', ')})`);
  }
  model.setThresholds(plan.sites.map((s) => s.lambda));
}

/** MAC-weighted mean of per-site zero fractions over all block sites. */
export function macWeighted(model: LanguageModel, perSite: ArrayLike<number>): number {
  const per = model.sites.perBlock;
  let num = 0;
  let den = 0;
  for (let g = 0; g < perSite.length; g++) {
    const s = per[g % per.length];
    num += perSite[g] * s.rows * s.cols;
    den += s.rows * s.cols;
  }
  return den ? num / den : 0;
}

/** Share of one token's linear-layer MACs spent in the head (vocab × d). */
export function headMacShare(model: LanguageModel): number {
  const block = model.sites.perBlock.reduce((a, s) => a + s.rows * s.cols, 0) * model.nLayer;
  const head = model.nVocab * model.nEmbd;
  return head / (head + block);
}

/**
 * Fraction of zeros in every site's input over the windows (their first ctx tokens), with
 * the model's current λ: one zero count per site on the backend, read back once.
 */
export async function measureSparsity(
  model: LanguageModel,
  windows: readonly (readonly number[])[],
): Promise<Float64Array> {
  const counter = zeroCounter(model);
  for (const w of windowBatches(model, windows)) {
    const state = model.newState(w.batch.seqs.count);
    forward(model, w.batch, state, { hook: counter.hook, logits: 'none' });
    state.free();
    model.backend.free(w.batch.ids);
  }
  return zeroFractions(await counter.read());
}

/** Zeros and values seen per site: exact integers, summed across runs and resumes. */
export interface ZeroCounts {
  zeros: number[];
  total: number[];
}

/** The fraction of zeros per site (0 where a site saw nothing). */
export function zeroFractions(c: ZeroCounts): Float64Array {
  return Float64Array.from(c.zeros, (z, g) => (c.total[g] ? z / c.total[g] : 0));
}

/**
 * A hook that counts the zeros of every site's input on the backend while a model runs,
 * and `read()` for the counts (one read-back).
 */
export function zeroCounter(model: LanguageModel): {
  hook: SiteHook;
  read(): Promise<ZeroCounts>;
} {
  const be = model.backend;
  const nSites = model.thresholds.length;
  const t = be.tally(nSites);
  const total = new Array<number>(nSites).fill(0);
  return {
    hook: (g, x, rows, cols) => {
      be.tallyZeros(t, g, x, rows * cols);
      total[g] += rows * cols;
    },
    async read() {
      return { zeros: Array.from(await be.readTally(t)), total };
    },
  };
}

/**
 * Per-site zero fractions measured on one model, laid onto another model of the same
 * architecture and more or fewer blocks: site s of block b takes the fraction of site s
 * in the source block at the same relative depth, ⌊b · M / N⌋ for M source and N
 * target blocks. Returns one fraction per global site (block × sites + site).
 */
export function zerosByDepth(
  source: readonly { block: number; site: string; sparsity: number }[],
  nLayer: number,
  siteIds: readonly string[],
): Float64Array {
  const M = Math.max(...source.map((s) => s.block)) + 1;
  const at = new Map(source.map((s) => [`${s.block}/${s.site}`, s.sparsity]));
  const out = new Float64Array(nLayer * siteIds.length);
  for (let b = 0; b < nLayer; b++) {
    const from = Math.floor((b * M) / nLayer);
    siteIds.forEach((id, s) => {
      const z = at.get(`${from}/${id}`);
      if (z === undefined) {
        throw new UserError(
          `the zero fractions have no site ${id} (they have ${[...new Set(source.map((x) => x.site))].join(', ')})`,
          'Take them from a run of the same architecture.',
        );
      }
      out[b * siteIds.length + s] = z;
    });
  }
  return out;
}
