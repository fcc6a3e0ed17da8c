/**
 * What a token costs besides its linear layers, counted from the model's own code: the
 * model is built from its architecture's registry entry (zero weights of the recorded
 * shape) on the counting backend (tensor/count.ts) and runs one token; every op it
 * issues adds its elementwise operations, state traffic and weight reads to a group of
 * the breakdown (`ops: layer norms`, `ops: wkv4`, …), and every matrix product is
 * recorded with its shape and the site it reads. No architecture is restated here.
 *
 * What depends on the sparsity, the events and threshold compares of the site inputs,
 * is added per scenario (`siteInputOps`): a site input made by an elementwise stage is an
 * event per non-zero value on an event-driven chip; one that is the output of another
 * layer (after its activation, e.g. RWKV-4's relu² between ffn.key and ffn.value,
 * `fedBy` in the site table) is costed with that layer.
 */
import { UserError } from '../errors.ts';
import { makeBatch } from '../models/model.ts';
import { type ArchShape, architecture } from '../models/registry.ts';
import type { OpCost } from '../tensor/backend.ts';
import { type CountedMatmul, CountingBackend, emptyCost } from '../tensor/count.ts';

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
  /** Row of the breakdown, e.g. `ops: wkv4`. */
  id: string;
  /** What the counts come from, for the "not costed" lines. */
  detail: string;
  counts: OpCounts;
}

/** One linear layer: its id and shape (cols inputs → rows outputs). */
export interface SiteShape {
  id: string;
  rows: number;
  cols: number;
  /** A site whose input is another layer's output after an activation: that layer's id. */
  fedBy?: string;
}

/** What the cost model knows of a model: dimensions, sites, and its config for counting. */
export interface ModelShape {
  architecture: string;
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  /** The site layers of every block, in site order. */
  sites: SiteShape[];
  /** The architecture's config (the model's own, or derived from older files). */
  config: Record<string, unknown>;
  /** Attention models: tokens in the context (cached keys) when a token is processed. */
  context?: number;
}

/** The model as counted for one token. */
export interface CountedModel {
  /** The site layers, with `fedBy` from the model's site table. */
  sites: SiteShape[];
  /** Per block, the products that read no site (OPT's attention out_proj). */
  denseLinears: SiteShape[][];
  /** Products before the first block (project_in) and after the last (project_out, head). */
  embedLinears: SiteShape[];
  headLinears: SiteShape[];
  /** Elementwise work per token, events excluded. */
  groups: OpGroup[];
}

const zeroCounts = (): OpCounts => ({ ...emptyCost(), events: 0 });

const counted = new Map<string, CountedModel>();

/**
 * Runs the model's code for one token (after `context − 1` earlier ones, for attention)
 * on the counting backend. Memoized per shape and context.
 */
export function countModel(shape: ModelShape): CountedModel {
  const key = JSON.stringify([
    shape.architecture,
    shape.nLayer,
    shape.nEmbd,
    shape.nVocab,
    shape.config,
    shape.context ?? 0,
  ]);
  const hit = counted.get(key) ?? run(shape);
  counted.set(key, hit);
  // Recorded sites (none: take the model's) must be the model's.
  const per = hit.sites;
  const mismatch =
    shape.sites.length > 0 &&
    (shape.sites.length !== per.length ||
      shape.sites.some(
        (s, i) => s.id !== per[i].id || s.rows !== per[i].rows || s.cols !== per[i].cols,
      ));
  if (mismatch) {
    const list = (l: readonly SiteShape[]) =>
      l.map((s) => `${s.id} ${s.cols}→${s.rows}`).join(', ');
    throw new UserError(
      `hw: the recorded sites (${list(shape.sites)}) are not those of ${shape.architecture} with this config (${list(per)})`,
      'The file’s model facts are inconsistent; re-run the command that wrote it.',
    );
  }
  return hit;
}

function run(shape: ModelShape): CountedModel {
  const arch = architecture(shape.architecture);
  const be = new CountingBackend();
  const dims: ArchShape = {
    ...shape.config,
    nLayer: shape.nLayer,
    nEmbd: shape.nEmbd,
    nVocab: shape.nVocab,
  };
  const model = arch.load(arch.skeleton(dims), be);
  const per = model.sites.perBlock;
  const state = model.newState(1);
  const context = Math.max(1, shape.context ?? 1);
  if (context > 1) {
    // Earlier tokens fill an attention cache; recurrent models cost the same either way.
    const earlier = makeBatch(model, [new Array<number>(context - 1).fill(0)]);
    const x = model.embed(earlier, state);
    for (let b = 0; b < model.nLayer; b++) model.block(b, x, earlier, state);
  }
  be.start();
  const batch = makeBatch(model, [[0]]);
  be.phase = 'embed';
  const x = model.embed(batch, state);
  for (let b = 0; b < model.nLayer; b++) {
    be.phase = `block ${b}`;
    model.block(b, x, batch, state);
  }
  be.phase = 'head';
  model.head(x, 1);

  const linear = (m: CountedMatmul, id: string): SiteShape => ({ id, rows: m.rows, cols: m.cols });
  const result: CountedModel = {
    sites: per.map((s) => ({
      id: s.id,
      rows: s.rows,
      cols: s.cols,
      ...(s.fedBy ? { fedBy: s.fedBy } : {}),
    })),
    denseLinears: Array.from({ length: model.nLayer }, (_, b) =>
      be.matmuls
        .filter((m) => m.phase === `block ${b}` && m.site === undefined)
        .map((m, i) => linear(m, `dense ${i}`)),
    ),
    embedLinears: be.matmuls.filter((m) => m.phase === 'embed').map((m) => linear(m, 'embed')),
    headLinears: be.matmuls.filter((m) => m.phase === 'head').map((m) => linear(m, 'head')),
    groups: [...be.groups].map(([id, c]: [string, Required<OpCost>]) => ({
      id,
      detail: `${id.slice('ops: '.length)}: counted from the model's ops for one token`,
      counts: { ...zeroCounts(), ...c },
    })),
  };
  nameDenseLinears(result.denseLinears, model.arch);
  return result;
}

