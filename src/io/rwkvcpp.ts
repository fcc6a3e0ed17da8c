/**
 * rwkv.cpp `.bin` checkpoints: a 24-byte int32 header, then tensors until end of file
 * (`n_dims, key_len, dtype, shape[n_dims]` in ggml order — contiguous dimension first —,
 * the UTF-8 key, the data). The converter (rwkv.cpp's convert_pytorch_to_ggml.py)
 * squeezes every `.time_*` tensor and pre-transforms some of them; `read` undoes that so
 * the values and shapes are those of the original BlinkDL `.pth`:
 *
 *   v4    time_decay stored as −exp(w)                 → w = ln(−s)
 *   v5.1  time_decay exp(−exp(w)) (H,1,1); time_first exp(u) (H,1,1) → (H)
 *   v5.2  time_decay exp(−exp(w)) (H,N,1); time_faaaa (H,N,1)        → (H,N)
 *   v6    time_maa_w1, time_decay_w1/w2 transposed; time_maa_w2 transposed (1,2);
 *         time_decay reshaped (H,N,1)                                → (1,1,C)
 *   v7    x_r…x_g concatenated into att.x_rwkvag (6,1,C)          → six (1,1,C);
 *         w1,w2,a1,a2,v1,v2,g1,g2 transposed
 *   all   squeezed time_mix_* / time_maa_{x,w,k,v,r,g} (C)         → (1,1,C)
 *
 * rwkv.cpp's "5.1" is ChatRWKV's "5.0" (no gate). Undoing exp/log is exact up to the
 * float32 rounding of the stored value; a stored value that saturated (exp(−exp(w))
 * = 0 or 1, −exp(w) = 0) comes back as ±Infinity, which re-applies to the same value.
 */
import { check, FormatError, UserError } from '../errors.ts';
import { numel, type Tensor, tensor } from '../tensor/tensor.ts';
import type { Checkpoint, StoredDType, TensorEntry } from './checkpoint.ts';
import { decodeToFloat32, encodeFromFloat32 } from './dtype.ts';
import { FileSource } from './file.ts';
import { BLOCK_BYTES, dequantize, isQuantType, QK } from './quant.ts';
import { checkHalfRange, type TensorToWrite, writeAll, writeAtomically } from './safetensors.ts';
import { printable } from './text.ts';

export const RWKVCPP_MAGIC = 0x67676d66;

/** rwkv.cpp data type codes (4, 5, 6 were removed formats). */
const TYPE_CODES: Readonly<Record<number, { dtype: StoredDType; name: string }>> = {
  0: { dtype: 'f32', name: 'FP32' },
  1: { dtype: 'f16', name: 'FP16' },
  2: { dtype: 'q4_0', name: 'Q4_0' },
  3: { dtype: 'q4_1', name: 'Q4_1' },
  7: { dtype: 'q5_0', name: 'Q5_0' },
  8: { dtype: 'q5_1', name: 'Q5_1' },
  9: { dtype: 'q8_0', name: 'Q8_0' },
};
const REMOVED_TYPES: Readonly<Record<number, string>> = { 4: 'Q4_1_O', 5: 'Q4_2', 6: 'Q4_3' };

export type RwkvVersion = '4' | '5.1' | '5.2' | '6' | '7';

export interface RwkvCppHeader {
  version: number;
  nVocab: number;
  nEmbed: number;
  nLayer: number;
  dataType: number;
}

/** True when the bytes start with the rwkv.cpp magic and a known file version. */
export function isRwkvCpp(firstBytes: Uint8Array): boolean {
  if (firstBytes.length < 8) return false;
  const dv = new DataView(firstBytes.buffer, firstBytes.byteOffset, firstBytes.byteLength);
  const version = dv.getInt32(4, true);
  return dv.getUint32(0, true) === RWKVCPP_MAGIC && (version === 100 || version === 101);
}

/** One tensor as stored: its shape in PyTorch order (reversed ggml order). */
interface Stored {
  readonly key: string;
  readonly dtype: StoredDType;
  readonly shape: readonly number[];
  readonly offset: number;
  readonly byteLength: number;
}

/** How `read` turns stored data into the original `.pth` tensor. */
type Undo =
  | { kind: 'none' }
  | { kind: 'negExp' } // v4 time_decay: s = −exp(w)
  | { kind: 'expNegExp' } // v5 time_decay: s = exp(−exp(w))
  | { kind: 'exp' } // v5.1 time_first: s = exp(u)
  | { kind: 'transpose' } // 2-D (a,b) stored for (b,a)
  | { kind: 'transpose12' } // 3-D (a,b,c) stored for (a,c,b)
  | { kind: 'slice'; index: number; count: number }; // part `index` of dim 0

