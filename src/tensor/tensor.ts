/**
 * Plain tensor data: a shape and a row-major Float32Array. Kernels take the arrays and
 * sizes directly; this type only carries data between readers, models and tools.
 */
export interface Tensor {
  /** Row-major, outermost dimension first (PyTorch order). */
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) n *= s;
  return n;
}

export function tensor(shape: readonly number[], data?: Float32Array): Tensor {
  const n = numel(shape);
  if (data && data.length !== n) {
    throw new Error(`tensor: ${data.length} values do not fill shape [${shape.join(', ')}]`);
  }
  return { shape: [...shape], data: data ?? new Float32Array(n) };
}

export function shapeString(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}
