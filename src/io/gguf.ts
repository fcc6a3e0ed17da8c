/**
 * GGUF (llama.cpp, Ollama) files, versions 2 and 3, little-endian — as specified by
 * ggml's docs/gguf.md and read by ggml/src/gguf.cpp:
 *
 *   "GGUF"  u32 version  u64 tensor_count  u64 kv_count
 *   kv_count × { string key, u32 value_type, value }
 *   tensor_count × { string name, u32 n_dims, i64 ne[n_dims], u32 ggml_type, u64 offset }
 *   padding to `general.alignment` (u32, default 32), then the data section; each
 *   tensor's offset is relative to it and a multiple of the alignment.
 *
 * A string is `u64 length, bytes` (UTF-8, no terminator); an array is `u32 item_type,
 * u64 count, items`. Value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool,
 * 8 string, 9 array, 10 u64, 11 i64, 12 f64. `ne[0]` is the contiguous dimension, so the
 * PyTorch shape is `ne` reversed. Block sizes of every ggml type are those of gguf-py's
 * GGML_QUANT_SIZES (gguf-py/gguf/constants.py).
 *
 * Every count and length read from the file is checked against the bytes that remain
 * before anything is allocated from it, so a hostile header costs at most its own size.
 * Numeric arrays become typed arrays (memory = their bytes in the file).
 *
 * Names and layouts: `general.architecture` rwkv6 and rwkv7 are mapped to BlinkDL's
 * canonical `.pth` names and shapes, undoing llama.cpp's converter (see gguf-rwkv.ts);
 * every other architecture keeps the file's own names. `writeGguf` writes llama.cpp's
 * RWKV-6/7 layout from canonical weights (or any tensors as named).
 */
import { check, FormatError, UserError } from '../errors.ts';
import { numel, type Tensor, tensor } from '../tensor/tensor.ts';
import type { Checkpoint, StoredDType, TensorEntry } from './checkpoint.ts';
import { decodeToFloat32, encodeFromFloat32 } from './dtype.ts';
import { FileSource } from './file.ts';
import { ggufToCanonical, rwkvToGguf, UNSUPPORTED_RWKV_ARCHS } from './gguf-rwkv.ts';
import { dequantizeK, isKQuantType, QK_K } from './kquant.ts';
import { type Relayout, relayout } from './layout.ts';
import { dequantize, isQuantType, QK, type QuantType, quantize } from './quant.ts';
import { checkHalfRange, type TensorToWrite, writeAll, writeAtomically } from './safetensors.ts';
import { printable } from './text.ts';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
export const GGUF_DEFAULT_ALIGNMENT = 32;

/** True when the bytes start with "GGUF". */
export function isGguf(firstBytes: Uint8Array): boolean {
  return (
    firstBytes.length >= 4 &&
    firstBytes[0] === 0x47 &&
    firstBytes[1] === 0x47 &&
    firstBytes[2] === 0x55 &&
    firstBytes[3] === 0x46
  );
}

// ---- value types ----

export type GgufScalarType =
  | 'u8'
  | 'i8'
  | 'u16'
  | 'i16'
  | 'u32'
  | 'i32'
  | 'f32'
  | 'bool'
  | 'string'
  | 'u64'
  | 'i64'
  | 'f64';
export type GgufType = GgufScalarType | 'array';

/** Value type codes, in GGUF's numbering. */
const TYPE_NAMES: readonly GgufType[] = [
  'u8',
  'i8',
  'u16',
  'i16',
  'u32',
  'i32',
  'f32',
  'bool',
  'string',
  'array',
  'u64',
  'i64',
  'f64',
];
const TYPE_CODES = new Map(TYPE_NAMES.map((t, i) => [t, i]));

/** Bytes the smallest value of each type takes (a string: its length; an array: type + count). */
const MIN_BYTES: Readonly<Record<GgufType, number>> = {
  u8: 1,
  i8: 1,
  bool: 1,
  u16: 2,
  i16: 2,
  u32: 4,
  i32: 4,
  f32: 4,
  u64: 8,
  i64: 8,
  f64: 8,
  string: 8,
  array: 12,
};

/**
 * A metadata value: numbers (u64/i64 become bigint when beyond 2^53), booleans,
 * strings; arrays of numbers are typed arrays (bool arrays: Uint8Array of 0/1, 64-bit
 * integer arrays: BigInt64Array/BigUint64Array), arrays of strings or arrays are JS arrays.
 */
export type GgufValue =
  | number
  | bigint
  | boolean
  | string
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | Float32Array
  | Float64Array
  | BigUint64Array
  | BigInt64Array
  | GgufValue[];

export interface GgufKV {
  readonly type: GgufType;
  /** For arrays: the items' type. */
  readonly itemType?: GgufType;
  readonly value: GgufValue;
}

// ---- ggml tensor types ----

export interface GgmlType {
  readonly code: number;
  /** ggml's name, as llama.cpp prints it. */
  readonly name: string;
  readonly dtype: StoredDType;
  /** Values per block (1 for plain types). */
  readonly block: number;
  /** Bytes per block. */
  readonly bytes: number;
}