interface Entry extends TensorEntry {
  readonly stored: Stored;
  readonly undo: Undo;
}

const MAX_KEY = 1024;
const MAX_DIM = 0x7fffffff;

export function openRwkvCpp(path: string): Checkpoint {
  const file = new FileSource(path);
  try {
    const header = readHeader(file);
    const stored = readIndex(file, header);
    const version = detectVersion(path, stored);
    const tensors = new Map<string, Entry>();
    for (const s of stored) {
      for (const e of canonical(path, s, version)) {
        check(!tensors.has(e.name), path, `tensor '${printable(e.name)}' appears twice`);
        tensors.set(e.name, e);
      }
    }
    checkAgainstHeader(path, header, tensors);
    return new RwkvCppCheckpoint(file, header, version, tensors);
  } catch (e) {
    file.close();
    throw e;
  }
}

class RwkvCppCheckpoint implements Checkpoint {
  readonly format = 'rwkvcpp';
  readonly path: string;
  readonly meta: Readonly<Record<string, unknown>>;

  constructor(
    private readonly file: FileSource,
    header: RwkvCppHeader,
    rwkvVersion: RwkvVersion,
    readonly tensors: ReadonlyMap<string, Entry>,
  ) {
    this.path = file.path;
    this.meta = {
      version: header.version,
      n_vocab: header.nVocab,
      n_embed: header.nEmbed,
      n_layer: header.nLayer,
      data_type: header.dataType,
      data_type_name: TYPE_CODES[header.dataType].name,
      rwkvVersion,
    };
  }

  read(name: string): Tensor {
    const e = this.tensors.get(name);
    if (!e) throw new UserError(`${this.path}: no tensor named '${printable(name)}'`);
    const raw = readStored(this.file, e.stored);
    return tensor(e.shape, undo(this.path, e, raw));
  }

  close(): void {
    this.file.close();
  }
}

// ---- index ----

function readHeader(file: FileSource): RwkvCppHeader {
  check(file.size >= 24, file.path, `${file.size} bytes is too short for an rwkv.cpp header (24)`);
  const dv = view(file.read(0, 24, 'rwkv.cpp header'));
  const magic = dv.getUint32(0, true);
  check(
    magic === RWKVCPP_MAGIC,
    file.path,
    `not an rwkv.cpp file (magic 0x${magic.toString(16)}, expected 0x67676d66)`,
  );
  const [version, nVocab, nEmbed, nLayer, dataType] = [1, 2, 3, 4, 5].map((i) =>
    dv.getInt32(i * 4, true),
  );
  check(
    version === 100 || version === 101,
    file.path,
    `unsupported rwkv.cpp file version ${version} (expected 100 or 101)`,
  );
  for (const [what, v] of [
    ['n_vocab', nVocab],
    ['n_embed', nEmbed],
    ['n_layer', nLayer],
  ] as const) {
    check(v > 0, file.path, `header field ${what} = ${v} (expected a positive count)`);
  }
  typeCode(file.path, dataType, version, 'header data_type');
  return { version, nVocab, nEmbed, nLayer, dataType };
}

/** Validates a dtype code; version-100 files used ggml's old, incompatible quant layouts. */
function typeCode(path: string, code: number, version: number, what: string): StoredDType {
  if (code in REMOVED_TYPES) {
    throw new FormatError(
      path,
      `${what}: ${REMOVED_TYPES[code]} is a removed rwkv.cpp format`,
      'Re-quantize the model with a current rwkv.cpp (Q5_0, Q5_1, Q8_0, …).',
    );
  }
  const t = TYPE_CODES[code];
  check(t, path, `${what}: unknown data type ${code} (expected 0,1,2,3,7,8,9)`);
  if (version === 100 && isQuantType(t.dtype)) {
    throw new FormatError(
      path,
      `${what}: ${t.name} in a version-100 file uses ggml's old quantization layout`,
      'Re-quantize the model with a current rwkv.cpp (file version 101).',
    );
  }
  return t.dtype;
}

