/**
 * The calibration methods over an abstract evaluator, so that the decisions can be
 * tested with a scripted loss and run on any model:
 *
 * - `paper`: the sequential search of METHOD.md §3 (block by block, site by site,
 *   denser → sparser while loss / base < loss_inc, with the most-common-K warm start);
 * - `uniform`: the same keep-fraction K at every site, no loss feedback;
 * - `none`: dense.
 *
 * (`teal` lives in teal.ts.)
 */

import type { Candidate } from '../formats/calibration.ts';

/** A value now, or once a backend has read it back. */
export type Awaitable<T> = T | Promise<T>;

/** What a search needs from a model and its calibration data. */
export interface SearchEvaluator {
  readonly nBlocks: number;
  /** Site ids of one block, in search order. */
  readonly siteIds: readonly string[];
  /** Loss with the thresholds committed so far (the dense loss at the start). */
  loss(): Awaitable<number>;
  /** λ for each keep-fraction K at global site `g`: earlier sites thresholded, `g` at 0. */
  thresholdsFor(g: number, keep: readonly number[]): Awaitable<number[]>;
  /** Loss with site `g` at λ and every other site as committed. */
  lossWith(g: number, lambda: number): Awaitable<number>;
  /** Fixes site `g` at λ. */
  commit(g: number, lambda: number): void;
  /**
   * Relative error ‖y − y₀‖² / ‖y₀‖² of block b's output with its sites at `lambdas`
   * (one per site of the block), against the block with no thresholds, on the same input.
   */
  blockError(b: number, lambdas: readonly number[]): Awaitable<number>;
}

export interface PaperOptions {
  grid: 'linear' | 'exp';
  startK: number;
  /** Points of the exp grid. */
  kNum: number;
  lossInc: number;
  /** Reproduce the authors' three quirks (METHOD.md §3) instead of fixing them. */
  faithful: boolean;
}

/** One evaluated candidate: a row of calibration.csv. */
export type { Candidate };

/** The decision for one site: a line of the journal and of thresholds.json. */
export interface SiteDecision {
  /** Global site index. */
  g: number;
  block: number;
  site: string;
  /** Chosen keep-fraction; 1 = left dense (default mode, when no K passed). */
  k: number;
  lambda: number;
  /** The loss after this site (the next site's base). */
  loss: number;
  candidates: Candidate[];
}

const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

/** The K grid, densest first (METHOD.md §3). */
export function keepGrid(kind: 'linear' | 'exp', startK: number, kNum: number): number[] {
  if (kind === 'linear') {
    const out: number[] = [];
    for (let k = startK; k >= 0.1 - 1e-9; k = round6(k - 0.1)) out.push(round6(k));
    return out;
  }
  // unique(round(geomspace(start_k, 0.01, k_num), 2)), descending
  const out = new Set<number>();
  for (let i = 0; i < kNum; i++) {
    const t = kNum === 1 ? 0 : i / (kNum - 1);
    out.add(Math.round(startK * (0.01 / startK) ** t * 100) / 100);
  }
  return [...out].sort((a, b) => b - a);
}

/** Most frequent K in a site's history; ties go to the smaller K (sparser). */
export function mostCommon(history: readonly number[]): number | null {
  if (history.length === 0) return null;
  const counts = new Map<number, number>();
  for (const k of history) counts.set(k, (counts.get(k) ?? 0) + 1);
  let best: number | null = null;
  let bestCount = 0;
  for (const [k, c] of counts) {
    if (c > bestCount || (c === bestCount && best !== null && k < best)) {
      best = k;
      bestCount = c;
    }
  }
  return best;
}

export interface SearchHooks {
  /** Decisions already made (from a journal): replayed without evaluating anything. */
  done?: readonly SiteDecision[];
  /** Called after every site with its decision (the caller journals it). */
  onSite?: (d: SiteDecision) => void;
  /** Awaited before every loss evaluation; throws to stop the search (util/cancel.ts). */
  stopPoint?: () => Promise<void>;
}

