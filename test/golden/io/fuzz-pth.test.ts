/**
 * Hostile and broken `.pth` files: truncations, bit flips, absurd zip fields and
 * malicious pickles. Every case must end in a UserError/FormatError naming the file, or
 * (for flips that land in tensor data) in values; never another exception or a hang.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { crc32 } from 'node:zlib';
import { FormatError, UserError } from '../../../src/errors.ts';
import { unpickle } from '../../../src/io/pickle.ts';
import { openPth } from '../../../src/io/pth.ts';
import { PickleWriter, writePth, writeZip } from '../../../src/io/pth-writer.ts';
import { rng } from '../../../src/util/random.ts';
import { needsShared, shared, tmpDir } from '../../helpers/shared.ts';

const dir = tmpDir('actsparse-fuzz-pth-');
const casePath = join(dir, 'case.pth');

type Outcome = 'values' | 'error';

/** Opens and reads every tensor; only UserError (FormatError) may escape. */
function attempt(bytes: Uint8Array, label: string): Outcome {
  writeFileSync(casePath, bytes);
  try {
    const ck = openPth(casePath);
    try {
      for (const [name, e] of ck.tensors) {
        const t = ck.read(name);
        assert.equal(
          t.data.length,
          e.shape.reduce((a, b) => a * b, 1),
          `${label}: ${name} length`,
        );
      }
    } finally {
      ck.close();
    }
    return 'values';
  } catch (e) {
    if (!(e instanceof UserError)) {
      assert.fail(
        `${label}: ${e instanceof Error ? `${e.name}: ${e.message}\n${e.stack}` : String(e)}`,
      );
    }
    assert.ok(e.message.includes(casePath), `${label}: error does not name the file: ${e.message}`);
    assert.ok(!e.message.includes('\n'), `${label}: message is not one line: ${e.message}`);
    return 'error';
  }
}

