/** Where commands write: the process streams in main.ts, buffers in tests. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** True when stderr is a terminal (progress bars redraw in place). */
  readonly tty: boolean;
}

export interface Command {
  readonly name: string;
  readonly summary: string;
  readonly usage: string;
  run(args: string[], io: Io): Promise<void> | void;
}
