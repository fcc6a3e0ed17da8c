/**
 * From the words after `actsparse` to an exit code: the overview, `--version`,
 * `help CMD`, `CMD --help`, "did you mean", and every error as one line (plus a hint),
 * never a stack trace for a user's mistake. Exit 0 on success, 2 for a user's mistake
 * (and for no command at all), 130 when interrupted, 1 for a bug in actsparse.
 */
import { Interrupted, UserError } from '../errors.ts';
import { oneLine } from '../util/files.ts';
import { toolVersion } from '../version.ts';
import { commands } from './commands/index.ts';
import type { Command, Io } from './io.ts';
import { closest, helpText, parseArgs, wantsHelp } from './options.ts';

function overview(): string {
  const w = Math.max(...commands.map((c) => c.name.length));
  return [
    'actsparse: training-free activation sparsity for RWKV, Mamba and OPT language models',
    '',
    'Usage: actsparse <command> [options]',
    '',
    'Commands:',
    ...commands.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    '',
    'Run `actsparse <command> --help` (or `actsparse help <command>`) for its options and',
    'examples, `actsparse --version` for the version. Start with `actsparse demo`.',
    '',
  ].join('\n');
}

function findCommand(name: string): Command {
  const cmd = commands.find((c) => c.name === name);
  if (cmd) return cmd;
  const near = closest(
    name,
    commands.map((c) => c.name),
  );
  throw new UserError(
    `unknown command "${name}"${near ? `; did you mean \`${near}\`?` : ''}`,
    'Run `actsparse --help` for the list of commands.',
  );
}

/** Parses and runs one command (errors propagate: tests call this in-process). */
export async function invoke(cmd: Command, args: readonly string[], io: Io): Promise<void> {
  await cmd.run(parseArgs(cmd, args), io);
}

/** A word as a POSIX shell reads it back. */
function shellWord(w: string): string {
  return /^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`;
}

/** The command line that continues an interrupted run: the same words, --resume instead of --force. */
function resumeCommand(argv: readonly string[]): string {
  const words = argv.filter((w) => w !== '--force');
  if (!words.includes('--resume')) words.push('--resume');
  return ['actsparse', ...words].map(shellWord).join(' ');
}

export async function runCli(argv: readonly string[], io: Io): Promise<number> {
  const [name, ...rest] = argv;
  const fail = (prefix: string, e: UserError) => {
    io.err(
      `${prefix}: ${oneLine(e.message, 400)}\n${e.hint ? `hint: ${oneLine(e.hint, 400)}\n` : ''}`,
    );
    return 2;
  };
  if (name === undefined) {
    io.err(overview());
    return 2;
  }
  if (name === '--help' || name === '-h') {
    io.out(overview());
    return 0;
  }
  if (name === '--version' || name === '-V') {
    const v = toolVersion();
    io.out(`${v.name} ${v.version}\n`);
    return 0;
  }
  let cmd: Command;
  try {
    if (name === 'help') {
      if (rest.length === 0) {
        io.out(overview());
        return 0;
      }
      io.out(helpText(findCommand(rest[0])));
      return 0;
    }
    cmd = findCommand(name);
  } catch (e) {
    if (e instanceof UserError) return fail('actsparse', e);
    throw e;
  }
  if (wantsHelp(rest)) {
    io.out(helpText(cmd));
    return 0;
  }
  try {
    await invoke(cmd, rest, io);
    return 0;
  } catch (e) {
    if (e instanceof Interrupted) {
      // On a terminal a progress bar may hold the line: start a new one.
      io.err(
        `${io.tty ? '\n' : ''}interrupted: ${e.saved}${e.resumable ? `; continue with: ${resumeCommand(argv)}` : ''}\n`,
      );
      return 130;
    }
    if (e instanceof UserError) return fail(`actsparse ${name}`, e);
    io.err(
      `actsparse ${name}: internal error (a bug; please report it):\n${(e as Error).stack ?? e}\n`,
    );
    return 1;
  }
}
