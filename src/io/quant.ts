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
 *
 * `quantize` writes the same blocks as ggml's reference quantizers
 * (`quantize_row_{q4_0,q4_1,q5_0,q5_1,q8_0}_ref` in ggml/src/ggml-quants.c), in float32
 * arithmetic as the C code does: the scale from the block's extreme value(s), f16
 * rounding to nearest even, and the same rounding of each value to its integer level.
 * K-quants (256-value super-blocks) are in kquant.ts.
 */
import { floatToHalf, halfToFloat } from './dtype.ts';

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

// ---- quantization (ggml's reference quantizers) ----

const f = Math.fround;

/**
 * Quantizes `x` (a multiple of 32 values) into blocks of `type`, as ggml's
 * `quantize_row_*_ref`. Every intermediate is rounded to float32 where the C code
 * works in float; casts to an integer level truncate toward zero as C's casts do.
 */
export function quantize(type: QuantType, x: Float32Array): Uint8Array {
  const size = BLOCK_BYTES[type];
  const nBlocks = x.length / QK;
  if (!Number.isInteger(nBlocks)) {
    throw new RangeError(`${type}: ${x.length} values is not a multiple of ${QK}`);
  }
  const out = new Uint8Array(nBlocks * size);
  const dv = new DataView(out.buffer);
  for (let b = 0; b < nBlocks; b++) {
    const v = x.subarray(b * QK, b * QK + QK);
    const p = b * size;
    switch (type) {
      case 'q4_0':
      case 'q5_0': {
        // d = max / −(2^(bits−1)), `max` the value of largest magnitude (first one wins)
        const half = type === 'q4_0' ? 8 : 16;
        let amax = 0;
        let max = 0;
        for (let j = 0; j < QK; j++) {
          if (amax < Math.abs(v[j])) {
            amax = Math.abs(v[j]);
            max = v[j];
          }
        }
        const d = f(max / -half);
        const id = d ? f(1 / d) : 0;
        dv.setUint16(p, floatToHalf(d), true);
        // level = min(2·half − 1, (int)(x·id + half + 0.5))
        const level = (a: number) => Math.min(2 * half - 1, Math.trunc(f(f(a * id) + half + 0.5)));
        packNibbles(out, v, level, type === 'q4_0' ? p + 2 : p + 6, type === 'q5_0' ? p + 2 : -1);
        break;
      }
      case 'q4_1':
      case 'q5_1': {
        // d = (max − min) / (2^bits − 1), m = min; level = (int)((x − min)·id + 0.5)
        const top = type === 'q4_1' ? 15 : 31;
        let min = Number.POSITIVE_INFINITY;
        let max = Number.NEGATIVE_INFINITY;
        for (let j = 0; j < QK; j++) {
          if (v[j] < min) min = v[j];
          if (v[j] > max) max = v[j];
        }
        const d = f(f(max - min) / top);
        const id = d ? f(1 / d) : 0;
        dv.setUint16(p, floatToHalf(d), true);
        dv.setUint16(p + 2, floatToHalf(min), true);
        // Q4_1 clamps to 15; Q5_1's (uint8_t) cast does not clamp (the level is ≤ 31 anyway)
        const level = (a: number) => {
          const l = Math.trunc(f(f(f(a - min) * id) + 0.5));
          return type === 'q4_1' ? Math.min(15, l) : l & 0xff;
        };
        packNibbles(out, v, level, type === 'q4_1' ? p + 4 : p + 8, type === 'q5_1' ? p + 4 : -1);
        break;
      }
      case 'q8_0': {
        // d = amax / 127; q = roundf(x·id), halves away from zero
        let amax = 0;
        for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(v[j]));
        const d = f(amax / 127);
        const id = d ? f(1 / d) : 0;
        dv.setUint16(p, floatToHalf(d), true);
        for (let j = 0; j < QK; j++) {
          const a = f(v[j] * id);
          out[p + 2 + j] = (Math.sign(a) * Math.floor(Math.abs(a) + 0.5)) & 0xff;
        }
        break;
      }
    }
  }
  return out;
}

/**
 * Low nibble of byte j = level of element j, high nibble = level of element j+16; for
 * Q5 the fifth bits go to the u32 at `qhAt`: bit j for element j, bit j+16 for j+16.
 */
function packNibbles(
  out: Uint8Array,
  v: Float32Array,
  level: (x: number) => number,
  qsAt: number,
  qhAt: number,
): void {
  let qh = 0;
  for (let j = 0; j < 16; j++) {
    const a = level(v[j]);
    const c = level(v[j + 16]);
    out[qsAt + j] = (a & 15) | ((c & 15) << 4);
    qh |= (((a >> 4) & 1) << j) | (((c >> 4) & 1) << (j + 16));
  }
  if (qhAt >= 0) new DataView(out.buffer, out.byteOffset).setUint32(qhAt, qh >>> 0, true);
}
