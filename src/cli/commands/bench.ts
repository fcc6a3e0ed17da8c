import { formatBench, runBench } from '../../bench/run.ts';
import { Interrupted, UserError } from '../../errors.ts';
import { BenchResult } from '../../formats/bench.ts';
import { formatText } from '../../formats/read.ts';
import { readThresholds, thresholdsPath } from '../../formats/thresholds.ts';
import { openCheckpoint } from '../../io/open.ts';
import { ARCHITECTURES, architecture, detectEntry } from '../../models/registry.ts';
import { applyThresholds, zerosByDepth } from '../../sparsity/plan.ts';
import type { Backend } from '../../tensor/backend.ts';
import { openBackend } from '../../tensor/select.ts';
import { checkJson, forceOption, jsonOption, sayingNotices } from '../common.ts';
import type { Command } from '../io.ts';
import { humanOut, STDOUT, writeOutput } from '../output.ts';

/** "24x1024" → layers and width, both ≥ 1. */
function parseShape(s: string): { nLayer: number; nEmbd: number } {
  const m = /^(\d+)x(\d+)$/.exec(s);
  const [nLayer, nEmbd] = m ? [Number(m[1]), Number(m[2])] : [0, 0];
  if (!m || nLayer < 1 || nEmbd < 1 || nLayer > 4096 || nEmbd > 65536)
    throw new UserError(
      `--shape ${s}: expected LAYERSxEMBD with both ≥ 1, e.g. 24x1024 (the 430M layout)`,
    );
  return { nLayer, nEmbd };
}

