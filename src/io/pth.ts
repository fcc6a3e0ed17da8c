/**
 * PyTorch `.pth` checkpoints (the zip format of torch ≥ 1.6): `<root>/data.pkl` names
 * the tensors, `<root>/data/<key>` holds each storage's little-endian bytes. Opening
 * reads the zip directory and the pickle; tensor data is read by `read`.
 */
import { dirname, join } from 'node:path';
import { FormatError, UserError } from '../errors.ts';
import { numel, type Tensor } from '../tensor/tensor.ts';
import type { Checkpoint, StoredDType, TensorEntry } from './checkpoint.ts';
import { decodeToFloat32 } from './dtype.ts';
import { FileSource } from './file.ts';
import { type PickleValue, PyDict, printable, TensorRef, typeName, unpickle } from './pickle.ts';
import { configBeside } from './safetensors.ts';
import { isZip, ZipArchive, type ZipEntry } from './zip.ts';

/** Bytes per element of each storage dtype torch writes. */
const ELEMENT_BYTES: Partial<Record<StoredDType, number>> = {
  f32: 4,
  f16: 2,
  bf16: 2,
  f64: 8,
  i64: 8,
  i32: 4,
  i16: 2,
  i8: 1,
  u8: 1,
  bool: 1,
};

/** One Float32Array (and one FileSource read of f32) stays under 2 GiB. */
const MAX_READ_ELEMENTS = 2 ** 29 - 1;

/** Nested dicts a training script may wrap the weights in, tried in this order. */
const NESTED_KEYS = ['state_dict', 'model', 'module'];

/**
 * Cheap format sniffing on the first bytes: a zip archive (torch ≥ 1.6), or the pickle
 * that starts a legacy torch file (so that `openPth` can say what to do about it).
 */
export function isPth(firstBytes: Uint8Array): boolean {
  return isZip(firstBytes) || isLegacyTorch(firstBytes);
}

/** Legacy torch.save files start with a protocol-2 pickle of a LONG1 magic number. */
function isLegacyTorch(b: Uint8Array): boolean {
  return b.length >= 3 && b[0] === 0x80 && b[1] >= 2 && b[1] <= 5 && b[2] === 0x8a;
}

interface Indexed {
  entry: TensorEntry;
  ref: TensorRef;
  zipEntry: ZipEntry;
}

export function openPth(path: string): Checkpoint {
  const src = new FileSource(path);
  try {
    return open(src);
  } catch (e) {
    src.close();
    throw e;
  }
}

