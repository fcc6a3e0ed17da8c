/** Runs a command in-process (`['calibrate', model, …]`) and returns what it wrote; errors propagate. */
import { commands } from '../../src/cli/commands/index.ts';
import { invoke } from '../../src/cli/dispatch.ts';
import type { Io } from '../../src/cli/io.ts';

export async function runCommand(args: string[]): Promise<{ out: string; err: string }> {
  let out = '';
  let err = '';
  const io: Io = {
    out: (s) => {
      out += typeof s === 'string' ? s : Buffer.from(s).toString('latin1');
    },
    err: (s) => {
      err += s;
    },
    tty: false,
  };
  const cmd = commands.find((c) => c.name === args[0]);
  if (!cmd) throw new Error(`no command ${args[0]}`);
  await invoke(cmd, args.slice(1), io);
  return { out, err };
}
