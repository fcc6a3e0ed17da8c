/**
 * Zero-shot tasks as lm-evaluation-harness scores them (shared/docs/SCORING.md): each
 * item becomes log-likelihood requests `(context, continuation)`; metrics come from the
 * scores. A new task is one small file that loads items and builds requests.
 */

/** One log-likelihood request: score `continuation` given `context`. */
export interface Request {
  context: string;
  continuation: string;
}

/** The model's answer to a request. */
export interface Scored {
  /** Sum of log-softmax of the continuation tokens given everything before. */
  logLikelihood: number;
  /** Every continuation token was the argmax at its position. */
  greedy: boolean;
  /** Number of continuation tokens. */
  tokens: number;
}

export interface Item {
  /** Position in the task file (0-based), for logs and error messages. */
  index: number;
  requests: Request[];
  /**
   * multiple-choice: acc (and acc_norm by choice length) over `requests`;
   * loglikelihood: one request, perplexity and greedy accuracy (LAMBADA);
   * partial: one continuation scored under several contexts (WinoGrande), acc.
   */
  kind: 'multiple-choice' | 'loglikelihood' | 'partial';
  /** Index of the right request (multiple-choice, partial); 0 for loglikelihood. */
  gold: number;
  /** Character length of each choice text without the separator (for acc_norm). */
  choiceLengths?: number[];
}

export interface Task {
  /** lm-eval's task name, e.g. `arc_easy`. */
  name: string;
  /** The metric the paper reports for it (shown first in the summary). */
  mainMetric: 'acc' | 'acc_norm' | 'perplexity';
  /**
   * Paths of its data under shared/data/tasks (or a user's --task-dir), relative. The
   * first is the file `load` takes; any others are read beside it (PIQA's labels).
   */
  defaultFiles: string[];
  /** Built into actsparse (no file needed; `load` ignores its argument). */
  builtIn?: boolean;
  /**
   * Loads the items from a file, or from a directory holding the default file's base
   * name; malformed input → UserError naming file, line, field.
   */
  load(path: string): Item[];
}

/** Metrics as lm-eval names them: acc, acc_stderr, acc_norm, acc_norm_stderr, perplexity, … */
export type Metrics = Record<string, number>;