/** METHOD.md §3. Returns one decision per site, in search order. */
export async function paperSearch(
  ev: SearchEvaluator,
  o: PaperOptions,
  hooks: SearchHooks = {},
): Promise<SiteDecision[]> {
  const grid = keepGrid(o.grid, o.startK, o.kNum);
  const S = ev.siteIds.length;
  const history = new Map<string, number[]>();
  const decisions: SiteDecision[] = [];
  let base = Number.NaN;

  for (let b = 0; b < ev.nBlocks; b++) {
    for (let s = 0; s < S; s++) {
      const g = b * S + s;
      const site = ev.siteIds[s];
      const hist = history.get(site) ?? [];
      history.set(site, hist);
      const replay = hooks.done?.[g];
      if (replay) {
        // Resume: the journal holds what this site decided; the state is rebuilt exactly.
        if (replay.g !== g || replay.site !== site)
          throw new Error(`journal entry ${g} is for ${replay.site}`);
        ev.commit(g, replay.lambda);
        if (replay.k < 1) hist.push(replay.k);
        base = replay.loss;
        decisions.push(replay);
        continue;
      }
      if (Number.isNaN(base)) base = await ev.loss();

      const lambdas = await ev.thresholdsFor(g, grid);
      const candidates: Candidate[] = [];
      const tryK = async (i: number): Promise<boolean> => {
        await hooks.stopPoint?.();
        const loss = await ev.lossWith(g, lambdas[i]);
        const ratio = loss / base;
        const accepted = ratio < o.lossInc;
        candidates.push({ block: b, site, k: grid[i], lambda: lambdas[i], loss, ratio, accepted });
        return accepted;
      };
      // res ← (base, K[0]) in the authors' code: with nothing accepted, K[0] is still applied.
      let res: { loss: number; i: number } | null = null;
      const warm = mostCommon(hist);
      const wi = warm === null ? -1 : grid.indexOf(warm);
      const useWarm = wi > 0 && (o.grid === 'linear' || !o.faithful);
      if (!useWarm) {
        for (let i = 0; i < grid.length; i++) {
          if (!(await tryK(i))) break;
          res = { loss: candidates[candidates.length - 1].loss, i };
        }
      } else if (await tryK(wi)) {
        res = { loss: candidates[candidates.length - 1].loss, i: wi };
        for (let i = wi + 1; i < grid.length; i++) {
          if (!(await tryK(i))) break;
          res = { loss: candidates[candidates.length - 1].loss, i };
        }
      } else {
        for (let i = wi - 1; i >= 0; i--) {
          if (await tryK(i)) {
            res = { loss: candidates[candidates.length - 1].loss, i };
            break;
          }
        }
      }

      let decision: SiteDecision;
      if (res) {
        decision = {
          g,
          block: b,
          site,
          k: grid[res.i],
          lambda: lambdas[res.i],
          loss: res.loss,
          candidates,
        };
      } else if (o.faithful) {
        // Quirks 1 and 2: K[0] is applied anyway and the base keeps the old loss.
        decision = { g, block: b, site, k: grid[0], lambda: lambdas[0], loss: base, candidates };
      } else {
        // Fixed: the site stays dense, and the loss is exactly the old one.
        decision = { g, block: b, site, k: 1, lambda: 0, loss: base, candidates };
      }
      ev.commit(g, decision.lambda);
      if (decision.k < 1) hist.push(decision.k);
      base = decision.loss;
      decisions.push(decision);
      hooks.onSite?.(decision);
    }
  }
  return decisions;
}

/** The same K at every site, λ from each site's statistics in search order (no loss feedback). */
export async function uniformSearch(
  ev: SearchEvaluator,
  keep: number,
  hooks: SearchHooks = {},
): Promise<SiteDecision[]> {
  const S = ev.siteIds.length;
  const decisions: SiteDecision[] = [];
  for (let g = 0; g < ev.nBlocks * S; g++) {
    const site = ev.siteIds[g % S];
    const replay = hooks.done?.[g];
    if (!replay) await hooks.stopPoint?.();
    const lambda = replay ? replay.lambda : (await ev.thresholdsFor(g, [keep]))[0];
    ev.commit(g, lambda);
    const d = replay ?? {
      g,
      block: Math.floor(g / S),
      site,
      k: keep,
      lambda,
      loss: Number.NaN,
      candidates: [],
    };
    decisions.push(d);
    if (!replay) hooks.onSite?.(d);
  }
  return decisions;
}

/** Every site dense (the `none` method): λ = 0, natural sparsity only. */
export function denseDecisions(ev: SearchEvaluator, hooks: SearchHooks = {}): SiteDecision[] {
  const S = ev.siteIds.length;
  return Array.from({ length: ev.nBlocks * S }, (_, g) => {
    ev.commit(g, 0);
    const d = {
      g,
      block: Math.floor(g / S),
      site: ev.siteIds[g % S],
      k: 1,
      lambda: 0,
      loss: Number.NaN,
      candidates: [],
    };
    if (!hooks.done?.[g]) hooks.onSite?.(d);
    return d;
  });
}
