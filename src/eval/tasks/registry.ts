/** The zero-shot tasks by lm-eval name, and where their data sits in a task folder. */
import { existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { UserError } from '../../errors.ts';
import { arcChallenge, arcEasy } from './arc.ts';
import { brownCloze } from './brown-cloze.ts';
import { brownNextWord } from './brown-next-word.ts';
import { hellaswag } from './hellaswag.ts';
import { lambadaOpenai } from './lambada.ts';
import { openbookqa } from './openbookqa.ts';
import { piqa } from './piqa.ts';
import { sciq } from './sciq.ts';
import type { Task } from './task.ts';
import { winogrande } from './winogrande.ts';

/** In the paper's table order. */
export const TASKS: Record<string, Task> = {
  lambada_openai: lambadaOpenai,
  piqa,
  hellaswag,
  winogrande,
  arc_easy: arcEasy,
  arc_challenge: arcChallenge,
  openbookqa,
  sciq,
};

/** Tasks that need no data file; named explicitly (not part of `all`, which is lm-eval's set). */
export const BUILT_IN_TASKS: Record<string, Task> = {
  brown_next_word: brownNextWord,
  brown_cloze: brownCloze,
};

export function getTask(name: string): Task {
  const key = name.trim().toLowerCase();
  if (Object.hasOwn(TASKS, key)) return TASKS[key];
  if (Object.hasOwn(BUILT_IN_TASKS, key)) return BUILT_IN_TASKS[key];
  throw new UserError(
    `unknown task "${name}"`,
    `Known tasks: ${[...Object.keys(TASKS), ...Object.keys(BUILT_IN_TASKS)].join(', ')}.`,
  );
}

/**
 * The file of `task` in a task folder: `taskDir/<defaultFiles[0]>` (a folder laid out
 * like shared/data/tasks), else `taskDir/<its base name>` when that exists (the task's
 * own folder). Returns the first path even when missing; the caller checks.
 */
export function resolveTaskPath(task: Task, taskDir: string): string {
  const main = join(taskDir, task.defaultFiles[0]);
  const flat = join(taskDir, basename(task.defaultFiles[0]));
  return !existsSync(main) && existsSync(flat) ? flat : main;
}
