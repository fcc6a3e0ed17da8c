/**
 * The work sparsity does not touch, as counts of element-wise operations per token:
 * for RWKV-4 the token-shift mixes, layer norms, sigmoid gates, the WKV recurrence,
 * relu², residual adds, plus the events and threshold compares of the site inputs.
 * The head is not here: it is a dense linear layer and is costed as one.
 *
 * Counts follow src/models/rwkv4.ts step mode line by line. Simplifications: a
 * subtraction counts as an add; |x| > λ counts as one compare; intermediate vectors are
 * assumed to stay in registers (only the recurrent state is memory traffic); ln0 is
 * folded into the embedding table once (as actsparse does), so it costs nothing per token.
 */
import { UserError } from '../errors.ts';
import { RWKV4_SITES } from '../models/rwkv4.ts';

/** Per-token operation counts (element-wise ops; state and weight values; events). */
export interface OpCounts {
  add: number;
  mul: number;
  cmp: number;
  exp: number;
  div: number;
  rsqrt: number;
  /** Values of recurrent state read / written. */
  stateReads: number;
  stateWrites: number;
  /** Weight values read outside the linear layers (the embedding row). */
  weightReads: number;
  /** Events generated for site inputs by the element-wise stages (event-driven chips). */
  events: number;
}

export const ARITH_OPS = ['add', 'mul', 'cmp', 'exp', 'div', 'rsqrt'] as const;
export type ArithOp = (typeof ARITH_OPS)[number];

export interface OpGroup {
  /** Row of the breakdown, e.g. `ops: WKV`. */
  id: string;
  /** What the counts come from, for the "not costed" lines. */
  detail: string;
  counts: OpCounts;
}

/** One linear layer of a block: site id and its shape (cols inputs → rows outputs). */
export interface SiteShape {
  id: string;
  rows: number;
  cols: number;
}

export interface ModelShape {
  architecture: string;
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  /** The linear layers of every block, in site order. */
  sites: SiteShape[];
  /** Linear layers of every block that are never thresholded (OPT's attention out_proj). */
  denseLinears?: SiteShape[];
  /** Attention models: tokens already in the context when a token is processed. */
  context?: number;
}

/** What a transformer's block costs besides its sites: the out_proj d → d, never thresholded. */
export function optDenseLinears(d: number): SiteShape[] {
  return [{ id: 'attn.out_proj', rows: d, cols: d }];
}

/** The RWKV-4 site ids, as the model file defines them. */
export const RWKV4_SITE_IDS = RWKV4_SITES;

/** The RWKV-4 block layers for d = nEmbd and channel-mix width f (4d in every released model). */
export function rwkv4Sites(d: number, f = 4 * d): SiteShape[] {
  return RWKV4_SITE_IDS.map((id) => ({
    id,
    rows: id === 'ffn.key' ? f : d,
    cols: id === 'ffn.value' ? f : d,
  }));
}

const zero = (): OpCounts => ({
  add: 0,
  mul: 0,
  cmp: 0,
  exp: 0,
  div: 0,
  rsqrt: 0,
  stateReads: 0,
  stateWrites: 0,
  weightReads: 0,
  events: 0,
});

/**
 * The element-wise work of one token through the whole model.
 * `density(block, siteIndex)` is the fraction of non-zero inputs at a site;
 * `skipsZeros` says whether inputs are checked for zeros at all (false for the d = 1
 * dense reference, which sends every value and compares nothing).
 */
