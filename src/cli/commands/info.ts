import { statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { UserError } from '../../errors.ts';
import { type InfoResult, infoText } from '../../formats/outputs.ts';
import type { Checkpoint } from '../../io/checkpoint.ts';
import { openCheckpoint } from '../../io/open.ts';
import { optConfig, optShape } from '../../models/opt.ts';
import { detectArchitecture, detectEntry } from '../../models/registry.ts';
import { rwkv4Config } from '../../models/rwkv4.ts';
import { backendNotices, openBackend } from '../../tensor/select.ts';
import { numel } from '../../tensor/tensor.ts';
import { WebGpuBackend } from '../../tensor/webgpu/backend.ts';
import {
  backendOption,
  checkJson,
  forceOption,
  formatBytes,
  jsonOption,
  MODEL,
} from '../common.ts';
import type { Command } from '../io.ts';
import { humanOut, writeOutput } from '../output.ts';

/** The files a checkpoint was read from (a folder's chosen file, or its shards) and their bytes. */
function filesRead(ckpt: Checkpoint): { files: string[]; bytes: number } {
  const shards = ckpt.meta.files;
  const files =
    Array.isArray(shards) && shards.every((f) => typeof f === 'string')
      ? shards.map((f) => join(dirname(ckpt.path), f))
      : [ckpt.path];
  return { files, bytes: files.reduce((a, f) => a + statSync(f).size, 0) };
}

export const info: Command = {
  name: 'info',
  summary: 'format, architecture, dimensions, dtype, parameters and memory of a checkpoint',
  description:
    "Reads only the checkpoint's index (never its tensor data): format, architecture and dimensions, stored dtypes, parameter count, the memory the model needs, and the backend it would run on.",
  positionals: [MODEL],
  options: [
    {
      name: 'tensors',
      type: 'boolean',
      help: 'Also list every tensor with its shape and stored dtype.',
    },
    backendOption,
    jsonOption('the facts'),
    forceOption,
  ],
  examples: [
    'actsparse info models/rwkv4-brown-3m.safetensors',
    'actsparse info RWKV-4-Pile-430M.pth --json - | jq .parameters',
  ],
  async run(a, io) {
    const [path] = a.positionals;
    const json = checkJson(a, io);
    const say = humanOut(io, json);
    const ckpt = openCheckpoint(path);
    try {
      const arch = detectArchitecture(ckpt);
      // The backend the model would run on: one with its architecture's kernel families.
      const entry = detectEntry(ckpt);
      const backend = await openBackend(a.str('backend'), {
        families: entry?.families,
        what: entry?.label,
      });
      let params = 0;
      const dtypes = new Map<string, number>();
      for (const t of ckpt.tensors.values()) {
        const n = numel(t.shape);
        params += n;
        dtypes.set(t.dtype, (dtypes.get(t.dtype) ?? 0) + n);
      }
      const read = filesRead(ckpt);
      const rows: [string, string][] = [
        ['file', read.files.length === 1 ? read.files[0] : `${path} (${read.files.length} shards)`],
        ['format', ckpt.format],
        ['size on disk', formatBytes(read.bytes)],
        ['architecture', arch],
      ];
      let model: InfoResult['model'] = null;
      if (arch === 'rwkv4') {
        const c = rwkv4Config(ckpt);
        model = {
          architecture: arch,
          nLayer: c.nLayer,
          nEmbd: c.nEmbd,
          nVocab: c.nVocab,
          config: { ...c },
        };
        rows.push(
          ['layers', String(c.nLayer)],
          ['n_embd', String(c.nEmbd)],
          ['ffn width', String(c.nFfn)],
          ['vocabulary', String(c.nVocab)],
          ['threshold sites', `${7 * c.nLayer} (7 per block)`],
        );
      }
      if (arch === 'opt') {
        // Dimensions from the tensors; heads and layer-norm placement need config.json.
        const c = optShape(ckpt);
        model = {
          architecture: arch,
          nLayer: c.nLayer,
          nEmbd: c.nEmbd,
          nVocab: c.nVocab,
          config: { ...c },
        };
        rows.push(
          ['layers', String(c.nLayer)],
          ['hidden', String(c.nEmbd)],
          ['ffn width', String(c.nFfn)],
          ['vocabulary', String(c.nVocab)],
          ['max positions', String(c.nPositions)],
        );
        if (c.nProj !== c.nEmbd) rows.push(['word_embed_proj_dim', String(c.nProj)]);
        try {
          const f = optConfig(ckpt);
          model.config = { ...f };
          rows.push(
            ['heads', `${f.nHead} × ${f.nEmbd / f.nHead}`],
            ['layer norm', f.preLN ? 'pre-LN' : 'post-LN'],
            ['biases', f.bias ? 'yes' : 'no'],
            ['head', f.tied ? 'tied to embed_tokens' : 'lm_head.weight'],
          );
        } catch (e) {
          if (!(e instanceof UserError)) throw e;
          rows.push(['notice', e.message]);
        }
        rows.push(['threshold sites', `${3 * c.nLayer} (3 per layer: qkv, fc1, fc2)`]);
      }
      const mix = [...dtypes]
        .sort((x, y) => y[1] - x[1])
        .map(([d, n]) => `${d} ${((100 * n) / params).toFixed(1)}%`);
      rows.push(
        ['tensors', String(ckpt.tensors.size)],
        ['dtype', mix.join(', ')],
        ['parameters', `${params.toLocaleString('en-US')} (${(params / 1e6).toFixed(2)} M)`],
        ['memory, fp32 weights', formatBytes(params * 4)],
        // Step mode's zero-skipping kernel reads an input-major copy of each block weight.
        ['memory with sparse copies', `up to ${formatBytes(params * 8)}`],
        ['backend', backend.description],
      );
      // A GPU: its adapter, limits and the features the kernels use.
      if (backend instanceof WebGpuBackend)
        for (const [k, v] of Object.entries(backend.details())) rows.push([`  ${k}`, v]);
      for (const n of backendNotices) rows.push(['notice', n]);
      const meta: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(ckpt.meta)) {
        if (v === undefined) continue;
        meta[k] = jsonSafe(v);
        if (typeof v !== 'object') rows.push([`meta.${k}`, String(v)]);
      }
      const w = Math.max(...rows.map((r) => r[0].length));
      say(`${rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n')}\n`);
      if (a.flag('tensors')) {
        for (const t of ckpt.tensors.values())
          say(`  ${t.name}  [${t.shape.join(', ')}]  ${t.dtype}\n`);
      }
      if (json) {
        const result: InfoResult = {
          formatVersion: 1,
          kind: 'actsparse.info',
          file: path,
          files: read.files,
          bytesOnDisk: read.bytes,
          format: ckpt.format,
          model,
          tensors: ckpt.tensors.size,
          parameters: params,
          dtypes: Object.fromEntries([...dtypes].map(([d, n]) => [d, n / params])),
          backend: backend.description,
          meta,
        };
        writeOutput(io, json, infoText(result));
      }
    } finally {
      ckpt.close();
    }
  },
};

/** `v` with big integers as strings (a .pth header may hold some), for --json. */
function jsonSafe(v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (Array.isArray(v)) return v.map(jsonSafe);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonSafe(x)]));
  }
  return v;
}
