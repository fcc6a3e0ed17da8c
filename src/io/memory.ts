/**
 * A checkpoint held in memory: for models built in code (tests, random models of a
 * given shape for benchmarks) and for converting between formats.
 */
import { UserError } from '../errors.ts';
import { numel } from '../tensor/tensor.ts';
import type { Checkpoint, TensorEntry } from './checkpoint.ts';

export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

export function memoryCheckpoint(
  tensors: readonly NamedTensor[],
  label = '<memory>',
  meta: Record<string, unknown> = {},
): Checkpoint {
  const byName = new Map<string, NamedTensor>();
  for (const t of tensors) {
    if (numel(t.shape) !== t.data.length)
      throw new Error(`${t.name}: ${t.data.length} values for shape [${t.shape}]`);
    byName.set(t.name, t);
  }
  return checkpointOf(tensors, label, meta, (name) => byName.get(name)!.data.slice());
}

/** Every tensor of a checkpoint, read in file order (for converters). */
export function* readAll(ckpt: Checkpoint): Generator<NamedTensor> {
  for (const e of ckpt.tensors.values()) {
    yield { name: e.name, shape: [...e.shape], data: ckpt.read(e.name).data };
  }
}

/**
 * A checkpoint of the given names and shapes whose every tensor reads as zeros, made
 * on demand: for running a model's code where the values do not matter (counting its
 * operations for `hw`) without holding its weights.
 */
export function zeroCheckpoint(
  tensors: readonly { name: string; shape: number[] }[],
  label: string,
  meta: Record<string, unknown> = {},
): Checkpoint {
  return checkpointOf(tensors, label, meta, (_, shape) => new Float32Array(numel(shape)));
}

/** A float32 checkpoint of these names and shapes whose data `read` supplies. */
function checkpointOf(
  tensors: readonly { name: string; shape: number[] }[],
  label: string,
  meta: Record<string, unknown>,
  read: (name: string, shape: readonly number[]) => Float32Array,
): Checkpoint {
  const entries = new Map<string, TensorEntry>();
  for (const t of tensors) {
    entries.set(t.name, {
      name: t.name,
      fileName: t.name,
      shape: t.shape,
      dtype: 'f32',
      byteLength: 4 * numel(t.shape),
    });
  }
  return {
    path: label,
    format: 'safetensors',
    tensors: entries,
    meta,
    read(name) {
      const e = entries.get(name);
      if (!e) throw new UserError(`${label}: no tensor "${name}"`);
      return { shape: e.shape, data: read(name, e.shape) };
    },
    close() {},
  };
}
