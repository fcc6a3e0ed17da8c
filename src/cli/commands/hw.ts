import { UserError } from '../../errors.ts';
import { type BenchResult, readBench } from '../../formats/bench.ts';
import { writeHw } from '../../formats/hw.ts';
import { type BenchCheck, benchCheck } from '../../hardware/check.ts';
import { estimate } from '../../hardware/estimate.ts';
import { estimateJson, formatEstimate } from '../../hardware/format.ts';
import { type CostInput, parseShape, readRun, whatIf } from '../../hardware/inputs.ts';
import { applySets, loadMapping, loadProfile, profileWithBench } from '../../hardware/profile.ts';
import { toolVersion } from '../../version.ts';
import { num, parse, str } from '../args.ts';
import type { Command } from '../io.ts';

const usage =
  'actsparse hw <run-dir|thresholds.json|results.json> [--profile seneca|loihi|generic45|cpu|FILE] ' +
  '[--mapping FILE] [--set NAME=VALUE[:evidence]]… [--bench FILE] [--json FILE]\n' +
  '       actsparse hw --sparsity 0.6|att.key=0.616,…|FILE --shape 24x1024 [--vocab 50277] [--ffn N] [--context 256 (opt)] ' +
  '[--arch rwkv4] [--natural SPEC] [same options]';

export const hwCommand: Command = {
  name: 'hw',
  summary:
    'energy and latency per token, dense vs sparse, on SENECA, Loihi, generic logic or this CPU (estimates)',
  usage,
  run(args, io) {
    const p = parse(
      'hw',
      args,
      {
        profile: { type: 'string' },
        mapping: { type: 'string' },
        set: { type: 'string', multiple: true },
        bench: { type: 'string' },
        json: { type: 'string' },
        sparsity: { type: 'string' },
        natural: { type: 'string' },
        shape: { type: 'string' },
        vocab: { type: 'string' },
        ffn: { type: 'string' },
        arch: { type: 'string' },
        context: { type: 'string' },
      },
      usage,
    );
    if (p.positionals.length > 1) {
      throw new UserError(
        `hw: one run at a time (got ${p.positionals.join(' ')})`,
        `Usage: ${usage}`,
      );
    }
    const run = p.positionals[0];
    const sparsity = str(p, 'sparsity');
    const shapeSpec = str(p, 'shape');
    for (const o of ['vocab', 'ffn', 'arch']) {
      if (p.values[o] !== undefined && !shapeSpec) {
        throw new UserError(`hw: --${o} goes with --shape`, `Usage: ${usage}`);
      }
    }
    const shape = shapeSpec
      ? parseShape(
          shapeSpec,
          num(p, 'vocab', 50277, { min: 1, integer: true }),
          str(p, 'arch') ?? 'rwkv4',
          p.values.ffn === undefined ? undefined : num(p, 'ffn', 0, { min: 1, integer: true }),
        )
      : undefined;

    // Input: a run (measured densities) or a what-if (given densities and shape).
    let input: CostInput;
    if (run && sparsity) {
      throw new UserError('hw: give a run or --sparsity (a what-if), not both', `Usage: ${usage}`);
    } else if (run) {
      if (str(p, 'natural')) throw new UserError('hw: --natural belongs to a what-if (--sparsity)');
      input = readRun(run, shape);
    } else if (sparsity) {
      if (!shape) {
        throw new UserError(
          'hw: a what-if needs the model shape',
          'Add --shape LAYERSxEMBD (e.g. 24x1024) and --vocab N.',
        );
      }
      input = whatIf(shape, sparsity, str(p, 'natural'));
    } else {
      throw new UserError('hw: nothing to estimate', `Usage: ${usage}`);
    }

    // Attention models: the cached context each token attends to.
    if (input.shape.architecture === 'opt')
      input.shape.context = num(p, 'context', 256, { min: 1, integer: true });
    else if (p.values.context !== undefined)
      throw new UserError('hw: --context applies to attention models (opt)');

    let profile = loadProfile(str(p, 'profile') ?? 'seneca');
    let bench: BenchResult | null = null;
    const benchFile = str(p, 'bench');
    if (benchFile) {
      bench = readBench(benchFile);
      profile = profileWithBench(profile, bench, benchFile);
    }
    const sets = (p.values.set as string[] | undefined) ?? [];
    const applied = applySets(profile, loadMapping(str(p, 'mapping')), sets);

    const result = estimate(input, applied.profile, applied.mapping);
    let check: BenchCheck | null = null;
    if (bench) {
      check = benchCheck(applied.profile, applied.mapping, bench);
      if (!check) io.err(`${benchFile}: no model decode measurement to check against\n`);
    }
    io.out(formatEstimate(result, check));
    const json = str(p, 'json');
    if (json) {
      writeHw(json, estimateJson(result, check, toolVersion()));
      io.err(`wrote ${json}\n`);
    }
  },
};
