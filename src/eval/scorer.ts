/**
 * Log-likelihood of a continuation given a context, as lm-evaluation-harness computes
 * it (shared/docs/SCORING.md): tokenize context + continuation as one string and the
 * context alone; the continuation is the whole's tokens after the context's count; the
 * model is fed the prefix token first and starts from the zero state.
 *
 * Requests run in batches. Requests whose contexts are the same share one run of the
 * context (an RNN continues each choice from a copy of its state; OPT from a copy of
 * its KV cache): the shared part is the context without its last token, and each
 * choice then runs [last context token, continuation without its last token], whose
 * rows predict exactly the continuation's tokens. Log-probabilities and greedy checks
 * are summed on the backend (the fused loss op); logits are never read back, and never
 * computed for context rows. `scoreNaive` runs every request whole, for testing.
 */
import { UserError } from '../errors.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import {
  type Batch,
  forward,
  type LanguageModel,
  makeBatch,
  type SiteHook,
  sequenceLogits,
} from '../models/model.ts';
import type { Buf } from '../tensor/backend.ts';
import { beatsTarget, nll } from '../tensor/reference.ts';
import { stopPoint } from '../util/cancel.ts';
import type { Request, Scored } from './tasks/task.ts';

export interface Encoded {
  /** Prefix token and context tokens: what is fed before the continuation. */
  context: number[];
  continuation: number[];
}

/**
 * The lm-eval split: whole = enc(context + continuation); continuation = whole[len(enc(context)):].
 * With `maxLength`, an over-long context is first cut on the left (cutContext), which
 * changes none of the tokens the scorer keeps.
 */
export function encodeRequest(req: Request, tokenizer: Tokenizer, maxLength?: number): Encoded {
  // Trailing whitespace of the context belongs to the continuation.
  const m = /\s+$/.exec(req.context);
  let context = m ? req.context.slice(0, m.index) : req.context;
  const continuation = m ? m[0] + req.continuation : req.continuation;
  if (maxLength !== undefined) context = cutContext(context, continuation, tokenizer, maxLength);
  const n = tokenizer.encode(context).length;
  const whole = tokenizer.encode(context + continuation);
  return { context: [tokenizer.prefixId, ...whole.slice(0, n)], continuation: whole.slice(n) };
}

/** Characters per kept token below which a request is tokenized whole (cheap anyway). */
const CHARS_PER_TOKEN = 64;

/**
 * The tail of an over-long context that gives the same last tokens as the whole: the
 * scorer keeps only the last maxLength + 1 tokens of a request, but tokenizing a 10 MB
 * context costs seconds and gigabytes. Only tokenizers whose tokens never cross the cut
 * are cut, at a place where that is certain:
 * - bytes: one token per byte, so any character boundary;
 * - neox and gpt2-fairseq: GPT-2's pre-tokenizer regex (NFC first, for neox) splits the
 *   text into words, and BPE merges only inside a word; the regex has no look-behind, so
 *   at a space after a non-space and before a letter or digit a new word starts in the
 *   whole text and in the tail alike, and every token after it is the same.
 * The tail is taken long enough to hold at least maxLength + 1 tokens after the cut, so
 * the scorer's window lies inside it. World tokens are found by a fast longest match
 * (10 MB in about 0.5 s): not cut. Any other tokenizer's over-long request is refused.
 */
export function cutContext(
  context: string,
  continuation: string,
  tokenizer: Tokenizer,
  maxLength: number,
): string {
  const need = maxLength + 1;
  const limit = CHARS_PER_TOKEN * need;
  if (context.length + continuation.length <= limit) return context;
  if (continuation.length > limit) {
    throw new UserError(
      `a choice of ${continuation.length.toLocaleString('en-US')} characters: more than ${limit.toLocaleString('en-US')} (${CHARS_PER_TOKEN} per token of the model's ${maxLength}-token window)`,
      'The task file looks broken (a choice is scored whole); check that row.',
    );
  }
  if (tokenizer.kind === 'world') return context;
  if (tokenizer.kind === 'hf') {
    throw new UserError(
      `a request of ${context.length.toLocaleString('en-US')} characters: more than ${limit.toLocaleString('en-US')}, and this tokenizer (${tokenizer.source}) cannot be cut safely`,
      'The task file looks broken; check that row, or shorten it.',
    );
  }
  const bytes = tokenizer.kind === 'bytes';
  for (let keep = limit; keep < context.length; keep *= 4) {
    let p = context.length - keep;
    if (bytes) {
      // Not inside a surrogate pair.
      if (/[\uDC00-\uDFFF]/.test(context[p])) p++;
    } else {
      while (p < context.length && !safeCut(context, p)) p++;
      if (p >= context.length) break;
    }
    const tail = context.slice(p);
    if (tokenizer.encode(tail).length >= need) return tail;
  }
  return context;
}

