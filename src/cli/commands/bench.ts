import { UserError } from '../../errors.ts';
import { openCheckpoint } from '../../io/open.ts';
import { formatBench, runBench } from '../../report/bench.ts';
import { applyThresholds, readThresholds } from '../../sparsity/plan.ts';
import type { Backend } from '../../tensor/backend.ts';
import { openBackend } from '../../tensor/select.ts';
import { num, parse, str } from '../args.ts';
import type { Command } from '../io.ts';
import { writeFileAtomic } from '../output.ts';

const usage =
  'actsparse bench [--model FILE | --shape LAYERSxEMBD] [--vocab N] [--sparsity 0.6] [--seq-len 512] [--repeats 9] [--backend LIST of auto,native,wasm,js,webgpu] [--json FILE] [--quick] [--model-only] [--thresholds FILE (with --model)]';

export const bench: Command = {
  name: 'bench',
  summary: 'kernel and model speed on this machine against its measured limits',
  usage,
  async run(args, io) {
    const p = parse(
      'bench',
      args,
      {
        model: { type: 'string' },
        shape: { type: 'string' },
        vocab: { type: 'string' },
        sparsity: { type: 'string' },
        'seq-len': { type: 'string' },
        repeats: { type: 'string' },
        backend: { type: 'string' },
        json: { type: 'string' },
        quick: { type: 'boolean' },
        thresholds: { type: 'string' },
        'model-only': { type: 'boolean' },
      },
      usage,
    );
    // Backends to compare: a comma list, or every one that loads here (fastest first; a
    // GPU when `auto` finds one).
    const names = (str(p, 'backend') ?? 'auto,native,wasm,js').split(',');
    const backends: Backend[] = [];
    for (const n of names) {
      try {
        const b = await openBackend(n.trim());
        if (!backends.includes(b)) backends.push(b);
      } catch (e) {
        if (str(p, 'backend')) throw e;
        io.err(`skipping ${n}: ${(e as UserError).message}\n`);
      }
    }
    let shape: { nLayer: number; nEmbd: number; nVocab: number } | undefined;
    const s = str(p, 'shape');
    if (s) {
      const m = /^(\d+)x(\d+)$/.exec(s);
      if (!m)
        throw new UserError(`--shape ${s}: expected LAYERSxEMBD, e.g. 24x1024 (the 430M layout)`);
      shape = {
        nLayer: Number(m[1]),
        nEmbd: Number(m[2]),
        nVocab: num(p, 'vocab', 50277, { min: 2, integer: true }),
      };
    }
    const modelPath = str(p, 'model');
    if (modelPath && shape) throw new UserError('bench: give --model or --shape, not both');
    const thresholdsPath = str(p, 'thresholds');
    if (thresholdsPath && !modelPath) throw new UserError('bench: --thresholds goes with --model');
    const plan = thresholdsPath ? readThresholds(thresholdsPath) : null;
    const checkpoint = modelPath ? openCheckpoint(modelPath) : undefined;
    try {
      const result = await runBench({
        backends,
        repeats: num(p, 'repeats', 9, { min: 1, max: 1000, integer: true }),
        checkpoint,
        shape,
        sparsity: num(p, 'sparsity', 0.6, { min: 0, max: 0.99 }),
        sequenceT: num(p, 'seq-len', 512, { min: 0, max: 1 << 16, integer: true }),
        quick: !!p.values.quick,
        modelOnly: !!p.values['model-only'],
        thresholds: plan ? (model) => applyThresholds(model, plan, thresholdsPath!) : undefined,
        log: (line) => io.err(`  … ${line}\n`),
      });
      io.out(formatBench(result));
      const json = str(p, 'json');
      if (json) writeFileAtomic(json, `${JSON.stringify(result, null, 2)}\n`);
    } finally {
      checkpoint?.close();
    }
  },
};
