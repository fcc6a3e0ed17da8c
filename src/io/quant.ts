/**
 * ggml's 32-value quantized blocks (the layouts of ggml after May 2023, rwkv.cpp file
 * version 101), dequantized exactly as ggml's `dequantize_row_*`:
 *
 *   Q4_0  d:f16, qs[16]           y = (q − 8)·d
 *   Q4_1  d:f16, m:f16, qs[16]    y = q·d + m
 *   Q5_0  d:f16, qh:u32, qs[16]   y = (q − 16)·d
 *   Q5_1  d:f16, m:f16, qh:u32, qs[16]   y = q·d + m
 *   Q8_0  d:f16, qs:int8[32]      y = q·d
 *
 * In Q4/Q5, byte j of qs holds element j in its low nibble and element j+16 in its
 * high nibble; Q5's fifth bit of element j is bit j of qh, of element j+16 bit j+16.
 */
import { halfToFloat } from './dtype.ts';

export type QuantType = 'q4_0' | 'q4_1' | 'q5_0' | 'q5_1' | 'q8_0';

/** Values per block, for every type here. */
export const QK = 32;

/** Bytes per block of 32 values. */
export const BLOCK_BYTES: Readonly<Record<QuantType, number>> = {
  q4_0: 2 + 16,
  q4_1: 2 + 2 + 16,
  q5_0: 2 + 4 + 16,
  q5_1: 2 + 2 + 4 + 16,
  q8_0: 2 + 32,
};

export function isQuantType(t: string): t is QuantType {
  return Object.hasOwn(BLOCK_BYTES, t);
}

/** Bytes that `count` values take; `count` must be a multiple of 32. */
export function quantizedByteLength(type: QuantType, count: number): number {
  if (count % QK !== 0) throw new RangeError(`${type}: ${count} values is not a multiple of ${QK}`);
  return (count / QK) * BLOCK_BYTES[type];
}

/**
 * Dequantizes `nBlocks` blocks of `type` from `src` into `out[outOffset …]`.
 * `src` must hold at least nBlocks·BLOCK_BYTES[type] bytes.
 */
export function dequantize(
  type: QuantType,
  src: Uint8Array,
  out: Float32Array,
  outOffset = 0,
  nBlocks = Math.floor(src.length / BLOCK_BYTES[type]),
): void {
  const size = BLOCK_BYTES[type];
  if (src.length < nBlocks * size || out.length < outOffset + nBlocks * QK) {
    throw new RangeError(`${type}: ${nBlocks} blocks do not fit the buffers`);
  }
  for (let b = 0; b < nBlocks; b++) {
    const p = b * size;
    const y = outOffset + b * QK;
    // Every scale is an f16 at the start of the block.
    const d = halfToFloat(src[p] | (src[p + 1] << 8));
    switch (type) {
      case 'q4_0':
        for (let j = 0; j < 16; j++) {
          const q = src[p + 2 + j];
          out[y + j] = ((q & 0x0f) - 8) * d;
          out[y + j + 16] = ((q >> 4) - 8) * d;
        }
        break;
      case 'q4_1': {
        const m = halfToFloat(src[p + 2] | (src[p + 3] << 8));
        for (let j = 0; j < 16; j++) {
          const q = src[p + 4 + j];
          out[y + j] = (q & 0x0f) * d + m;
          out[y + j + 16] = (q >> 4) * d + m;
        }
        break;
      }
      case 'q5_0': {
        const qh = readU32(src, p + 2);
        for (let j = 0; j < 16; j++) {
          const q = src[p + 6 + j];
          // bit j of qh tops element j, bit j+16 tops element j+16
          const h0 = ((qh >>> j) & 1) << 4;
          const h1 = ((qh >>> (j + 16)) & 1) << 4;
          out[y + j] = ((q & 0x0f) + h0 - 16) * d;
          out[y + j + 16] = ((q >> 4) + h1 - 16) * d;
        }
        break;
      }
      case 'q5_1': {
        const m = halfToFloat(src[p + 2] | (src[p + 3] << 8));
        const qh = readU32(src, p + 4);
        for (let j = 0; j < 16; j++) {
          const q = src[p + 8 + j];
          const h0 = ((qh >>> j) & 1) << 4;
          const h1 = ((qh >>> (j + 16)) & 1) << 4;
          out[y + j] = ((q & 0x0f) + h0) * d + m;
          out[y + j + 16] = ((q >> 4) + h1) * d + m;
        }
        break;
      }
      case 'q8_0':
        for (let j = 0; j < 32; j++) {
          const q = src[p + 2 + j];
          out[y + j] = (q >= 128 ? q - 256 : q) * d;
        }
        break;
    }
  }
}

/** Dequantizes a whole buffer of `count` values (a multiple of 32). */
export function dequantizeAll(type: QuantType, src: Uint8Array, count: number): Float32Array {
  const out = new Float32Array(count);
  dequantize(type, src, out, 0, count / QK);
  return out;
}

function readU32(b: Uint8Array, p: number): number {
  return (b[p] | (b[p + 1] << 8) | (b[p + 2] << 16) | (b[p + 3] << 24)) >>> 0;
}
