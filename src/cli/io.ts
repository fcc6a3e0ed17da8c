/** Where commands write: the process streams in main.ts, buffers in tests. */
import type { Args, CommandSpec } from './options.ts';

export interface Io {
  /** Results: text, or bytes (`logits --out -`). */
  out(data: string | Uint8Array): void;
  /** Progress, notes and tables moved off stdout by `--json -`. */
  err(text: string): void;
  /** True when stderr is a terminal (progress bars redraw in place). */
  readonly tty: boolean;
  /** Aborted on SIGINT/SIGTERM; stoppable commands pass it to the library. */
  readonly signal?: AbortSignal;
}

export interface Command extends CommandSpec {
  /**
   * Honours `io.signal`: stops at the library's next stop point keeping what it
   * finished. Other commands are ended at once (they write only at the end).
   */
  readonly stoppable?: boolean;
  run(args: Args, io: Io): Promise<void> | void;
}
