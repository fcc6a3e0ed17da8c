/**
 * A minimal zip reader over a `FileSource`, enough for PyTorch checkpoints: the
 * central directory (with ZIP64, since real checkpoints pass 4 GiB), each entry's
 * data offset from its local header, stored entries read lazily by byte range and
 * small deflated entries inflated in memory. Every offset and size is checked
 * against the file before it is used.
 */
import { crc32, inflateRawSync } from 'node:zlib';
import { FormatError } from '../errors.ts';
import type { FileSource } from './file.ts';
import { errorText, printable } from './text.ts';

export interface ZipEntry {
  readonly name: string;
  /** 0 = stored, 8 = deflate; nothing else is read. */
  readonly method: number;
  readonly compressedSize: number;
  readonly uncompressedSize: number;
  /** CRC-32 of the uncompressed data, from the central directory. */
  readonly crc32: number;
  readonly localHeaderOffset: number;
  /** Absolute file offset of the entry's (possibly compressed) bytes. */
  readonly dataOffset: number;
}

/** Deflated entries are inflated whole, so only small ones (data.pkl) are allowed. */
export const MAX_INFLATE_BYTES = 64 * 1024 * 1024;
/** The central directory is read in one piece; real ones are a few hundred KB. */
const MAX_CENTRAL_DIR_BYTES = 256 * 1024 * 1024;

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;
const EOCD_SIZE = 22;
const CENTRAL_SIZE = 46;
const LOCAL_SIZE = 30;
const U32_MAX = 0xffffffff;

/** True when the bytes start like a zip archive (a local file header). */
export function isZip(firstBytes: Uint8Array): boolean {
  return (
    firstBytes.length >= 4 &&
    firstBytes[0] === 0x50 &&
    firstBytes[1] === 0x4b &&
    firstBytes[2] === 0x03 &&
    firstBytes[3] === 0x04
  );
}

/** Reads a u64 as a number, refusing values past 2^53 (no real file is that big). */
function u64(buf: Buffer, at: number, file: string, what: string): number {
  const v = buf.readBigUInt64LE(at);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new FormatError(file, `zip: ${what} ${v} is not a plausible size or offset`);
  }
  return Number(v);
}

export class ZipArchive {
  /** Entries by name, in central-directory order. */
  readonly entries: ReadonlyMap<string, ZipEntry>;
  /** True when the archive has a ZIP64 end record (torch always writes one). */
  readonly zip64: boolean;

  private constructor(
    private readonly src: FileSource,
    entries: Map<string, ZipEntry>,
    zip64: boolean,
  ) {
    this.entries = entries;
    this.zip64 = zip64;
  }

  static open(src: FileSource): ZipArchive {
    const file = src.path;
    const end = findEnd(src);
    const cd = src.read(end.cdOffset, end.cdSize, 'zip central directory');
    const entries = new Map<string, ZipEntry>();
    let at = 0;
    for (let i = 0; i < end.count; i++) {
      const e = parseCentral(cd, at, file, i);
      at = e.next;
      if (entries.has(e.name))
        throw new FormatError(file, `zip: duplicate entry "${printable(e.name)}"`);
      // Local header + data must lie before the central directory.
      const dataOffset = localDataOffset(src, e.localHeaderOffset, e.nameBytes, e.name);
      if (dataOffset + e.compressedSize > end.cdOffset) {
        throw new FormatError(
          file,
          `zip: entry "${printable(e.name)}" data (${e.compressedSize} bytes at ${dataOffset}) runs into the central directory at ${end.cdOffset}`,
        );
      }
      entries.set(e.name, {
        name: e.name,
        method: e.method,
        compressedSize: e.compressedSize,
        uncompressedSize: e.uncompressedSize,
        crc32: e.crc32,
        localHeaderOffset: e.localHeaderOffset,
        dataOffset,
      });
    }
    return new ZipArchive(src, entries, end.zip64);
  }

