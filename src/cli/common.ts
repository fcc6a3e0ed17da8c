/** What several commands share: their common options, opening a model, small formatters. */
import { openModel as openModelFile } from '../api.ts';
import { UserError } from '../errors.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import type { Tokenizer } from '../io/tokenizer.ts';
import type { LanguageModel } from '../models/model.ts';
import { backendNotices } from '../tensor/select.ts';
import type { Io } from './io.ts';
import type { Args, OptionSpec, PositionalSpec } from './options.ts';
import { checkOutputFile } from './output.ts';

export const MODEL: PositionalSpec = {
  name: 'MODEL',
  help: 'The checkpoint: a BlinkDL .pth, a Hugging Face folder or its pytorch_model.bin / safetensors file (or shards), an rwkv.cpp .bin, or a GGUF file.',
};

/** Backends a model can run on (`auto`: a GPU, else the fastest CPU tier that loads here). */
export const BACKENDS = ['auto', 'native', 'wasm', 'js', 'webgpu'] as const;

export const backendOption: OptionSpec = {
  name: 'backend',
  type: 'choice',
  value: 'NAME',
  choices: BACKENDS,
  help: 'Where the model runs: native (C++ kernels), wasm, js (the reference), webgpu (a GPU through Vulkan/Metal/D3D12; a CPU software adapter such as lavapipe is taken only when named), or auto.',
  defaultText:
    'auto (or $ACTSPARSE_BACKEND): a GPU adapter, else the fastest CPU tier that loads here',
};

export const tokenizerOption: OptionSpec = {
  name: 'tokenizer',
  type: 'string',
  value: 'FILE',
  help: 'Tokenizer file (tokenizer.json, 20B_tokenizer.json, rwkv_vocab_v20230424.txt, or a GPT-2 encoder.json beside vocab.bpe and dict.txt).',
  defaultText: 'bytes for a 256-token vocabulary, else the first fitting file next to the model',
};

export const thresholdsOption: OptionSpec = {
  name: 'thresholds',
  type: 'string',
  value: 'FILE|DIR',
  help: 'Apply the thresholds of a calibration made for these weights: its thresholds.json or its run folder.',
  defaultText: 'none (the dense model)',
};

export const forceOption: OptionSpec = {
  name: 'force',
  type: 'boolean',
  help: 'Replace existing outputs (without it, an existing output is refused).',
};

/** `--json FILE|-` for a command whose result is `what`. */
export function jsonOption(what: string): OptionSpec {
  return {
    name: 'json',
    type: 'string',
    value: 'FILE|-',
    help: `Also write ${what} as JSON to FILE, or to standard output for - (the human-readable table then goes to stderr).`,
  };
}

export const ctxOption = (what: string): OptionSpec => ({
  name: 'ctx',
  type: 'integer',
  min: 1,
  max: 1 << 20,
  help: `Tokens per window of ${what}.`,
  defaultText: "min(1024, the model's maximum context)",
});

export interface Loaded {
  ckpt: Checkpoint;
  model: LanguageModel;
  tokenizer: Tokenizer;
}

/**
 * The library's openModel with the command's --backend, --thresholds and --tokenizer
 * (options a command lacks are not read). Says which tokenizer is in use, unless the
 * command takes token ids only.
 */
export async function openModel(
  path: string,
  a: Args,
  io: Io,
  { sayTokenizer = true } = {},
): Promise<Loaded> {
  const has = (n: string) => a.spec.options.some((o) => o.name === n);
  const o = await sayingNotices(io, () =>
    openModelFile(path, {
      backend: has('backend') ? a.str('backend') : undefined,
      thresholds: has('thresholds') ? a.str('thresholds') : undefined,
      tokenizer: has('tokenizer') ? a.str('tokenizer') : undefined,
    }),
  );
  if (sayTokenizer) io.err(`tokenizer: ${o.tokenizer.kind} (${o.tokenizer.source})\n`);
  return { ckpt: o.checkpoint, model: o.model, tokenizer: o.tokenizer };
}

/**
 * Runs `open` and prints the backend notices it added (e.g. why `auto` did not take the
 * GPU), one line each, on stderr.
 */
export async function sayingNotices<T>(io: Io, open: () => Promise<T>): Promise<T> {
  const before = backendNotices.length;
  const r = await open();
  for (const n of backendNotices.slice(before)) io.err(`notice: ${n}\n`);
  return r;
}

/** --ctx, or min(1024, the model's maximum context); never above that maximum. */
export function contextLength(a: Args, model: LanguageModel): number {
  const max = model.maxContext;
  const ctx = a.num('ctx') ?? Math.min(1024, max);
  if (ctx > max) {
    throw new UserError(
      `--ctx ${ctx} is above the model's maximum context (${max} tokens)`,
      `Use --ctx ${max} or less.`,
    );
  }
  return ctx;
}

/** Checks `--json` before any work; returns the path (or undefined), saying when --force replaces it. */
export function checkJson(a: Args, io: Io): string | undefined {
  const json = a.str('json');
  if (json === undefined) return undefined;
  const line = checkOutputFile(json, '--json', a.flag('force'));
  if (line) io.err(`${line}\n`);
  return json;
}

/** "1,2,3" → [1, 2, 3], each checked against the vocabulary. */
export function parseTokenList(s: string, vocab: number): number[] {
  const ids = s.split(',').map((t) => t.trim());
  return ids.map((t, i) => {
    const v = Number(t);
    if (t === '' || !Number.isInteger(v) || v < 0 || v >= vocab) {
      throw new UserError(
        `--tokens: item ${i + 1} ("${t.slice(0, 20)}") is not a token id in 0..${vocab - 1}`,
      );
    }
    return v;
  });
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

/** Seconds as "42s", "3m05s", "1h07m" (whole units: never "1m60s"). */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const t = Math.round(s);
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m${String(t % 60).padStart(2, '0')}s`;
  const m = Math.round(t / 60);
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** Plain-text tables (util/table.ts). */
export { textTable as table } from '../util/table.ts';
