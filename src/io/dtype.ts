/**
 * Number formats found in checkpoints, and their conversion to and from float32.
 * All data on disk is little-endian.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE half → float (exact). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** float → IEEE half, round to nearest even (as numpy / torch .half()). */
export function floatToHalf(x: number): number {
  f32[0] = x;
  const b = u32[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** bfloat16 → float (exact): the top half of a float32. */
export function bf16ToFloat(h: number): number {
  u32[0] = h << 16;
  return f32[0];
}

/** float → bfloat16, round to nearest even (as torch .bfloat16()). */
export function floatToBf16(x: number): number {
  f32[0] = x;
  const b = u32[0];
  if ((b & 0x7f800000) === 0x7f800000 && b & 0x7fffff) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

let halfTable: Float32Array | null = null;
/** All 65536 half values as floats: decoding becomes one table lookup per value. */
function halfLookup(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
  }
  return halfTable;
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Decodes `count` little-endian values of a plain dtype from `buf` into float32. */
export function decodeToFloat32(
  buf: Uint8Array,
  dtype: 'f32' | 'f16' | 'bf16' | 'f64',
  count: number,
): Float32Array {
  const out = new Float32Array(count);
  const size = dtype === 'f64' ? 8 : dtype === 'f32' ? 4 : 2;
  // Fast path: an aligned copy viewed as a typed array (every platform Node runs on
  // in practice is little-endian; the DataView path below covers the others).
  if (littleEndian) {
    const bytes = buf.byteOffset % size === 0 ? buf : new Uint8Array(buf.subarray(0, count * size));
    if (dtype === 'f32') {
      out.set(new Float32Array(bytes.buffer, bytes.byteOffset, count));
      return out;
    }
    if (dtype === 'f64') {
      out.set(new Float64Array(bytes.buffer, bytes.byteOffset, count));
      return out;
    }
    const u16 = new Uint16Array(bytes.buffer, bytes.byteOffset, count);
    if (dtype === 'f16') {
      const table = halfLookup();
      for (let i = 0; i < count; i++) out[i] = table[u16[i]];
    } else {
      // bf16 is the top half of a float32.
      const u32 = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) u32[i] = u16[i] << 16;
    }
    return out;
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < count; i++) {
    if (dtype === 'f32') out[i] = dv.getFloat32(i * 4, true);
    else if (dtype === 'f64') out[i] = dv.getFloat64(i * 8, true);
    else if (dtype === 'f16') out[i] = halfToFloat(dv.getUint16(i * 2, true));
    else out[i] = bf16ToFloat(dv.getUint16(i * 2, true));
  }
  return out;
}

/** Encodes float32 values as little-endian bytes of a plain dtype. */
export function encodeFromFloat32(data: Float32Array, dtype: 'f32' | 'f16' | 'bf16'): Uint8Array {
  const size = dtype === 'f32' ? 4 : 2;
  const out = new Uint8Array(data.length * size);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < data.length; i++) {
    if (dtype === 'f32') dv.setFloat32(i * 4, data[i], true);
    else dv.setUint16(i * 2, dtype === 'f16' ? floatToHalf(data[i]) : floatToBf16(data[i]), true);
  }
  return out;
}
