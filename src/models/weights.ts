/**
 * Reading a model's tensors from a checkpoint with the checks every architecture
 * needs: present, the expected shape, finite values.
 */
import { createHash, type Hash } from 'node:crypto';
import { FormatError } from '../errors.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import { numel, shapeString } from '../tensor/tensor.ts';

/**
 * Reads `name` and checks its shape. A vector may be stored as [C] or with leading
 * ones ([1, 1, C] as BlinkDL saves time_mix); both are accepted for `[C]`.
 */
export function readWeight(
  ckpt: Checkpoint,
  name: string,
  shape: readonly number[],
  fingerprint?: Fingerprint,
): Float32Array {
  const entry = ckpt.tensors.get(name);
  if (!entry) {
    throw new FormatError(
      ckpt.path,
      `tensor "${name}" is missing (expected shape ${shapeString(shape)})`,
      'Is this a complete checkpoint of the architecture it looks like? Run `actsparse info` to list its tensors.',
    );
  }
  const squeeze = (s: readonly number[]) => s.filter((d, i) => d !== 1 || i === s.length - 1);
  const same =
    entry.shape.length === shape.length
      ? entry.shape.every((d, i) => d === shape[i])
      : shapeString(squeeze(entry.shape)) === shapeString(squeeze(shape));
  if (!same) {
    throw new FormatError(
      ckpt.path,
      `tensor "${name}" has shape ${shapeString(entry.shape)}, expected ${shapeString(shape)}`,
      'The checkpoint does not match the architecture inferred from its other tensors.',
    );
  }
  const data = ckpt.read(name).data;
  if (data.length !== numel(shape)) {
    throw new FormatError(
      ckpt.path,
      `tensor "${name}" holds ${data.length} values, expected ${numel(shape)}`,
    );
  }
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new FormatError(
        ckpt.path,
        `tensor "${name}" contains ${data[i]} at index ${i}`,
        'A checkpoint with NaN or Inf weights gives meaningless outputs; use an intact copy.',
      );
    }
  }
  fingerprint?.add(name, shape, data);
  return data;
}

/**
 * Digest of a model's weights that does not depend on the file format: each tensor's
 * name, shape and up to 256 values spread over it (reading every value again would
 * double the load time of large models).
 */
export class Fingerprint {
  private readonly hash: Hash = createHash('sha256');
  constructor(header: string) {
    this.hash.update(header);
  }
  add(name: string, shape: readonly number[], data: Float32Array): void {
    const n = Math.min(256, data.length);
    const sample = new Float32Array(n);
    for (let i = 0; i < n; i++) sample[i] = data[Math.floor((i * data.length) / n)];
    this.hash.update(`${name}[${shape.join(',')}]`);
    this.hash.update(new Uint8Array(sample.buffer));
  }
  digest(): string {
    return this.hash.digest('hex').slice(0, 32);
  }
}

/** Shape of a tensor, or a clear error when it is absent. */
export function shapeOf(ckpt: Checkpoint, name: string, what: string): readonly number[] {
  const e = ckpt.tensors.get(name);
  if (!e) throw new FormatError(ckpt.path, `tensor "${name}" is missing (needed for ${what})`);
  return e.shape;
}

/** The stored precision of a weight, for backends that keep f16/bf16 weights as stored. */
export function storedDType(ckpt: Checkpoint, name: string): 'f32' | 'f16' | 'bf16' {
  const t = ckpt.tensors.get(name)?.dtype;
  return t === 'f16' || t === 'bf16' ? t : 'f32';
}