function sampleData(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

/** A small valid checkpoint: a few tensors, realistic layout. */
function fixture(dtype: 'f32' | 'bf16', forceZip64 = false): Buffer {
  const p = join(dir, `base-${dtype}-${forceZip64}.pth`);
  writePth(
    p,
    [
      { name: 'emb.weight', shape: [8, 4], data: sampleData(32, 1) },
      { name: 'blocks.0.att.time_mix_k', shape: [1, 1, 4], data: sampleData(4, 2) },
      { name: 'blocks.0.ffn.key.weight', shape: [16, 4], data: sampleData(64, 3) },
      { name: 'head.weight', shape: [8, 4], data: sampleData(32, 4) },
    ],
    dtype,
    { forceZip64 },
  );
  return readFileSync(p);
}

interface Layout {
  /** Byte ranges of each entry's data, by entry name. */
  data: Map<string, [number, number]>;
  /** Offset of each entry's CRC-32 in the central directory. */
  crc: Map<string, number>;
  cdOffset: number;
  eocd: number;
  /** Absolute offsets of central-directory fields: [offset, byteWidth]. */
  fields: [number, number][];
}

/** Parses the (valid) fixture's layout so mutations can aim at fields. */
function layout(buf: Buffer): Layout {
  const eocd = buf.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  const z64 = buf.lastIndexOf(Buffer.from([0x50, 0x4b, 0x06, 0x06]));
  const cdOffset = z64 >= 0 ? Number(buf.readBigUInt64LE(z64 + 48)) : buf.readUInt32LE(eocd + 16);
  const data = new Map<string, [number, number]>();
  const crc = new Map<string, number>();
  const fields: [number, number][] = [
    [eocd + 10, 2],
    [eocd + 12, 4],
    [eocd + 16, 4],
    [eocd + 20, 2],
  ];
  if (z64 >= 0)
    fields.push([z64 + 4, 8], [z64 + 32, 8], [z64 + 40, 8], [z64 + 48, 8], [eocd - 12, 8]);
  let at = cdOffset;
  while (buf.readUInt32LE(at) === 0x02014b50) {
    const nameLen = buf.readUInt16LE(at + 28);
    const extraLen = buf.readUInt16LE(at + 30);
    const name = buf.toString('utf8', at + 46, at + 46 + nameLen);
    const local =
      buf.readUInt32LE(at + 42) === 0xffffffff
        ? Number(buf.readBigUInt64LE(at + 46 + nameLen + 4 + 16))
        : buf.readUInt32LE(at + 42);
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const size =
      buf.readUInt32LE(at + 20) === 0xffffffff
        ? Number(buf.readBigUInt64LE(at + 46 + nameLen + 12))
        : buf.readUInt32LE(at + 20);
    data.set(name, [start, start + size]);
    crc.set(name, at + 16);
    // flags, method, sizes, name/extra/comment lengths, local header offset
    fields.push([at + 8, 2], [at + 10, 2], [at + 20, 4], [at + 24, 4], [at + 28, 2]);
    fields.push([at + 30, 2], [at + 32, 2], [at + 42, 4]);
    // …and the local header's signature, method, name and extra lengths
    fields.push([local, 4], [local + 8, 2], [local + 26, 2], [local + 28, 2]);
    if (extraLen) fields.push([at + 46 + nameLen + 4, 8], [at + 46 + nameLen + 12, 8]);
    at += 46 + nameLen + extraLen + buf.readUInt16LE(at + 32);
  }
  return { data, crc, cdOffset, eocd, fields };
}

/** Rewrites an entry's CRC-32 so that a mutation gets past the check to the parser. */
function fixCrc(buf: Buffer, L: Layout, name: string): Buffer {
  const [from, to] = L.data.get(name)!;
  buf.writeUInt32LE(crc32(buf.subarray(from, to)), L.crc.get(name)!);
  return buf;
}

function flip(buf: Buffer, r: () => number, from: number, to: number, nFlips: number): Buffer {
  const out = Buffer.from(buf);
  for (let i = 0; i < nFlips; i++) {
    const at = from + Math.floor(r() * (to - from));
    out[at] ^= 1 << Math.floor(r() * 8);
  }
  return out;
}

const started = performance.now();
const counts = { values: 0, error: 0 };
const record = (o: Outcome) => {
  counts[o]++;
};

describe('fuzz .pth reader', () => {
  const bases = { f32: fixture('f32'), bf16: fixture('bf16'), z64: fixture('f32', true) };

  test('valid fixtures read', () => {
    for (const [k, b] of Object.entries(bases)) assert.equal(attempt(b, k), 'values');
  });

  test('truncation at many points', () => {
    for (const [k, b] of Object.entries(bases)) {
      const points = new Set<number>();
      for (let i = 0; i < 60; i++) points.add(Math.floor((i / 60) * b.length));
      for (let i = 1; i <= 60; i++) points.add(b.length - i);
      for (const n of points) {
        // Every truncation loses the end record or part of the directory.
        assert.equal(attempt(b.subarray(0, n), `${k} truncated to ${n}`), 'error');
      }
    }
  });

  test('a chunk cut from the middle, directory kept', () => {
    const b = bases.f32;
    const r = rng(7);
    for (let i = 0; i < 40; i++) {
      const from = Math.floor(r() * (b.length - 100));
      const len = 1 + Math.floor(r() * 200);
      const cut = Buffer.concat([b.subarray(0, from), b.subarray(from + len)]);
      record(attempt(cut, `cut ${len} at ${from}`));
    }
  });

  test('bit flips in pickle, headers and central directory', () => {
    for (const [k, b] of Object.entries(bases)) {
      const L = layout(b);
      const [p0, p1] = L.data.get('archive/data.pkl')!;
      const r = rng(k.length * 101);
      // With the CRC rewritten, flips reach the pickle interpreter…
      for (let i = 0; i < 80; i++) {
        const m = fixCrc(flip(b, r, p0, p1, 1 + Math.floor(r() * 3)), L, 'archive/data.pkl');
        record(attempt(m, `${k} pickle flip #${i}`));
      }
      // …without, the CRC check catches them all.
      for (let i = 0; i < 10; i++) {
        assert.equal(attempt(flip(b, r, p0, p1, 1), `${k} pickle flip, CRC kept #${i}`), 'error');
      }
      for (let i = 0; i < 40; i++) {
        record(attempt(flip(b, r, 0, p0, 1 + Math.floor(r() * 2)), `${k} local header flip #${i}`));
      }
      for (let i = 0; i < 60; i++) {
        const n = 1 + Math.floor(r() * 3);
        record(attempt(flip(b, r, L.cdOffset, b.length, n), `${k} directory flip #${i}`));
      }
    }
  });

  test('absurd values in every zip size/offset field', () => {
    for (const [k, b] of Object.entries(bases)) {
      const L = layout(b);
      const values = [0, 1, 0x7fffffff, 0xffffffff, b.length + 1, b.length - 1];
      for (const [at, width] of L.fields) {
        for (const v of values) {
          const m = Buffer.from(b);
          if (width === 2) m.writeUInt16LE(v & 0xffff, at);
          else if (width === 4) m.writeUInt32LE(v >>> 0, at);
          else m.writeBigUInt64LE(v === 0xffffffff ? 0xffffffffffffffffn : BigInt(v), at);
          record(attempt(m, `${k} field @${at} = ${v}`));
        }
      }
    }
  });

  test('bit flips in tensor data give values', () => {
    const b = bases.f32;
    const L = layout(b);
    const r = rng(99);
    const [d0, d1] = L.data.get('archive/data/2')!;
    for (let i = 0; i < 30; i++) {
      assert.equal(attempt(flip(b, r, d0, d1, 2), `data flip #${i}`), 'values');
    }
  });

  test('bit flips in a real torch file', needsShared('models/pth/rwkv7-toy-reverse-L2.pth'), () => {
    const b = readFileSync(shared('models/pth/rwkv7-toy-reverse-L2.pth'));
    const L = layout(b);
    const [p0, p1] = L.data.get('no_rosa5/data.pkl')!;
    const r = rng(2024);
    for (let i = 0; i < 60; i++) {
      const m = fixCrc(flip(b, r, p0, p1, 1), L, 'no_rosa5/data.pkl');
      record(attempt(m, `toy pickle flip #${i}`));
    }
    for (let i = 0; i < 20; i++) {
      record(attempt(flip(b, r, L.cdOffset, b.length, 1), `toy directory flip #${i}`));
    }
  });
});

/** Wraps a pickle (and optional storages) in a valid torch-like zip, then attempts it. */
function hostile(pickle: Uint8Array, label: string, storages: Uint8Array[] = []): FormatError {
  writeZip(join(dir, 'h.pth'), [
    { name: 'root/data.pkl', data: pickle },
    ...storages.map((data, i) => ({ name: `root/data/${i}`, data })),
  ]);
  const bytes = readFileSync(join(dir, 'h.pth'));
  writeFileSync(casePath, bytes);
  try {
    openPth(casePath).close();
  } catch (e) {
    assert.ok(e instanceof FormatError, `${label}: ${e instanceof Error ? e.stack : String(e)}`);
    return e;
  }
  return assert.fail(`${label}: opened without error`);
}

function pk(build: (p: PickleWriter) => void): Uint8Array {
  const p = new PickleWriter();
  p.op(0x80, 2);
  build(p);
  return p.bytes();
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};
const u64 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(n);
  return b;
};