/** From gguf-py's GGML_QUANT_SIZES; codes 4, 5 and 31–33 are removed types. */
const GGML_TYPES: readonly GgmlType[] = [
  [0, 'F32', 'f32', 1, 4],
  [1, 'F16', 'f16', 1, 2],
  [2, 'Q4_0', 'q4_0', 32, 18],
  [3, 'Q4_1', 'q4_1', 32, 20],
  [6, 'Q5_0', 'q5_0', 32, 22],
  [7, 'Q5_1', 'q5_1', 32, 24],
  [8, 'Q8_0', 'q8_0', 32, 34],
  [9, 'Q8_1', 'q8_1', 32, 36],
  [10, 'Q2_K', 'q2_k', 256, 84],
  [11, 'Q3_K', 'q3_k', 256, 110],
  [12, 'Q4_K', 'q4_k', 256, 144],
  [13, 'Q5_K', 'q5_k', 256, 176],
  [14, 'Q6_K', 'q6_k', 256, 210],
  [15, 'Q8_K', 'q8_k', 256, 292],
  [16, 'IQ2_XXS', 'iq2_xxs', 256, 66],
  [17, 'IQ2_XS', 'iq2_xs', 256, 74],
  [18, 'IQ3_XXS', 'iq3_xxs', 256, 98],
  [19, 'IQ1_S', 'iq1_s', 256, 50],
  [20, 'IQ4_NL', 'iq4_nl', 32, 18],
  [21, 'IQ3_S', 'iq3_s', 256, 110],
  [22, 'IQ2_S', 'iq2_s', 256, 82],
  [23, 'IQ4_XS', 'iq4_xs', 256, 136],
  [24, 'I8', 'i8', 1, 1],
  [25, 'I16', 'i16', 1, 2],
  [26, 'I32', 'i32', 1, 4],
  [27, 'I64', 'i64', 1, 8],
  [28, 'F64', 'f64', 1, 8],
  [29, 'IQ1_M', 'iq1_m', 256, 56],
  [30, 'BF16', 'bf16', 1, 2],
  [34, 'TQ1_0', 'tq1_0', 256, 54],
  [35, 'TQ2_0', 'tq2_0', 256, 66],
  [39, 'MXFP4', 'mxfp4', 32, 17],
  [40, 'NVFP4', 'nvfp4', 64, 36],
  [41, 'Q1_0', 'q1_0', 128, 18],
].map(([code, name, dtype, block, bytes]) => ({
  code: code as number,
  name: name as string,
  dtype: dtype as StoredDType,
  block: block as number,
  bytes: bytes as number,
}));
const GGML_BY_CODE = new Map(GGML_TYPES.map((t) => [t.code, t]));
const GGML_BY_DTYPE = new Map(GGML_TYPES.map((t) => [t.dtype, t]));

/** llama.cpp's `llama_ftype` names for `general.file_type` (llama.h). */
const FILE_TYPES: Readonly<Record<number, string>> = {
  0: 'ALL_F32',
  1: 'MOSTLY_F16',
  2: 'MOSTLY_Q4_0',
  3: 'MOSTLY_Q4_1',
  7: 'MOSTLY_Q8_0',
  8: 'MOSTLY_Q5_0',
  9: 'MOSTLY_Q5_1',
  10: 'MOSTLY_Q2_K',
  11: 'MOSTLY_Q3_K_S',
  12: 'MOSTLY_Q3_K_M',
  13: 'MOSTLY_Q3_K_L',
  14: 'MOSTLY_Q4_K_S',
  15: 'MOSTLY_Q4_K_M',
  16: 'MOSTLY_Q5_K_S',
  17: 'MOSTLY_Q5_K_M',
  18: 'MOSTLY_Q6_K',
  19: 'MOSTLY_IQ2_XXS',
  20: 'MOSTLY_IQ2_XS',
  21: 'MOSTLY_Q2_K_S',
  22: 'MOSTLY_IQ3_XS',
  23: 'MOSTLY_IQ3_XXS',
  24: 'MOSTLY_IQ1_S',
  25: 'MOSTLY_IQ4_NL',
  26: 'MOSTLY_IQ3_S',
  27: 'MOSTLY_IQ3_M',
  28: 'MOSTLY_IQ2_S',
  29: 'MOSTLY_IQ2_M',
  30: 'MOSTLY_IQ4_XS',
  31: 'MOSTLY_IQ1_M',
  32: 'MOSTLY_BF16',
  36: 'MOSTLY_TQ1_0',
  37: 'MOSTLY_TQ2_0',
  38: 'MOSTLY_MXFP4_MOE',
};

// ---- header ----

/** One tensor as stored: `shape` in PyTorch order (ne reversed). */
export interface GgufTensorInfo {
  readonly name: string;
  readonly type: GgmlType;
  readonly ne: readonly number[];
  readonly shape: readonly number[];
  /** Absolute byte offset in the file. */
  readonly offset: number;
  readonly byteLength: number;
}

