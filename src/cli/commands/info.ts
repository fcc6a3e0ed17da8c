import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { UserError } from '../../errors.ts';
import { openCheckpoint } from '../../io/open.ts';
import { optConfig, optShape } from '../../models/opt.ts';
import { detectArchitecture } from '../../models/registry.ts';
import { rwkv4Config } from '../../models/rwkv4.ts';
import { backendNotices, openBackend } from '../../tensor/select.ts';
import { numel } from '../../tensor/tensor.ts';
import { WebGpuBackend } from '../../tensor/webgpu/backend.ts';
import { modelOptions, parse, positionals, str } from '../args.ts';
import { formatBytes } from '../common.ts';
import type { Command } from '../io.ts';

/** Bytes on disk of a file, or of the files directly inside a directory (shards). */
function diskSize(path: string): string {
  const st = statSync(path);
  if (!st.isDirectory()) return formatBytes(st.size);
  const files = readdirSync(path)
    .map((n) => statSync(join(path, n)))
    .filter((s) => s.isFile());
  return formatBytes(files.reduce((a, s) => a + s.size, 0));
}

const usage = 'actsparse info <model> [--tensors] [--backend auto|js|wasm|native|webgpu]';

export const info: Command = {
  name: 'info',
  summary: 'format, architecture, dimensions, dtype, parameters and memory of a checkpoint',
  usage,
  async run(args, io) {
    const p = parse('info', args, { ...modelOptions, tensors: { type: 'boolean' } }, usage);
    const [path] = positionals(p, 1, usage);
    const ckpt = openCheckpoint(path);
    try {
      const arch = detectArchitecture(ckpt);
      let params = 0;
      const dtypes = new Map<string, number>();
      for (const t of ckpt.tensors.values()) {
        const n = numel(t.shape);
        params += n;
        dtypes.set(t.dtype, (dtypes.get(t.dtype) ?? 0) + n);
      }
      const rows: [string, string][] = [
        ['file', path],
        ['format', ckpt.format],
        ['size on disk', diskSize(path)],
        ['architecture', arch],
      ];
      if (arch === 'rwkv4') {
        const c = rwkv4Config(ckpt);
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
        .sort((a, b) => b[1] - a[1])
        .map(([d, n]) => `${d} ${((100 * n) / params).toFixed(1)}%`);
      const backend = await openBackend(str(p, 'backend'));
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
      for (const [k, v] of Object.entries(ckpt.meta)) {
        if (v !== undefined && typeof v !== 'object') rows.push([`meta.${k}`, String(v)]);
      }
      const w = Math.max(...rows.map((r) => r[0].length));
      io.out(`${rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n')}\n`);
      if (p.values.tensors) {
        for (const t of ckpt.tensors.values())
          io.out(`  ${t.name}  [${t.shape.join(', ')}]  ${t.dtype}\n`);
      }
    } finally {
      ckpt.close();
    }
  },
};