function readIndex(file: FileSource, header: RwkvCppHeader): Stored[] {
  const path = file.path;
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const out: Stored[] = [];
  let pos = 24;
  while (pos < file.size) {
    const where = `tensor #${out.length} at byte ${pos}`;
    check(file.size - pos >= 12, path, `${where}: ${file.size - pos} trailing bytes (truncated?)`);
    const head = view(file.read(pos, 12, where));
    const nDims = head.getInt32(0, true);
    const keyLen = head.getInt32(4, true);
    const code = head.getInt32(8, true);
    check(nDims >= 1 && nDims <= 4, path, `${where}: n_dims = ${nDims} (expected 1..4)`);
    check(
      keyLen >= 1 && keyLen <= MAX_KEY,
      path,
      `${where}: key length ${keyLen} (expected 1..${MAX_KEY})`,
    );
    const dtype = typeCode(path, code, header.version, where);
    pos += 12;
    const dimsAndKey = file.read(pos, 4 * nDims + keyLen, `${where} shape and key`);
    const dims = view(dimsAndKey);
    // ggml order: ggmlShape[0] is the contiguous dimension; PyTorch order is the reverse
    const ggmlShape: number[] = [];
    for (let i = 0; i < nDims; i++) ggmlShape.push(dims.getInt32(i * 4, true));
    let key: string;
    try {
      key = utf8.decode(dimsAndKey.subarray(4 * nDims));
    } catch {
      throw new FormatError(path, `${where}: key is not valid UTF-8`);
    }
    const what = `tensor '${printable(key)}'`;
    for (const d of ggmlShape)
      check(d >= 1 && d <= MAX_DIM, path, `${what}: dimension ${d} (expected ≥ 1)`);
    const count = numel(ggmlShape);
    let byteLength: number;
    if (isQuantType(dtype)) {
      check(
        ggmlShape[0] % QK === 0,
        path,
        `${what}: quantized row length ${ggmlShape[0]} is not a multiple of ${QK}`,
      );
      byteLength = (count / QK) * BLOCK_BYTES[dtype];
    } else {
      byteLength = count * (dtype === 'f32' ? 4 : 2);
    }
    pos += 4 * nDims + keyLen;
    check(
      byteLength <= file.size - pos,
      path,
      `${what} [${ggmlShape.join(', ')}] ${dtype} needs ${byteLength} bytes at ${pos} but only ${file.size - pos} remain (truncated?)`,
    );
    out.push({ key, dtype, shape: ggmlShape.reverse(), offset: pos, byteLength });
    pos += byteLength;
  }
  return out;
}

/** RWKV generation from tensor names, as rwkv.cpp's loader decides it. */
function detectVersion(path: string, stored: readonly Stored[]): RwkvVersion {
  const keys = new Set(stored.map((s) => s.key));
  if (keys.has('blocks.0.att.x_rwkvag') || keys.has('blocks.0.att.k_k')) return '7';
  if (keys.has('blocks.0.att.time_maa_x')) return '6';
  if (keys.has('blocks.0.att.ln_x.weight')) {
    return keys.has('blocks.0.att.gate.weight') ? '5.2' : '5.1';
  }
  if (keys.has('blocks.0.att.time_first') && keys.has('blocks.0.att.key.weight')) return '4';
  throw new FormatError(
    path,
    'tensor names match no RWKV version (expected blocks.0.att.time_first and key.weight for v4, ' +
      'att.ln_x for v5, att.time_maa_x for v6, att.x_rwkvag for v7)',
  );
}

const V7_PARTS = ['x_r', 'x_w', 'x_k', 'x_v', 'x_a', 'x_g'];