export interface GgufHeader {
  readonly version: number;
  readonly kv: ReadonlyMap<string, GgufKV>;
  readonly tensors: readonly GgufTensorInfo[];
  readonly alignment: number;
  /** Absolute offset of the data section. */
  readonly dataOffset: number;
}

/** ggml's GGML_MAX_NAME is 64 including the terminating NUL. */
const MAX_NAME = 63;
/** ggml's GGML_MAX_DIMS. */
const MAX_DIMS = 4;
/** Arrays of arrays deeper than this are not GGUF anyone writes. */
const MAX_DEPTH = 3;
const HINT_BAD = 'The file may be truncated or corrupted; re-download or re-convert it.';

/**
 * A forward reader over the header that reads the file in windows of a few MiB, so a
 * 100 MB token list is not one read and a small header is one.
 */
class Cursor {
  private buf: Buffer = Buffer.alloc(0);
  private bufStart = 0;
  private static readonly WINDOW = 1 << 22;
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });
  private readonly lenient = new TextDecoder('utf-8');

  constructor(
    private readonly file: FileSource,
    public pos: number,
  ) {}

  get remaining(): number {
    return this.file.size - this.pos;
  }

  /** Makes bytes pos..pos+n available in `buf`; n must be ≤ WINDOW. */
  private need(n: number, what: string): number {
    if (n > this.remaining) {
      throw new FormatError(
        this.file.path,
        `${what} at byte ${this.pos} needs ${n} bytes but only ${this.remaining} remain (truncated?)`,
        HINT_BAD,
      );
    }
    const end = this.bufStart + this.buf.length;
    if (this.pos < this.bufStart || this.pos + n > end) {
      const len = Math.min(Math.max(n, Cursor.WINDOW), this.remaining);
      this.buf = this.file.read(this.pos, len, what);
      this.bufStart = this.pos;
    }
    const at = this.pos - this.bufStart;
    this.pos += n;
    return at;
  }

  // `need` may replace `buf`: take the offset before touching the buffer.
  u8(what: string): number {
    const at = this.need(1, what);
    return this.buf[at];
  }
  u32(what: string): number {
    const at = this.need(4, what);
    return this.buf.readUInt32LE(at);
  }
  /** A u64 as a number; values beyond 2^53 are a FormatError (no file has them). */
  u64(what: string): number {
    const at = this.need(8, what);
    const v = this.buf.readBigUInt64LE(at);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new FormatError(this.file.path, `${what} is ${v}, beyond any file size`, HINT_BAD);
    }
    return Number(v);
  }
  i64(what: string): bigint {
    const at = this.need(8, what);
    return this.buf.readBigInt64LE(at);
  }

  /** The raw bytes of the next n values of a fixed-size type (n·size checked by the caller). */
  bytes(n: number, what: string): Buffer {
    if (n <= Cursor.WINDOW) {
      const at = this.need(n, what);
      return this.buf.subarray(at, at + n);
    }
    if (n > this.remaining) this.need(n, what); // throws the truncation error
    const b = this.file.read(this.pos, n, what);
    this.pos += n;
    return b;
  }

  /** A GGUF string; `strict` refuses invalid UTF-8 (keys and tensor names). */
  string(what: string, strict: boolean, maxLength = Number.MAX_SAFE_INTEGER): string {
    const len = this.u64(`${what} length`);
    if (len > this.remaining) {
      throw new FormatError(
        this.file.path,
        `${what} claims ${len} bytes but only ${this.remaining} remain (truncated?)`,
        HINT_BAD,
      );
    }
    if (len > maxLength) {
      throw new FormatError(this.file.path, `${what} is ${len} bytes (at most ${maxLength})`);
    }
    const b = this.bytes(len, what);
    if (!strict) return this.lenient.decode(b);
    try {
      return this.utf8.decode(b);
    } catch {
      throw new FormatError(this.file.path, `${what} is not valid UTF-8`, HINT_BAD);
    }
  }
}