export const bench: Command = {
  name: 'bench',
  summary: 'kernel and model speed on this machine against its measured limits',
  description:
    'Measures this machine: memory read bandwidth, GEMM and GEMV rates per backend and thread count, the zero-skipping GEMV against the fastest dense path, and a model’s decode speed (dense and sparse) and sequence speed. Every figure is the median of repeated runs with min and max, measured in one process. The model is --model, or random weights of --shape (RWKV-4 unless --arch says otherwise).',
  stoppable: true,
  positionals: [],
  options: [
    {
      name: 'model',
      type: 'string',
      value: 'FILE',
      help: 'A checkpoint to time.',
      defaultText: 'random weights of --shape',
    },
    {
      name: 'shape',
      type: 'string',
      value: 'LAYERSxEMBD',
      help: 'Random weights of this layout, e.g. 24x1024 (the 430M layout).',
      defaultText: '2x256, vocabulary 1000',
    },
    {
      name: 'arch',
      type: 'choice',
      choices: ARCHITECTURES.map((x) => x.name),
      default: 'rwkv4',
      help: 'Architecture of the random weights (with --shape).',
    },
    {
      name: 'vocab',
      type: 'integer',
      min: 2,
      max: 1 << 22,
      default: 50277,
      help: 'Vocabulary of the random model (with --shape).',
    },
    {
      name: 'sparsity',
      type: 'number',
      min: 0,
      max: 0.99,
      default: 0.6,
      help: 'Share of zeros λ is set for at every site for the sparse decode (from a probe of the dense model).',
    },
    {
      name: 'zeros-from',
      type: 'string',
      value: 'RUN',
      help: 'Instead of --sparsity: each site’s zeros from a calibration (its folder or thresholds.json), laid onto the model by relative depth.',
    },
    {
      name: 'thresholds',
      type: 'string',
      value: 'FILE|DIR',
      help: 'The calibrated λ of --model for the sparse decode (its thresholds.json or run folder).',
    },
    {
      name: 'seq-len',
      type: 'integer',
      min: 0,
      max: 1 << 16,
      default: 512,
      help: 'Tokens of the sequence-mode measurement (0: none).',
    },
    {
      name: 'decode-tokens',
      type: 'integer',
      min: 1,
      max: 1 << 16,
      help: 'Tokens per timed decode run.',
      defaultText: 'about 0.3 s of decoding, at least 16',
    },
    {
      name: 'repeats',
      type: 'integer',
      min: 1,
      max: 1000,
      default: 9,
      help: 'Timed runs per measurement (the median is reported).',
    },
    {
      name: 'backend',
      type: 'string',
      value: 'LIST',
      default: 'auto,native,wasm,js',
      help: 'Backends to compare, comma-separated (auto, native, wasm, js, webgpu); the first that loads times the model. webgpu prints the adapter, its limits and features, GEMM TFLOP/s, GEMV GB/s, the zero-skipping GEMV and the calibration rate.',
    },
    {
      name: 'quick',
      type: 'boolean',
      help: 'Small problems (for tests): the figures mean little.',
    },
    {
      name: 'model-only',
      type: 'boolean',
      help: 'Only the model’s decode and sequence speed, not the kernel tables.',
    },
    jsonOption('the measurements (bench.json, read by `hw --bench` and `report`)'),
    forceOption,
  ],
  examples: [
    'actsparse bench --json bench.json',
    'actsparse bench --backend webgpu --shape 24x1024 --json bench-gpu.json',
    'actsparse bench --shape 24x1024 --zeros-from runs/cal --model-only --decode-tokens 8 --seq-len 0',
  ],
  async run(a, io) {
    // Everything is checked before anything is measured.
    const modelPath = a.str('model');
    const shapeSpec = a.str('shape');
    if (modelPath && shapeSpec) throw new UserError('give --model or --shape, not both');
    if (a.has('vocab') && !shapeSpec) throw new UserError('--vocab goes with --shape');
    if (a.has('arch') && !shapeSpec) throw new UserError('--arch goes with --shape');
    const arch = architecture(a.str('arch')!);
    const shape = shapeSpec ? { ...parseShape(shapeSpec), nVocab: a.num('vocab')! } : undefined;
    const thresholdsArg = a.str('thresholds');
    if (thresholdsArg && !modelPath) throw new UserError('--thresholds goes with --model');
    const zerosFrom = a.str('zeros-from');
    if (zerosFrom && (thresholdsArg || a.has('sparsity')))
      throw new UserError('give one of --zeros-from, --thresholds and --sparsity');
    if (zerosFrom && modelPath)
      throw new UserError(
        '--zeros-from goes with random weights (--shape); use --thresholds with --model',
      );
    const thresholdsFile = thresholdsArg ? thresholdsPath(thresholdsArg) : undefined;
    const plan = thresholdsFile ? readThresholds(thresholdsFile) : null;
    const zerosFile = zerosFrom ? thresholdsPath(zerosFrom) : undefined;
    const zeros = zerosFile ? readThresholds(zerosFile) : null;
    if (zeros && zeros.model.architecture !== arch.name)
      throw new UserError(
        `--zeros-from ${zerosFrom}: a ${zeros.model.architecture} run; the random weights are ${arch.label} (--arch ${zeros.model.architecture} to match)`,
      );
    // The run's sites in block order: the same architecture has the same site table.
    const siteIds = zeros ? [...new Set(zeros.sites.map((s) => s.site))] : [];
    const json = checkJson(a, io);
    const say = humanOut(io, json);
    const checkpoint = modelPath ? openCheckpoint(modelPath) : undefined;
    try {
      // Backends to compare: a comma list, or every one that loads here (fastest first),
      // each with the kernel families of the model's architecture.
      const entry = checkpoint ? detectEntry(checkpoint) : arch;
      const backends: Backend[] = [];
      for (const n of a.str('backend')!.split(',')) {
        try {
          const b = await sayingNotices(io, () =>
            openBackend(n.trim(), { families: entry?.families, what: entry?.label }),
          );
          if (!backends.includes(b)) backends.push(b);
        } catch (e) {
          if (a.has('backend')) throw e;
          io.err(`skipping ${n}: ${(e as UserError).message}\n`);
        }
      }
      const nLayer = shape?.nLayer ?? 2;
      const result = await runBench({
        backends,
        repeats: a.num('repeats')!,
        checkpoint,
        shape,
        arch: arch.name,
        sparsity: a.num('sparsity')!,
        siteZeros: zeros ? zerosByDepth(zeros.sites, nLayer, siteIds) : undefined,
        siteZerosSource: zeros
          ? `λ set on these random weights for the zeros per site of ${zerosFile} (${zeros.model.nLayer} blocks, laid on ${nLayer} by relative depth)`
          : undefined,
        decodeTokens: a.num('decode-tokens'),
        sequenceT: a.num('seq-len')!,
        quick: a.flag('quick'),
        modelOnly: a.flag('model-only'),
        thresholds: plan ? (model) => applyThresholds(model, plan, thresholdsFile!) : undefined,
        signal: io.signal,
        log: (line) => io.err(`  … ${line}\n`),
      });
      say(formatBench(result));
      if (json) writeOutput(io, json, formatText(BenchResult, result, 'bench.json'));
      if (result.interrupted) {
        throw new Interrupted(
          `the measurements made so far are printed above${json && json !== STDOUT ? ` and in ${json}` : ''}`,
          false,
        );
      }
    } finally {
      checkpoint?.close();
    }
  },
};