/** A word of GPT-2's pre-tokenizer starts at p: " " after a non-space, before a letter or digit. */
function safeCut(s: string, p: number): boolean {
  return p > 0 && s[p] === ' ' && !/\s/.test(s[p - 1]) && /[\p{L}\p{N}]/u.test(s[p + 1] ?? '');
}

/**
 * The longest input lm-eval gives a model: its maximum context, or lm-eval's default
 * max_length (2048) for a model without one (an RNN). Longer requests are cut on the left.
 */
export function evalMaxLength(model: Pick<LanguageModel, 'maxContext'>): number {
  return Number.isFinite(model.maxContext) ? model.maxContext : 2048;
}

/** One request as the batched scorer runs it. */
interface Plan {
  /** Tokens run once for every request with the same key (may be empty). */
  shared: number[];
  key: string;
  /** Tokens this request runs after the shared part. */
  own: number[];
  /** The last `targets.length` rows of `own` predict these tokens. */
  targets: number[];
  /** Continuation tokens scored (fewer than the continuation when it was cut). */
  tokens: number;
}

function plan(e: Encoded, maxLength: number): Plan {
  const { context, continuation } = e;
  if (context.length + continuation.length - 1 <= maxLength) {
    return {
      shared: context.slice(0, -1),
      key: context.slice(0, -1).join(','),
      own: [context[context.length - 1], ...continuation.slice(0, -1)],
      targets: continuation,
      tokens: continuation.length,
    };
  }
  // Too long: lm-eval keeps the last max_length + 1 tokens (cut on the left) and runs
  // the request alone; a continuation longer than that is scored on what it can predict.
  const all = [...context, ...continuation];
  const own = all.slice(Math.max(0, all.length - 1 - maxLength), -1);
  const targets = continuation.slice(Math.max(0, continuation.length - own.length));
  return { shared: [], key: '', own, targets, tokens: targets.length };
}

export interface ScoreOptions {
  /** Rows (tokens) per batch of shared contexts and per batch of choices. */
  batchRows?: number;
  /** Sees every site's input (e.g. zero counts for the sparsity report). */
  hook?: SiteHook;
  onProgress?: (done: number, total: number) => void;
  /** Checked before every batch: aborted, scoring stops with `Stopped` (util/cancel.ts). */
  signal?: AbortSignal;
}

/**
 * Scores every request (in batches); requests whose context tokens are identical share
 * one run of the context.
 */
export async function scoreRequests(
  model: LanguageModel,
  tokenizer: Tokenizer,
  requests: readonly Request[],
  opts: ScoreOptions = {},
): Promise<Scored[]> {
  const maxLength = evalMaxLength(model);
  const budget = Math.max(opts.batchRows ?? 4096, maxLength + 1);
  const plans = requests.map((r) => plan(encodeRequest(r, tokenizer, maxLength), maxLength));
  // Groups by shared tokens, in order of first appearance, each cut into pieces whose
  // choices fit a batch.
  const byKey = new Map<string, number[]>();
  plans.forEach((p, i) => {
    const g = byKey.get(p.key);
    if (g) g.push(i);
    else byKey.set(p.key, [i]);
  });
  const groups: number[][] = [];
  for (const members of byKey.values()) {
    let piece: number[] = [];
    let rows = 0;
    for (const i of members) {
      if (piece.length && rows + plans[i].own.length > budget) {
        groups.push(piece);
        piece = [];
        rows = 0;
      }
      piece.push(i);
      rows += plans[i].own.length;
    }
    groups.push(piece);
  }

  const out = new Array<Scored>(requests.length);
  let done = 0;
  let gi = 0;
  while (gi < groups.length) {
    await stopPoint(opts.signal);
    // A batch of groups: shared rows and choice rows each within the budget.
    const batchGroups: number[][] = [];
    let sharedRows = 0;
    let ownRows = 0;
    while (gi < groups.length) {
      const g = groups[gi];
      const s = plans[g[0]].shared.length;
      const o = g.reduce((a, i) => a + plans[i].own.length, 0);
      if (batchGroups.length && (sharedRows + s > budget || ownRows + o > budget)) break;
      batchGroups.push(g);
      sharedRows += s;
      ownRows += o;
      gi++;
    }
    const scored = await scoreBatch(
      model,
      opts.hook,
      batchGroups.map((g) => plans[g[0]].shared),
      batchGroups.flatMap((g, j) => g.map((i) => ({ group: j, plan: plans[i] }))),
    );
    let k = 0;
    for (const g of batchGroups) {
      for (const i of g) {
        out[i] = scored[k++];
        opts.onProgress?.(++done, requests.length);
      }
    }
  }
  return out;
}

