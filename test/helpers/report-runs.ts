/**
 * Run folders for the report tests: two real calibrations of a tiny random RWKV-4 (a
 * loss_inc sweep), the first with a real `hw --json`, a hand-written eval results.json
 * and bench.json, and a model file name that tries HTML injection.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { hwCommand } from '../../src/cli/commands/hw.ts';
import { invoke } from '../../src/cli/dispatch.ts';
import type { Io } from '../../src/cli/io.ts';
import type { ThresholdsFile } from '../../src/formats/thresholds.ts';
import { memoryCheckpoint } from '../../src/io/memory.ts';
import { loadTokenizer } from '../../src/io/tokenizer.ts';
import { randomRwkv4 } from '../../src/models/random.ts';
import { Rwkv4 } from '../../src/models/rwkv4.ts';
import { type CalibrationConfig, calibrate } from '../../src/sparsity/calibrate.ts';
import { jsBackend } from '../../src/tensor/select.ts';
import { rng } from '../../src/util/random.ts';

export const HOSTILE = '/models/"><img src=x onerror=alert(1)><script>alert(2)</script>.pth';

export const quietIo: Io = { out: () => {}, err: () => {}, tty: false };

export interface ReportRuns {
  /** thresholds, calibration.csv, config.json, eval/results.json, hw.json, bench.json */
  full: string;
  fullPlan: ThresholdsFile;
  /** A second calibration (loss_inc 1.05): thresholds, calibration.csv, config.json. */
  second: string;
  secondPlan: ThresholdsFile;
}

/** Task accuracies written into results.json: [dense, sparse]. */
export const ACC = { piqa: [0.6, 0.58], hellaswag: [0.3, 0.31] } as const;

export async function makeReportRuns(root: string): Promise<ReportRuns> {
  const text = join(root, 'corpus.jsonl');
  const words = 'the of and to in is was that for it with as his on be at by had are but'.split(
    ' ',
  );
  const r = rng(3);
  writeFileSync(
    text,
    Array.from({ length: 12 }, (_, d) =>
      JSON.stringify({
        text: `${Array.from({ length: 60 }, () => words[Math.floor(r() * words.length)]).join(' ')} doc${d}.`,
      }),
    ).join('\n'),
  );
  const cfg: CalibrationConfig = {
    method: 'paper',
    data: text,
    docs: 11,
    ctx: 48,
    windows: 6,
    seed: 1,
    statistic: 'per-token',
    lossInc: 1.01,
    grid: 'linear',
    startK: 0.9,
    kNum: 10,
    faithful: false,
    keep: 0.5,
    targetSparsity: 0.5,
  };
  const source = {
    file: HOSTILE,
    fileSha256: 'ab'.repeat(32),
    tool: { name: 'actsparse', version: 'test' },
  };
  const model = () =>
    Rwkv4.load(
      memoryCheckpoint(randomRwkv4({ nLayer: 2, nEmbd: 32, nVocab: 256, seed: 9 })),
      jsBackend,
    );
  const bytes = loadTokenizer('bytes');
  const full = join(root, 'li-1.01');
  const second = join(root, 'li-1.05');
  const fullPlan = (await calibrate(model(), bytes, source, cfg, full, { resume: false })).plan;
  const secondPlan = (
    await calibrate(model(), bytes, source, { ...cfg, lossInc: 1.05 }, second, {
      resume: false,
    })
  ).plan;

  await invoke(hwCommand, [full, '--profile', 'seneca', '--json', join(full, 'hw.json')], quietIo);

  const metrics = (i: 0 | 1) => ({
    piqa: { acc: ACC.piqa[i], acc_stderr: 0.01 },
    hellaswag: { acc: 0.2, acc_stderr: 0.01, acc_norm: ACC.hellaswag[i], acc_norm_stderr: 0.012 },
  });
  const held = (nll: number) => ({
    'held-out <b>text</b>': { meanNll: nll, perplexity: Math.exp(nll), tokens: 470 },
  });
  const evalResults = {
    formatVersion: 1,
    kind: 'actsparse.eval',
    results: metrics(1),
    versions: { piqa: 0, hellaswag: 0 },
    heldOut: held(5.6),
    sparsity: {
      macWeighted: fullPlan.results.sparsity.macWeighted,
      naturalMacWeighted: fullPlan.results.sparsity.naturalMacWeighted,
      perSite: fullPlan.sites.map((s) => ({
        block: s.block,
        site: s.site,
        sparsity: s.sparsity,
        naturalSparsity: s.naturalSparsity,
      })),
    },
    dense: { results: metrics(0), heldOut: held(5.5) },
    model: fullPlan.model,
    config: {
      model: HOSTILE,
      thresholds: join(full, 'thresholds.json'),
      tasks: ['piqa', 'hellaswag'],
      taskDir: null,
      limit: 100,
      items: { piqa: 100, hellaswag: 100 },
      texts: ['corpus'],
      ctx: 48,
      windows: 6,
      tokenizer: 'bytes (built-in)',
      backend: 'js',
    },
    timing: {},
    tool: { name: 'actsparse', version: 'test' },
  };
  mkdirSync(join(full, 'eval'));
  writeFileSync(join(full, 'eval', 'results.json'), JSON.stringify(evalResults));

  const stat = (median: number) => ({ median, min: 0.8 * median, max: 1.2 * median });
  const bench = {
    formatVersion: 1,
    machine: { cpu: 'Test CPU <i>', cores: 2, node: '20.0.0' },
    backends: ['js (reference)'],
    bandwidth: [{ threads: 1, gbps: stat(20) }],
    gemm: [{ backend: 'js', threads: 1, shape: '32x256->512', gflops: stat(3) }],
    gemv: [{ backend: 'js', threads: 1, shape: '512x512', gbps: stat(4) }],
    sparse: [0, 0.5, 0.9].map((zeros) => ({
      backend: 'js',
      threads: 1,
      zeros,
      speedup: stat(1 + zeros),
      ideal: 1 / (1 - zeros),
    })),
    model: {
      source: 'random RWKV-4 2x256, vocab 1000',
      backend: 'js',
      shape: 'rwkv4 2x256 (vocab 1000)',
      weightBytesPerToken: 7.8e6,
      decodeDense: stat(100),
      floorTokensPerSec: 2500,
      targetZeros: 0.6,
      measuredZeros: 0.6,
      decodeSparse: stat(150),
      sequenceT: 0,
      sequence: null,
    },
  };
  writeFileSync(join(full, 'bench.json'), JSON.stringify(bench));
  return { full, fullPlan, second, secondPlan };
}
