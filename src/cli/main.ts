#!/usr/bin/env node
/**
 * The command-line entry point: the only code that touches process.argv, the standard
 * streams and the exit code. Exit 0 on success, 2 for a user's mistake (bad option,
 * broken file), 1 for a bug in actsparse.
 */
import { UserError } from '../errors.ts';
import { closeBackends } from '../tensor/select.ts';
import { commands } from './commands/index.ts';
import type { Io } from './io.ts';

const io: Io = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
  tty: !!process.stderr.isTTY,
};

function help(): string {
  const w = Math.max(...commands.map((c) => c.name.length));
  return [
    'actsparse: training-free activation sparsity for RWKV and OPT language models',
    '',
    'Usage: actsparse <command> [options]',
    '',
    ...commands.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    '',
    'Run `actsparse <command> --help` for a command’s options.',
    '',
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    io.out(help());
    return 0;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    io.err(`actsparse: unknown command "${name}"\n\n${help()}`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(`Usage: ${cmd.usage}\n\n${cmd.summary}\n`);
    return 0;
  }
  try {
    await cmd.run(rest, io);
    return 0;
  } catch (e) {
    if (e instanceof UserError) {
      io.err(`actsparse ${name}: ${e.message}\n${e.hint ? `hint: ${e.hint}\n` : ''}`);
      return 2;
    }
    io.err(
      `actsparse ${name}: internal error (a bug; please report it):\n${(e as Error).stack ?? e}\n`,
    );
    return 1;
  }
}

// A closed pipe (`actsparse generate … | head`) is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
});
main(process.argv.slice(2))
  // A GPU device keeps Node running until it is closed.
  .finally(closeBackends)
  .then((code) => {
    process.exitCode = code;
  });
