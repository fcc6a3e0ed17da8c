import { resolve } from 'node:path';
import { UserError } from '../../errors.ts';
import type { Checkpoint } from '../../io/checkpoint.ts';
import { openCheckpoint } from '../../io/open.ts';
import { writeSafetensors } from '../../io/safetensors.ts';
import { forceOption, formatBytes } from '../common.ts';
import type { Command } from '../io.ts';
import { checkOutputFile, STDOUT } from '../output.ts';

type FloatDtype = 'f32' | 'f16' | 'bf16';

/**
 * The dtype that keeps the stored values: the checkpoint's own when every tensor has
 * one float type, else f32 (mixed or quantized tensors, dequantized exactly).
 */
function storedDtype(ckpt: Checkpoint): { dtype: FloatDtype; why: string } {
  const kinds = new Set([...ckpt.tensors.values()].map((t) => t.dtype));
  const [only] = kinds;
  if (kinds.size === 1 && (only === 'f32' || only === 'f16' || only === 'bf16'))
    return { dtype: only, why: 'as stored' };
  return { dtype: 'f32', why: `stored as ${[...kinds].join(' and ')}: f32 keeps every value` };
}

export const convert: Command = {
  name: 'convert',
  summary: 'write any supported checkpoint as safetensors (tensor by tensor)',
  description:
    'Writes any checkpoint actsparse reads (.pth, pytorch_model.bin, safetensors, rwkv.cpp, quantized included) as one safetensors file, one tensor at a time, keeping the stored dtype unless --dtype says otherwise (quantized tensors come out as their exact float values).',
  positionals: [
    { name: 'IN', help: 'The checkpoint to convert (any format `actsparse info` reads).' },
    { name: 'OUT', help: 'The safetensors file to write (its name must end in .safetensors).' },
  ],
  options: [
    {
      name: 'dtype',
      type: 'choice',
      value: 'TYPE',
      choices: ['f32', 'f16', 'bf16'],
      help: 'The dtype written.',
      defaultText: 'the stored one (f32 for mixed or quantized checkpoints)',
    },
    {
      name: 'hf-names',
      type: 'boolean',
      help: 'Write RWKV tensors under Hugging Face names (rwkv.blocks.0.attention.key.weight, …).',
    },
    forceOption,
  ],
  examples: [
    'actsparse convert RWKV-4-Pile-430M.pth rwkv4-430m.safetensors',
    'actsparse convert rwkv-430m-Q5_1.bin rwkv-430m.safetensors --dtype f16',
  ],
  run(a, io) {
    const [input, output] = a.positionals;
    if (output === STDOUT)
      throw new UserError(
        'OUT -: convert writes a safetensors file; it cannot go to standard output',
      );
    if (!output.endsWith('.safetensors'))
      throw new UserError(`${output}: the output name must end in .safetensors`);
    if (resolve(input) === resolve(output))
      throw new UserError('input and output are the same file');
    const line = checkOutputFile(output, 'OUT', a.flag('force'));
    if (line) io.err(`${line}\n`);
    const ckpt = openCheckpoint(input);
    try {
      const kept = storedDtype(ckpt);
      const dtype = (a.str('dtype') as FloatDtype | undefined) ?? kept.dtype;
      // Quantized and pre-transformed tensors come out as the original fp32 values.
      const tensors = [...ckpt.tensors.values()].map((e) => ({
        name: e.name,
        shape: e.shape,
        data: () => ckpt.read(e.name).data,
      }));
      const t0 = performance.now();
      writeSafetensors(output, tensors, {
        dtype,
        names: a.flag('hf-names') ? 'hf-rwkv' : 'as-is',
        metadata: { format: 'pt', converted_by: 'actsparse', source_format: ckpt.format },
      });
      const bytes =
        tensors.reduce((s, t) => s + t.shape.reduce((x, y) => x * y, 1), 0) *
        (dtype === 'f32' ? 4 : 2);
      io.err(
        `wrote ${output}: ${tensors.length} tensors, ${formatBytes(bytes)} ${dtype} (${a.has('dtype') ? '--dtype' : kept.why}), ` +
          `${((performance.now() - t0) / 1000).toFixed(1)} s\n`,
      );
    } finally {
      ckpt.close();
    }
  },
};
