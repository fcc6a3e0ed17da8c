/**
 * Log-likelihood of a continuation given a context, as lm-evaluation-harness computes
 * it (shared/docs/SCORING.md): tokenize context + continuation as one string and the
 * context alone; the continuation is the whole's tokens after the context's count; the
 * model is fed the prefix token first and starts from the zero state.
 *
 * An RNN makes shared contexts cheap: the context is run once and each choice continues
 * from a clone of the state (`scoreRequests`). `scoreNaive` runs every request whole, for
 * testing that the two agree.
 */
import type { Tokenizer } from '../io/tokenizer.ts';
import type { LanguageModel } from '../models/model.ts';
import { nll } from '../tensor/reference.ts';
import type { Request, Scored } from './tasks/task.ts';

export interface Encoded {
  /** Prefix token and context tokens: what is fed before the continuation. */
  context: number[];
  continuation: number[];
}

/** The lm-eval split: whole = enc(context + continuation); continuation = whole[len(enc(context)):]. */
export function encodeRequest(req: Request, tokenizer: Tokenizer): Encoded {
  // Trailing whitespace of the context belongs to the continuation.
  const m = /\s+$/.exec(req.context);
  const context = m ? req.context.slice(0, m.index) : req.context;
  const continuation = m ? m[0] + req.continuation : req.continuation;
  const n = tokenizer.encode(context).length;
  const whole = tokenizer.encode(context + continuation);
  return { context: [tokenizer.prefixId, ...whole.slice(0, n)], continuation: whole.slice(n) };
}

/** Scores continuation tokens from the logits row before each one. */
function scoreTokens(
  first: Float32Array,
  rest: Float32Array,
  continuation: number[],
  V: number,
): Scored {
  let ll = 0;
  let greedy = true;
  continuation.forEach((tok, i) => {
    const row = i === 0 ? first : rest;
    const off = i === 0 ? 0 : (i - 1) * V;
    ll -= nll(row, off, V, tok);
    for (let j = 0; j < V; j++) {
      if (row[off + j] > row[off + tok]) {
        greedy = false;
        break;
      }
    }
  });
  return { logLikelihood: ll, greedy, tokens: continuation.length };
}

/**
 * Scores every request; requests whose context tokens are identical share one run of the
 * context. `onProgress(done, total)` is called per request.
 */
export function scoreRequests(
  model: LanguageModel,
  tokenizer: Tokenizer,
  requests: readonly Request[],
  onProgress?: (done: number, total: number) => void,
): Scored[] {
  const encoded = requests.map((r) => encodeRequest(r, tokenizer));
  const groups = new Map<string, number[]>();
  encoded.forEach((e, i) => {
    const key = e.context.join(',');
    const g = groups.get(key);
    if (g) g.push(i);
    else groups.set(key, [i]);
  });
  const V = model.nVocab;
  const out = new Array<Scored>(requests.length);
  let done = 0;
  for (const members of groups.values()) {
    // Too long for the model: lm-eval keeps the last max_length + 1 tokens (cut on the left).
    const first = encoded[members[0]];
    if (
      first.context.length + Math.max(...members.map((i) => encoded[i].continuation.length)) - 1 >
      model.maxContext
    ) {
      for (const i of members) {
        out[i] = scoreWhole(model, encoded[i]);
        onProgress?.(++done, requests.length);
      }
      continue;
    }
    const state = model.newState();
    const last = model.forward(encoded[members[0]].context, state, { logits: 'last' }).slice();
    for (const i of members) {
      const cont = encoded[i].continuation;
      // All but the last continuation token are fed; each row scores the next token.
      const rest =
        cont.length > 1 ? model.forward(cont.slice(0, -1), state.clone()) : new Float32Array(0);
      out[i] = scoreTokens(last, rest, cont, V);
      onProgress?.(++done, requests.length);
    }
  }
  return out;
}

/**
 * One request run whole from the zero state; the input is (context + continuation)
 * without its last token, cut on the left to the model's maximum length as lm-eval does.
 * A continuation longer than the model's context is scored on the tokens it can still
 * predict (`tokens` says how many).
 */
function scoreWhole(model: LanguageModel, { context, continuation }: Encoded): Scored {
  const V = model.nVocab;
  const all = [...context, ...continuation];
  const input = all.slice(Math.max(0, all.length - 1 - model.maxContext), -1);
  const scored = continuation.slice(Math.max(0, continuation.length - input.length));
  const logits = model.forward(input, model.newState());
  const off = (input.length - scored.length) * V;
  return scoreTokens(logits.subarray(off, off + V), logits.subarray(off + V), scored, V);
}

/** Each request run whole from the zero state: the reference the shared scorer must equal. */
export function scoreNaive(
  model: LanguageModel,
  tokenizer: Tokenizer,
  requests: readonly Request[],
): Scored[] {
  return requests.map((r) => scoreWhole(model, encodeRequest(r, tokenizer)));
}