/** Reads and validates the header, the metadata and the tensor index of a GGUF file. */
export function readGgufHeader(file: FileSource): GgufHeader {
  const path = file.path;
  check(file.size >= 24, path, `${file.size} bytes is too short for a GGUF header (24)`);
  const c = new Cursor(file, 0);
  const magic = c.u32('magic');
  check(
    magic === GGUF_MAGIC,
    path,
    `not a GGUF file (magic 0x${magic.toString(16)}, expected "GGUF")`,
  );
  const version = c.u32('version');
  if (version !== 2 && version !== 3) {
    // A big-endian file (GGUF v3 allows one) reads its version byte-swapped.
    const swapped = Buffer.from(Uint32Array.of(version).buffer).readUInt32BE(0);
    if (swapped === 2 || swapped === 3) {
      throw new FormatError(
        path,
        'this is a big-endian GGUF file, which actsparse does not read',
        'Convert it to little-endian with llama.cpp (gguf-py/gguf/scripts/gguf_convert_endian.py).',
      );
    }
    throw new FormatError(
      path,
      version === 1
        ? 'GGUF version 1 (32-bit counts) is obsolete'
        : `unsupported GGUF version ${version} (expected 2 or 3)`,
      'Re-convert the model with a current llama.cpp.',
    );
  }
  const nTensors = c.u64('tensor count');
  const nKv = c.u64('metadata count');
  // Lower bounds per entry: key (8 + 1) + type (4) + a u8 value; name (8 + 1) + n_dims,
  // type (4 + 4) + offset (8).
  check(
    nKv * 14 <= c.remaining,
    path,
    `metadata count ${nKv} cannot fit in the ${c.remaining} bytes that follow`,
    HINT_BAD,
  );
  check(
    nTensors * 25 <= c.remaining,
    path,
    `tensor count ${nTensors} cannot fit in the ${c.remaining} bytes that follow`,
    HINT_BAD,
  );

  const kv = new Map<string, GgufKV>();
  for (let i = 0; i < nKv; i++) {
    const key = c.string(`metadata key #${i}`, true, 1 << 16);
    const where = `metadata '${printable(key)}'`;
    check(!kv.has(key), path, `${where} appears twice`, HINT_BAD);
    const type = valueType(c, path, where);
    kv.set(key, readValue(c, path, type, where, 0));
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = kv.get('general.alignment');
  if (al) {
    const v = al.value;
    check(
      typeof v === 'number' && Number.isInteger(v) && v > 0 && v <= 1 << 30 && (v & (v - 1)) === 0,
      path,
      `general.alignment = ${printable(String(v))} is not a power of two`,
      HINT_BAD,
    );
    alignment = v;
  }

  const raw: { name: string; type: GgmlType; ne: number[]; rel: number; byteLength: number }[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const name = c.string(`tensor #${i} name`, true, MAX_NAME);
    const what = `tensor '${printable(name)}'`;
    check(name.length > 0, path, `tensor #${i} has an empty name`, HINT_BAD);
    check(!names.has(name), path, `${what} appears twice`, HINT_BAD);
    names.add(name);
    const nDims = c.u32(`${what} n_dims`);
    check(nDims <= MAX_DIMS, path, `${what}: n_dims = ${nDims} (ggml allows at most ${MAX_DIMS})`);
    const ne: number[] = [];
    for (let d = 0; d < nDims; d++) {
      const v = c.i64(`${what} ne[${d}]`);
      check(v >= 0n && v <= 1n << 40n, path, `${what}: dimension ${d} is ${v}`, HINT_BAD);
      ne.push(Number(v));
    }
    const code = c.u32(`${what} type`);
    const type = GGML_BY_CODE.get(code);
    check(
      type,
      path,
      `${what}: unknown ggml type ${code}`,
      'The file may come from a newer llama.cpp; re-quantize it to a common type (Q8_0, Q4_K_M, F16).',
    );
    const rel = c.u64(`${what} offset`);
    check(
      rel % alignment === 0,
      path,
      `${what}: offset ${rel} is not a multiple of the alignment ${alignment}`,
      HINT_BAD,
    );
    const rowLength = ne.length > 0 ? ne[0] : 1;
    check(
      rowLength % type.block === 0,
      path,
      `${what}: row length ${rowLength} is not a multiple of ${type.name}'s block of ${type.block}`,
      HINT_BAD,
    );
    // The byte size, in BigInt so that four 2^40 dimensions cannot overflow silently.
    const count = ne.reduce((a, d) => a * BigInt(d), 1n);
    const bytes = (count / BigInt(type.block)) * BigInt(type.bytes);
    check(
      bytes <= BigInt(file.size),
      path,
      `${what} [${[...ne].reverse().join(', ')}] ${type.name} needs ${bytes} bytes, more than the file's ${file.size}`,
      HINT_BAD,
    );
    raw.push({ name, type, ne, rel, byteLength: Number(bytes) });
  }

  const dataOffset = Math.ceil(c.pos / alignment) * alignment;
  const dataSize = Math.max(0, file.size - dataOffset);
  const tensors: GgufTensorInfo[] = raw.map((t) => {
    const what = `tensor '${printable(t.name)}'`;
    check(
      t.rel + t.byteLength <= dataSize,
      path,
      `${what} needs bytes ${t.rel}..${t.rel + t.byteLength} of the data section, which has ${dataSize} (truncated?)`,
      HINT_BAD,
    );
    return {
      name: t.name,
      type: t.type,
      ne: t.ne,
      shape: [...t.ne].reverse(),
      offset: dataOffset + t.rel,
      byteLength: t.byteLength,
    };
  });
  // Tensors may not share bytes (gguf.cpp even wants them packed in order).
  const byOffset = [...tensors].filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < byOffset.length; i++) {
    const prev = byOffset[i - 1];
    check(
      byOffset[i].offset >= prev.offset + prev.byteLength,
      path,
      `tensors '${printable(prev.name)}' and '${printable(byOffset[i].name)}' overlap in the data section`,
      HINT_BAD,
    );
  }
  return { version, kv, tensors, alignment, dataOffset };
}