  get(name: string): ZipEntry | undefined {
    return this.entries.get(name);
  }

  /**
   * Reads `length` uncompressed bytes at `offset` inside an entry: a direct file read
   * for stored entries, an in-memory inflate of the whole entry for small deflated ones.
   */
  readRange(entry: ZipEntry, offset: number, length: number, what: string): Buffer {
    const file = this.src.path;
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 0 ||
      offset + length > entry.uncompressedSize
    ) {
      throw new FormatError(
        file,
        `${what}: needs bytes ${offset}..${offset + length} of zip entry "${printable(entry.name)}", which holds ${entry.uncompressedSize}`,
      );
    }
    if (entry.method === 0) return this.src.read(entry.dataOffset + offset, length, what);
    const all = this.inflate(entry, what);
    return all.subarray(offset, offset + length);
  }

  /**
   * The whole uncompressed content of a small entry (≤ `maxBytes`), checked against its
   * CRC-32. (Tensor data read by `readRange` is not: that would mean reading it all.)
   */
  readAll(entry: ZipEntry, what: string, maxBytes = MAX_INFLATE_BYTES): Buffer {
    if (entry.uncompressedSize > maxBytes) {
      throw new FormatError(
        this.src.path,
        `${what}: zip entry "${printable(entry.name)}" declares ${entry.uncompressedSize} bytes, more than the ${maxBytes} allowed`,
      );
    }
    const data = this.readRange(entry, 0, entry.uncompressedSize, what);
    const crc = crc32(data);
    if (crc !== entry.crc32) {
      throw new FormatError(
        this.src.path,
        `${what}: zip entry "${printable(entry.name)}" fails its CRC-32 check (0x${hex(crc)}, the directory says 0x${hex(entry.crc32)})`,
      );
    }
    return data;
  }

  private inflate(entry: ZipEntry, what: string): Buffer {
    const file = this.src.path;
    if (entry.uncompressedSize > MAX_INFLATE_BYTES || entry.compressedSize > MAX_INFLATE_BYTES) {
      throw new FormatError(
        file,
        `${what}: zip entry "${printable(entry.name)}" is deflated and ${entry.uncompressedSize} bytes; only entries up to ${MAX_INFLATE_BYTES} bytes may be compressed`,
        'Re-save the checkpoint with torch.save (it stores tensor data uncompressed).',
      );
    }
    const raw = this.src.read(entry.dataOffset, entry.compressedSize, what);
    let out: Buffer;
    try {
      out = inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.uncompressedSize) });
    } catch (e) {
      throw new FormatError(
        file,
        `${what}: zip entry "${printable(entry.name)}" does not inflate (${errorText(e)})`,
      );
    }
    if (out.length !== entry.uncompressedSize) {
      throw new FormatError(
        file,
        `${what}: zip entry "${printable(entry.name)}" inflates to ${out.length} bytes, the directory says ${entry.uncompressedSize}`,
      );
    }
    return out;
  }
}

function hex(n: number): string {
  return n.toString(16).padStart(8, '0');
}

interface End {
  count: number;
  cdOffset: number;
  cdSize: number;
  zip64: boolean;
}

