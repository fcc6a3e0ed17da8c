/**
 * `actsparse demo`: the whole method on the embedded model in a few minutes, with no
 * download, through the library (the same functions the commands call): calibrate,
 * evaluate dense and sparse on a task the model can do, measure decode speed (on the
 * embedded model, and on the 430M layout with the calibrated zeros), estimate hardware
 * cost, and write the report. Every file goes into one folder; the summary says where.
 */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runBench } from '../../bench/run.ts';
import { Interrupted, UserError } from '../../errors.ts';
import { chanceAccuracy, resolveTasks, resolveTexts, runEval } from '../../eval/run.ts';
import { type BenchResult, writeBench } from '../../formats/bench.ts';
import { writeHw } from '../../formats/hw.ts';
import { benchCheck } from '../../hardware/check.ts';
import { estimate } from '../../hardware/estimate.ts';
import { estimateJson } from '../../hardware/format.ts';
import { readRun } from '../../hardware/inputs.ts';
import { loadMapping, loadProfile, profileWithBench } from '../../hardware/profile.ts';
import { sha256OfPath } from '../../io/hash.ts';
import { openCheckpoint } from '../../io/open.ts';
import { RWKV4_SITES } from '../../models/rwkv4.ts';
import { loadRuns } from '../../report/load.ts';
import { calibrate } from '../../sparsity/calibrate.ts';
import { applyThresholds, zerosByDepth } from '../../sparsity/plan.ts';
import { writeFileAtomic } from '../../util/files.ts';
import { toolVersion } from '../../version.ts';
import { backendOption, forceOption, openModel } from '../common.ts';
import type { Command } from '../io.ts';
import { prepareRunFolder } from '../output.ts';
import { progress } from '../progress.ts';

/** The byte-level RWKV-4 trained by `actsparse train` on Brown text (models/README.md). */
export function embeddedModelPath(): string {
  return fileURLToPath(new URL('../../../models/rwkv4-brown-3m.safetensors', import.meta.url));
}

/** The task the demo scores: the model does it well above chance (25%). */
const TASK = 'brown_next_word';
/** The layout of RWKV-4 430M (random weights): decode speed where weights leave the caches. */
const BIG = { nLayer: 24, nEmbd: 1024, nVocab: 50277 };
/** Tokens per timed decode run on the 430M layout (a 1.7 GB read per token), and runs. */
const BIG_TOKENS = 4;
const BIG_RUNS = 3;