function valueType(c: Cursor, path: string, where: string): GgufType {
  const code = c.u32(`${where} type`);
  const t = TYPE_NAMES[code];
  check(t !== undefined, path, `${where}: unknown value type ${code} (expected 0..12)`, HINT_BAD);
  return t;
}

function readValue(c: Cursor, path: string, type: GgufType, where: string, depth: number): GgufKV {
  switch (type) {
    case 'string':
      return { type, value: c.string(where, false) };
    case 'array': {
      check(depth < MAX_DEPTH, path, `${where}: arrays nested more than ${MAX_DEPTH} deep`);
      const itemType = valueType(c, path, `${where} item`);
      const n = c.u64(`${where} count`);
      // Every item takes at least MIN_BYTES: the count is bounded by the file before any
      // allocation.
      check(
        n * MIN_BYTES[itemType] <= c.remaining,
        path,
        `${where}: ${n} items of ${itemType} cannot fit in the ${c.remaining} bytes that remain`,
        HINT_BAD,
      );
      if (itemType === 'string' || itemType === 'array') {
        const items: GgufValue[] = new Array(n);
        for (let i = 0; i < n; i++) items[i] = readValue(c, path, itemType, where, depth + 1).value;
        return { type, itemType, value: items };
      }
      const size = MIN_BYTES[itemType];
      const b = c.bytes(n * size, where);
      // An aligned copy viewed as the typed array (the file is little-endian, as is the host).
      const copy = new Uint8Array(b).buffer;
      return { type, itemType, value: typedArray(itemType, copy, n) };
    }
    default: {
      const size = MIN_BYTES[type];
      const b = c.bytes(size, where);
      return { type, value: scalar(type, b) };
    }
  }
}

function typedArray(t: GgufScalarType, buf: ArrayBuffer, n: number): GgufValue {
  switch (t) {
    case 'u8':
    case 'bool':
      return new Uint8Array(buf, 0, n);
    case 'i8':
      return new Int8Array(buf, 0, n);
    case 'u16':
      return new Uint16Array(buf, 0, n);
    case 'i16':
      return new Int16Array(buf, 0, n);
    case 'u32':
      return new Uint32Array(buf, 0, n);
    case 'i32':
      return new Int32Array(buf, 0, n);
    case 'f32':
      return new Float32Array(buf, 0, n);
    case 'f64':
      return new Float64Array(buf, 0, n);
    case 'u64':
      return new BigUint64Array(buf, 0, n);
    case 'i64':
      return new BigInt64Array(buf, 0, n);
    case 'string':
      throw new Error('unreachable');
  }
}

function scalar(t: GgufScalarType, b: Buffer): GgufValue {
  const safe = (v: bigint) =>
    v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  switch (t) {
    case 'u8':
      return b[0];
    case 'i8':
      return b.readInt8(0);
    case 'bool':
      return b[0] !== 0;
    case 'u16':
      return b.readUInt16LE(0);
    case 'i16':
      return b.readInt16LE(0);
    case 'u32':
      return b.readUInt32LE(0);
    case 'i32':
      return b.readInt32LE(0);
    case 'f32':
      return b.readFloatLE(0);
    case 'f64':
      return b.readDoubleLE(0);
    case 'u64':
      return safe(b.readBigUInt64LE(0));
    case 'i64':
      return safe(b.readBigInt64LE(0));
    case 'string':
      throw new Error('unreachable');
  }
}

// ---- the checkpoint ----

/** How `read` turns one stored tensor into a canonical one. */
export interface GgufEntry extends TensorEntry {
  readonly stored: GgufTensorInfo;
  readonly relayout: Relayout;
  /** Multiplies the values (undoes llama.cpp's RWKV-6 rescaling). */
  readonly scale: number;
}

export function openGguf(path: string): Checkpoint {
  const file = new FileSource(path);
  try {
    const header = readGgufHeader(file);
    const arch = stringKV(header, 'general.architecture');
    if (arch !== undefined && Object.hasOwn(UNSUPPORTED_RWKV_ARCHS, arch)) {
      throw new UserError(
        `${path}: GGUF architecture '${arch}' (${UNSUPPORTED_RWKV_ARCHS[arch]}) is not supported`,
        'actsparse reads RWKV-6 and RWKV-7 GGUF files (general.architecture rwkv6, rwkv7).',
      );
    }
    const entries = ggufToCanonical(path, arch, header);
    const tensors = new Map<string, GgufEntry>();
    for (const e of entries) {
      check(!tensors.has(e.name), path, `tensor '${printable(e.name)}' appears twice`);
      tensors.set(e.name, e);
    }
    return new GgufCheckpoint(file, header, arch, tensors);
  } catch (e) {
    file.close();
    throw e;
  }
}

