/**
 * Writes a state_dict as a PyTorch zip checkpoint that `torch.load` accepts: stored
 * (uncompressed) entries `archive/data.pkl` (pickle protocol 2: an OrderedDict of
 * `_rebuild_tensor_v2` calls whose storages come through BINPERSID), `archive/data/<i>`
 * with each tensor's bytes aligned to 64 in the file (torch pads the local header's
 * extra field with an "FB" record for this), `archive/version` and `archive/byteorder`.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { crc32, deflateRawSync } from 'node:zlib';
import { UserError } from '../errors.ts';
import { numel } from '../tensor/tensor.ts';
import { encodeFromFloat32 } from './dtype.ts';

export interface PthTensor {
  name: string;
  /** PyTorch order, outermost first. */
  shape: number[];
  /** Row-major values, numel(shape) of them. */
  data: Float32Array;
}

export type PthWriteDType = 'f32' | 'f16' | 'bf16';

export interface PthWriteOptions {
  /** Folder name inside the archive (torch uses the file's base name or "archive"). */
  root?: string;
  /** Write ZIP64 records and extra fields even for a small file (tests the reader). */
  forceZip64?: boolean;
}

const STORAGE_CLASS: Record<PthWriteDType, string> = {
  f32: 'FloatStorage',
  f16: 'HalfStorage',
  bf16: 'BFloat16Storage',
};
const ALIGN = 64;

export function writePth(
  path: string,
  tensors: readonly PthTensor[],
  dtype: PthWriteDType,
  options: PthWriteOptions = {},
): void {
  const root = options.root ?? 'archive';
  if (!STORAGE_CLASS[dtype]) throw new UserError(`writePth: unknown dtype ${String(dtype)}`);
  const seen = new Set<string>();
  for (const t of tensors) {
    if (typeof t.name !== 'string' || t.name === '' || seen.has(t.name)) {
      throw new UserError(`writePth: tensor names must be distinct and non-empty ("${t.name}")`);
    }
    seen.add(t.name);
    if (
      !t.shape.every((s) => Number.isSafeInteger(s) && s >= 0) ||
      numel(t.shape) !== t.data.length
    ) {
      throw new UserError(
        `writePth: tensor "${t.name}" has ${t.data.length} values for shape [${t.shape.join(', ')}]`,
      );
    }
  }
  const zip = new ZipWriter(path, options.forceZip64 ?? false);
  try {
    zip.add(`${root}/data.pkl`, statePickle(tensors, dtype));
    zip.add(`${root}/.format_version`, ascii('1'));
    zip.add(`${root}/.storage_alignment`, ascii(String(ALIGN)));
    zip.add(`${root}/byteorder`, ascii('little'));
    // One storage per tensor, named by its index; encoded one at a time.
    tensors.forEach((t, i) => {
      zip.add(`${root}/data/${i}`, encodeFromFloat32(t.data, dtype));
    });
    zip.add(`${root}/version`, ascii('3\n'));
    zip.finish();
  } finally {
    zip.close();
  }
}

function ascii(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'latin1'));
}

/** Pickle protocol 2 of OrderedDict{name: _rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())}. */
function statePickle(tensors: readonly PthTensor[], dtype: PthWriteDType): Uint8Array {
  const p = new PickleWriter();
  p.op(0x80, 2); // PROTO 2
  p.global('collections', 'OrderedDict');
  p.op(0x29, 0x52); // EMPTY_TUPLE, REDUCE
  if (tensors.length > 0) {
    p.op(0x28); // MARK
    tensors.forEach((t, i) => {
      p.unicode(t.name);
      p.global('torch._utils', '_rebuild_tensor_v2');
      p.op(0x28); // MARK: the argument tuple
      // persistent id ('storage', StorageClass, key, location, numel)
      p.op(0x28);
      p.unicode('storage');
      p.global('torch', STORAGE_CLASS[dtype]);
      p.unicode(String(i));
      p.unicode('cpu');
      p.int(t.data.length);
      p.op(0x74, 0x51); // TUPLE, BINPERSID
      p.int(0); // storage offset
      p.tuple(t.shape);
      p.tuple(rowMajorStrides(t.shape));
      p.op(0x89); // requires_grad = False
      p.global('collections', 'OrderedDict'); // backward_hooks = OrderedDict()
      p.op(0x29, 0x52);
      p.op(0x74, 0x52); // TUPLE, REDUCE
    });
    p.op(0x75); // SETITEMS
  }
  p.op(0x2e); // STOP
  return p.bytes();
}

