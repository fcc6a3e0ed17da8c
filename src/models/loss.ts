/**
 * The language-model loss of a model over token windows: mean next-token negative
 * log-likelihood, each window from a fresh state (the windows themselves are cut by
 * data/windows.ts). Windows run in batches, and the loss is the backend's fused
 * log-softmax + NLL summed into a tally: logits are never read back.
 */
import type { Buf, Tally } from '../tensor/backend.ts';
import { type Batch, type LanguageModel, makeBatch, type SiteHook } from './model.ts';

/** Logit values computed at once by the head (the rest of the rows wait their turn). */
const HEAD_VALUES = 1 << 24;

/** Windows of ctx + 1 tokens cut into batches: inputs (the first ctx) and targets. */
export interface WindowBatch {
  batch: Batch;
  /** The next token of every input row, packed like the batch. */
  targets: Int32Array;
}

export function windowBatches(
  model: LanguageModel,
  windows: readonly (readonly number[])[],
  maxRows = model.backend.batchRows,
): WindowBatch[] {
  const out: WindowBatch[] = [];
  let group: (readonly number[])[] = [];
  let rows = 0;
  const flush = () => {
    if (!group.length) return;
    const batch = makeBatch(
      model,
      group.map((w) => w.slice(0, -1)),
    );
    const targets = new Int32Array(batch.seqs.rows);
    let o = 0;
    for (const w of group) {
      for (let t = 1; t < w.length; t++) targets[o++] = w[t];
    }
    out.push({ batch, targets });
    group = [];
    rows = 0;
  };
  for (const w of windows) {
    if (w.length < 2) continue;
    if (rows + w.length - 1 > maxRows) flush();
    group.push(w);
    rows += w.length - 1;
  }
  flush();
  return out;
}

/**
 * t[slot] += Σ −log p(target) over the rows of x [rows, d] (the last block's output),
 * the head run on at most HEAD_VALUES logits at a time. Logits are never read back.
 */
export function tallyHeadNll(
  model: LanguageModel,
  t: Tally,
  slot: number,
  x: Buf,
  targets: Int32Array,
): void {
  const be = model.backend;
  const { nEmbd: d, nVocab: V } = model;
  const rows = targets.length;
  const chunk = Math.max(1, Math.floor(HEAD_VALUES / V));
  for (let r0 = 0; r0 < rows; r0 += chunk) {
    const n = Math.min(chunk, rows - r0);
    const logits = model.head(be.view(x, r0 * d, n * d), n);
    const ids = be.uploadIds(targets.subarray(r0, r0 + n));
    be.tallyNll(t, logits, ids, slot, n, V);
    be.free(ids);
    be.free(logits);
  }
}

export interface LossResult {
  /** Mean NLL in nats per token over every predicted position. */
  meanNll: number;
  perplexity: number;
  /** Number of predictions scored. */
  tokens: number;
}

/**
 * Mean next-token NLL over windows (each of n tokens scores its n − 1 predictions), every
 * window from a fresh state; `hook` sees every site's input.
 */
export async function textLoss(
  model: LanguageModel,
  windows: readonly (readonly number[])[],
  hook?: SiteHook,
): Promise<LossResult> {
  const be = model.backend;
  const t = be.tally(1);
  let tokens = 0;
  for (const w of windowBatches(model, windows)) {
    const state = model.newState(w.batch.seqs.count);
    const x = model.embed(w.batch, state);
    for (let b = 0; b < model.nLayer; b++) model.block(b, x, w.batch, state, hook);
    tallyHeadNll(model, t, 0, x, w.targets);
    tokens += w.targets.length;
    be.free(x);
    state.free();
    be.free(w.batch.ids);
  }
  const [sum] = await be.readTally(t);
  const meanNll = tokens ? sum / tokens : Number.NaN;
  return { meanNll, perplexity: Math.exp(meanNll), tokens };
}
