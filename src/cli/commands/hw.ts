import { UserError } from '../../errors.ts';
import { type BenchResult, readBench } from '../../formats/bench.ts';
import { HwFile } from '../../formats/hw.ts';
import { formatText } from '../../formats/read.ts';
import { type BenchCheck, benchCheck } from '../../hardware/check.ts';
import { estimate } from '../../hardware/estimate.ts';
import { estimateJson, formatEstimate } from '../../hardware/format.ts';
import { type CostInput, parseShape, readRun, whatIf } from '../../hardware/inputs.ts';
import {
  applySets,
  BUILTIN_PROFILES,
  loadMapping,
  loadProfile,
  profileWithBench,
} from '../../hardware/profile.ts';
import { ARCHITECTURES } from '../../models/registry.ts';
import { toolVersion } from '../../version.ts';
import { checkJson, forceOption, jsonOption } from '../common.ts';
import type { Command } from '../io.ts';
import { humanOut, writeOutput } from '../output.ts';

export const hwCommand: Command = {
  name: 'hw',
  summary:
    'energy and latency per token, dense vs sparse, on SENECA, Loihi, generic logic or this CPU (estimates)',
  description:
    'An analytical estimate (not a simulation) of energy and latency per generated token on a hardware profile: the dense model, with its natural zeros, and with the thresholds, from the zeros a calibration or evaluation measured (RUN), or from a what-if (--sparsity with --shape). Every figure carries the weakest evidence label of the constants it used.',
  positionals: [
    {
      name: 'RUN',
      optional: true,
      help: 'A calibration or evaluation: its run folder, thresholds.json or results.json (or give --sparsity instead).',
    },
  ],
  options: [
    {
      name: 'profile',
      type: 'string',
      value: 'NAME|FILE',
      default: 'seneca',
      help: `A built-in profile (${BUILTIN_PROFILES.join(', ')}) or a profile JSON file.`,
    },
    {
      name: 'mapping',
      type: 'string',
      value: 'FILE',
      help: 'How layers map onto cores (a mapping JSON file).',
      defaultText: 'the built-in default mapping',
    },
    {
      name: 'set',
      type: 'string',
      value: 'NAME=VALUE[:EVIDENCE]',
      multiple: true,
      help: 'Override one profile or mapping constant (labelled assumed unless an evidence label follows).',
    },
    {
      name: 'bench',
      type: 'string',
      value: 'FILE',
      help: 'A bench.json from this machine: fills the cpu profile with its measurements and checks the prediction against them.',
    },
    {
      name: 'sparsity',
      type: 'string',
      value: 'X|SITE=X,…|FILE',
      help: 'What-if zeros: one fraction for every site, per-site fractions, or a file of them (needs --shape).',
    },
    {
      name: 'natural',
      type: 'string',
      value: 'X|SITE=X,…|FILE',
      help: 'What-if natural zeros of the dense model (as --sparsity).',
      defaultText: 'none',
    },
    {
      name: 'shape',
      type: 'string',
      value: 'LAYERSxEMBD',
      help: 'What-if model shape, e.g. 24x1024 (the 430M layout).',
    },
    {
      name: 'vocab',
      type: 'integer',
      min: 1,
      default: 50277,
      help: 'What-if vocabulary (with --shape).',
    },
    {
      name: 'ffn',
      type: 'integer',
      min: 1,
      help: 'What-if channel-mix width (with --shape).',
      defaultText: '4 × embd',
    },
    {
      name: 'arch',
      type: 'choice',
      value: 'NAME',
      choices: ARCHITECTURES.map((x) => x.name),
      default: 'rwkv4',
      help: 'What-if architecture (with --shape).',
    },
    {
      name: 'context',
      type: 'integer',
      min: 1,
      default: 256,
      help: 'Attention models (opt): cached tokens each new token attends to.',
    },
    jsonOption('the estimate'),
    forceOption,
  ],
  examples: [
    'actsparse hw runs/cal --profile seneca',
    'actsparse hw --sparsity 0.6 --shape 24x1024 --profile cpu --bench bench.json --json -',
  ],
  run(a, io) {
    const [run] = a.positionals;
    const json = checkJson(a, io);
    const say = humanOut(io, json);
    const sparsity = a.str('sparsity');
    const shapeSpec = a.str('shape');
    for (const o of ['vocab', 'ffn', 'arch']) {
      if (a.has(o) && !shapeSpec) throw new UserError(`--${o} goes with --shape`);
    }
    const shape = shapeSpec
      ? parseShape(shapeSpec, a.num('vocab')!, a.str('arch')!, a.num('ffn'))
      : undefined;

    // Input: a run (measured densities) or a what-if (given densities and shape).
    let input: CostInput;
    if (run && sparsity) {
      throw new UserError('give a run or --sparsity (a what-if), not both');
    } else if (run) {
      if (a.has('natural')) throw new UserError('--natural belongs to a what-if (--sparsity)');
      input = readRun(run, shape);
    } else if (sparsity) {
      if (!shape) {
        throw new UserError(
          'a what-if needs the model shape',
          'Add --shape LAYERSxEMBD (e.g. 24x1024) and --vocab N.',
        );
      }
      input = whatIf(shape, sparsity, a.str('natural'));
    } else {
      throw new UserError('nothing to estimate', 'Give a RUN folder, or --sparsity with --shape.');
    }

    // Attention models: the cached context each token attends to.
    if (input.shape.architecture === 'opt') input.shape.context = a.num('context')!;
    else if (a.has('context')) throw new UserError('--context applies to attention models (opt)');

    let profile = loadProfile(a.str('profile')!);
    let bench: BenchResult | null = null;
    const benchFile = a.str('bench');
    if (benchFile) {
      bench = readBench(benchFile);
      profile = profileWithBench(profile, bench, benchFile);
    }
    const applied = applySets(profile, loadMapping(a.str('mapping')), a.list('set'));

    const result = estimate(input, applied.profile, applied.mapping);
    let check: BenchCheck | null = null;
    if (bench) {
      check = benchCheck(applied.profile, applied.mapping, bench);
      if (!check) io.err(`${benchFile}: no model decode measurement to check against\n`);
    }
    say(formatEstimate(result, check));
    if (json) {
      writeOutput(
        io,
        json,
        formatText(HwFile, estimateJson(result, check, toolVersion()), 'hw.json'),
      );
      if (json !== '-') io.err(`wrote ${json}\n`);
    }
  },
};
