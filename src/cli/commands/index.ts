import type { Command } from '../io.ts';
import { bench } from './bench.ts';
import { calibrateCommand } from './calibrate.ts';
import { convert } from './convert.ts';
import { demo } from './demo.ts';
import { evalCommand } from './eval.ts';
import { generate } from './generate.ts';
import { hwCommand } from './hw.ts';
import { info } from './info.ts';
import { logits } from './logits.ts';
import { perplexity } from './perplexity.ts';
import { reportCommand } from './report.ts';
import { trainCommand } from './train.ts';

/** Every command, in the order `actsparse --help` lists them. */
export const commands: readonly Command[] = [
  demo,
  info,
  generate,
  logits,
  perplexity,
  calibrateCommand,
  evalCommand,
  hwCommand,
  reportCommand,
  convert,
  bench,
  trainCommand,
];