/** Runs the shared parts as one batch, then every choice from a copy of its group's state. */
async function scoreBatch(
  model: LanguageModel,
  hook: SiteHook | undefined,
  shared: number[][],
  choices: { group: number; plan: Plan }[],
): Promise<Scored[]> {
  const be = model.backend;
  const { nEmbd: d, nVocab: V } = model;
  let state = model.newState(shared.length);
  if (shared.some((s) => s.length)) {
    const batch = makeBatch(model, shared);
    forward(model, batch, state, { logits: 'none', hook });
    be.free(batch.ids);
  }
  const own = state.select(choices.map((c) => c.group));
  state.free();
  state = own;

  // The choices' rows through every block, then the head on the rows that are scored.
  const batch: Batch = makeBatch(
    model,
    choices.map((c) => c.plan.own),
  );
  const x = model.embed(batch, state);
  for (let b = 0; b < model.nLayer; b++) model.block(b, x, batch, state, hook);
  state.free();
  const rows: number[] = [];
  const targets: number[] = [];
  const slots: number[] = [];
  choices.forEach((c, i) => {
    const end = batch.seqs.offsets[i + 1];
    c.plan.targets.forEach((tok, j) => {
      rows.push(end - c.plan.targets.length + j);
      targets.push(tok);
      slots.push(i);
    });
  });
  const C = choices.length;
  const t = be.tally(2 * C);
  const chunk = Math.max(1, Math.floor((1 << 24) / V));
  for (let r0 = 0; r0 < rows.length; r0 += chunk) {
    const n = Math.min(chunk, rows.length - r0);
    const idx = be.uploadIds(Int32Array.from(rows.slice(r0, r0 + n)));
    const h: Buf = be.alloc(n * d);
    be.gather(h, x, idx, d);
    const logits = model.head(h, n);
    const tg = be.uploadIds(Int32Array.from(targets.slice(r0, r0 + n)));
    const sl = be.uploadIds(Int32Array.from(slots.slice(r0, r0 + n)));
    be.tallyNll(t, logits, tg, sl, n, V, C);
    for (const b of [idx, tg, sl]) be.free(b);
    be.free(h);
    be.free(logits);
  }
  be.free(x);
  be.free(batch.ids);
  const sums = await be.readTally(t);
  return choices.map((c, i) => ({
    logLikelihood: -sums[i],
    greedy: sums[C + i] === 0,
    tokens: c.plan.tokens,
  }));
}

/** Each request run whole from the zero state: the reference the batched scorer must equal. */
export async function scoreNaive(
  model: LanguageModel,
  tokenizer: Tokenizer,
  requests: readonly Request[],
): Promise<Scored[]> {
  const V = model.nVocab;
  const maxLength = evalMaxLength(model);
  const out: Scored[] = [];
  for (const r of requests) {
    const { context, continuation } = encodeRequest(r, tokenizer, maxLength);
    const all = [...context, ...continuation];
    const input = all.slice(Math.max(0, all.length - 1 - maxLength), -1);
    const scored = continuation.slice(Math.max(0, continuation.length - input.length));
    const logits = await sequenceLogits(model, input, model.newState());
    let ll = 0;
    let greedy = true;
    scored.forEach((tok, j) => {
      const off = (input.length - scored.length + j) * V;
      ll -= nll(logits, off, V, tok);
      if (beatsTarget(logits, off, V, tok)) greedy = false;
    });
    out.push({ logLikelihood: ll, greedy, tokens: scored.length });
  }
  return out;
}