/** A metadata string, or undefined when absent or not a string. */
export function stringKV(h: GgufHeader, key: string): string | undefined {
  const v = h.kv.get(key)?.value;
  return typeof v === 'string' ? v : undefined;
}

/** A metadata integer (any integer type), or undefined. */
export function intKV(h: GgufHeader, key: string): number | undefined {
  const v = h.kv.get(key)?.value;
  return typeof v === 'number' && Number.isInteger(v) ? v : undefined;
}

class GgufCheckpoint implements Checkpoint {
  readonly format = 'gguf';
  readonly path: string;
  readonly meta: Readonly<Record<string, unknown>>;

  constructor(
    private readonly file: FileSource,
    header: GgufHeader,
    arch: string | undefined,
    readonly tensors: ReadonlyMap<string, GgufEntry>,
  ) {
    this.path = file.path;
    this.meta = ggufMeta(header, arch);
  }

  read(name: string): Tensor {
    const e = this.tensors.get(name);
    if (!e) throw new UserError(`${this.path}: no tensor named '${printable(name)}'`);
    const raw = readStored(this.file, e.stored);
    return tensor(e.shape, relayout(e.relayout, e.stored.shape, raw, e.scale));
  }

  close(): void {
    this.file.close();
  }
}

/** Facts for `info` and the model loaders (scalars), the full metadata and the tokenizer. */
function ggufMeta(h: GgufHeader, arch: string | undefined): Record<string, unknown> {
  const meta: Record<string, unknown> = { gguf_version: h.version, alignment: h.alignment };
  if (arch !== undefined) meta.architecture = arch;
  const name = stringKV(h, 'general.name');
  if (name !== undefined) meta.name = name;
  const ft = intKV(h, 'general.file_type');
  if (ft !== undefined) {
    meta.file_type = ft;
    if (FILE_TYPES[ft]) meta.file_type_name = FILE_TYPES[ft];
  }
  if (arch !== undefined) {
    const num = (key: string, as: string) => {
      const v = h.kv.get(`${arch}.${key}`)?.value;
      if (typeof v === 'number') meta[as] = v;
    };
    num('context_length', 'context_length');
    num('embedding_length', 'n_embed');
    num('block_count', 'n_layer');
    num('feed_forward_length', 'feed_forward_length');
    num('wkv.head_size', 'head_size');
    num('rescale_every_n_layers', 'rescale_every');
    num('attention.layer_norm_epsilon', 'layer_norm_eps');
    if (arch === 'rwkv6') meta.rwkvVersion = '6';
    if (arch === 'rwkv7') meta.rwkvVersion = '7';
  }
  const tokModel = stringKV(h, 'tokenizer.ggml.model');
  if (tokModel !== undefined) {
    meta.tokenizer_model = tokModel;
    const tokens = h.kv.get('tokenizer.ggml.tokens');
    const types = h.kv.get('tokenizer.ggml.token_type')?.value;
    if (tokens && tokens.itemType === 'string' && Array.isArray(tokens.value)) {
      meta.vocab_size = tokens.value.length;
      // For a later step that builds the tokenizer (World for model "rwkv").
      meta.tokenizer = {
        model: tokModel,
        tokens: tokens.value as string[],
        tokenTypes: types instanceof Int32Array || types instanceof Uint32Array ? types : undefined,
      };
    }
  }
  // fromEntries defines own properties, so a key such as "__proto__" stays plain data
  meta.metadata = Object.fromEntries([...h.kv].map(([k, v]) => [k, v.value]));
  return meta;
}

// ---- data ----

const CHUNK = 1 << 24;

/** Reads and decodes one stored tensor to float32, in chunks of whole blocks. */
export function readStored(file: FileSource, s: GgufTensorInfo): Float32Array {
  const count = numel(s.shape);
  const out = new Float32Array(count);
  const what = `tensor '${printable(s.name)}'`;
  const t = s.type;
  const dtype = t.dtype;
  if (t.block > 1) {
    const perChunk = Math.max(1, Math.floor(CHUNK / t.bytes));
    const nBlocks = count / t.block;
    for (let b = 0; b < nBlocks; b += perChunk) {
      const n = Math.min(perChunk, nBlocks - b);
      const src = file.read(s.offset + b * t.bytes, n * t.bytes, what);
      if (isQuantType(dtype)) dequantize(dtype, src, out, b * QK, n);
      else if (isKQuantType(dtype)) dequantizeK(dtype, src, out, b * QK_K, n);
      else {
        throw new UserError(
          `${file.path}: ${what} is stored as ${t.name}, which actsparse cannot dequantize`,
          'Use a file quantized as F16, BF16, Q8_0, Q4_0/1, Q5_0/1 or a k-quant (Q2_K … Q6_K).',
        );
      }
    }
    return out;
  }
  const perChunk = Math.floor(CHUNK / t.bytes);
  for (let i = 0; i < count; i += perChunk) {
    const n = Math.min(perChunk, count - i);
    const buf = file.read(s.offset + i * t.bytes, n * t.bytes, what);
    out.set(decodePlain(buf, dtype, n), i);
  }
  return out;
}

