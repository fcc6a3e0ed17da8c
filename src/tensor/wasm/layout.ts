/**
 * Weight layouts the wasm kernels read, written straight into linear memory.
 * Sources are W [rows, cols] row-major (PyTorch [out, in]).
 */

/** Output rows per block of the packed layout (four f32x4 vectors). */
export const BLOCK = 16;
/** Active inputs per pass in sparseGemv; must equal GROUP in assembly/kernels.ts. */
export const SPARSE_GROUP = 16;

/**
 * Packed layout for dense gemv/gemm: dst[b][c][i] = W[16b + i, c], blocks of 16 rows,
 * the last block zero-padded. `off` is in floats; writes ceil(rows/16)·16·cols floats.
 */
export function packBlocks(
  dst: Float32Array,
  off: number,
  w: Float32Array,
  rows: number,
  cols: number,
): void {
  const padded = Math.ceil(rows / BLOCK) * BLOCK;
  // Row by row: reads W sequentially, writes every 16th float (cache lines reused 16 times).
  for (let r = 0; r < padded; r++) {
    const base = off + Math.floor(r / BLOCK) * BLOCK * cols + (r % BLOCK);
    if (r >= rows) {
      for (let c = 0; c < cols; c++) dst[base + c * BLOCK] = 0;
      continue;
    }
    const src = r * cols;
    for (let c = 0; c < cols; c++) dst[base + c * BLOCK] = w[src + c];
  }
}

/**
 * Row stride of Wᵀ in floats: rows rounded up to an odd number of 64-byte lines. With a
 * stride that is a multiple of 4 KiB, the eight rows sparseGemv streams at once map to the
 * same L1 sets (and DRAM banks) and evict each other; an odd stride spreads them (~5% faster).
 */
export function transposedStride(rows: number): number {
  const lines = Math.ceil(rows / 16);
  return 16 * (lines % 2 === 0 ? lines + 1 : lines);
}

/** Floats of the input-major copy: cols rows of Wᵀ plus the all-zero row sparseGemv pads with. */
export function transposedSize(rows: number, cols: number): number {
  return transposedStride(rows) * (cols + 1);
}

/**
 * Input-major copy for sparseGemv: dst[c][r] = W[r, c] with row stride `ld` =
 * transposedStride(rows), the padding and an extra row `cols` zeroed (transposedSize floats).
 * Transposed in 32×32 tiles to stay in cache.
 */
export function packTransposed(
  dst: Float32Array,
  off: number,
  w: Float32Array,
  rows: number,
  cols: number,
): void {
  const ld = transposedStride(rows);
  const TILE = 32;
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(rows, r0 + TILE);
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const c1 = Math.min(cols, c0 + TILE);
      for (let r = r0; r < r1; r++) {
        const src = r * cols;
        for (let c = c0; c < c1; c++) dst[off + c * ld + r] = w[src + c];
      }
    }
  }
  if (ld > rows) {
    for (let c = 0; c < cols; c++) dst.fill(0, off + c * ld + rows, off + (c + 1) * ld);
  }
  dst.fill(0, off + cols * ld, off + (cols + 1) * ld);
}
