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
  const entries = new Map<string, TensorEntry>();
  for (const t of tensors) {
    if (numel(t.shape) !== t.data.length)
      throw new Error(`${t.name}: ${t.data.length} values for shape [${t.shape}]`);
    byName.set(t.name, t);
    entries.set(t.name, {
      name: t.name,
      fileName: t.name,
      shape: t.shape,
      dtype: 'f32',
      byteLength: t.data.byteLength,
    });
  }
  return {
    path: label,
    format: 'safetensors',
    tensors: entries,
    meta,
    read(name) {
      const t = byName.get(name);
      if (!t) throw new UserError(`${label}: no tensor "${name}"`);
      return { shape: t.shape, data: t.data.slice() };
    },
    close() {},
  };
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
      return { shape: e.shape, data: new Float32Array(numel(e.shape)) };
    },
    close() {},
  };
}
