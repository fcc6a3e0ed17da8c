/**
 * A Hugging Face config.json as the models read it: attached by the checkpoint readers, every
 * field checked as it is read, and a refusal that names the field and its value.
 */
import { UserError } from '../errors.ts';
import type { Checkpoint } from '../io/checkpoint.ts';

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The Hugging Face config.json of a checkpoint, as every reader attaches it (`meta.config`). */
export function configJson(ckpt: Checkpoint): Record<string, unknown> | null {
  return isObj(ckpt.meta.config) ? ckpt.meta.config : null;
}

/**
 * Typed reads of one config.json's fields, each refused by name when it is not what the
 * model can run (`hint` says what the model follows).
 */
export class ConfigFields {
  constructor(
    readonly json: Record<string, unknown>,
    readonly file: string,
    private readonly hint: string,
  ) {}

  /** Throws a UserError naming the field, its value and why. */
  refuse(field: string, why: string): never {
    throw new UserError(`${this.file}: ${field} = ${show(this.json[field])} ${why}`, this.hint);
  }

  has(field: string): boolean {
    return this.json[field] !== undefined && this.json[field] !== null;
  }

  flag(field: string, dflt: boolean): boolean {
    const v = this.has(field) ? this.json[field] : dflt;
    if (typeof v !== 'boolean') this.refuse(field, 'is not true or false');
    return v as boolean;
  }

  /**
   * A number, or transformers ≥ 5's encoding of the non-finite ones in JSON
   * (`{"__float__": "Infinity"}`); `dflt` when absent.
   */
  number(field: string, dflt: number, v: unknown = this.json[field]): number {
    if (v === undefined || v === null) return dflt;
    const x = isObj(v) && typeof v.__float__ === 'string' ? floatWord(v.__float__) : v;
    if (typeof x !== 'number' || Number.isNaN(x)) this.refuse(field, 'is not a number');
    return x as number;
  }

  /** A positive integer, `dflt` when absent. */
  count(field: string, dflt?: number): number {
    const v = this.has(field) ? this.json[field] : dflt;
    if (!(typeof v === 'number' && Number.isInteger(v) && v > 0))
      this.refuse(field, 'is not a positive integer');
    return v as number;
  }

  /** A dimension config.json may give: when it does, it must equal the tensors'. */
  dim(field: string, fromShape: number): void {
    if (this.has(field) && this.json[field] !== fromShape)
      this.refuse(field, `does not match the checkpoint's tensors (${fromShape})`);
  }

  /** A string field that must be one of `allowed` (the first is the default). */
  oneOf(field: string, allowed: readonly string[]): string {
    const v = this.has(field) ? this.json[field] : allowed[0];
    if (typeof v !== 'string' || !allowed.includes(v))
      this.refuse(field, `is not supported (only ${allowed.map((a) => `"${a}"`).join(' or ')})`);
    return v as string;
  }
}

function floatWord(w: string): number {
  return w === 'Infinity'
    ? Number.POSITIVE_INFINITY
    : w === '-Infinity'
      ? Number.NEGATIVE_INFINITY
      : Number.NaN;
}

function show(v: unknown): string {
  return typeof v === 'string' ? `"${v}"` : (JSON.stringify(v) ?? String(v));
}