function rowMajorStrides(shape: readonly number[]): number[] {
  const stride = new Array<number>(shape.length);
  let s = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    stride[i] = s;
    s *= shape[i];
  }
  return stride;
}

/** Emits pickle opcodes; enough for torch state dicts (and for tests to craft pickles). */
export class PickleWriter {
  private parts: Buffer[] = [];

  op(...codes: number[]): void {
    this.parts.push(Buffer.from(codes));
  }

  global(module: string, name: string): void {
    this.parts.push(Buffer.from(`c${module}\n${name}\n`, 'latin1'));
  }

  unicode(s: string): void {
    const b = Buffer.from(s, 'utf8');
    const h = Buffer.alloc(5);
    h[0] = 0x58; // BINUNICODE
    h.writeUInt32LE(b.length, 1);
    this.parts.push(h, b);
  }

  int(n: number): void {
    if (n >= 0 && n < 0x100)
      this.op(0x4b, n); // BININT1
    else if (n >= 0 && n < 0x10000)
      this.op(0x4d, n & 0xff, n >> 8); // BININT2
    else if (n >= -0x80000000 && n < 0x80000000) {
      const b = Buffer.alloc(5);
      b[0] = 0x4a; // BININT
      b.writeInt32LE(n, 1);
      this.parts.push(b);
    } else {
      // LONG1: little-endian two's complement, with room for the sign bit.
      let v = BigInt(n);
      const bytes: number[] = [];
      for (;;) {
        const b = Number(v & 0xffn);
        bytes.push(b);
        v >>= 8n;
        if ((v === 0n && !(b & 0x80)) || (v === -1n && b & 0x80)) break;
      }
      this.op(0x8a, bytes.length, ...bytes);
    }
  }

  tuple(items: readonly number[]): void {
    if (items.length === 0) {
      this.op(0x29); // EMPTY_TUPLE
      return;
    }
    if (items.length > 3) this.op(0x28); // MARK
    for (const x of items) this.int(x);
    // TUPLE1/2/3, or TUPLE after the MARK
    this.op(items.length <= 3 ? 0x84 + items.length : 0x74);
  }

  raw(b: Uint8Array): void {
    this.parts.push(Buffer.from(b));
  }

  bytes(): Uint8Array {
    return new Uint8Array(Buffer.concat(this.parts));
  }
}

export interface ZipInput {
  name: string;
  data: Uint8Array;
  /** Deflate instead of storing (torch never does; for small entries in tests). */
  deflate?: boolean;
}

/** Writes a zip of the given entries, data aligned to 64 bytes as torch does. */
export function writeZip(path: string, entries: readonly ZipInput[], forceZip64 = false): void {
  const zip = new ZipWriter(path, forceZip64);
  try {
    for (const e of entries) zip.add(e.name, e.data, e.deflate);
    zip.finish();
  } finally {
    zip.close();
  }
}

interface Written {
  name: Buffer;
  crc: number;
  method: number;
  size: number;
  compressedSize: number;
  offset: number;
}

/** Streams stored entries to a file; ZIP64 records appear when sizes need them. */
class ZipWriter {
  private fd: number;
  private offset = 0;
  private written: Written[] = [];

  constructor(
    readonly path: string,
    private readonly forceZip64: boolean,
  ) {
    try {
      this.fd = openSync(path, 'w');
    } catch (e) {
      throw new UserError(
        `${path}: cannot write (${(e as NodeJS.ErrnoException).code ?? String(e)})`,
        'Check the directory exists and is writable.',
      );
    }
  }

  private write(b: Uint8Array): void {
    let done = 0;
    while (done < b.length) done += writeSync(this.fd, b, done, b.length - done);
    this.offset += b.length;
  }