/** A tensor rebuild call with the given pieces, inside {'w': …}. */
function tensorPickle(opts: {
  key?: string;
  numel?: number;
  offset?: number;
  shape?: number[];
  stride?: number[];
  cls?: string;
}): Uint8Array {
  return pk((p) => {
    p.op(0x7d); // {
    p.unicode('w');
    p.global('torch._utils', '_rebuild_tensor_v2');
    p.op(0x28, 0x28);
    p.unicode('storage');
    p.global('torch', opts.cls ?? 'FloatStorage');
    p.unicode(opts.key ?? '0');
    p.unicode('cpu');
    p.int(opts.numel ?? 4);
    p.op(0x74, 0x51);
    p.int(opts.offset ?? 0);
    p.tuple(opts.shape ?? [4]);
    p.tuple(opts.stride ?? [1]);
    p.op(0x89, 0x4e, 0x74, 0x52, 0x73, 0x2e);
  });
}

describe('hostile zips', () => {
  test('a deflate bomb and over-declared sizes are refused', () => {
    // 16 MiB of zeros deflate to ~16 KiB; the directory then lies about the size.
    const path = join(dir, 'bomb.pth');
    writeZip(path, [{ name: 'root/data.pkl', data: new Uint8Array(16 << 20), deflate: true }]);
    const b = readFileSync(path);
    const L = layout(b);
    const at = L.crc.get('root/data.pkl')!;
    assert.ok(b.length < 100000);
    for (const [size, pattern] of [
      [1000, /does not inflate/],
      [200 << 20, /more than the 67108864 allowed/],
    ] as const) {
      const m = Buffer.from(b);
      m.writeUInt32LE(size, at + 8); // uncompressed size follows CRC and compressed size
      writeFileSync(casePath, m);
      assert.throws(
        () => openPth(casePath),
        (e: unknown) => e instanceof FormatError && pattern.test(e.message),
      );
    }
  });
});

