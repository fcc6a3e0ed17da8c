/** Argument parsing for every command: node's parseArgs with errors a user can act on. */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { UserError } from '../errors.ts';

export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

export function parse(command: string, args: string[], options: Options, usage: string): Parsed {
  try {
    const { values, positionals } = parseArgs({
      args,
      options,
      allowPositionals: true,
      strict: true,
    });
    return { values: values as Parsed['values'], positionals };
  } catch (e) {
    throw new UserError(
      `${command}: ${(e as Error).message.replace(/\. To specify.*$/s, '')}`,
      `Usage: ${usage}`,
    );
  }
}

/** A numeric option with bounds, or its default. */
export function num(
  p: Parsed,
  name: string,
  def: number,
  { min = Number.NEGATIVE_INFINITY, max = Number.POSITIVE_INFINITY, integer = false } = {},
): number {
  const raw = p.values[name];
  if (raw === undefined) return def;
  const v = Number(raw);
  if (
    typeof raw !== 'string' ||
    raw.trim() === '' ||
    !Number.isFinite(v) ||
    (integer && !Number.isInteger(v))
  ) {
    throw new UserError(
      `--${name} ${String(raw)}: expected ${integer ? 'an integer' : 'a number'}`,
    );
  }
  if (v < min || v > max) throw new UserError(`--${name} ${v}: must be between ${min} and ${max}`);
  return v;
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  return typeof v === 'string' ? v : undefined;
}

/** Exactly `n` positional arguments, named in the usage line. */
export function positionals(p: Parsed, n: number, usage: string): string[] {
  if (p.positionals.length !== n) {
    throw new UserError(
      `expected ${n} argument${n === 1 ? '' : 's'}, got ${p.positionals.length}${p.positionals.length ? ` (${p.positionals.join(' ')})` : ''}`,
      `Usage: ${usage}`,
    );
  }
  return p.positionals;
}

/** Options every model command takes. */
export const modelOptions: Options = {
  backend: { type: 'string' },
  tokenizer: { type: 'string' },
  thresholds: { type: 'string' },
};