function decodePlain(buf: Buffer, dtype: StoredDType, n: number): Float32Array {
  switch (dtype) {
    case 'f32':
    case 'f16':
    case 'bf16':
    case 'f64':
      return decodeToFloat32(buf, dtype, n);
    default: {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) {
        if (dtype === 'i8') out[i] = buf.readInt8(i);
        else if (dtype === 'i16') out[i] = buf.readInt16LE(i * 2);
        else if (dtype === 'i32') out[i] = buf.readInt32LE(i * 4);
        else out[i] = Number(buf.readBigInt64LE(i * 8));
      }
      return out;
    }
  }
}

// ---- writing ----

/** Tensor types the writer produces. */
export type GgufWriteType = 'f32' | 'f16' | 'bf16' | QuantType;

/** A metadata value to write, with its GGUF type. */
export type GgufKVIn =
  | { type: 'u8' | 'i8' | 'u16' | 'i16' | 'u32' | 'i32' | 'f32' | 'f64'; value: number }
  | { type: 'u64' | 'i64'; value: number | bigint }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | {
      type: 'array';
      itemType: Exclude<GgufScalarType, 'string' | 'bool' | 'u64' | 'i64'>;
      value: ArrayLike<number>;
    }
  | { type: 'array'; itemType: 'bool'; value: readonly boolean[] }
  | { type: 'array'; itemType: 'u64' | 'i64'; value: readonly (number | bigint)[] }
  | { type: 'array'; itemType: 'string'; value: readonly string[] };

/** One tensor as it goes into the file: PyTorch-order shape, ggml type, values. */
export interface GgufTensorOut {
  readonly name: string;
  readonly shape: readonly number[];
  readonly type: GgufWriteType;
  readonly data: Float32Array | (() => Float32Array);
}

/**
 * Writes a GGUF file as gguf-py's GGUFWriter does: header, metadata in the given order,
 * tensor infos, padding, then each tensor's data padded to the alignment. Tensor data is
 * fetched one tensor at a time.
 */
export function writeGgufFile(
  path: string,
  kv: ReadonlyMap<string, GgufKVIn> | Record<string, GgufKVIn>,
  tensors: readonly GgufTensorOut[],
  { alignment = GGUF_DEFAULT_ALIGNMENT, version = 3 }: { alignment?: number; version?: 2 | 3 } = {},
): void {
  const entries = kv instanceof Map ? [...kv] : Object.entries(kv);
  const head: Buffer[] = [];
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    head.push(b);
  };
  const u64 = (v: number | bigint) => {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    head.push(b);
  };
  const str = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    u64(b.length);
    head.push(b);
  };
  u32(GGUF_MAGIC);
  u32(version);
  u64(tensors.length);
  u64(entries.length);
  for (const [key, v] of entries) {
    str(key);
    u32(TYPE_CODES.get(v.type) as number);
    if (v.type === 'array') {
      u32(TYPE_CODES.get(v.itemType) as number);
      u64(v.value.length);
      for (let i = 0; i < v.value.length; i++) {
        const item = v.value[i];
        if (v.itemType === 'string') str(item as string);
        else head.push(encodeScalar(v.itemType, item as number | bigint | boolean));
      }
    } else if (v.type === 'string') str(v.value);
    else head.push(encodeScalar(v.type, v.value));
  }
  // Offsets: each tensor's bytes padded to the alignment.
  let offset = 0;
  const sizes: number[] = [];
  for (const t of tensors) {
    if (Buffer.byteLength(t.name) > MAX_NAME) {
      throw new UserError(`writeGguf: tensor name '${t.name}' is longer than ${MAX_NAME} bytes`);
    }
    const type = GGML_BY_DTYPE.get(t.type) as GgmlType;
    const ne = [...t.shape].reverse();
    if ((ne[0] ?? 1) % type.block !== 0) {
      throw new UserError(
        `writeGguf: '${t.name}' rows of ${ne[0]} values cannot be stored as ${type.name} (blocks of ${type.block})`,
      );
    }
    str(t.name);
    u32(ne.length);
    for (const d of ne) u64(d);
    u32(type.code);
    u64(offset);
    const bytes = (numel(t.shape) / type.block) * type.bytes;
    sizes.push(bytes);
    offset += Math.ceil(bytes / alignment) * alignment;
  }
  const headBytes = Buffer.concat(head);
  writeAtomically(path, (fd) => {
    writeAll(fd, headBytes);
    writeAll(fd, new Uint8Array(pad(headBytes.length, alignment)));
    tensors.forEach((t, i) => {
      const data = typeof t.data === 'function' ? t.data() : t.data;
      if (data.length !== numel(t.shape)) {
        throw new UserError(
          `writeGguf: '${t.name}' has ${data.length} values for shape [${t.shape.join(', ')}]`,
        );
      }
      const bytes = encodeTensor(t.name, t.type, data);
      writeAll(fd, bytes);
      writeAll(fd, new Uint8Array(pad(sizes[i], alignment)));
    });
  });
}

