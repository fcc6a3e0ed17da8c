/**
 * ggml's k-quants: super-blocks of 256 values (QK_K) with sub-block scales, the types
 * Ollama and llama.cpp files use most (Q4_K_M = Q4_K + Q6_K, Q5_K_M, …). Dequantized
 * exactly as ggml's `dequantize_row_q{2,3,4,5,6,8}_K` (ggml/src/ggml-quants.c), with the
 * block layouts of ggml/src/ggml-common.h (all little-endian, `d`/`dmin` are f16):
 *
 *   Q2_K  84 B   scales[16], qs[64], d, dmin
 *                16 sub-blocks of 16: y = d·(sc & 15)·q − dmin·(sc >> 4), q 2 bits
 *   Q3_K  110 B  hmask[32], qs[64], scales[12], d
 *                16 sub-blocks of 16: y = d·(s − 32)·(q − 4·!hbit), s 6 bits, q 2 bits
 *   Q4_K  144 B  d, dmin, scales[12], qs[128]
 *                8 sub-blocks of 32: y = d·sc·q − dmin·m, sc/m 6 bits, q 4 bits
 *   Q5_K  176 B  d, dmin, scales[12], qh[32], qs[128]      as Q4_K with a fifth bit
 *   Q6_K  210 B  ql[128], qh[64], scales:int8[16], d
 *                16 sub-blocks of 16: y = d·sc·(q − 32), q 6 bits
 *   Q8_K  292 B  d:f32, qs:int8[256], bsums:int16[16]       y = d·q
 *
 * Every product of an f16 scale and a small integer is exact in float32, so computing
 * in float64 and rounding once when storing gives ggml's float results bit for bit.
 */
import { halfToFloat } from './dtype.ts';

export type KQuantType = 'q2_k' | 'q3_k' | 'q4_k' | 'q5_k' | 'q6_k' | 'q8_k';

/** Values per super-block. */
export const QK_K = 256;

export const K_BLOCK_BYTES: Readonly<Record<KQuantType, number>> = {
  q2_k: 84,
  q3_k: 110,
  q4_k: 144,
  q5_k: 176,
  q6_k: 210,
  q8_k: 292,
};

export function isKQuantType(t: string): t is KQuantType {
  return Object.hasOwn(K_BLOCK_BYTES, t);
}

/**
 * Dequantizes `nBlocks` super-blocks of `type` from `src` into `out[outOffset …]`.
 * `src` must hold nBlocks·K_BLOCK_BYTES[type] bytes.
 */
export function dequantizeK(
  type: KQuantType,
  src: Uint8Array,
  out: Float32Array,
  outOffset = 0,
  nBlocks = Math.floor(src.length / K_BLOCK_BYTES[type]),
): void {
  const size = K_BLOCK_BYTES[type];
  if (src.length < nBlocks * size || out.length < outOffset + nBlocks * QK_K) {
    throw new RangeError(`${type}: ${nBlocks} blocks do not fit the buffers`);
  }
  const dv = new DataView(src.buffer, src.byteOffset, src.byteLength);
  const half = (at: number) => halfToFloat(dv.getUint16(at, true));
  for (let b = 0; b < nBlocks; b++) {
    const p = b * size;
    const y = outOffset + b * QK_K;
    switch (type) {
      case 'q2_k':
        q2k(src, p, half(p + 80), half(p + 82), out, y);
        break;
      case 'q3_k':
        q3k(src, p, half(p + 108), out, y);
        break;
      case 'q4_k':
      case 'q5_k':
        q45k(src, p, half(p), half(p + 2), type === 'q5_k', out, y);
        break;
      case 'q6_k':
        q6k(src, p, half(p + 208), out, y);
        break;
      case 'q8_k': {
        const d = dv.getFloat32(p, true);
        for (let i = 0; i < QK_K; i++) {
          const q = src[p + 4 + i];
          out[y + i] = d * (q >= 128 ? q - 256 : q);
        }
        break;
      }
    }
  }
}

/** Q2_K: 2 halves of 128; in each, 4 shifts × 2 groups of 16 read the same 32 qs bytes. */
function q2k(src: Uint8Array, p: number, d: number, dmin: number, out: Float32Array, y: number) {
  const scales = p;
  let qs = p + 16;
  let is = 0;
  let at = y;
  for (let n = 0; n < QK_K; n += 128) {
    for (let shift = 0; shift < 8; shift += 2) {
      for (const off of [0, 16]) {
        const sc = src[scales + is++];
        // y = d·(sc & 15)·q − dmin·(sc >> 4)
        const dl = d * (sc & 0xf);
        const ml = dmin * (sc >> 4);
        for (let l = 0; l < 16; l++) out[at++] = dl * ((src[qs + off + l] >> shift) & 3) - ml;
      }
    }
    qs += 32;
  }
}

