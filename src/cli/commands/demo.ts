/**
 * `actsparse demo`: the whole method on the embedded model in a few minutes, with no
 * download. Each step is the command a user would run, run in-process; every file goes
 * into one new directory, and the summary says where.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserError } from '../../errors.ts';
import { parse, str } from '../args.ts';
import type { Command, Io } from '../io.ts';
import { bench } from './bench.ts';
import { calibrateCommand } from './calibrate.ts';
import { evalCommand } from './eval.ts';
import { hwCommand } from './hw.ts';
import { reportCommand } from './report.ts';

/** The byte-level RWKV-4 trained by `actsparse train` on Brown text (models/README.md). */
export function embeddedModelPath(): string {
  return fileURLToPath(new URL('../../../models/rwkv4-brown-3m.safetensors', import.meta.url));
}

const usage = 'actsparse demo [--out DIR] [--backend B]';

/** A new directory name: DIR, else DIR-2, DIR-3, … (an earlier demo is never overwritten). */
function freshDir(base: string): string {
  if (!existsSync(base)) return base;
  for (let i = 2; ; i++) if (!existsSync(`${base}-${i}`)) return `${base}-${i}`;
}

export const demo: Command = {
  name: 'demo',
  summary: 'calibrate, evaluate, cost and measure the embedded model, and write a report',
  usage,
  async run(args, io) {
    const p = parse('demo', args, { out: { type: 'string' }, backend: { type: 'string' } }, usage);
    const model = embeddedModelPath();
    if (!existsSync(model)) {
      throw new UserError(
        `the embedded model is missing (${model})`,
        'Reinstall actsparse, or run from a complete checkout.',
      );
    }
    const out = freshDir(str(p, 'out') ?? 'actsparse-demo');
    const backend = str(p, 'backend') ? ['--backend', str(p, 'backend')!] : [];
    const t0 = performance.now();
    const step = async (title: string, cmd: Command, argv: string[], quiet = false) => {
      const t = performance.now();
      io.err(`\n== ${title}\n`);
      // Commands write their own tables; the demo keeps stdout for what matters.
      const sub: Io = { out: quiet ? () => {} : io.out, err: io.err, tty: io.tty };
      await cmd.run(argv, sub);
      io.err(`   (${((performance.now() - t) / 1000).toFixed(1)} s)\n`);
    };

    const run = join(out, 'run');
    await step(
      '1/5 calibrate: the paper’s search at loss_inc 1.0005 on Brown text',
      calibrateCommand,
      [
        model,
        ...backend,
        '--data',
        'brown',
        '--loss-inc',
        '1.0005',
        '--docs',
        '16',
        '--ctx',
        '512',
        '--windows',
        '16',
        '--out',
        run,
      ],
    );
    const thresholds = join(run, 'thresholds.json');
    await step('2/5 evaluate dense and sparse: held-out loss and zero-shot tasks', evalCommand, [
      model,
      ...backend,
      '--thresholds',
      thresholds,
      '--tasks',
      'brown_cloze',
      '--text',
      'brown',
      '--ctx',
      '512',
      '--windows',
      '16',
      '--limit',
      '300',
      '--out',
      join(run, 'eval'),
    ]);
    await step('3/5 measure decode speed on this CPU, dense and with the thresholds', bench, [
      '--model',
      model,
      ...backend,
      '--thresholds',
      thresholds,
      '--seq-len',
      '256',
      '--repeats',
      '5',
      '--json',
      join(run, 'bench.json'),
    ]);
    await step('4/5 estimate energy and latency on SENECA and this CPU', hwCommand, [
      run,
      '--profile',
      'seneca',
      '--json',
      join(run, 'hw.json'),
    ]);
    await step('   … and the cpu profile, filled from the measurement above', hwCommand, [
      run,
      '--profile',
      'cpu',
      '--bench',
      join(run, 'bench.json'),
      '--json',
      join(run, 'hw-cpu.json'),
    ]);
    const report = join(out, 'report.html');
    await step('5/5 write the report', reportCommand, [run, '--out', report], true);
    io.out(
      `\nDemo finished in ${((performance.now() - t0) / 1000).toFixed(0)} s.\n` +
        `  report:       ${report}\n` +
        `  thresholds:   ${thresholds}\n` +
        `  evaluation:   ${join(run, 'eval', 'results.json')}\n` +
        `  hardware:     ${join(run, 'hw.json')} (SENECA), ${join(run, 'hw-cpu.json')} (this CPU)\n` +
        `  speed:        ${join(run, 'bench.json')}\n`,
    );
  },
};