  add(name: string, content: Uint8Array, deflate = false): void {
    const nameBytes = Buffer.from(name, 'utf8');
    const crc = crc32(content);
    const data = deflate ? deflateRawSync(content) : content;
    const size = content.length;
    const zip64 = this.forceZip64 || size >= 0xffffffff || data.length >= 0xffffffff;
    const z64 = Buffer.alloc(zip64 ? 20 : 0);
    if (zip64) {
      // Local zip64 extra: both sizes.
      z64.writeUInt16LE(1, 0);
      z64.writeUInt16LE(16, 2);
      z64.writeBigUInt64LE(BigInt(size), 4);
      z64.writeBigUInt64LE(BigInt(data.length), 12);
    }
    // "FB" padding record so the data starts on a multiple of ALIGN.
    const before = this.offset + 30 + nameBytes.length + z64.length + 4;
    const pad = (ALIGN - (before % ALIGN)) % ALIGN;
    const fb = Buffer.alloc(4 + pad, 'Z');
    fb.write('FB', 0, 'latin1');
    fb.writeUInt16LE(pad, 2);
    const h = Buffer.alloc(30);
    h.writeUInt32LE(0x04034b50, 0);
    h.writeUInt16LE(zip64 ? 45 : 20, 4); // version needed
    h.writeUInt16LE(0, 6); // flags
    h.writeUInt16LE(deflate ? 8 : 0, 8); // method
    h.writeUInt32LE(0x00210000, 10); // time 0, date 1980-01-01
    h.writeUInt32LE(crc, 14);
    h.writeUInt32LE(zip64 ? 0xffffffff : data.length, 18);
    h.writeUInt32LE(zip64 ? 0xffffffff : size, 22);
    h.writeUInt16LE(nameBytes.length, 26);
    h.writeUInt16LE(z64.length + fb.length, 28);
    const offset = this.offset;
    this.write(h);
    this.write(nameBytes);
    this.write(z64);
    this.write(fb);
    this.write(data);
    this.written.push({
      name: nameBytes,
      crc,
      method: deflate ? 8 : 0,
      size,
      compressedSize: data.length,
      offset,
    });
  }

  finish(): void {
    const cdOffset = this.offset;
    for (const w of this.written) {
      const bigSize = this.forceZip64 || w.size >= 0xffffffff || w.compressedSize >= 0xffffffff;
      const bigOffset = this.forceZip64 || w.offset >= 0xffffffff;
      // Central zip64 extra holds only the fields set to 0xFFFFFFFF, in this order.
      const fields = [
        ...(bigSize ? [w.size, w.compressedSize] : []),
        ...(bigOffset ? [w.offset] : []),
      ];
      const extra = Buffer.alloc(fields.length ? 4 + 8 * fields.length : 0);
      if (fields.length) {
        extra.writeUInt16LE(1, 0);
        extra.writeUInt16LE(8 * fields.length, 2);
        fields.forEach((f, i) => {
          extra.writeBigUInt64LE(BigInt(f), 4 + 8 * i);
        });
      }
      const c = Buffer.alloc(46);
      c.writeUInt32LE(0x02014b50, 0);
      c.writeUInt16LE(fields.length ? 45 : 20, 4); // made by
      c.writeUInt16LE(fields.length ? 45 : 20, 6); // needed
      c.writeUInt16LE(w.method, 10);
      c.writeUInt32LE(0x00210000, 12);
      c.writeUInt32LE(w.crc, 16);
      c.writeUInt32LE(bigSize ? 0xffffffff : w.compressedSize, 20);
      c.writeUInt32LE(bigSize ? 0xffffffff : w.size, 24);
      c.writeUInt16LE(w.name.length, 28);
      c.writeUInt16LE(extra.length, 30);
      c.writeUInt32LE(bigOffset ? 0xffffffff : w.offset, 42);
      this.write(c);
      this.write(w.name);
      this.write(extra);
    }
    const cdSize = this.offset - cdOffset;
    const count = this.written.length;
    const zip64 =
      this.forceZip64 || count >= 0xffff || cdOffset >= 0xffffffff || cdSize >= 0xffffffff;
    if (zip64) {
      const recAt = this.offset;
      const r = Buffer.alloc(56);
      r.writeUInt32LE(0x06064b50, 0);
      r.writeBigUInt64LE(44n, 4); // size of the rest of the record
      r.writeUInt16LE(45, 12);
      r.writeUInt16LE(45, 14);
      r.writeBigUInt64LE(BigInt(count), 24);
      r.writeBigUInt64LE(BigInt(count), 32);
      r.writeBigUInt64LE(BigInt(cdSize), 40);
      r.writeBigUInt64LE(BigInt(cdOffset), 48);
      this.write(r);
      const loc = Buffer.alloc(20);
      loc.writeUInt32LE(0x07064b50, 0);
      loc.writeBigUInt64LE(BigInt(recAt), 8);
      loc.writeUInt32LE(1, 16); // total disks
      this.write(loc);
    }
    const e = Buffer.alloc(22);
    e.writeUInt32LE(0x06054b50, 0);
    e.writeUInt16LE(zip64 ? 0xffff : count, 8);
    e.writeUInt16LE(zip64 ? 0xffff : count, 10);
    e.writeUInt32LE(zip64 ? 0xffffffff : cdSize, 12);
    e.writeUInt32LE(zip64 ? 0xffffffff : cdOffset, 16);
    this.write(e);
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
