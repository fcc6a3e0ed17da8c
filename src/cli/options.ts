/**
 * Every command's arguments as one declarative table that both the parser and `--help`
 * read, so that an option cannot exist without its help. Parsing validates everything
 * the table says (types, bounds, choices, required options, the number of positionals)
 * before a command runs, each mistake as one line a user can act on.
 */
import { UserError } from '../errors.ts';

export interface OptionSpec {
  /** Long name without the dashes: `docs` for `--docs`. */
  readonly name: string;
  readonly type: 'string' | 'number' | 'integer' | 'boolean' | 'choice';
  /** One sentence for --help. */
  readonly help: string;
  /** The value's placeholder in help: N, FILE, DIR (default: by type). */
  readonly value?: string;
  /** The default (also what the parser returns when the option is absent). */
  readonly default?: string | number;
  /** The default as help states it, when it depends on something else ("min(1024, the model's context)"). */
  readonly defaultText?: string;
  /** Allowed values of a `choice`. */
  readonly choices?: readonly string[];
  /** Inclusive bounds of a number. */
  readonly min?: number;
  readonly max?: number;
  /** Exclusive lower bound (a number that must be above it). */
  readonly above?: number;
  /** May be given more than once (values collected in order). */
  readonly multiple?: boolean;
  readonly required?: boolean;
}

export interface PositionalSpec {
  /** As usage shows it: MODEL, RUN_DIR. */
  readonly name: string;
  readonly help: string;
  readonly optional?: boolean;
  /** Takes every remaining argument (one or more). */
  readonly variadic?: boolean;
}

export interface CommandSpec {
  readonly name: string;
  /** One line for `actsparse --help`. */
  readonly summary: string;
  /** A few sentences on what the command does, for its --help. */
  readonly description?: string;
  readonly positionals: readonly PositionalSpec[];
  readonly options: readonly OptionSpec[];
  /** One or two command lines, each optionally followed by "  # what it does". */
  readonly examples: readonly string[];
}

type Value = string | number | boolean | string[];

/** The parsed arguments of one command; reading an option the table lacks is a bug. */
export class Args {
  constructor(
    readonly spec: CommandSpec,
    private readonly values: ReadonlyMap<string, Value>,
    readonly positionals: readonly string[],
  ) {}

  private option(name: string): OptionSpec {
    const o = this.spec.options.find((x) => x.name === name);
    if (!o) throw new Error(`${this.spec.name}: option --${name} is not in its table`);
    return o;
  }

  /** Whether the user gave the option. */
  has(name: string): boolean {
    this.option(name);
    return this.values.has(name);
  }

  str(name: string): string | undefined {
    const o = this.option(name);
    const v = this.values.get(name) ?? o.default;
    return v === undefined ? undefined : String(v);
  }

  num(name: string): number | undefined {
    const o = this.option(name);
    const v = this.values.get(name) ?? o.default;
    return v === undefined ? undefined : Number(v);
  }

  flag(name: string): boolean {
    this.option(name);
    return this.values.get(name) === true;
  }

  list(name: string): string[] {
    this.option(name);
    return (this.values.get(name) as string[] | undefined) ?? [];
  }
}

/** Edit distance with adjacent transpositions (optimal string alignment), for "did you mean". */
function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The closest of `known` to `word` when it is close enough to be a typo. */
export function closest(word: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = k.startsWith(word) && word.length >= 2 ? 0.5 : distance(word, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return bestD <= Math.max(1, Math.floor(word.length / 3)) ? best : null;
}

const fmt = (x: number) => (Number.isInteger(x) ? String(x) : String(Number(x.toPrecision(6))));

/** "≥ 1", "between 0 and 1", "> 0 and ≤ 1", "≤ 100": an option's bounds in words. */
function range({ min, max, above }: OptionSpec): string {
  if (above !== undefined)
    return max === undefined ? `> ${fmt(above)}` : `> ${fmt(above)} and ≤ ${fmt(max)}`;
  if (min !== undefined)
    return max === undefined ? `≥ ${fmt(min)}` : `between ${fmt(min)} and ${fmt(max)}`;
  return `≤ ${fmt(max!)}`;
}

/** Checks one value against its option's type, bounds and choices. */
function convert(o: OptionSpec, raw: string): Value {
  switch (o.type) {
    case 'string':
      return raw;
    case 'choice':
      if (!o.choices?.includes(raw)) {
        throw new UserError(`--${o.name} ${raw}: expected one of ${o.choices?.join(', ')}`);
      }
      return raw;
    case 'boolean':
      throw new UserError(`--${o.name} takes no value`);
    case 'number':
    case 'integer': {
      const v = Number(raw);
      if (
        raw.trim() === '' ||
        !Number.isFinite(v) ||
        (o.type === 'integer' && !Number.isInteger(v))
      )
        throw new UserError(
          `--${o.name} ${raw}: expected ${o.type === 'integer' ? 'a whole number' : 'a number'}`,
        );
      const { min, max, above } = o;
      const low = above !== undefined ? v <= above : min !== undefined && v < min;
      if (low || (max !== undefined && v > max)) {
        throw new UserError(`--${o.name} must be ${range(o)} (got ${raw})`);
      }
      return v;
    }
  }
}

const HELP: OptionSpec = { name: 'help', type: 'boolean', help: 'Show this help and exit.' };

/** Whether `args` asks for help (`--help` or `-h` before a `--`). */
export function wantsHelp(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === '--') return false;
    if (a === '--help' || a === '-h') return true;
  }
  return false;
}