/** Q3_K: 6-bit scales: low 4 bits from scales[0..7], high 2 bits from scales[8..11]. */
function q3k(src: Uint8Array, p: number, d: number, out: Float32Array, y: number) {
  const hmask = p;
  let qs = p + 32;
  const sc = p + 96;
  // scale j = (j < 8 ? sc[j] & 15 : sc[j−8] >> 4) | ((sc[8 + j%4] >> 2·⌊j/4⌋) & 3) << 4
  const scale = (j: number) => {
    const low = j < 8 ? src[sc + j] & 0xf : src[sc + j - 8] >> 4;
    const high = (src[sc + 8 + (j % 4)] >> (2 * Math.floor(j / 4))) & 3;
    return (low | (high << 4)) - 32;
  };
  let is = 0;
  let m = 1;
  let at = y;
  for (let n = 0; n < QK_K; n += 128) {
    for (let shift = 0; shift < 8; shift += 2) {
      for (const off of [0, 16]) {
        const dl = d * scale(is++);
        // q = 2 low bits − 4 unless the high bit (bit m of hmask) is set
        for (let l = 0; l < 16; l++) {
          const q = ((src[qs + off + l] >> shift) & 3) - (src[hmask + off + l] & m ? 0 : 4);
          out[at++] = dl * q;
        }
      }
      m <<= 1;
    }
    qs += 32;
  }
}

/** ggml's get_scale_min_k4: sub-block j's 6-bit scale and min from the 12 scale bytes. */
function scaleMin(src: Uint8Array, at: number, j: number): [number, number] {
  if (j < 4) return [src[at + j] & 63, src[at + j + 4] & 63];
  return [
    (src[at + j + 4] & 0xf) | ((src[at + j - 4] >> 6) << 4),
    (src[at + j + 4] >> 4) | ((src[at + j] >> 6) << 4),
  ];
}

/** Q4_K / Q5_K: 4 chunks of 64 = two sub-blocks of 32 sharing 32 qs bytes (low, high nibble). */
function q45k(
  src: Uint8Array,
  p: number,
  d: number,
  dmin: number,
  five: boolean,
  out: Float32Array,
  y: number,
) {
  const scales = p + 4;
  const qh = p + 16;
  let qs = five ? p + 48 : p + 16;
  let at = y;
  let u1 = 1;
  let u2 = 2;
  for (let is = 0; is < 8; is += 2) {
    const [sc1, m1] = scaleMin(src, scales, is);
    const [sc2, m2] = scaleMin(src, scales, is + 1);
    // y = d·sc·q − dmin·m, q = nibble (+16 when Q5_K's bit u of qh[l] is set)
    const d1 = d * sc1;
    const d2 = d * sc2;
    const min1 = dmin * m1;
    const min2 = dmin * m2;
    for (let l = 0; l < 32; l++) {
      const h = five && src[qh + l] & u1 ? 16 : 0;
      out[at++] = d1 * ((src[qs + l] & 0xf) + h) - min1;
    }
    for (let l = 0; l < 32; l++) {
      const h = five && src[qh + l] & u2 ? 16 : 0;
      out[at++] = d2 * ((src[qs + l] >> 4) + h) - min2;
    }
    qs += 32;
    u1 <<= 2;
    u2 <<= 2;
  }
}

/** Q6_K: 2 halves of 128; each element's 4 low bits in ql, 2 high bits in qh. */
function q6k(src: Uint8Array, p: number, d: number, out: Float32Array, y: number) {
  let ql = p;
  let qh = p + 128;
  let sc = p + 192;
  const int8 = (v: number) => (v >= 128 ? v - 256 : v);
  for (let n = 0; n < QK_K; n += 128) {
    for (let l = 0; l < 32; l++) {
      const is = l >> 4;
      const h = src[qh + l];
      // q = (4 low bits | 2 high bits << 4) − 32, for elements l, l+32, l+64, l+96
      const q1 = ((src[ql + l] & 0xf) | ((h & 3) << 4)) - 32;
      const q2 = ((src[ql + l + 32] & 0xf) | (((h >> 2) & 3) << 4)) - 32;
      const q3 = ((src[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
      const q4 = ((src[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
      out[y + n + l] = d * int8(src[sc + is]) * q1;
      out[y + n + l + 32] = d * int8(src[sc + is + 2]) * q2;
      out[y + n + l + 64] = d * int8(src[sc + is + 4]) * q3;
      out[y + n + l + 96] = d * int8(src[sc + is + 6]) * q4;
    }
    ql += 64;
    qh += 32;
    sc += 8;
  }
}