describe('hostile pickles', () => {
  test('code-running globals are refused by name', () => {
    const evil: [string, string][] = [
      ['os', 'system'],
      ['posix', 'system'],
      ['builtins', 'eval'],
      ['builtins', 'exec'],
      ['__builtin__', 'eval'],
      ['subprocess', 'Popen'],
      ['subprocess', 'check_output'],
      ['torch', 'load'],
      ['torch._utils', '_rebuild_tensor'],
      ['numpy.core.multiarray', '_reconstruct'],
    ];
    for (const [m, n] of evil) {
      const e = hostile(
        pk((p) => {
          p.global(m, n);
          p.unicode('id');
          p.op(0x85, 0x52, 0x2e);
        }),
        `${m}.${n}`,
      );
      assert.match(
        e.message,
        new RegExp(`refusing pickle global ${m}\\.${n}: not a tensor checkpoint`),
      );
      // STACK_GLOBAL spelling of the same
      const e2 = hostile(
        pk((p) => {
          p.unicode(m);
          p.unicode(n);
          p.op(0x93, 0x2e);
        }),
        `stack ${m}.${n}`,
      );
      assert.match(e2.message, /refusing pickle global/);
    }
  });

  test('deep nesting, huge memo indices and enormous lengths', () => {
    const cases: [string, Uint8Array, RegExp][] = [
      // 300k nested lists: no recursion anywhere, then "not a dict".
      [
        'deep lists',
        pk((p) =>
          p.raw(
            Buffer.concat([
              Buffer.alloc(300000, 0x5d),
              Buffer.alloc(299999, 0x61),
              Buffer.from([0x2e]),
            ]),
          ),
        ),
        /holds a list/,
      ],
      [
        'open marks',
        pk((p) => p.raw(Buffer.concat([Buffer.alloc(200000, 0x28), Buffer.from([0x4e, 0x2e])]))),
        /MARK/,
      ],
      [
        'stack flood',
        pk((p) =>
          p.raw(
            Buffer.concat([
              Buffer.alloc(2 * 1100000, 0).fill(Buffer.from([0x4b, 0x01])),
              Buffer.from([0x2e]),
            ]),
          ),
        ),
        /stack deeper|values/,
      ],
      ['BINGET unset', pk((p) => p.op(0x68, 0xff, 0x2e)), /memo index 255/],
      [
        'LONG_BINGET huge',
        pk((p) => {
          p.op(0x6a);
          p.raw(u32(0xffffffff));
          p.op(0x2e);
        }),
        /memo index 4294967295/,
      ],
      [
        'BINUNICODE 4 GiB',
        pk((p) => {
          p.op(0x58);
          p.raw(u32(0xffffffff));
          p.op(0x2e);
        }),
        /needs 4294967295 more bytes/,
      ],
      [
        'BINUNICODE8 2^63',
        pk((p) => {
          p.op(0x8d);
          p.raw(u64(1n << 63n));
        }),
        /declared length/,
      ],
      [
        'BINBYTES8 2^64-1',
        pk((p) => {
          p.op(0x8e);
          p.raw(u64(0xffffffffffffffffn));
        }),
        /declared length/,
      ],
      [
        'FRAME 2^64-1',
        pk((p) => {
          p.op(0x95);
          p.raw(u64(0xffffffffffffffffn));
        }),
        /declared length/,
      ],
      [
        'LONG4 2 GiB',
        pk((p) => {
          p.op(0x8b);
          p.raw(u32(0x7fffffff));
        }),
        /LONG4/,
      ],
      ['no STOP', pk((p) => p.op(0x7d)), /pickle ends/],
      ['empty pickle', new Uint8Array(0), /pickle ends/],
      ['STOP on empty stack', pk((p) => p.op(0x2e)), /STOP with 0 values/],
      ['TUPLE without MARK', pk((p) => p.op(0x4e, 0x74, 0x2e)), /no MARK/],
      ['SETITEM on a list', pk((p) => p.op(0x5d, 0x4e, 0x4e, 0x73, 0x2e)), /not a dict/],
      ['APPEND on a dict', pk((p) => p.op(0x7d, 0x4e, 0x61, 0x2e)), /not a list/],
      ['APPEND on a tuple', pk((p) => p.op(0x29, 0x4e, 0x61, 0x2e)), /not a list/],
      ['unhashable key', pk((p) => p.op(0x7d, 0x5d, 0x4e, 0x73, 0x2e)), /unhashable/],
      ['INST opcode', pk((p) => p.raw(Buffer.from('ios\nsystem\n.', 'latin1'))), /opcode 0x69/],
      ['OBJ opcode', pk((p) => p.op(0x28, 0x6f, 0x2e)), /opcode 0x6f/],
      ['text PERSID', pk((p) => p.raw(Buffer.from('P0\n.', 'latin1'))), /opcode 0x50/],
      ['NEXT_BUFFER', pk((p) => p.op(0x97, 0x2e)), /opcode 0x97/],
      ['protocol 9', new Uint8Array([0x80, 9, 0x4e, 0x2e]), /protocol 9/],
      [
        'call a storage class',
        pk((p) => {
          p.global('torch', 'FloatStorage');
          p.op(0x29, 0x52, 0x2e);
        }),
        /cannot be called/,
      ],
      [
        'call a string',
        pk((p) => {
          p.unicode('os.system');
          p.op(0x29, 0x52, 0x2e);
        }),
        /call of a str/,
      ],
      [
        'complex storage',
        tensorPickle({ cls: 'ComplexFloatStorage' }),
        /ComplexFloatStorage is not supported/,
      ],
      ['path key', tensorPickle({ key: '../../etc/passwd' }), /not a plain name/],
      ['missing storage entry', tensorPickle({ key: '7' }), /no zip entry root\/data\/7/],
      ['numel 2^53', tensorPickle({ numel: 2 ** 53 }), /not a non-negative integer|declares/],
      [
        'shape 2^40 x 2^40',
        tensorPickle({ shape: [2 ** 40, 2 ** 40], stride: [0, 0] }),
        /more elements than its storage/,
      ],
      [
        'expanded view',
        tensorPickle({ shape: [1000], stride: [0] }),
        /more elements than its storage/,
      ],
      ['negative offset', tensorPickle({ offset: -1 }), /offset -1/],
      ['stride rank', tensorPickle({ shape: [2, 2], stride: [2] }), /stride has 1/],
      ['past the storage', tensorPickle({ offset: 1 }), /reaches past storage/],
      ['storage too small', tensorPickle({ numel: 400, shape: [4] }), /declares 400 f32 elements/],
      [
        'bad persistent id',
        pk((p) => {
          p.unicode('storage');
          p.op(0x85, 0x51, 0x2e);
        }),
        /persistent id/,
      ],
    ];
    const storage = [new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer)];
    for (const [label, pickle, pattern] of cases) {
      const e = hostile(pickle, label, storage);
      assert.match(e.message, pattern, label);
    }
  });

  test('work limits stop long, wide or memo-hungry pickles', () => {
    const limits = { maxOps: 1500, maxStack: 100, maxMemo: 50, maxValues: 500 };
    const run = (body: number[]) => () =>
      unpickle(new Uint8Array([0x80, 2, ...body, 0x4e, 0x2e]), 'x.pth (data.pkl)', limits);
    const repeat = (n: number, ops: number[]) => Array.from({ length: n }, () => ops).flat();
    // 800 × (DUP, POP) creates nothing but runs too long.
    assert.throws(run([0x4e, ...repeat(800, [0x32, 0x30])]), /more than 1500 operations/);
    assert.throws(run(repeat(101, [0x4e])), /stack deeper than 100/);
    assert.throws(run([0x5d, ...repeat(501, [0x4e, 0x61])]), /more than 500 values/);
    assert.throws(run([0x4e, ...repeat(51, [0x94]), 0x30]), /memo larger than 50/);
    // DUP and BINGET re-push existing values: they count against the stack, not values.
    assert.throws(run([0x4e, 0x71, 0, ...repeat(120, [0x68, 0])]), /stack deeper than 100/);
    const ok = unpickle(
      new Uint8Array([0x80, 2, 0x5d, 0x4e, 0x71, 0, 0x30, ...repeat(200, [0x68, 0, 0x61]), 0x2e]),
      'x',
      limits,
    );
    assert.equal((ok.value as unknown[]).length, 200);
  });

  test('random opcode soup', () => {
    // Short sequences drawn from real opcodes with plausible arguments.
    const r = rng(31337);
    const pieces: (() => number[])[] = [
      () => [0x28],
      () => [0x29],
      () => [0x5d],
      () => [0x7d],
      () => [0x4e],
      () => [0x88],
      () => [0x89],
      () => [0x4b, Math.floor(r() * 256)],
      () => [0x4d, Math.floor(r() * 256), Math.floor(r() * 256)],
      () => [0x8a, 1, Math.floor(r() * 256)],
      () => [0x58, 1, 0, 0, 0, 0x61 + Math.floor(r() * 3)],
      () => [0x8c, 1, 0x30 + Math.floor(r() * 3)],
      () => [0x74],
      () => [0x85],
      () => [0x86],
      () => [0x87],
      () => [0x73],
      () => [0x75],
      () => [0x61],
      () => [0x65],
      () => [0x71, Math.floor(r() * 4)],
      () => [0x68, Math.floor(r() * 4)],
      () => [0x94],
      () => [0x32],
      () => [0x30],
      () => [0x31],
      () => [0x52],
      () => [0x81],
      () => [0x62],
      () => [0x51],
      () => [...Buffer.from('ccollections\nOrderedDict\n', 'latin1')],
      () => [...Buffer.from('ctorch._utils\n_rebuild_tensor_v2\n', 'latin1')],
      () => [...Buffer.from('ctorch\nFloatStorage\n', 'latin1')],
      () => [0x2e],
    ];
    let opened = 0;
    for (let i = 0; i < 400; i++) {
      const ops: number[] = [0x80, 2];
      const n = 1 + Math.floor(r() * 40);
      for (let j = 0; j < n; j++) ops.push(...pieces[Math.floor(r() * pieces.length)]());
      ops.push(0x2e);
      writeZip(join(dir, 'soup.pth'), [
        { name: 'root/data.pkl', data: new Uint8Array(ops) },
        { name: 'root/data/0', data: new Uint8Array(16) },
      ]);
      const o = attempt(
        readFileSync(join(dir, 'soup.pth')),
        `soup #${i}: ${Buffer.from(ops).toString('hex')}`,
      );
      if (o === 'values') opened++;
      record(o);
    }
    assert.ok(opened < 400);
  });

  test('whole run stays fast and mostly ends in errors', (t) => {
    const seconds = (performance.now() - started) / 1000;
    const total = counts.values + counts.error;
    t.diagnostic(
      `${total} random cases: ${counts.error} errors, ${counts.values} read; ${seconds.toFixed(2)} s`,
    );
    assert.ok(total > 1000, `only ${total} cases`);
    assert.ok(counts.error > total / 2, `errors ${counts.error} of ${total}`);
    assert.ok(seconds < 10, `fuzz took ${seconds.toFixed(1)} s`);
  });
});