/** Finds the end-of-central-directory record (and the ZIP64 one when present). */
function findEnd(src: FileSource): End {
  const file = src.path;
  if (src.size < EOCD_SIZE) {
    throw new FormatError(file, `zip: file is ${src.size} bytes, too short for a zip archive`);
  }
  // The EOCD is followed by a comment of at most 65535 bytes.
  const tailLen = Math.min(src.size, EOCD_SIZE + 0xffff);
  const tailStart = src.size - tailLen;
  const tail = src.read(tailStart, tailLen, 'zip end record');
  let pos = -1;
  for (let i = tailLen - EOCD_SIZE; i >= 0; i--) {
    if (tail.readUInt32LE(i) === SIG_EOCD && i + EOCD_SIZE + tail.readUInt16LE(i + 20) <= tailLen) {
      pos = i;
      break;
    }
  }
  if (pos < 0) {
    throw new FormatError(file, 'zip: no end-of-central-directory record (truncated?)');
  }
  const eocdAt = tailStart + pos;
  const disk = tail.readUInt16LE(pos + 4);
  const cdDisk = tail.readUInt16LE(pos + 6);
  let count = tail.readUInt16LE(pos + 10);
  let cdSize = tail.readUInt32LE(pos + 12);
  let cdOffset = tail.readUInt32LE(pos + 16);
  if ((disk !== 0 && disk !== 0xffff) || (cdDisk !== 0 && cdDisk !== 0xffff)) {
    throw new FormatError(file, 'zip: multi-disk (split) archives are not supported');
  }
  let limit = eocdAt;
  let zip64 = false;
  // A ZIP64 locator sits right before the EOCD and points at the ZIP64 end record.
  if (eocdAt >= 20) {
    const loc = src.read(eocdAt - 20, 20, 'zip64 end locator');
    if (loc.readUInt32LE(0) === SIG_EOCD64_LOCATOR) {
      const recAt = u64(loc, 8, file, 'zip64 end record offset');
      if (recAt + 56 > eocdAt - 20) {
        throw new FormatError(file, `zip: zip64 end record offset ${recAt} is past its locator`);
      }
      const rec = src.read(recAt, 56, 'zip64 end record');
      if (rec.readUInt32LE(0) !== SIG_EOCD64) {
        throw new FormatError(file, `zip: no zip64 end record at offset ${recAt}`);
      }
      if (rec.readUInt32LE(16) !== 0 || rec.readUInt32LE(20) !== 0) {
        throw new FormatError(file, 'zip: multi-disk (split) archives are not supported');
      }
      count = u64(rec, 32, file, 'zip64 entry count');
      cdSize = u64(rec, 40, file, 'zip64 central directory size');
      cdOffset = u64(rec, 48, file, 'zip64 central directory offset');
      limit = recAt;
      zip64 = true;
    }
  }
  if (!zip64 && (count === 0xffff || cdSize === U32_MAX || cdOffset === U32_MAX)) {
    throw new FormatError(file, 'zip: the end record asks for ZIP64 but there is no ZIP64 locator');
  }
  if (cdOffset + cdSize > limit) {
    throw new FormatError(
      file,
      `zip: central directory (${cdSize} bytes at ${cdOffset}) overlaps the end record at ${limit}`,
    );
  }
  if (cdSize > MAX_CENTRAL_DIR_BYTES) {
    throw new FormatError(file, `zip: central directory of ${cdSize} bytes is implausibly large`);
  }
  if (count * CENTRAL_SIZE > cdSize) {
    throw new FormatError(
      file,
      `zip: ${count} entries cannot fit in a central directory of ${cdSize} bytes`,
    );
  }
  return { count, cdOffset, cdSize, zip64 };
}

interface Central {
  name: string;
  nameBytes: Buffer;
  method: number;
  crc32: number;
  compressedSize: number;
  uncompressedSize: number;
  localHeaderOffset: number;
  next: number;
}

