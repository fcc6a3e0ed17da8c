#!/usr/bin/env node
/**
 * The command-line entry point: the only code that touches process.argv, the standard
 * streams, signals and the exit code (dispatch.ts turns words into an exit code).
 *
 * SIGINT/SIGTERM: a stoppable command (calibrate, eval, train, bench, demo, generate,
 * perplexity) gets an aborted signal, stops at its next stop point keeping what it
 * finished, and prints one line saying what was saved and how to continue (exit 130).
 * A second signal, or one sent to any other command (they write their outputs whole,
 * at the end), ends the process at once.
 */
import { closeBackends } from '../tensor/select.ts';
import { commands } from './commands/index.ts';
import { runCli } from './dispatch.ts';
import type { Io } from './io.ts';

const argv = process.argv.slice(2);
const controller = new AbortController();
const io: Io = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  tty: !!process.stderr.isTTY,
  signal: controller.signal,
};

if (commands.find((c) => c.name === argv[0])?.stoppable) {
  // The handler runs when the event loop next turns (at a stop point); removing it
  // restores the default action, so that a second signal ends the process at once.
  const onSignal = () => {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

// A closed pipe (`actsparse generate … | head`) is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
});
runCli(argv, io)
  // A WebGPU device keeps Node running until it is closed.
  .finally(closeBackends)
  .then((code) => {
    process.exitCode = code;
  });