/** Parses `args` (the words after the command name) against the command's table. */
export function parseArgs(spec: CommandSpec, args: readonly string[]): Args {
  const byName = new Map(spec.options.map((o) => [o.name, o]));
  const values = new Map<string, Value>();
  const positionals: string[] = [];
  const hint = `Run \`actsparse ${spec.name} --help\` for its options.`;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    // A single "-" and negative numbers are values, not options.
    if (!a.startsWith('-') || a === '-' || /^-\d/.test(a)) {
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.startsWith('--') ? a.slice(2, eq > 0 ? eq : undefined) : a.slice(1);
    const o = a.startsWith('--') ? byName.get(name) : undefined;
    if (!o) {
      const near = closest(
        name,
        spec.options.map((x) => x.name),
      );
      throw new UserError(
        `unknown option ${a.startsWith('--') ? `--${name}` : a}${near ? `; did you mean --${near}?` : ''}`,
        hint,
      );
    }
    let raw: string | undefined;
    if (eq > 0) raw = a.slice(eq + 1);
    else if (o.type !== 'boolean') {
      // The next word is the value, even "-" or "-5"; only another long option is not.
      const next = args[i + 1];
      if (next === undefined || (next.startsWith('--') && next.length > 2)) {
        throw new UserError(`--${name} needs a value (${o.value ?? placeholder(o)})`, hint);
      }
      raw = next;
      i++;
    }
    const v = raw === undefined ? true : convert(o, raw);
    if (o.multiple) values.set(name, [...((values.get(name) as string[]) ?? []), String(v)]);
    else values.set(name, v);
  }
  for (const o of spec.options) {
    if (o.required && !values.has(o.name)) {
      throw new UserError(`--${o.name} ${o.value ?? placeholder(o)} is required`, hint);
    }
  }
  checkPositionals(spec, positionals, hint);
  return new Args(spec, values, positionals);
}

function checkPositionals(spec: CommandSpec, got: readonly string[], hint: string): void {
  const ps = spec.positionals;
  const required = ps.filter((p) => !p.optional).length;
  const variadic = ps.some((p) => p.variadic);
  const names = ps.map((p) => p.name).join(' ');
  if (got.length < required) {
    const missing = ps.slice(got.length).filter((p) => !p.optional);
    throw new UserError(
      `missing ${missing.map((p) => p.name).join(' and ')} (usage: actsparse ${spec.name} ${names} …)`,
      hint,
    );
  }
  if (!variadic && got.length > ps.length) {
    const extra = got.slice(ps.length);
    throw new UserError(
      `unexpected argument${extra.length > 1 ? 's' : ''} ${extra.join(' ')}` +
        (ps.length ? ` (usage: actsparse ${spec.name} ${names} …)` : ''),
      hint,
    );
  }
}

function placeholder(o: OptionSpec): string {
  if (o.value) return o.value;
  if (o.type === 'choice') return o.choices!.join('|');
  if (o.type === 'integer') return 'N';
  if (o.type === 'number') return 'X';
  return 'TEXT';
}

/** Words of `text` in lines of at most `width` characters. */
function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

/** The usage line: positionals, required options, then [options]. */
export function usageLine(spec: CommandSpec): string {
  const pos = spec.positionals.map((p) => {
    const n = p.variadic ? `${p.name}…` : p.name;
    return p.optional ? `[${n}]` : n;
  });
  const req = spec.options.filter((o) => o.required).map((o) => `--${o.name} ${placeholder(o)}`);
  return ['actsparse', spec.name, ...pos, ...req, '[options]'].join(' ');
}

/** `actsparse CMD --help`: usage, description, arguments, every option, examples. */
export function helpText(spec: CommandSpec, width = 92): string {
  const out: string[] = [`Usage: ${usageLine(spec)}`, ''];
  out.push(...wrap(spec.description ?? spec.summary, width), '');
  const col = 24;
  const entry = (left: string, text: string) => {
    const body = wrap(text, width - col);
    const head = `  ${left}`;
    if (head.length + 2 > col) out.push(head, ...body.map((l) => ' '.repeat(col) + l));
    else
      out.push(
        head.padEnd(col) + (body[0] ?? ''),
        ...body.slice(1).map((l) => ' '.repeat(col) + l),
      );
  };
  if (spec.positionals.length) {
    out.push('Arguments:');
    for (const p of spec.positionals) entry(p.variadic ? `${p.name}…` : p.name, p.help);
    out.push('');
  }
  out.push('Options:');
  for (const o of [...spec.options, HELP]) {
    const left = `${o.name === 'help' ? '-h, ' : ''}--${o.name}${o.type === 'boolean' ? '' : ` ${placeholder(o)}`}`;
    const facts: string[] = [];
    if (o.type === 'choice' && o.value) facts.push(`Choices: ${o.choices!.join(', ')}.`);
    const bounded = o.min !== undefined || o.max !== undefined || o.above !== undefined;
    if ((o.type === 'number' || o.type === 'integer') && bounded) {
      const r =
        o.min !== undefined && o.max !== undefined ? `${fmt(o.min)} to ${fmt(o.max)}` : range(o);
      facts.push(`Range: ${r}.`);
    }
    if (o.required) facts.push('Required.');
    const def = o.defaultText ?? (o.default === undefined ? undefined : String(o.default));
    if (def !== undefined) facts.push(`Default: ${def}.`);
    if (o.multiple) facts.push('May be repeated.');
    entry(left, [o.help, ...facts].join(' '));
  }
  out.push('');
  if (spec.examples.length) {
    out.push('Examples:');
    for (const e of spec.examples) out.push(`  ${e}`);
    out.push('');
  }
  return `${out.join('\n')}\n`;
}