export const demo: Command = {
  name: 'demo',
  summary: 'calibrate, evaluate, cost and measure the embedded model, and write a report',
  description:
    'Runs the whole method on the embedded model (a 3M-parameter byte-level RWKV-4 trained on Brown text) in a few minutes with no download: calibrates thresholds (the paper’s search at loss_inc 1.0005), scores a next-word task on held-out text dense and sparse (chance 25%), measures decode speed on the embedded model and on the RWKV-4 430M layout (random weights, λ set for the calibrated zeros per site), estimates energy on SENECA and this CPU, and writes report.html. Interrupted, it continues with --resume.',
  stoppable: true,
  positionals: [],
  options: [
    {
      name: 'out',
      type: 'string',
      value: 'DIR',
      default: 'actsparse-demo',
      help: 'The folder for every file the demo writes.',
    },
    {
      name: 'resume',
      type: 'boolean',
      help: 'Continue an interrupted demo in --out (calibration and evaluation keep their finished work).',
    },
    forceOption,
    backendOption,
  ],
  examples: ['actsparse demo', 'actsparse demo --out /tmp/demo --force'],
  async run(a, io) {
    const modelPath = embeddedModelPath();
    if (!existsSync(modelPath)) {
      throw new UserError(
        `the embedded model is missing (${modelPath})`,
        'Reinstall actsparse, or run from a complete checkout.',
      );
    }
    const out = a.str('out')!;
    const resume = a.flag('resume');
    const start = prepareRunFolder(out, {
      option: '--out',
      what: 'a demo',
      files: ['run', 'report.html'],
      force: a.flag('force'),
      resume,
    });
    if (start) io.err(`${start}\n`);
    const run = join(out, 'run');
    const t0 = performance.now();
    let stepName = '';
    const step = async <T>(title: string, fn: () => Promise<T>): Promise<T> => {
      const t = performance.now();
      stepName = title.replace(/^[\d/]+ /, '');
      io.err(`\n== ${title}\n`);
      const r = await fn();
      io.err(`   (${((performance.now() - t) / 1000).toFixed(1)} s)\n`);
      return r;
    };
    const { model, tokenizer, ckpt } = await openModel(modelPath, a, io);
    ckpt.close();
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    try {
      // 1. Thresholds.
      const { plan } = await step(
        '1/6 calibrate: the paper’s search at loss_inc 1.0005 on 16 windows of Brown text',
        () =>
          calibrate(
            model,
            tokenizer,
            { file: resolve(modelPath), fileSha256: sha256OfPath(modelPath), tool: toolVersion() },
            {
              method: 'paper',
              data: 'brown',
              docs: 16,
              ctx: 512,
              windows: 16,
              seed: 42,
              statistic: 'per-token',
              lossInc: 1.0005,
              grid: 'linear',
              startK: 0.9,
              kNum: 10,
              faithful: false,
              keep: 0.5,
              targetSparsity: 0.5,
            },
            run,
            { resume, onProgress: progress(io, 'calibrate'), signal: io.signal },
          ),
      );
      const thresholds = join(run, 'thresholds.json');
      const r = plan.results;
      io.err(
        `   ${pct(r.sparsity.macWeighted)} zeros MAC-weighted (natural ${pct(r.sparsity.naturalMacWeighted)}), calibration loss ×${r.lossGrowth.toFixed(4)}\n`,
      );

      // 2. Accuracy, dense and sparse.
      const evalDir = join(run, 'eval');
      const { tasks } = resolveTasks([TASK], undefined, undefined);
      const units = [...tasks, ...resolveTexts(['brown'], tokenizer, 512, 16)];
      const evaluated = await step(
        `2/6 evaluate dense and sparse: ${TASK} (${tasks[0].items.length} items, 4 choices) and held-out loss`,
        () => {
          let bar = progress(io, 'eval');
          let current = '';
          return runEval(
            model,
            tokenizer,
            units,
            {
              model: resolve(modelPath),
              thresholds: resolve(thresholds),
              tasks: [TASK],
              taskDir: null,
              limit: null,
              texts: ['brown'],
              ctx: 512,
              windows: 16,
              logSamples: false,
            },
            evalDir,
            {
              resume: existsSync(join(evalDir, 'journal.jsonl')),
              signal: io.signal,
              onProgress: (pass, unit, d, n) => {
                if (current !== `${pass} ${unit}`) {
                  current = `${pass} ${unit}`;
                  bar = progress(io, current);
                }
                if (d === n || d % 200 === 0) bar(d, n);
              },
            },
          );
        },
      );
      const chance = chanceAccuracy(tasks[0].items)!;
      const acc = (pass: 'dense' | 'sparse', m: string) =>
        (pass === 'dense' ? evaluated.dense : evaluated.sparse!).tasks[TASK].metrics[m];

      // 3. Decode speed of the embedded model itself (it lives in the caches).
      const own = await step(
        '3/6 measure this CPU: kernels, and the embedded model’s decode, dense and with its thresholds',
        async () => {
          const checkpoint = openCheckpoint(modelPath);
          try {
            // The kernel tables too: they fill the cpu profile of step 5.
            return await runBench({
              backends: [model.backend],
              repeats: 5,
              checkpoint,
              sparsity: 0,
              thresholds: (m) => applyThresholds(m, plan, thresholds),
              sequenceT: 256,
              signal: io.signal,
              log: (line) => io.err(`   … ${line}\n`),
            });
          } finally {
            checkpoint.close();
          }
        },
      );
      stopIfInterrupted(own);
      writeBench(join(run, 'bench.json'), own);

      // 4. Decode speed where it matters: the 430M layout, weights streamed from memory.
      const siteZeros = zerosByDepth(plan.sites, BIG.nLayer, RWKV4_SITES);
      const big = await step(
        `4/6 decode speed on the RWKV-4 430M layout (random weights, the calibrated zeros per site), ${BIG_TOKENS} tokens × ${BIG_RUNS} runs`,
        () =>
          runBench({
            backends: [model.backend],
            repeats: BIG_RUNS,
            shape: BIG,
            sparsity: 0,
            siteZeros,
            siteZerosSource: `λ set on random 430M-layout weights for the embedded model’s calibrated zeros per site (${plan.model.nLayer} blocks laid on ${BIG.nLayer} by relative depth)`,
            decodeTokens: BIG_TOKENS,
            sequenceT: 0,
            modelOnly: true,
            signal: io.signal,
            log: (line) => io.err(`   … ${line}\n`),
          }),
      );
      stopIfInterrupted(big);
      writeBench(join(run, 'bench-430m.json'), big);

      // 5. Hardware estimates: SENECA, and this CPU filled from the measurement.
      await step('5/6 estimate energy and latency on SENECA and on this CPU', async () => {
        const input = readRun(run);
        const mapping = loadMapping();
        const seneca = estimate(input, loadProfile('seneca'), mapping);
        writeHw(join(run, 'hw.json'), estimateJson(seneca, null, toolVersion()));
        const cpu = profileWithBench(loadProfile('cpu'), own, join(run, 'bench.json'));
        const check = benchCheck(cpu, mapping, own);
        writeHw(
          join(run, 'hw-cpu.json'),
          estimateJson(estimate(input, cpu, mapping), check, toolVersion()),
        );
      });

      // 6. The report.
      const report = join(out, 'report.html');
      await step('6/6 write the report', async () => {
        const { buildReport } = await import('../../report/html.ts');
        const { html } = await buildReport(loadRuns([run]), {
          title: 'actsparse demo: the embedded model',
          tool: toolVersion(),
        });
        writeFileAtomic(report, html);
      });

      const bm = big.model!;
      const om = own.model!;
      const speed = (m: NonNullable<BenchResult['model']>) =>
        `${m.decodeDense.median.toFixed(1)} → ${m.decodeSparse.median.toFixed(1)} tokens/s (${(m.decodeSparse.median / m.decodeDense.median).toFixed(2)}×) at ${pct(m.measuredZeros)} zeros`;
      const heldName = Object.keys(evaluated.dense.texts)[0];
      const held = evaluated.dense.texts[heldName].meanNll;
      const heldSparse = evaluated.sparse!.texts[heldName].meanNll;
      io.out(
        [
          '',
          `Demo finished in ${((performance.now() - t0) / 1000).toFixed(0)} s.`,
          `  zeros:        ${pct(r.sparsity.macWeighted)} of block-layer inputs, MAC-weighted (natural ${pct(r.sparsity.naturalMacWeighted)})`,
          `  accuracy:     ${TASK}, ${tasks[0].items.length} items: acc ${pct(acc('dense', 'acc'))} → ${pct(acc('sparse', 'acc'))} (± ${pct(acc('sparse', 'acc_stderr'))}), acc_norm ${pct(acc('dense', 'acc_norm'))} → ${pct(acc('sparse', 'acc_norm'))}; chance ${pct(chance)}`,
          `  loss:         held-out Brown ${held.toFixed(4)} → ${heldSparse.toFixed(4)} nats/byte (×${(heldSparse / held).toFixed(4)})`,
          `  decode, 430M layout (random weights, calibrated zeros per site, ${BIG_TOKENS} tokens × ${BIG_RUNS} runs): ${speed(bm)}`,
          `  decode, the embedded 3M model (it fits in the caches): ${speed(om)}`,
          `  report:       ${report}`,
          `  files:        ${run}/ (thresholds.json, eval/results.json, bench.json, bench-430m.json, hw.json, hw-cpu.json)`,
          '',
        ].join('\n'),
      );
    } catch (e) {
      if (e instanceof Interrupted) {
        throw new Interrupted(`during "${stepName}": ${e.saved}`, true);
      }
      throw e;
    }
  },
};

/** A bench stopped by Ctrl-C: nothing of it is kept (it is quick to redo). */
function stopIfInterrupted(r: BenchResult): void {
  if (r.interrupted) throw new Interrupted('the measurements are redone on --resume', true);
}