/** The canonical entries for one stored tensor (several for v7's x_rwkvag). */
function canonical(path: string, s: Stored, v: RwkvVersion): Entry[] {
  const sh = s.shape;
  const entry = (
    name: string,
    shape: readonly number[],
    undo: Undo,
    byteLength = s.byteLength,
  ): Entry => ({
    name,
    fileName: s.key,
    shape,
    dtype: s.dtype,
    byteLength,
    stored: s,
    undo,
  });
  const expect = (cond: boolean, what: string) =>
    check(
      cond,
      path,
      `tensor '${printable(s.key)}' has shape [${sh.join(', ')}]; expected ${what} (RWKV ${v})`,
    );
  const k = s.key;
  const is = (re: RegExp) => re.test(k);

  // Squeezed (1,1,C) token-shift mixes, all versions.
  if (is(/\.time_mix_[a-z]+$/) || is(/\.time_maa_[xwkvrg]$/)) {
    return [entry(k, sh.length === 1 ? [1, 1, sh[0]] : sh, { kind: 'none' })];
  }
  if (v === '4' && is(/\.att\.time_decay$/)) return [entry(k, sh, { kind: 'negExp' })];
  if (v === '5.1' && is(/\.att\.time_(decay|first)$/)) {
    expect(sh.length === 3 && sh[1] === 1 && sh[2] === 1, '(H, 1, 1)');
    return [entry(k, [sh[0]], { kind: k.endsWith('decay') ? 'expNegExp' : 'exp' })];
  }
  if ((v === '5.2' || v === '6') && is(/\.att\.time_(decay|faaaa)$/)) {
    expect(sh.length === 3 && sh[2] === 1, '(H, N, 1)');
    if (k.endsWith('faaaa')) return [entry(k, [sh[0], sh[1]], { kind: 'none' })];
    // v5.2 stores exp(−exp(w)) as (H,N,1) of a (H,N) original; v6 only reshapes (1,1,C)
    return v === '5.2'
      ? [entry(k, [sh[0], sh[1]], { kind: 'expNegExp' })]
      : [entry(k, [1, 1, sh[0] * sh[1]], { kind: 'none' })];
  }
  if (v === '6' && is(/\.att\.(time_maa_w1|time_decay_w1|time_decay_w2)$/)) {
    expect(sh.length === 2, 'a matrix');
    return [entry(k, [sh[1], sh[0]], { kind: 'transpose' })];
  }
  if (v === '6' && is(/\.att\.time_maa_w2$/)) {
    expect(sh.length === 3, '(5, C, D)');
    return [entry(k, [sh[0], sh[2], sh[1]], { kind: 'transpose12' })];
  }
  if (v === '7' && is(/\.att\.x_rwkvag$/)) {
    expect(sh.length === 3 && sh[0] === V7_PARTS.length && sh[1] === 1, '(6, 1, C)');
    const prefix = k.slice(0, -'x_rwkvag'.length);
    return V7_PARTS.map((p, index) =>
      entry(prefix + p, [1, 1, sh[2]], { kind: 'slice', index, count: 6 }, s.byteLength / 6),
    );
  }
  if (v === '7' && is(/\.att\.[wavg][12]$/)) {
    expect(sh.length === 2, 'a matrix');
    return [entry(k, [sh[1], sh[0]], { kind: 'transpose' })];
  }
  return [entry(k, sh, { kind: 'none' })];
}

function checkAgainstHeader(
  path: string,
  h: RwkvCppHeader,
  tensors: ReadonlyMap<string, Entry>,
): void {
  const emb = tensors.get('emb.weight');
  check(emb, path, 'no emb.weight tensor');
  check(
    emb.shape.length === 2 && emb.shape[0] === h.nVocab && emb.shape[1] === h.nEmbed,
    path,
    `emb.weight is [${emb.shape.join(', ')}] but the header says n_vocab ${h.nVocab}, n_embed ${h.nEmbed}`,
  );
  let layers = 0;
  for (const name of tensors.keys()) {
    const m = /^blocks\.(\d+)\./.exec(name);
    if (m) layers = Math.max(layers, Number(m[1]) + 1);
  }
  check(
    layers === h.nLayer,
    path,
    `the file has ${layers} blocks but the header says n_layer ${h.nLayer}`,
  );
}

// ---- data ----

const CHUNK = 1 << 24;

/** Reads and decodes one stored tensor in chunks (a tensor can exceed one Buffer). */
function readStored(file: FileSource, s: Stored): Float32Array {
  const count = numel(s.shape);
  const out = new Float32Array(count);
  const what = `tensor '${printable(s.key)}'`;
  if (isQuantType(s.dtype)) {
    const bb = BLOCK_BYTES[s.dtype];
    const blocksPerChunk = Math.floor(CHUNK / bb);
    for (let b = 0; b < count / QK; b += blocksPerChunk) {
      const n = Math.min(blocksPerChunk, count / QK - b);
      dequantize(s.dtype, file.read(s.offset + b * bb, n * bb, what), out, b * QK, n);
    }
    return out;
  }
  const size = s.dtype === 'f32' ? 4 : 2;
  const perChunk = CHUNK / size;
  for (let i = 0; i < count; i += perChunk) {
    const n = Math.min(perChunk, count - i);
    out.set(
      decodeToFloat32(file.read(s.offset + i * size, n * size, what), s.dtype as 'f32' | 'f16', n),
      i,
    );
  }
  return out;
}

