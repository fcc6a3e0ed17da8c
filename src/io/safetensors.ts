/**
 * Hugging Face safetensors: `u64 LE header length n`, `n` bytes of JSON
 * `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {…}}`, then the
 * data area (offsets are relative to its start). A model is one file or shards named
 * by `model.safetensors.index.json` (`{weight_map: {name: shard file}}`), with an
 * optional `config.json` beside it.
 *
 * Validation follows the safetensors library (safetensors/src/tensor.rs,
 * `SafeTensors::read_metadata` and `Metadata::validate`), which refuses what JSON.parse
 * and a lenient reader would let through: the header must start with `{`; no key may
 * appear twice in one object (JSON.parse keeps the last, the library's serde map would
 * silently do the same for tensors, so we scan the keys); sorted by offsets, the tensors
 * must be packed back to back from byte 0 of the data area (no gap, no overlap) and the
 * last must end exactly where the file ends; each range must equal shape × dtype size.
 *
 * RWKV weights in Hugging Face, fla or web-rwkv layouts get canonical names and shapes
 * (names.ts), the layout recognised from the tensor names.
 */
import {
  closeSync,
  existsSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { check, FormatError, UserError } from '../errors.ts';
import { numel, type Tensor, tensor } from '../tensor/tensor.ts';
import type { Checkpoint, StoredDType, TensorEntry } from './checkpoint.ts';
import { decodeToFloat32, encodeFromFloat32, floatToHalf } from './dtype.ts';
import { FileSource } from './file.ts';
import { NONE, type Relayout, relayout } from './layout.ts';
import { blinkToHf, canonicalParts, detectNameScheme } from './names.ts';
import { errorText, printable } from './text.ts';

/** The largest JSON header (and index / config file) we agree to parse. */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

const DTYPES: Readonly<Record<string, { dtype: StoredDType; size: number }>> = {
  F64: { dtype: 'f64', size: 8 },
  F32: { dtype: 'f32', size: 4 },
  F16: { dtype: 'f16', size: 2 },
  BF16: { dtype: 'bf16', size: 2 },
  I64: { dtype: 'i64', size: 8 },
  I32: { dtype: 'i32', size: 4 },
  I16: { dtype: 'i16', size: 2 },
  I8: { dtype: 'i8', size: 1 },
  U8: { dtype: 'u8', size: 1 },
  BOOL: { dtype: 'bool', size: 1 },
};

interface Entry extends TensorEntry {
  readonly file: FileSource;
  /** Absolute byte offset in `file`. */
  readonly offset: number;
  /** Shape and bytes as stored (PyTorch order) and how they become the canonical tensor. */
  readonly storedShape: readonly number[];
  readonly storedByteLength: number;
  readonly relayout: Relayout;
}

// ---- reading ----

/**
 * Opens a `.safetensors` file, a `model.safetensors.index.json`, or a directory holding
 * either. RWKV tensors in Hugging Face naming get canonical (BlinkDL) names.
 */
export function openSafetensors(path: string): Checkpoint {
  const { file, index, dir } = locate(path);
  const opened: FileSource[] = [];
  try {
    const tensors = new Map<string, Entry>();
    let metadata: unknown;
    let weightMap: Record<string, string> | undefined;
    let files = file ? [file] : [];
    if (index) {
      ({ weightMap, metadata } = readIndexJson(index));
      files = [...new Set(Object.values(weightMap))].map((s) => join(dir, s));
    }
    const raw: Entry[] = [];
    for (const f of files) {
      const src = new FileSource(f);
      opened.push(src);
      const shard = readShardHeader(src);
      metadata ??= shard.metadata;
      for (const e of shard.entries) raw.push(e); // no spread: headers can list millions
    }
    const scheme = detectNameScheme(new Set(raw.map((e) => e.fileName)));
    for (const e of raw) {
      for (const part of canonicalParts(scheme, e.fileName, e.shape)) {
        check(
          !tensors.has(part.name),
          e.file.path,
          `tensor '${printable(e.fileName)}' appears twice (as '${printable(part.name)}')`,
        );
        const byteLength =
          part.relayout.kind === 'slice' ? e.byteLength / part.relayout.count : e.byteLength;
        tensors.set(part.name, {
          ...e,
          name: part.name,
          shape: part.shape,
          relayout: part.relayout,
          byteLength,
        });
      }
    }
    if (weightMap && index) {
      const seen = new Map(raw.map((e) => [e.fileName, basename(e.file.path)]));
      for (const [name, shard] of Object.entries(weightMap)) {
        check(
          seen.get(name) === shard,
          index,
          `weight_map says '${printable(name)}' is in ${printable(shard)}, but it is not there`,
        );
      }
    }
    const meta: Record<string, unknown> = {
      files: files.map((f) => basename(f)),
      names: scheme,
    };
    if (metadata !== undefined) meta.metadata = metadata;
    const config = configBeside(join(dir, 'config.json'));
    if (config !== undefined) meta.config = config;
    return new SafetensorsCheckpoint(index ?? files[0], opened, tensors, meta);
  } catch (e) {
    for (const f of opened) f.close();
    throw e;
  }
}

class SafetensorsCheckpoint implements Checkpoint {
  readonly format = 'safetensors';

  constructor(
    readonly path: string,
    private readonly files: FileSource[],
    readonly tensors: ReadonlyMap<string, Entry>,
    readonly meta: Readonly<Record<string, unknown>>,
  ) {}

  read(name: string): Tensor {
    const e = this.tensors.get(name);
    if (!e) throw new UserError(`${this.path}: no tensor named '${printable(name)}'`);
    return tensor(e.shape, relayout(e.relayout, e.storedShape, readEntry(e)));
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

/** Which file, or which shard index, makes up the checkpoint at `path`. */
function locate(path: string): { file?: string; index?: string; dir: string } {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    throw new UserError(`${path}: no such file or directory`, 'Check the model path.');
  }
  if (!isDir) {
    return path.endsWith('.json')
      ? { index: path, dir: dirname(path) }
      : { file: path, dir: dirname(path) };
  }
  const index = join(path, 'model.safetensors.index.json');
  if (existsSync(index)) return { index, dir: path };
  if (existsSync(join(path, 'model.safetensors')))
    return { file: join(path, 'model.safetensors'), dir: path };
  const found = readdirSync(path).filter((n) => n.endsWith('.safetensors'));
  if (found.length === 1) return { file: join(path, found[0]), dir: path };
  throw new UserError(
    found.length === 0
      ? `${path}: no .safetensors file in this directory`
      : `${path}: ${found.length} .safetensors files but no model.safetensors.index.json`,
    'Name the checkpoint file (or its index.json) directly.',
  );
}

function readIndexJson(index: string): { weightMap: Record<string, string>; metadata?: unknown } {
  const json = readJsonFile(index, 'shard index');
  check(
    isObject(json) && isObject(json.weight_map),
    index,
    'no "weight_map" object in the shard index',
  );
  const weightMap: Record<string, string> = {};
  for (const [name, shard] of Object.entries(json.weight_map)) {
    check(typeof shard === 'string', index, `weight_map['${printable(name)}'] is not a file name`);
    // Shards must be plain file names beside the index: never a path out of the folder.
    check(
      shard.length > 0 &&
        basename(shard) === shard &&
        shard !== '.' &&
        shard !== '..' &&
        !shard.includes('\\'),
      index,
      `weight_map['${printable(name)}'] = '${printable(shard)}' is not a file name in the same folder`,
    );
    weightMap[name] = shard;
  }
  check(Object.keys(weightMap).length > 0, index, 'the weight_map is empty');
  return { weightMap, metadata: json.metadata };
}

/**
 * A Hugging Face config.json next to a checkpoint (of any format), or undefined: every
 * reader attaches it as `meta.config`, so that models never read files themselves.
 */
export function configBeside(path: string): unknown {
  return existsSync(path) ? readJsonFile(path, 'config.json') : undefined;
}

function readJsonFile(path: string, what: string): unknown {
  const f = new FileSource(path);
  try {
    check(
      f.size <= MAX_HEADER_BYTES,
      path,
      `${what} is ${f.size} bytes (more than ${MAX_HEADER_BYTES})`,
    );
    return parseJson(path, f.read(0, f.size, what), what);
  } finally {
    f.close();
  }
}

function parseJson(path: string, bytes: Uint8Array, what: string): unknown {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new FormatError(path, `${what} is not valid UTF-8`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    // V8 quotes the raw text (newlines and all) in its message: keep one short line
    throw new FormatError(path, `${what} is not valid JSON (${errorText(e)})`);
  }
  const dup = duplicateJsonKey(text);
  if (dup !== null) {
    throw new FormatError(
      path,
      `${what} has the key '${printable(dup)}' twice in one object`,
      'A JSON reader keeps only one of them: the file is ambiguous; re-save it with the safetensors library.',
    );
  }
  return json;
}

/**
 * The first key that appears twice within one object of `text` (valid JSON), or null.
 * JSON.parse silently keeps the last duplicate, so this scans the keys itself.
 */
export function duplicateJsonKey(text: string): string | null {
  // One set of keys per open object; null marks an open array.
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (ch === 0x22) {
      // a string: find its end (skipping escapes)
      let j = i + 1;
      let escaped = false;
      while (j < text.length && text.charCodeAt(j) !== 0x22) {
        if (text.charCodeAt(j) === 0x5c) {
          escaped = true;
          j += 2;
        } else j++;
      }
      const top = stack[stack.length - 1];
      if (expectKey && top) {
        const key = escaped ? (JSON.parse(text.slice(i, j + 1)) as string) : text.slice(i + 1, j);
        if (top.has(key)) return key;
        top.add(key);
        expectKey = false;
      }
      i = j;
    } else if (ch === 0x7b) {
      stack.push(new Set());
      expectKey = true;
    } else if (ch === 0x5b) {
      stack.push(null);
      expectKey = false;
    } else if (ch === 0x7d || ch === 0x5d) {
      stack.pop();
      expectKey = false;
    } else if (ch === 0x2c) {
      expectKey = stack[stack.length - 1] instanceof Set;
    }
  }
  return null;
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Parses and validates one file's header; offsets become absolute. */
function readShardHeader(file: FileSource): { entries: Entry[]; metadata?: unknown } {
  const path = file.path;
  check(file.size >= 8, path, `${file.size} bytes is too short for a safetensors file`);
  const n = file.read(0, 8, 'header length').readBigUInt64LE(0);
  check(
    n >= 2n && n <= BigInt(Math.min(MAX_HEADER_BYTES, file.size - 8)),
    path,
    `header length ${n} does not fit (file ${file.size} bytes, limit ${MAX_HEADER_BYTES})`,
  );
  const headerLen = Number(n);
  const headerBytes = file.read(8, headerLen, 'JSON header');
  check(
    headerBytes[0] === 0x7b,
    path,
    `the JSON header does not start with '{' (byte 0x${headerBytes[0].toString(16)})`,
    'Not a safetensors file, or a corrupted one; the safetensors library refuses it too.',
  );
  const json = parseJson(path, headerBytes, 'the JSON header');
  check(isObject(json), path, 'the JSON header is not an object');
  const dataStart = 8 + headerLen;
  const dataSize = file.size - dataStart;
  const entries: Entry[] = [];
  let metadata: unknown;
  for (const [name, v] of Object.entries(json)) {
    if (name === '__metadata__') {
      check(
        isObject(v) && Object.values(v).every((x) => typeof x === 'string'),
        path,
        '__metadata__ is not an object of strings',
      );
      metadata = v;
      continue;
    }
    const what = `tensor '${printable(name)}'`;
    check(isObject(v), path, `${what}: header entry is not an object`);
    const t = typeof v.dtype === 'string' ? DTYPES[v.dtype] : undefined;
    check(
      t && Object.hasOwn(DTYPES, v.dtype as string),
      path,
      `${what}: unsupported dtype ${printable(JSON.stringify(v.dtype) ?? 'undefined', 40)} (expected one of ${Object.keys(DTYPES).join(', ')})`,
    );
    const shape = v.shape;
    check(
      Array.isArray(shape) && shape.every((d) => Number.isSafeInteger(d) && d >= 0),
      path,
      `${what}: shape ${printable(JSON.stringify(shape) ?? 'undefined', 60)} is not a list of non-negative integers`,
    );
    const offs = v.data_offsets;
    check(
      Array.isArray(offs) &&
        offs.length === 2 &&
        offs.every((o) => Number.isSafeInteger(o) && o >= 0),
      path,
      `${what}: data_offsets ${printable(JSON.stringify(offs) ?? 'undefined', 60)} is not [begin, end]`,
    );
    const [b, e] = offs as number[];
    check(
      b <= e && e <= dataSize,
      path,
      `${what}: data_offsets [${b}, ${e}] outside the data area (${dataSize} bytes)`,
    );
    // Sizes are checked against the bytes present, so the product cannot run away.
    const count = (shape as number[]).reduce((a, d) => a * d, 1);
    check(
      count * t.size === e - b,
      path,
      `${what}: shape [${shape.join(', ')}] ${v.dtype} needs ${count * t.size} bytes, data_offsets give ${e - b}`,
    );
    entries.push({
      name,
      fileName: name,
      shape: shape as number[],
      dtype: t.dtype,
      byteLength: e - b,
      file,
      offset: dataStart + b,
      storedShape: shape as number[],
      storedByteLength: e - b,
      relayout: NONE,
    });
  }
  checkPacked(path, entries, dataStart, dataSize);
  return { entries, metadata };
}

/**
 * The library's rule: sorted by offsets, tensors follow each other with no gap and no
 * overlap from byte 0 of the data area, and the last one ends where the file ends.
 */
function checkPacked(path: string, entries: readonly Entry[], dataStart: number, dataSize: number) {
  const hint =
    'safetensors packs tensors back to back over the whole data area; re-save the file with the safetensors library.';
  const sorted = [...entries].sort((a, b) => a.offset - b.offset || a.byteLength - b.byteLength);
  let end = 0;
  let prev: Entry | undefined;
  for (const e of sorted) {
    const begin = e.offset - dataStart;
    const range = `[${begin}, ${begin + e.byteLength}]`;
    if (begin < end && prev) {
      throw new FormatError(
        path,
        `tensor '${printable(e.fileName)}' data_offsets ${range} overlap tensor '${printable(prev.fileName)}' (which ends at ${end})`,
        hint,
      );
    }
    if (begin > end) {
      throw new FormatError(
        path,
        `tensor '${printable(e.fileName)}' data_offsets ${range} leave a gap of ${begin - end} bytes after byte ${end} of the data area`,
        hint,
      );
    }
    end = begin + e.byteLength;
    prev = e;
  }
  if (end !== dataSize) {
    throw new FormatError(
      path,
      `the tensors cover ${end} bytes of the data area but it has ${dataSize} (${dataSize - end} bytes unaccounted for)`,
      hint,
    );
  }
}

const CHUNK = 1 << 24;

/** Decodes one tensor to float32, reading in chunks (a tensor can exceed one Buffer). */
function readEntry(e: Entry): Float32Array {
  const count = numel(e.storedShape);
  const size = e.storedByteLength / Math.max(count, 1);
  const out = new Float32Array(count);
  const perChunk = CHUNK / 8;
  for (let i = 0; i < count; i += perChunk) {
    const k = Math.min(perChunk, count - i);
    const buf = e.file.read(e.offset + i * size, k * size, `tensor '${printable(e.fileName)}'`);
    out.set(decode(buf, e.dtype, k), i);
  }
  return out;
}

function decode(buf: Buffer, dtype: StoredDType, k: number): Float32Array {
  switch (dtype) {
    case 'f32':
    case 'f16':
    case 'bf16':
    case 'f64':
      return decodeToFloat32(buf, dtype, k);
    default: {
      const out = new Float32Array(k);
      for (let i = 0; i < k; i++) {
        if (dtype === 'i64') out[i] = Number(buf.readBigInt64LE(i * 8));
        else if (dtype === 'i32') out[i] = buf.readInt32LE(i * 4);
        else if (dtype === 'i16') out[i] = buf.readInt16LE(i * 2);
        else if (dtype === 'i8') out[i] = buf.readInt8(i);
        else out[i] = buf[i];
      }
      return out;
    }
  }
}

// ---- writing ----

/** A tensor to write; `data` may be a function so that tensors are fetched one by one. */
export interface TensorToWrite {
  readonly name: string;
  readonly shape: readonly number[];
  readonly data: Float32Array | (() => Float32Array);
}

export interface SafetensorsWriteOptions {
  dtype: 'f32' | 'f16' | 'bf16';
  /** String key/values stored as `__metadata__`. */
  metadata?: Record<string, string>;
  /** 'hf-rwkv' renames canonical RWKV names to Hugging Face's; default 'as-is'. */
  names?: 'as-is' | 'hf-rwkv';
}

const ST_DTYPE = { f32: 'F32', f16: 'F16', bf16: 'BF16' } as const;

/**
 * Writes one safetensors file, tensor by tensor (only one tensor's data is held at a
 * time when `data` is a function). The header is padded with spaces to 8 bytes, as
 * Hugging Face's writer does, so the data area is 8-byte aligned.
 */
export function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  { dtype, metadata, names = 'as-is' }: SafetensorsWriteOptions,
): void {
  const size = dtype === 'f32' ? 4 : 2;
  const header: Record<string, unknown> = {};
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string')
        throw new UserError(`safetensors metadata '${k}' must be a string`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const t of tensors) {
    const name = names === 'hf-rwkv' ? blinkToHf(t.name) : t.name;
    if (Object.hasOwn(header, name))
      throw new UserError(`writeSafetensors: tensor '${name}' given twice`);
    const bytes = numel(t.shape) * size;
    header[name] = {
      dtype: ST_DTYPE[dtype],
      shape: [...t.shape],
      data_offsets: [offset, offset + bytes],
    };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const jsonBytes = Buffer.from(json, 'utf8');
  writeAtomically(path, (fd) => {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(jsonBytes.length));
    writeAll(fd, len);
    writeAll(fd, jsonBytes);
    for (const t of tensors) {
      const data = typeof t.data === 'function' ? t.data() : t.data;
      if (data.length !== numel(t.shape)) {
        throw new UserError(
          `writeSafetensors: '${t.name}' has ${data.length} values for shape [${t.shape.join(', ')}]`,
        );
      }
      if (dtype === 'f16') checkHalfRange(t.name, data);
      // Encode in chunks: peak memory stays one tensor plus a few MB.
      for (let i = 0; i < data.length; i += CHUNK / 4) {
        writeAll(fd, encodeFromFloat32(data.subarray(i, i + CHUNK / 4), dtype));
      }
    }
  });
}

/** Refuses values that f16 would turn into infinities. */
export function checkHalfRange(name: string, data: Float32Array): void {
  for (let i = 0; i < data.length; i++) {
    if (Number.isFinite(data[i]) && (floatToHalf(data[i]) & 0x7fff) === 0x7c00) {
      throw new UserError(
        `tensor '${name}' has value ${data[i]} beyond the f16 range (±65504)`,
        'Write f32 or bf16 instead.',
      );
    }
  }
}

/** Writes `path` through a temporary file, so a failed write leaves no partial file. */
export function writeAtomically(path: string, write: (fd: number) => void): void {
  const tmp = `${path}.tmp-${process.pid}`;
  let fd = -1;
  try {
    fd = openSync(tmp, 'w');
    write(fd);
    closeSync(fd);
    fd = -1;
    renameSync(tmp, path);
  } catch (e) {
    if (fd >= 0) closeSync(fd);
    rmSync(tmp, { force: true });
    throw e;
  }
}

export function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
}
