#!/usr/bin/env node
/**
 * The command-line entry point: the only code that touches process.argv, the standard
 * streams, signals and the exit code (dispatch.ts turns words into an exit code).
 *
 * SIGINT/SIGTERM: a stoppable command (calibrate, eval, train, bench, demo, generate)
 * gets an aborted signal, stops at its next stop point keeping what it finished, and
 * prints one line saying what was saved and how to continue (exit 130). Any other
 * command, or a second signal, ends the process at once with one line.
 */
import { commands } from './commands/index.ts';
import { resumeCommand, runCli } from './dispatch.ts';
import type { Io } from './io.ts';
import { written } from './output.ts';

const argv = process.argv.slice(2);
const controller = new AbortController();
const io: Io = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  tty: !!process.stderr.isTTY,
  signal: controller.signal,
};

const cmd = commands.find((c) => c.name === argv[0]);
let finished = false;
function onSignal(): void {
  if (finished) return;
  if (cmd?.stoppable && !controller.signal.aborted) {
    controller.abort();
    return;
  }
  const kept = written.length
    ? `wrote ${written.join(', ')} before stopping`
    : 'nothing was written';
  const again = controller.signal.aborted
    ? `stopped at once, the step in progress is lost${cmd?.options.some((o) => o.name === 'resume') ? `; continue with: ${resumeCommand(argv)}` : ''}`
    : kept;
  process.stderr.write(`interrupted: ${again}\n`);
  process.exit(130);
}
process.on('SIGINT', onSignal);
process.on('SIGTERM', onSignal);

// A closed pipe (`actsparse generate … | head`) is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
});
runCli(argv, io).then((code) => {
  finished = true;
  process.exitCode = code;
});