function pad(n: number, alignment: number): number {
  return (alignment - (n % alignment)) % alignment;
}

function encodeScalar(type: GgufScalarType, v: number | bigint | boolean): Buffer {
  const b = Buffer.alloc(MIN_BYTES[type]);
  switch (type) {
    case 'u8':
      b.writeUInt8(Number(v));
      break;
    case 'i8':
      b.writeInt8(Number(v));
      break;
    case 'bool':
      b[0] = v ? 1 : 0;
      break;
    case 'u16':
      b.writeUInt16LE(Number(v));
      break;
    case 'i16':
      b.writeInt16LE(Number(v));
      break;
    case 'u32':
      b.writeUInt32LE(Number(v));
      break;
    case 'i32':
      b.writeInt32LE(Number(v));
      break;
    case 'f32':
      b.writeFloatLE(Number(v));
      break;
    case 'f64':
      b.writeDoubleLE(Number(v));
      break;
    case 'u64':
      b.writeBigUInt64LE(BigInt(v));
      break;
    case 'i64':
      b.writeBigInt64LE(BigInt(v));
      break;
    case 'string':
      throw new Error('unreachable');
  }
  return b;
}

function encodeTensor(name: string, type: GgufWriteType, data: Float32Array): Uint8Array {
  if (isQuantType(type)) return quantize(type, data);
  if (type === 'f16') checkHalfRange(name, data);
  return encodeFromFloat32(data, type);
}

/** ggml `general.file_type` (llama_ftype) of a file written with one tensor type. */
const WRITE_FILE_TYPE: Readonly<Record<GgufWriteType, number>> = {
  f32: 0,
  f16: 1,
  q4_0: 2,
  q4_1: 3,
  q8_0: 7,
  q5_0: 8,
  q5_1: 9,
  bf16: 32,
};

export interface GgufWriteOptions {
  /**
   * 'rwkv6' / 'rwkv7': the tensors have canonical BlinkDL names and shapes and are
   * written in llama.cpp's layout; any other value: written as named and shaped.
   */
  architecture: string;
  /**
   * Type of the weight matrices (default f32). Quantized types apply only to the
   * matrices llama.cpp quantizes; 1-D tensors and those its converter keeps in f32
   * stay f32, other small matrices become f16 (see gguf-rwkv.ts).
   */
  dtype?: GgufWriteType;
  /** RWKV-6: divide att.output/ffn.value of layer L by 2^⌊L/n⌋ as llama.cpp does (default 0: no). */
  rescaleEvery?: number;
  /** More metadata (tokenizer, general.name, …); written after the architecture's own. */
  metadata?: Record<string, GgufKVIn>;
  alignment?: number;
  version?: 2 | 3;
}

/**
 * Writes a GGUF file. For rwkv6/rwkv7 the canonical tensors are transformed as
 * llama.cpp's convert_hf_to_gguf.py does (gguf-rwkv.ts) and the hyperparameters its
 * loader needs are derived from their shapes.
 */
export function writeGguf(
  path: string,
  tensors: readonly TensorToWrite[],
  options: GgufWriteOptions,
): void {
  const dtype = options.dtype ?? 'f32';
  if (!Object.hasOwn(WRITE_FILE_TYPE, dtype)) {
    throw new UserError(`writeGguf: cannot write tensors as ${String(dtype)}`);
  }
  const arch = options.architecture;
  const kv = new Map<string, GgufKVIn>();
  kv.set('general.architecture', { type: 'string', value: arch });
  let out: GgufTensorOut[];
  if (arch === 'rwkv6' || arch === 'rwkv7') {
    const mapped = rwkvToGguf(arch, tensors, dtype, options.rescaleEvery ?? 0);
    for (const [k, v] of mapped.kv) kv.set(k, v);
    out = mapped.tensors;
  } else {
    // As llama-quantize: vectors stay f32; a matrix whose rows are not whole blocks gets f16.
    const typeOf = (shape: readonly number[]): GgufWriteType => {
      if (shape.length < 2) return 'f32';
      return isQuantType(dtype) && shape[shape.length - 1] % QK !== 0 ? 'f16' : dtype;
    };
    out = tensors.map((t) => ({
      name: t.name,
      shape: t.shape,
      type: typeOf(t.shape),
      data: t.data,
    }));
  }
  if (options.alignment !== undefined && options.alignment !== GGUF_DEFAULT_ALIGNMENT) {
    kv.set('general.alignment', { type: 'u32', value: options.alignment });
  }
  kv.set('general.file_type', { type: 'u32', value: WRITE_FILE_TYPE[dtype] });
  if (isQuantType(dtype)) kv.set('general.quantization_version', { type: 'u32', value: 2 });
  for (const [k, v] of Object.entries(options.metadata ?? {})) kv.set(k, v);
  writeGgufFile(path, kv, out, { alignment: options.alignment, version: options.version });
}
