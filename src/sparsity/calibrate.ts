/**
 * A calibration run from data to a run directory:
 *
 *   journal.jsonl     config, then one line per decided site (written as it goes), so
 *                     that `resume` after a kill finishes with byte-identical files
 *   thresholds.json   λ per site with provenance and measured sparsity
 *   calibration.csv   every evaluated candidate: block, site, K, λ, loss, ratio, accepted
 *   config.json       the effective configuration
 *
 * (The file formats are in src/formats/.)
 */
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadCorpus, splitDocuments, tokenizeDocuments } from '../data/documents.ts';
import { textWindows, tokenWindows } from '../data/windows.ts';
import { Interrupted, UserError } from '../errors.ts';
import {
  type CalibrationConfig,
  writeCalibrationConfig,
  writeCalibrationCsv,
} from '../formats/calibration.ts';
import { modelFacts } from '../formats/facts.ts';
import { THRESHOLDS_KIND, type ThresholdsFile, writeThresholds } from '../formats/thresholds.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import { textLoss } from '../models/loss.ts';
import { type LanguageModel, withThresholds } from '../models/model.ts';
import { Stopped, stopPoint } from '../util/cancel.ts';
import { ModelEvaluator } from './evaluator.ts';
import { headMacShare, macWeighted, measureSparsity } from './plan.ts';
import {
  denseDecisions,
  paperSearch,
  type SearchHooks,
  type SiteDecision,
  uniformSearch,
} from './search.ts';
import { tealSearch } from './teal.ts';

export type { CalibrationConfig };

export interface ModelSource {
  file: string;
  fileSha256: string;
  tool: { name: string; version: string };
}

export interface CalibrationWindows {
  windows: number[][];
  /** The held-out documents as text windows (data/windows.ts: the one text loss), up to as many. */
  heldOut: number[][];
  documents: string[];
  description: string;
  sha256: string;
}

/** Calibration windows from the configured data (held-out documents set aside). */
export function calibrationWindows(
  cfg: CalibrationConfig,
  tokenizer: Tokenizer,
): CalibrationWindows {
  const corpus = loadCorpus(cfg.data);
  const split = splitDocuments(corpus.docs, cfg.docs, cfg.seed);
  const tokens = tokenizeDocuments(
    split.calibration.map((d) => d.text),
    tokenizer,
  );
  const windows = tokenWindows(tokens, cfg.ctx + 1, cfg.windows);
  if (windows.length < cfg.windows) {
    throw new UserError(
      `${cfg.data}: ${split.calibration.length} calibration documents give ${tokens.length} tokens, ` +
        `${windows.length} windows of ${cfg.ctx + 1}; ${cfg.windows} were requested`,
      'Use more --docs, a smaller --ctx, or fewer --windows.',
    );
  }
  const hash = createHash('sha256');
  for (const w of windows) hash.update(new Uint8Array(Int32Array.from(w).buffer));
  const heldTokens = tokenizeDocuments(
    split.heldOut.map((d) => d.text),
    tokenizer,
  );
  return {
    windows,
    heldOut: textWindows(heldTokens, cfg.ctx, cfg.windows),
    documents: split.calibration.map((d) => d.id),
    description: corpus.description,
    sha256: hash.digest('hex'),
  };
}

export interface CalibrateOptions {
  resume: boolean;
  /** Called after each site: sites done, total. */
  onProgress?: (done: number, total: number) => void;
  /** A line on each stage before the sites (data, natural sparsity, dense loss). */
  log?: (line: string) => void;
  /**
   * Stops before the next candidate when aborted, throwing `Interrupted`: every site
   * decided so far is in the journal, and `resume` continues from there.
   */
  signal?: AbortSignal;
}

export interface CalibrationResult {
  plan: ThresholdsFile;
  /** Sites decided in this process (the rest came from the journal). */
  decidedNow: number;
}

const stable = (x: unknown) => JSON.stringify(x);

