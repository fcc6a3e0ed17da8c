/**
 * The sparsity plan as versioned data: `thresholds.json` (λ per site with provenance and
 * measured sparsity), validated when read and refused for a model it was not made for;
 * and the sparsity figures of METHOD.md §4.
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { UserError } from '../errors.ts';
import { forward, type LanguageModel, type SiteHook } from '../models/model.ts';
import { windowBatches } from './evaluator.ts';

const Site = z.object({
  block: z.number().int().min(0),
  site: z.string(),
  /** Chosen keep-fraction (1 = dense). */
  k: z.number().min(0).max(1),
  lambda: z.number().min(0),
  /** Measured fraction of zeros in the site's input on the calibration tokens. */
  sparsity: z.number().min(0).max(1),
  /** Natural sparsity of the same input in the dense model. */
  naturalSparsity: z.number().min(0).max(1),
  /** Calibration loss after this site (null for methods without loss feedback). */
  loss: z.number().nullable(),
});

export const ThresholdsFile = z.object({
  formatVersion: z.literal(1),
  kind: z.literal('actsparse.thresholds'),
  tool: z.object({ name: z.string(), version: z.string() }),
  model: z.object({
    file: z.string(),
    fileSha256: z.string(),
    fingerprint: z.string(),
    architecture: z.string(),
    nLayer: z.number().int(),
    nEmbd: z.number().int(),
    nVocab: z.number().int(),
    comparison: z.enum(['gt', 'ge']),
    sitesPerBlock: z.array(z.string()),
    /** The linear layer each site feeds: cols inputs → rows outputs (for cost models). */
    siteShapes: z.array(
      z.object({ id: z.string(), rows: z.number().int(), cols: z.number().int() }),
    ),
    /** The architecture's config (its dims and options), for `hw`'s op counts. */
    config: z.record(z.string(), z.unknown()).optional(),
  }),
  data: z.object({
    description: z.string(),
    sha256: z.string(),
    documents: z.array(z.string()),
    windows: z.number().int(),
    ctx: z.number().int(),
    tokens: z.number().int(),
    seed: z.number().int(),
    tokenizer: z.string(),
  }),
  method: z.object({
    name: z.enum(['paper', 'uniform', 'teal', 'none']),
    params: z.record(z.string(), z.unknown()),
  }),
  results: z.object({
    denseLoss: z.number(),
    finalLoss: z.number(),
    /** finalLoss / denseLoss */
    lossGrowth: z.number(),
    /** The same on windows of the held-out documents (null when there were none). */
    heldOut: z
      .object({ windows: z.number().int(), denseLoss: z.number(), sparseLoss: z.number() })
      .nullable(),
    sparsity: z.object({
      /** MAC-weighted zeros over all block sites (METHOD.md §4). */
      macWeighted: z.number(),
      naturalMacWeighted: z.number(),
      /** The head is never thresholded: its share of the per-token MACs, reported apart. */
      headMacShare: z.number(),
    }),
    work: z.object({
      blockTokens: z.number(),
      authorsBlockTokens: z.number(),
      lossEvaluations: z.number().int(),
      statisticsPasses: z.number().int(),
    }),
  }),
  sites: z.array(Site),
});
export type ThresholdsFile = z.infer<typeof ThresholdsFile>;
export type SiteResult = z.infer<typeof Site>;

/** The model facts a thresholds or results file records, for checks and cost models. */
export function modelFacts(model: LanguageModel) {
  return {
    fingerprint: model.fingerprint,
    architecture: model.arch,
    nLayer: model.nLayer,
    nEmbd: model.nEmbd,
    nVocab: model.nVocab,
    comparison: model.sites.comparison,
    sitesPerBlock: model.sites.perBlock.map((s) => s.id),
    siteShapes: model.sites.perBlock.map((s) => ({ id: s.id, rows: s.rows, cols: s.cols })),
    config: { ...model.config },
  };
}

/** Reads and validates a thresholds file; every problem is a UserError naming the file. */
export function readThresholds(path: string): ThresholdsFile {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(
      `${path}: ${code ? `cannot read (${code})` : `not valid JSON (${(e as Error).message})`}`,
    );
  }
  const r = ThresholdsFile.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new UserError(
      `${path}: not a thresholds file actsparse can use: ${issue.path.join('.') || '(top)'}: ${issue.message}`,
      'Give the thresholds.json written by `actsparse calibrate`.',
    );
  }
  return r.data;
}

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
  return counter.read();
}

/**
 * A hook that counts the zeros of every site's input on the backend while a model
 * runs, and `read()` for the fraction of zeros per site (one read-back).
 */
export function zeroCounter(model: LanguageModel): {
  hook: SiteHook;
  read(): Promise<Float64Array>;
} {
  const be = model.backend;
  const nSites = model.thresholds.length;
  const t = be.tally(nSites);
  const total = new Float64Array(nSites);
  return {
    hook: (g, x, rows, cols) => {
      be.tallyZeros(t, g, x, rows * cols);
      total[g] += rows * cols;
    },
    async read() {
      const zeros = await be.readTally(t);
      return zeros.map((z, g) => (total[g] ? z / total[g] : 0));
    },
  };
}