/** Applies the inverse of the converter's transform (stored layout → `.pth` layout). */
function undo(path: string, e: Entry, x: Float32Array): Float32Array {
  const sh = e.stored.shape;
  const bad = (i: number, want: string) =>
    new FormatError(
      path,
      `tensor '${printable(e.stored.key)}' value ${x[i]} at ${i} is not ${want}`,
    );
  switch (e.undo.kind) {
    case 'none':
      return x;
    case 'negExp':
      // s = −exp(w)  →  w = ln(−s), in float64
      for (let i = 0; i < x.length; i++) {
        if (!(x[i] <= 0)) throw bad(i, '≤ 0 (rwkv.cpp stores −exp(time_decay))');
        x[i] = Math.log(-x[i]);
      }
      return x;
    case 'expNegExp':
      // s = exp(−exp(w))  →  w = ln(−ln s)
      for (let i = 0; i < x.length; i++) {
        if (!(x[i] >= 0 && x[i] <= 1))
          throw bad(i, 'in [0, 1] (rwkv.cpp stores exp(−exp(time_decay)))');
        x[i] = Math.log(-Math.log(x[i]));
      }
      return x;
    case 'exp':
      // s = exp(u)  →  u = ln s
      for (let i = 0; i < x.length; i++) {
        if (!(x[i] >= 0)) throw bad(i, '≥ 0 (rwkv.cpp stores exp(time_first))');
        x[i] = Math.log(x[i]);
      }
      return x;
    case 'transpose': {
      // stored (a, b) → original (b, a)
      const [a, b] = sh;
      const out = new Float32Array(x.length);
      for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) out[j * a + i] = x[i * b + j];
      return out;
    }
    case 'transpose12': {
      // stored (n, a, b) → original (n, b, a)
      const [n, a, b] = sh;
      const out = new Float32Array(x.length);
      for (let t = 0; t < n; t++) {
        const o = t * a * b;
        for (let i = 0; i < a; i++)
          for (let j = 0; j < b; j++) out[o + j * a + i] = x[o + i * b + j];
      }
      return out;
    }
    case 'slice': {
      const part = x.length / e.undo.count;
      return x.slice(e.undo.index * part, (e.undo.index + 1) * part);
    }
  }
}

function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

// ---- writer (RWKV-4) ----

/**
 * Writes RWKV-4 weights (canonical `.pth` names and shapes) as rwkv.cpp does: time_*
 * squeezed, time_decay as −exp(w) (float64, then rounded), and with 'f16' every
 * matrix except time_* in f16. Tensors are fetched and written one at a time.
 */
export function writeRwkvCpp(
  path: string,
  header: { nVocab: number; nEmbed: number; nLayer: number },
  tensors: Iterable<TensorToWrite>,
  dtype: 'f32' | 'f16',
): void {
  writeAtomically(path, (fd) => {
    const head = new DataView(new ArrayBuffer(24));
    const fields = [
      RWKVCPP_MAGIC,
      101,
      header.nVocab,
      header.nEmbed,
      header.nLayer,
      dtype === 'f16' ? 1 : 0,
    ];
    for (let i = 0; i < fields.length; i++) head.setInt32(i * 4, fields[i], true);
    writeAll(fd, new Uint8Array(head.buffer));
    for (const t of tensors) writeTensor(fd, t, dtype);
  });
}

function writeTensor(fd: number, t: TensorToWrite, dtype: 'f32' | 'f16'): void {
  if (/\.(ln_x|gate|time_maa_|time_faaaa|x_|k_k|w1)/.test(t.name)) {
    throw new UserError(
      `writeRwkvCpp: '${t.name}' is not an RWKV-4 tensor`,
      'Only RWKV-4 can be written.',
    );
  }
  let data = typeof t.data === 'function' ? t.data() : t.data;
  if (data.length !== numel(t.shape)) {
    throw new UserError(
      `writeRwkvCpp: '${t.name}' has ${data.length} values for shape [${t.shape.join(', ')}]`,
    );
  }
  let shape = [...t.shape];
  const isTime = t.name.includes('.time_');
  if (isTime) {
    // torch's squeeze(): drop every size-1 dimension
    shape = shape.filter((d) => d !== 1);
    if (shape.length === 0) shape = [1];
  }
  if (t.name.endsWith('.att.time_decay')) data = data.map((w) => -Math.exp(w));
  const half = dtype === 'f16' && shape.length > 1 && !isTime;
  if (half) checkHalfRange(t.name, data);
  const key = new TextEncoder().encode(t.name);
  const head = new DataView(new ArrayBuffer(12 + 4 * shape.length));
  head.setInt32(0, shape.length, true);
  head.setInt32(4, key.length, true);
  head.setInt32(8, half ? 1 : 0, true);
  // ggml order: reversed PyTorch shape
  for (let i = 0; i < shape.length; i++)
    head.setInt32(12 + 4 * i, shape[shape.length - 1 - i], true);
  writeAll(fd, new Uint8Array(head.buffer));
  writeAll(fd, key);
  writeAll(fd, encodeFromFloat32(data, half ? 'f16' : 'f32'));
}