export async function calibrate(
  model: LanguageModel,
  tokenizer: Tokenizer,
  source: ModelSource,
  cfg: CalibrationConfig,
  outDir: string,
  opts: CalibrateOptions,
): Promise<CalibrationResult> {
  const log = opts.log ?? (() => {});
  log(`tokenizing the calibration data (${cfg.data}, ${cfg.docs} documents)`);
  const data = calibrationWindows(cfg, tokenizer);
  const header = { config: cfg, model: model.fingerprint, data: data.sha256 };
  const journalPath = join(outDir, 'journal.jsonl');

  // Nothing a user made is overwritten: a finished run or a journal needs a decision.
  let done: SiteDecision[] = [];
  if (existsSync(join(outDir, 'thresholds.json')) && !opts.resume) {
    throw new UserError(
      `${outDir} already holds a finished calibration`,
      'Choose another --out directory.',
    );
  }
  if (existsSync(journalPath)) {
    if (!opts.resume) {
      throw new UserError(
        `${outDir} holds an unfinished calibration (journal.jsonl)`,
        'Pass --resume to finish it, or choose another --out directory.',
      );
    }
    const lines = readFileSync(journalPath, 'utf8').split('\n').filter(Boolean);
    if (lines[0] !== stable(header)) {
      throw new UserError(
        `${journalPath} was written for another model, data or configuration`,
        'Resume with exactly the same command, or start a new --out directory.',
      );
    }
    // A line cut short by a kill is dropped: that site is simply decided again.
    for (const l of lines.slice(1)) {
      try {
        done.push(JSON.parse(l) as SiteDecision);
      } catch {
        break;
      }
    }
    writeFileSync(journalPath, `${[lines[0], ...done.map(stable)].join('\n')}\n`);
  } else {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(journalPath, `${stable(header)}\n`);
    done = [];
  }

  const total = model.thresholds.length;
  log(
    `${data.windows.length} windows of ${cfg.ctx + 1} tokens; measuring natural sparsity and the dense loss` +
      (done.length ? ` (${done.length} of ${total} sites already in the journal)` : ''),
  );
  const natural = await measureSparsity(model, data.windows);
  const ev = new ModelEvaluator(model, data.windows, cfg.statistic);
  const denseLoss = await ev.loss();
  let decidedNow = 0;
  const hooks: SearchHooks = {
    done,
    onSite: (d: SiteDecision) => {
      appendFileSync(journalPath, `${stable(d)}\n`);
      decidedNow++;
      opts.onProgress?.(d.g + 1, total);
    },
    stopPoint: () => stopPoint(opts.signal),
  };
  let decisions: SiteDecision[];
  try {
    switch (cfg.method) {
      case 'paper':
        decisions = await paperSearch(ev, cfg, hooks);
        break;
      case 'uniform':
        decisions = await uniformSearch(ev, cfg.keep, hooks);
        break;
      case 'teal':
        decisions = await tealSearch(ev, model, cfg.targetSparsity, hooks);
        break;
      case 'none':
        decisions = denseDecisions(ev, hooks);
        break;
    }
  } catch (e) {
    if (!(e instanceof Stopped)) throw e;
    ev.free();
    throw new Interrupted(
      `${done.length + decidedNow} of ${total} sites decided, saved in ${journalPath}`,
      true,
    );
  }
  log('all sites decided; measuring the final and held-out losses');
  const finalLoss = await ev.loss();
  ev.free();
  const measured = await measureSparsity(model, data.windows);
  // Held-out loss, dense and with the thresholds, on documents calibration never saw.
  const heldOut = { windows: data.heldOut.length, denseLoss: Number.NaN, sparseLoss: Number.NaN };
  if (data.heldOut.length) {
    heldOut.sparseLoss = (await textLoss(model, data.heldOut)).meanNll;
    const dense = new Float32Array(model.thresholds.length);
    heldOut.denseLoss = (
      await withThresholds(model, dense, () => textLoss(model, data.heldOut))
    ).meanNll;
  }

  const plan: ThresholdsFile = {
    formatVersion: 1,
    kind: THRESHOLDS_KIND,
    tool: source.tool,
    model: {
      file: source.file,
      fileSha256: source.fileSha256,
      ...modelFacts(model),
    },
    data: {
      description: data.description,
      sha256: data.sha256,
      documents: data.documents,
      windows: data.windows.length,
      ctx: cfg.ctx,
      tokens: data.windows.length * cfg.ctx,
      seed: cfg.seed,
      tokenizer: `${tokenizer.kind} (${tokenizer.source})`,
    },
    method: { name: cfg.method, params: methodParams(cfg) },
    results: {
      denseLoss,
      finalLoss,
      lossGrowth: finalLoss / denseLoss,
      heldOut: heldOut.windows ? heldOut : null,
      sparsity: {
        macWeighted: macWeighted(model, measured),
        naturalMacWeighted: macWeighted(model, natural),
        headMacShare: headMacShare(model),
      },
      // Counted from the decisions, not the process, so a resumed run reports the same.
      work: searchWork(decisions, model.nLayer, data.windows.length * cfg.ctx, cfg.method),
    },
    sites: decisions.map((d) => ({
      block: d.block,
      site: d.site,
      k: d.k,
      lambda: d.lambda,
      sparsity: measured[d.g],
      naturalSparsity: natural[d.g],
      loss: Number.isFinite(d.loss) ? d.loss : null,
    })),
  };
  writeCalibrationCsv(
    join(outDir, 'calibration.csv'),
    decisions.flatMap((d) => d.candidates),
  );
  writeCalibrationConfig(join(outDir, 'config.json'), cfg);
  writeThresholds(join(outDir, 'thresholds.json'), plan);
  return { plan, decidedNow };
}

/**
 * Work in block-token forwards. Ours: a statistics pass runs one block; a candidate of a
 * site in block b runs blocks b … N−1 (teal's runs one); moving to the next block runs
 * one; the dense and final losses run all N. The authors' way runs all N blocks for
 * every statistics pass and every candidate.
 */
function searchWork(decisions: readonly SiteDecision[], N: number, tokens: number, method: string) {
  let ours = 2 * N + (N - 1);
  let authors = 2 * N;
  let statisticsPasses = 0;
  let lossEvaluations = 0;
  for (const d of decisions) {
    if (method !== 'none') {
      statisticsPasses++;
      ours += 1;
      authors += N;
    }
    const n = d.candidates.length;
    lossEvaluations += n;
    ours += n * (method === 'teal' ? 1 : N - d.block);
    authors += n * N;
  }
  return {
    blockTokens: ours * tokens,
    authorsBlockTokens: authors * tokens,
    lossEvaluations,
    statisticsPasses,
  };
}

function methodParams(cfg: CalibrationConfig): Record<string, unknown> {
  const common = { statistic: cfg.statistic };
  switch (cfg.method) {
    case 'paper':
      return {
        ...common,
        lossInc: cfg.lossInc,
        grid: cfg.grid,
        startK: cfg.startK,
        kNum: cfg.kNum,
        faithful: cfg.faithful,
      };
    case 'uniform':
      return { ...common, keep: cfg.keep };
    case 'teal':
      return { ...common, targetSparsity: cfg.targetSparsity };
    case 'none':
      return {};
  }
}