function open(src: FileSource): Checkpoint {
  const path = src.path;
  const head = src.read(0, Math.min(src.size, 16), 'file header');
  if (!isZip(head)) {
    if (isLegacyTorch(head)) {
      throw new FormatError(
        path,
        'this is a legacy (pre-1.6, non-zip) torch.save file, which actsparse does not read',
        'Re-save it with a current PyTorch: torch.save(torch.load(old, weights_only=True), new).',
      );
    }
    throw new FormatError(path, 'not a PyTorch checkpoint (no zip signature at the start)');
  }
  const zip = ZipArchive.open(src);
  const root = findRoot(zip, path);
  const pklEntry = zip.get(`${root}/data.pkl`) as ZipEntry;
  const small = (name: string): string | undefined => {
    const e = zip.get(`${root}/${name}`);
    return e ? zip.readAll(e, name, 4096).toString('latin1').trim() : undefined;
  };
  const byteorder = small('byteorder') ?? 'little';
  if (byteorder !== 'little') {
    throw new FormatError(
      path,
      `storages are ${printable(byteorder)}-endian; only little-endian checkpoints are read`,
      'Re-save the checkpoint on a little-endian machine.',
    );
  }
  const pkl = zip.readAll(pklEntry, 'the tensor index');
  const { value, protocol, storages } = unpickle(pkl, `${path} (${root}/data.pkl)`);
  const { dict, key } = pickStateDict(value, path);

  // Each storage must be a zip entry big enough for its declared elements.
  const storageEntries = new Map<string, ZipEntry>();
  for (const s of storages.values()) {
    const e = zip.get(`${root}/data/${s.key}`);
    if (!e)
      throw new FormatError(
        path,
        `storage "${printable(s.key)}" has no zip entry ${printable(root)}/data/${printable(s.key)}`,
      );
    const need = s.numel * (ELEMENT_BYTES[s.dtype] as number);
    if (e.uncompressedSize < need) {
      throw new FormatError(
        path,
        `storage "${printable(s.key)}" declares ${s.numel} ${s.dtype} elements (${need} bytes) but its zip entry holds ${e.uncompressedSize} bytes`,
      );
    }
    storageEntries.set(s.key, e);
  }

  const index = new Map<string, Indexed>();
  const skipped: string[] = [];
  for (const [k, v] of dict.map) {
    if (typeof k !== 'string' || !(v instanceof TensorRef)) {
      skipped.push(`${printable(String(k), 40)} (${typeName(v)})`);
      continue;
    }
    const dtype = v.storage.dtype;
    const entry: TensorEntry = {
      name: k,
      fileName: k,
      shape: v.shape,
      dtype,
      byteLength: numel(v.shape) * (ELEMENT_BYTES[dtype] as number),
    };
    index.set(k, { entry, ref: v, zipEntry: storageEntries.get(v.storage.key) as ZipEntry });
  }
  const alignment = small('.storage_alignment');
  const meta: Record<string, unknown> = {
    zipRoot: root,
    pickleProtocol: protocol,
    zip64: zip.zip64,
    storages: storages.size,
    byteorder,
  };
  if (alignment !== undefined) {
    const n = Number(alignment);
    meta.storageAlignment = Number.isSafeInteger(n) ? n : printable(alignment);
  }
  const formatVersion = small('.format_version');
  if (formatVersion !== undefined) meta.formatVersion = printable(formatVersion);
  if (key) meta.stateDictKey = key;
  if (skipped.length) meta.skipped = skipped.slice(0, 20);
  // pytorch_model.bin comes with its Hugging Face config.json beside it (OPT needs it).
  const config = configBeside(join(dirname(path), 'config.json'));
  if (config !== undefined) meta.config = config;
  return new PthCheckpoint(src, zip, index, meta);
}

/** The one `<root>/data.pkl` of a torch archive; `<root>` is the archive's folder. */
function findRoot(zip: ZipArchive, path: string): string {
  const roots: string[] = [];
  for (const name of zip.entries.keys()) {
    const m = /^([^/]+)\/data\.pkl$/.exec(name);
    if (m) roots.push(m[1]);
  }
  if (roots.length === 0) {
    const names = [...zip.entries.keys()].slice(0, 5).map((n) => printable(n, 60));
    throw new FormatError(
      path,
      `a zip archive without a <dir>/data.pkl entry, so not a PyTorch checkpoint (entries: ${names.join(', ') || 'none'})`,
      'Pass a file written by torch.save, a .safetensors file or an rwkv.cpp .bin.',
    );
  }
  if (roots.length > 1) {
    throw new FormatError(
      path,
      `several data.pkl entries (${roots.map((r) => printable(r, 40)).join(', ')})`,
    );
  }
  return roots[0];
}

/** The dict of tensors: the top level, or a nested state_dict/model/module dict. */
function pickStateDict(value: PickleValue, path: string): { dict: PyDict; key?: string } {
  const hasTensors = (d: PyDict): boolean => {
    for (const v of d.map.values()) if (v instanceof TensorRef) return true;
    return false;
  };
  if (!(value instanceof PyDict)) {
    throw new FormatError(
      path,
      `data.pkl holds a ${typeName(value)}, not a dict of tensors`,
      'Save a state_dict: torch.save(model.state_dict(), path).',
    );
  }
  if (hasTensors(value)) return { dict: value };
  for (const key of NESTED_KEYS) {
    const inner = value.map.get(key);
    if (inner instanceof PyDict && hasTensors(inner)) return { dict: inner, key };
  }
  const found = [...value.map.entries()]
    .slice(0, 20)
    .map(([k, v]) => `${printable(String(k), 40)}: ${typeName(v)}`);
  throw new FormatError(
    path,
    `no tensors found at the top level or under ${NESTED_KEYS.join('/')} (found ${found.length ? found.join(', ') : 'an empty dict'})`,
    'Save a state_dict: torch.save(model.state_dict(), path).',
  );
}

