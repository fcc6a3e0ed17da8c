/**
 * TEAL's greedy allocation (Liu et al. 2024, "Training-Free Activation Sparsity in Large
 * Language Models"), in the same harness: block by block, raise by one step the sparsity
 * of the site whose step costs the least block-output error per MAC saved, until the
 * block's MAC-weighted sparsity reaches the target. Thresholds come from each site's
 * activation distribution (the same statistic as the paper method).
 */
import type { LanguageModel } from '../models/model.ts';
import type { SearchEvaluator, SearchHooks, SiteDecision } from './search.ts';

/** Sparsity levels a site can take: 0, 5%, …, 95%. */
const STEP = 0.05;
const LEVELS = Array.from({ length: 20 }, (_, i) => Math.round(i * STEP * 100) / 100);

export async function tealSearch(
  ev: SearchEvaluator,
  model: LanguageModel,
  target: number,
  hooks: SearchHooks = {},
): Promise<SiteDecision[]> {
  const S = ev.siteIds.length;
  const macs = model.sites.perBlock.map((s) => s.rows * s.cols);
  const totalMacs = macs.reduce((a, b) => a + b, 0);
  const decisions: SiteDecision[] = [];
  for (let b = 0; b < ev.nBlocks; b++) {
    const replayed = Array.from({ length: S }, (_, s) => hooks.done?.[b * S + s]);
    if (replayed.every((d) => d)) {
      for (const d of replayed as SiteDecision[]) {
        ev.commit(d.g, d.lambda);
        decisions.push(d);
      }
      continue;
    }
    // λ per level for every site, from the block's input with no threshold in the block.
    const table: number[][] = [];
    for (let s = 0; s < S; s++)
      table.push(
        await ev.thresholdsFor(
          b * S + s,
          LEVELS.map((l) => 1 - l),
        ),
      );
    // Level 0 is no threshold at all (the K = 1 quantile would still zero the smallest value).
    for (const t of table) t[0] = 0;
    const level = new Array<number>(S).fill(0);
    const rows: SiteDecision['candidates'][] = Array.from({ length: S }, () => []);
    let err = 0;
    const sparsity = () => level.reduce((a, l, s) => a + LEVELS[l] * macs[s], 0) / totalMacs;
    while (sparsity() < target - 1e-9) {
      let best = -1;
      let bestScore = Number.POSITIVE_INFINITY;
      let bestErr = 0;
      const trials: { s: number; e: number }[] = [];
      for (let s = 0; s < S; s++) {
        if (level[s] + 1 >= LEVELS.length) continue;
        const lam = level.map((l, i) => table[i][i === s ? l + 1 : l]);
        await hooks.stopPoint?.();
        const e = await ev.blockError(b, lam);
        trials.push({ s, e });
        // Error added per MAC made skippable: the ffn sites (4× MACs) are not penalised for size.
        const score = (e - err) / macs[s];
        if (score < bestScore) {
          bestScore = score;
          best = s;
          bestErr = e;
        }
      }
      if (best < 0) break;
      for (const { s, e } of trials) {
        const k = 1 - LEVELS[level[s] + 1];
        rows[s].push({
          block: b,
          site: ev.siteIds[s],
          k,
          lambda: table[s][level[s] + 1],
          loss: e,
          ratio: e,
          accepted: s === best,
        });
      }
      level[best]++;
      err = bestErr;
    }
    for (let s = 0; s < S; s++) {
      const g = b * S + s;
      const lambda = table[s][level[s]];
      ev.commit(g, lambda);
      const d: SiteDecision = {
        g,
        block: b,
        site: ev.siteIds[s],
        k: 1 - LEVELS[level[s]],
        lambda,
        loss: Number.NaN,
        candidates: rows[s],
      };
      decisions.push(d);
      // A block cut short by a kill is recomputed whole; only new sites are journaled.
      if (!hooks.done?.[g]) hooks.onSite?.(d);
    }
  }
  return decisions;
}