/** Parses central directory header `index` at `at` in `cd`. */
function parseCentral(cd: Buffer, at: number, file: string, index: number): Central {
  if (at + CENTRAL_SIZE > cd.length || cd.readUInt32LE(at) !== SIG_CENTRAL) {
    throw new FormatError(file, `zip: central directory entry ${index} is missing or corrupt`);
  }
  const flags = cd.readUInt16LE(at + 8);
  const method = cd.readUInt16LE(at + 10);
  const crc32 = cd.readUInt32LE(at + 16);
  let compressedSize = cd.readUInt32LE(at + 20);
  let uncompressedSize = cd.readUInt32LE(at + 24);
  const nameLen = cd.readUInt16LE(at + 28);
  const extraLen = cd.readUInt16LE(at + 30);
  const commentLen = cd.readUInt16LE(at + 32);
  let localHeaderOffset = cd.readUInt32LE(at + 42);
  const next = at + CENTRAL_SIZE + nameLen + extraLen + commentLen;
  if (next > cd.length) {
    throw new FormatError(file, `zip: central directory entry ${index} runs past the directory`);
  }
  const nameBytes = cd.subarray(at + CENTRAL_SIZE, at + CENTRAL_SIZE + nameLen);
  const name = nameBytes.toString('utf8');
  if (flags & 1) throw new FormatError(file, `zip: entry "${printable(name)}" is encrypted`);
  if (method !== 0 && method !== 8) {
    throw new FormatError(
      file,
      `zip: entry "${printable(name)}" uses compression method ${method}; only stored (0) and deflate (8) are read`,
    );
  }
  // ZIP64 extra field (id 1): the 0xFFFFFFFF fields, in this order.
  if (uncompressedSize === U32_MAX || compressedSize === U32_MAX || localHeaderOffset === U32_MAX) {
    const z = findExtra(
      cd.subarray(at + CENTRAL_SIZE + nameLen, at + CENTRAL_SIZE + nameLen + extraLen),
      1,
    );
    if (!z)
      throw new FormatError(
        file,
        `zip: entry "${printable(name)}" needs a zip64 extra field and has none`,
      );
    let p = 0;
    const take = (what: string): number => {
      if (p + 8 > z.length)
        throw new FormatError(file, `zip: entry "${printable(name)}" zip64 extra field is short`);
      const v = u64(z, p, file, `entry "${printable(name)}" ${what}`);
      p += 8;
      return v;
    };
    if (uncompressedSize === U32_MAX) uncompressedSize = take('uncompressed size');
    if (compressedSize === U32_MAX) compressedSize = take('compressed size');
    if (localHeaderOffset === U32_MAX) localHeaderOffset = take('local header offset');
  }
  if (method === 0 && compressedSize !== uncompressedSize) {
    throw new FormatError(
      file,
      `zip: stored entry "${printable(name)}" has compressed size ${compressedSize} != uncompressed ${uncompressedSize}`,
    );
  }
  return {
    name,
    nameBytes,
    method,
    crc32,
    compressedSize,
    uncompressedSize,
    localHeaderOffset,
    next,
  };
}

/** The body of extra field `id` in an extra-field block, if present. */
function findExtra(extra: Buffer, id: number): Buffer | undefined {
  let p = 0;
  while (p + 4 <= extra.length) {
    const tag = extra.readUInt16LE(p);
    const len = extra.readUInt16LE(p + 2);
    if (p + 4 + len > extra.length) return undefined;
    if (tag === id) return extra.subarray(p + 4, p + 4 + len);
    p += 4 + len;
  }
  return undefined;
}

/** Reads an entry's local header and returns where its data starts. */
function localDataOffset(src: FileSource, at: number, nameBytes: Buffer, name: string): number {
  const file = src.path;
  if (at + LOCAL_SIZE > src.size) {
    throw new FormatError(
      file,
      `zip: entry "${printable(name)}" local header offset ${at} is past the end of the file`,
    );
  }
  const h = src.read(at, LOCAL_SIZE, `zip local header of "${printable(name)}"`);
  if (h.readUInt32LE(0) !== SIG_LOCAL) {
    throw new FormatError(
      file,
      `zip: no local header for entry "${printable(name)}" at offset ${at}`,
    );
  }
  const nameLen = h.readUInt16LE(26);
  const extraLen = h.readUInt16LE(28);
  const localName = src.read(at + LOCAL_SIZE, nameLen, `zip local header of "${printable(name)}"`);
  if (!localName.equals(nameBytes)) {
    throw new FormatError(
      file,
      `zip: local header at ${at} names "${printable(localName.toString('utf8'))}", the directory says "${printable(name)}"`,
    );
  }
  return at + LOCAL_SIZE + nameLen + extraLen;
}