/** Names the never-thresholded products of a block (OPT's one is its attention out_proj). */
function nameDenseLinears(blocks: SiteShape[][], arch: string): void {
  for (const b of blocks) {
    b.forEach((l, i) => {
      l.id = arch === 'opt' && b.length === 1 ? 'attn.out_proj' : `${arch}.dense.${i}`;
    });
  }
}

/**
 * The elementwise work of one token through the whole model: the counted groups, plus
 * the site inputs' events and compares for the given densities. `density(block, site)`
 * is the fraction of non-zero inputs; `skipsZeros` says whether inputs are checked for
 * zeros at all (false for the dense reference, which sends every value and compares
 * nothing).
 */
export function opTable(
  shape: ModelShape,
  density: (block: number, site: number) => number,
  skipsZeros: boolean,
): OpGroup[] {
  const c = countModel(shape);
  return [
    ...c.groups.map((g) => ({ ...g, counts: { ...g.counts } })),
    ...siteInputOps(shape, c.sites, density, skipsZeros),
  ];
}

/**
 * Site inputs made by element-wise stages become events (a site fed directly by another
 * layer's neurons, `fedBy`, is costed with that layer). With zero skipping, every
 * site-input value is compared against its threshold (or against zero).
 */
function siteInputOps(
  shape: ModelShape,
  sites: SiteShape[],
  density: (block: number, site: number) => number,
  skipsZeros: boolean,
): OpGroup[] {
  let events = 0;
  let compares = 0;
  for (let b = 0; b < shape.nLayer; b++) {
    sites.forEach((s, i) => {
      if (!s.fedBy) events += density(b, i) * s.cols;
      compares += s.cols;
    });
  }
  const out: OpGroup[] = [
    {
      id: 'ops: site events',
      detail: 'site-input events from element-wise stages',
      counts: { ...zeroCounts(), events },
    },
  ];
  if (skipsZeros) {
    out.push({
      id: 'ops: thresholds',
      detail: 'one compare per site-input value',
      counts: { ...zeroCounts(), cmp: compares },
    });
  }
  return out;
}

/**
 * The config of a model from the facts an older file recorded (no `config`): RWKV-4's
 * channel-mix width from its ffn.key site; OPT's head count is not recorded, so 64-wide
 * heads are assumed (as every released OPT has).
 */
export function legacyConfig(
  architecture: string,
  nEmbd: number,
  sites: readonly SiteShape[],
  notes: string[],
  file: string,
): Record<string, unknown> {
  const rows = (id: string) => sites.find((s) => s.id === id)?.rows;
  if (architecture === 'rwkv4') return { nFfn: rows('ffn.key') ?? 4 * nEmbd };
  if (architecture === 'opt') {
    const nHead = Math.max(1, Math.round(nEmbd / 64));
    notes.push(`${file} records no config: OPT heads of 64 assumed (${nHead} heads)`);
    return { nFfn: rows('fc1') ?? 4 * nEmbd, nHead };
  }
  throw new UserError(
    `${file}: no model.config for ${architecture}, and it cannot be derived`,
    'Re-run the command that wrote it with this version of actsparse.',
  );
}

/** Model facts as thresholds, results and bench files record them. */
export interface ModelFacts {
  architecture: string;
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  siteShapes?: readonly { id: string; rows: number; cols: number }[];
  config?: Record<string, unknown>;
}

/**
 * The cost model's view of a model from recorded facts: its config (or one derived for
 * older files), and the sites as the model defines them (checked against the recorded).
 */
export function shapeFromFacts(f: ModelFacts, file: string, notes: string[]): ModelShape {
  const recorded = (f.siteShapes ?? []).map((s) => ({ id: s.id, rows: s.rows, cols: s.cols }));
  const config = f.config ?? legacyConfig(f.architecture, f.nEmbd, recorded, notes, file);
  const shape: ModelShape = {
    architecture: f.architecture,
    nLayer: f.nLayer,
    nEmbd: f.nEmbd,
    nVocab: f.nVocab,
    sites: recorded,
    config,
  };
  if (!f.siteShapes && f.architecture === 'rwkv4') {
    notes.push(
      `site shapes derived from the config (ffn ${String(config.nFfn)}): ${file} has no model.siteShapes`,
    );
  }
  shape.sites = countModel(shape).sites;
  return shape;
}