export function opTable(
  shape: ModelShape,
  density: (block: number, site: number) => number,
  skipsZeros: boolean,
): OpGroup[] {
  if (shape.architecture === 'opt') return optOpTable(shape, density, skipsZeros);
  if (shape.architecture !== 'rwkv4') {
    throw new UserError(
      `hw: no op table for architecture ${shape.architecture} (rwkv4 and opt so far)`,
      'The element-wise work (norms, gates, recurrence) must be counted per architecture; add it to src/hardware/ops.ts.',
    );
  }
  const ids = shape.sites.map((s) => s.id);
  if (ids.join() !== RWKV4_SITE_IDS.join()) {
    throw new UserError(
      `hw: rwkv4 sites must be ${RWKV4_SITE_IDS.join(', ')} (got ${ids.join(', ')})`,
    );
  }
  const d = shape.nEmbd;
  const f = shape.sites[5].rows; // ffn.key: d → f
  const L = shape.nLayer;
  const g = (id: string, detail: string, c: Partial<OpCounts>): OpGroup => ({
    id,
    detail,
    counts: { ...zero(), ...c },
  });

  // Layer norm over d: mean (d adds, 1 mul), variance (d subs, d squares, d adds, 1 mul),
  // rsqrt(var + eps) (1 add, 1 rsqrt), (x−μ)·rstd·w + b (2d muls, d adds).
  const nLn = 2 * L + 1; // ln1 and ln2 per block, ln_out before the head
  const groups: OpGroup[] = [
    g('ops: embedding', 'one embedding row read per token', { weightReads: d }),
    g('ops: layer norms', `${nLn} layer norms of ${d}`, {
      add: nLn * (4 * d + 1),
      mul: nLn * (3 * d + 2),
      rsqrt: nLn,
    }),
    // x·mix + shift(x)·(1−mix), 1−mix precomputed: 3 mixes in time-mix, 2 in channel-mix;
    // the two shift vectors are state, read and replaced every token.
    g('ops: token shift', `5 token-shift mixes of ${d} per block`, {
      mul: L * 10 * d,
      add: L * 5 * d,
      stateReads: L * 2 * d,
      stateWrites: L * 2 * d,
    }),
    // Per channel (reference.ts wkv4): ww = u+k; q = max(p, ww); e1 = exp(p−q); e2 = exp(ww−q);
    // out = r·(e1·a + e2·v)/(e1·b + e2); then ww = p+w; q = max(ww, k); e1, e2 again;
    // a = e1·a + e2·v; b = e1·b + e2; p = q  → 10 add, 7 mul, 4 exp, 1 div, 2 max; state a, b, p.
    g('ops: WKV', `WKV recurrence over ${d} channels per block`, {
      add: L * 10 * d,
      mul: L * 7 * d,
      exp: L * 4 * d,
      div: L * d,
      cmp: L * 2 * d,
      stateReads: L * 3 * d,
      stateWrites: L * 3 * d,
    }),
    // σ(x) = 1/(1+exp(−x)) on att.receptance and ffn.receptance outputs; the channel-mix
    // output r·v is one more multiply per channel.
    g('ops: sigmoid gates', `2 sigmoid gates of ${d} per block`, {
      exp: L * 2 * d,
      add: L * 2 * d,
      div: L * 2 * d,
      mul: L * d,
    }),
    g('ops: relu²', `relu² of ${f} per block`, { cmp: L * f, mul: L * f }),
    g('ops: residual', `2 residual adds of ${d} per block`, { add: L * 2 * d }),
  ];

  return [...groups, ...siteInputOps(shape, density, skipsZeros, 'ffn.value')];
}

/**
 * Site inputs made by element-wise stages become events (a site fed directly by another
 * layer's neurons, `fedByLayer`, is costed with that layer). With zero skipping, every
 * site-input value is compared against its threshold (or against zero).
 */
function siteInputOps(
  shape: ModelShape,
  density: (block: number, site: number) => number,
  skipsZeros: boolean,
  fedByLayer: string,
): OpGroup[] {
  let events = 0;
  let compares = 0;
  for (let b = 0; b < shape.nLayer; b++) {
    shape.sites.forEach((s, i) => {
      if (s.id !== fedByLayer) events += density(b, i) * s.cols;
      compares += s.cols;
    });
  }
  const out: OpGroup[] = [
    {
      id: 'ops: site events',
      detail: 'site-input events from element-wise stages',
      counts: { ...zero(), events },
    },
  ];
  if (skipsZeros) {
    out.push({
      id: 'ops: thresholds',
      detail: 'one compare per site-input value',
      counts: { ...zero(), cmp: compares },
    });
  }
  return out;
}

/**
 * OPT per token at context length t (src/models/opt.ts step mode): learned position
 * added to the embedding; per layer two layer norms, attention over t cached keys and
 * values (q·k for each, softmax, weighted sum of values; the cache is state), ReLU,
 * two residual adds and the biases of q, k, v, out_proj, fc1, fc2; the final layer norm.
 */
function optOpTable(
  shape: ModelShape,
  density: (block: number, site: number) => number,
  skipsZeros: boolean,
): OpGroup[] {
  const ids = shape.sites.map((s) => s.id);
  if (ids.join() !== 'qkv,fc1,fc2')
    throw new UserError(`hw: opt sites must be qkv, fc1, fc2 (got ${ids.join(', ')})`);
  const d = shape.nEmbd;
  const f = shape.sites[1].rows;
  const L = shape.nLayer;
  const t = shape.context ?? 256;
  const nLn = 2 * L + 1;
  const c = (x: Partial<OpCounts>): OpCounts => ({ ...zero(), ...x });
  return [
    {
      id: 'ops: embedding',
      detail: 'token and position rows, added',
      counts: c({ weightReads: 2 * d, add: d }),
    },
    {
      id: 'ops: layer norms',
      detail: `${nLn} layer norms of ${d}`,
      counts: c({ add: nLn * (4 * d + 1), mul: nLn * (3 * d + 2), rsqrt: nLn }),
    },
    {
      // q·k over t keys (d MACs each), softmax over t per head (t exp, t add, t div, t−1 max),
      // Σ p·v over t values (d MACs each); the new k, v appended to the cache.
      id: 'ops: attention',
      detail: `attention over ${t} cached tokens per layer (--context)`,
      counts: c({
        mul: L * (2 * d * t + d),
        add: L * 2 * d * t,
        exp: L * t * (d / 64),
        div: L * t * (d / 64),
        cmp: L * t * (d / 64),
        stateReads: L * 2 * d * t,
        stateWrites: L * 2 * d,
      }),
    },
    { id: 'ops: relu', detail: `relu of ${f} per layer`, counts: c({ cmp: L * f }) },
    {
      id: 'ops: residual and biases',
      detail: `2 residual adds of ${d} and 6 bias adds per layer`,
      counts: c({ add: L * (2 * d + 5 * d + f) }),
    },
    ...siteInputOps(shape, density, skipsZeros, 'fc2'),
  ];
}
