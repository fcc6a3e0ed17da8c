import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { UserError } from '../../errors.ts';
import { openCheckpoint } from '../../io/open.ts';
import { writeSafetensors } from '../../io/safetensors.ts';
import { parse, positionals, str } from '../args.ts';
import { formatBytes } from '../common.ts';
import type { Command } from '../io.ts';

const usage =
  'actsparse convert <in> <out.safetensors> [--dtype f32|f16|bf16] [--hf-names] [--force]';

export const convert: Command = {
  name: 'convert',
  summary: 'write any supported checkpoint as safetensors (tensor by tensor)',
  usage,
  run(args, io) {
    const p = parse(
      'convert',
      args,
      { dtype: { type: 'string' }, 'hf-names': { type: 'boolean' }, force: { type: 'boolean' } },
      usage,
    );
    const [input, output] = positionals(p, 2, usage);
    const dtype = str(p, 'dtype') ?? 'f32';
    if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16') {
      throw new UserError(`--dtype ${dtype}: expected f32, f16 or bf16`);
    }
    if (!output.endsWith('.safetensors')) {
      throw new UserError(`${output}: the output name must end in .safetensors`);
    }
    if (resolve(input) === resolve(output))
      throw new UserError('convert: input and output are the same file');
    if (existsSync(output) && !p.values.force) {
      throw new UserError(
        `${output} exists`,
        'Choose another name, or pass --force to replace it.',
      );
    }
    const ckpt = openCheckpoint(input);
    try {
      // Quantized and pre-transformed tensors come out as the original fp32 values.
      const tensors = [...ckpt.tensors.values()].map((e) => ({
        name: e.name,
        shape: e.shape,
        data: () => ckpt.read(e.name).data,
      }));
      const t0 = performance.now();
      writeSafetensors(output, tensors, {
        dtype,
        names: p.values['hf-names'] ? 'hf-rwkv' : 'as-is',
        metadata: { format: 'pt', converted_by: 'actsparse', source_format: ckpt.format },
      });
      const bytes =
        tensors.reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1), 0) *
        (dtype === 'f32' ? 4 : 2);
      io.err(
        `wrote ${output}: ${tensors.length} tensors, ${formatBytes(bytes)} ${dtype}, ` +
          `${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
      );
    } finally {
      ckpt.close();
    }
  },
};