class PthCheckpoint implements Checkpoint {
  readonly format = 'pth' as const;
  readonly tensors: ReadonlyMap<string, TensorEntry>;
  private closed = false;

  constructor(
    private readonly src: FileSource,
    private readonly zip: ZipArchive,
    private readonly index: Map<string, Indexed>,
    readonly meta: Readonly<Record<string, unknown>>,
  ) {
    this.tensors = new Map([...index].map(([k, v]) => [k, v.entry]));
  }

  get path(): string {
    return this.src.path;
  }

  read(name: string): Tensor {
    if (this.closed) throw new UserError(`${this.path}: read of "${printable(name)}" after close`);
    const t = this.index.get(name);
    if (!t) {
      throw new UserError(
        `${this.path}: no tensor named "${printable(name)}"`,
        'List the tensors with `actsparse info`.',
      );
    }
    const { ref, zipEntry } = t;
    const { dtype } = ref.storage;
    const size = ELEMENT_BYTES[dtype] as number;
    const n = numel(ref.shape);
    const what = `tensor "${printable(name)}"`;
    if (n === 0) return { shape: [...ref.shape], data: new Float32Array(0) };
    if (n > MAX_READ_ELEMENTS) {
      throw new UserError(
        `${this.path}: tensor "${printable(name)}" has ${n} elements, more than one read can hold (${MAX_READ_ELEMENTS})`,
      );
    }
    if (isContiguous(ref.shape, ref.stride)) {
      const bytes = this.zip.readRange(zipEntry, ref.offset * size, n * size, what);
      return { shape: [...ref.shape], data: decode(bytes, dtype, n) };
    }
    // A strided view: decode the span it covers, then gather (row-major order).
    let span = 1;
    for (let i = 0; i < ref.shape.length; i++) span += (ref.shape[i] - 1) * ref.stride[i];
    const bytes = this.zip.readRange(zipEntry, ref.offset * size, span * size, what);
    return {
      shape: [...ref.shape],
      data: gather(decode(bytes, dtype, span), ref.shape, ref.stride),
    };
  }

  close(): void {
    this.closed = true;
    this.src.close();
  }
}

/** Row-major strides; dimensions of size 1 may carry any stride (torch ignores them). */
function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expect = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expect) return false;
    expect *= shape[i];
  }
  return true;
}

/** out[i0, i1, …] = src[Σ i_k·stride_k], walking the indices like an odometer. */
function gather(
  src: Float32Array,
  shape: readonly number[],
  stride: readonly number[],
): Float32Array {
  const out = new Float32Array(numel(shape));
  const d = shape.length;
  const idx = new Array<number>(d).fill(0);
  let at = 0;
  for (let i = 0; i < out.length; i++) {
    out[i] = src[at];
    for (let k = d - 1; k >= 0; k--) {
      idx[k]++;
      at += stride[k];
      if (idx[k] < shape[k]) break;
      at -= idx[k] * stride[k];
      idx[k] = 0;
    }
  }
  return out;
}

/** Decodes `count` little-endian elements of a storage dtype to float32. */
function decode(buf: Buffer, dtype: StoredDType, count: number): Float32Array {
  if (dtype === 'f32' || dtype === 'f16' || dtype === 'bf16' || dtype === 'f64') {
    return decodeToFloat32(buf, dtype, count);
  }
  // Integer storages (rare in weights: step counters, position ids) take the slow path.
  const out = new Float32Array(count);
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < count; i++) out[i] = element(dv, dtype, i);
  return out;
}

function element(dv: DataView, dtype: StoredDType, i: number): number {
  switch (dtype) {
    case 'i64':
      return Number(dv.getBigInt64(i * 8, true));
    case 'i32':
      return dv.getInt32(i * 4, true);
    case 'i16':
      return dv.getInt16(i * 2, true);
    case 'i8':
      return dv.getInt8(i);
    case 'u8':
      return dv.getUint8(i);
    case 'bool':
      return dv.getUint8(i) ? 1 : 0;
    default:
      throw new Error(`pth: no decoder for ${dtype}`);
  }
}
