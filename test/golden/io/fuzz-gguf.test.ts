/**
 * Hostile and broken GGUF files: seeded byte flips and truncations of valid files
 * (RWKV-6, RWKV-7 with a tokenizer, a "llama" file with k-quants), and hand-built headers
 * with huge counts and lengths, bad types, misaligned or overlapping offsets, ranges
 * past the end, overflowing dimensions. Every outcome must be a clean read or a
 * UserError / FormatError naming the file on one line — quickly, and without memory
 * growing with the numbers the file claims.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { FormatError, UserError } from '../../../src/errors.ts';
import type { Checkpoint } from '../../../src/io/checkpoint.ts';
import { floatToHalf } from '../../../src/io/dtype.ts';
import { type GgufKVIn, openGguf, writeGguf, writeGgufFile } from '../../../src/io/gguf.ts';
import type { TensorToWrite } from '../../../src/io/safetensors.ts';
import { loadTokenizer } from '../../../src/io/tokenizer.ts';
import { numel } from '../../../src/tensor/tensor.ts';
import { rng } from '../../../src/util/random.ts';
import { tmpDir } from '../../helpers/shared.ts';

const dir = tmpDir('actsparse-fuzz-gguf-');
const outcomes = { ok: 0, error: 0, cases: 0, slowest: 0, slowestLabel: '' };
const memoryAtStart = process.memoryUsage();
let peakExtra = 0;

/** Opens `bytes` as a GGUF file and reads every tensor; only clean outcomes are allowed. */
function attempt(label: string, bytes: Uint8Array, name = 'f.gguf'): 'ok' | 'error' {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  const t0 = performance.now();
  let c: Checkpoint | undefined;
  let outcome: 'ok' | 'error';
  try {
    c = openGguf(path);
    for (const [n, e] of c.tensors) {
      const t = c.read(n);
      assert.equal(t.data.length, numel(e.shape), `${label}: ${n} has the size of its shape`);
    }
    outcome = 'ok';
  } catch (e) {
    if (!(e instanceof UserError)) {
      assert.fail(
        `${label}: ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}\n${(e as Error)?.stack}`,
      );
    }
    assert.ok(!e.message.includes('\n'), `${label}: one-line message: ${e.message}`);
    if (e instanceof FormatError) assert.ok(e.message.startsWith(path), `${label}: names the file`);
    outcome = 'error';
  } finally {
    c?.close();
  }
  const ms = performance.now() - t0;
  if (ms > outcomes.slowest) {
    outcomes.slowest = ms;
    outcomes.slowestLabel = label;
  }
  const m = process.memoryUsage();
  peakExtra = Math.max(
    peakExtra,
    m.heapUsed + m.arrayBuffers - memoryAtStart.heapUsed - memoryAtStart.arrayBuffers,
  );
  outcomes[outcome]++;
  outcomes.cases++;
  return outcome;
}

// ---- valid bases ----

function randomModel(v: 6 | 7, C: number, L: number, seed: number): TensorToWrite[] {
  const r = rng(seed);
  const out: TensorToWrite[] = [];
  const t = (name: string, shape: number[]) =>
    out.push({ name, shape, data: Float32Array.from({ length: numel(shape) }, () => r() - 0.5) });
  const H = C / 16;
  t('emb.weight', [64, C]);
  t('blocks.0.ln0.weight', [C]);
  t('blocks.0.ln0.bias', [C]);
  for (let l = 0; l < L; l++) {
    const b = `blocks.${l}.`;
    for (const n of ['ln1', 'ln2', 'att.ln_x']) {
      t(`${b}${n}.weight`, [C]);
      t(`${b}${n}.bias`, [C]);
    }
    if (v === 6) {
      for (const x of ['x', 'w', 'k', 'v', 'r', 'g']) t(`${b}att.time_maa_${x}`, [1, 1, C]);
      t(`${b}att.time_maa_w1`, [C, 5 * 8]);
      t(`${b}att.time_maa_w2`, [5, 8, C]);
      t(`${b}att.time_decay`, [1, 1, C]);
      t(`${b}att.time_decay_w1`, [C, 16]);
      t(`${b}att.time_decay_w2`, [16, C]);
      t(`${b}att.time_faaaa`, [H, 16]);
      for (const k of ['key', 'value', 'receptance', 'gate', 'output'])
        t(`${b}att.${k}.weight`, [C, C]);
      t(`${b}ffn.time_maa_k`, [1, 1, C]);
      t(`${b}ffn.time_maa_r`, [1, 1, C]);
      t(`${b}ffn.key.weight`, [2 * C, C]);
      t(`${b}ffn.receptance.weight`, [C, C]);
      t(`${b}ffn.value.weight`, [C, 2 * C]);
    } else {
      for (const x of ['r', 'w', 'k', 'v', 'a', 'g']) t(`${b}att.x_${x}`, [1, 1, C]);
      for (const x of ['w', 'a', 'v', 'g']) {
        if (x === 'v' && l === 0) continue;
        if (x !== 'g') t(`${b}att.${x}0`, [1, 1, C]);
        t(`${b}att.${x}1`, [C, 8]);
        t(`${b}att.${x}2`, [8, C]);
      }
      t(`${b}att.k_k`, [1, 1, C]);
      t(`${b}att.k_a`, [1, 1, C]);
      t(`${b}att.r_k`, [H, 16]);
      for (const k of ['receptance', 'key', 'value', 'output']) t(`${b}att.${k}.weight`, [C, C]);
      t(`${b}ffn.x_k`, [1, 1, C]);
      t(`${b}ffn.key.weight`, [2 * C, C]);
      t(`${b}ffn.value.weight`, [C, 2 * C]);
    }
  }
  t('ln_out.weight', [C]);
  t('ln_out.bias', [C]);
  t('head.weight', [64, C]);
  return out;
}

const bases: Record<string, Uint8Array> = {};

function base(name: string, write: (p: string) => void): Uint8Array {
  const p = join(dir, `base-${name}.gguf`);
  write(p);
  bases[name] = new Uint8Array(readFileSync(p));
  return bases[name];
}

base('rwkv6-f16', (p) =>
  writeGguf(p, randomModel(6, 32, 2, 1), { architecture: 'rwkv6', dtype: 'f16', rescaleEvery: 1 }),
);
base('rwkv7-q8', (p) => {
  const tokens = ['<s>', 'a', '\\n', '\\xe4\\xbd', 'b\\\\c', '[PAD5]'];
  writeGguf(p, randomModel(7, 32, 2, 2), {
    architecture: 'rwkv7',
    dtype: 'q8_0',
    metadata: {
      'tokenizer.ggml.model': { type: 'string', value: 'rwkv' },
      'tokenizer.ggml.tokens': { type: 'array', itemType: 'string', value: tokens },
      'tokenizer.ggml.token_type': { type: 'array', itemType: 'i32', value: [3, 1, 1, 1, 1, 5] },
      'x.f64': { type: 'f64', value: 1.5 },
      'x.bools': { type: 'array', itemType: 'bool', value: [true, false] },
      'x.u64s': { type: 'array', itemType: 'u64', value: [1n, 2n ** 60n] },
    },
  });
});
base('llama-kquants', (p) => {
  // random blocks of each k-quant with finite f16 scales
  const r = rng(3);
  const block = (bytes: number, scales: number[]) => {
    const b = Uint8Array.from({ length: 2 * bytes }, () => Math.floor(r() * 256));
    const dv = new DataView(b.buffer);
    for (const k of [0, bytes])
      for (const s of scales) dv.setUint16(k + s, floatToHalf(r() * 0.01), true);
    return b;
  };
  const kv = new Map<string, GgufKVIn>([
    ['general.architecture', { type: 'string', value: 'llama' }],
  ]);
  const raw = (name: string, type: 'f32' | 'q4_0', shape: number[]) => ({
    name,
    shape,
    type,
    data: Float32Array.from({ length: numel(shape) }, () => r() - 0.5),
  });
  writeGgufFile(p, kv, [
    raw('token_embd.weight', 'f32', [4, 64]),
    raw('blk.0.attn_q.weight', 'q4_0', [2, 64]),
  ]);
  // append two k-quant tensors by hand: rebuild with the raw bytes after the writer's tensors
  const b = readFileSync(p);
  writeFileSync(
    p,
    withExtraTensors(b, [
      { name: 'blk.0.ffn_down.weight', type: 12, ne: [512], data: block(144, [0, 2]) },
      { name: 'blk.0.ffn_up.weight', type: 14, ne: [512], data: block(210, [208]) },
    ]),
  );
});

/** A GGUF file with more tensors: re-assembled from the parsed header of `b`. */
function withExtraTensors(
  b: Buffer,
  extra: { name: string; type: number; ne: number[]; data: Uint8Array }[],
): Buffer {
  // Only for this test's own base: v3, no alignment key, tensor infos right after the KVs.
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const nTensors = Number(dv.getBigUint64(8, true));
  let p = 24;
  const nKv = Number(dv.getBigUint64(16, true));
  const str = () => {
    const n = Number(dv.getBigUint64(p, true));
    p += 8 + n;
  };
  for (let i = 0; i < nKv; i++) {
    str();
    const t = dv.getUint32(p, true);
    p += 4;
    if (t === 8) str();
    else p += [1, 1, 2, 2, 4, 4, 4, 1][t];
  }
  const infosStart = p;
  const infos: { name: string; ne: bigint[]; type: number; off: bigint }[] = [];
  for (let i = 0; i < nTensors; i++) {
    const n = Number(dv.getBigUint64(p, true));
    const name = b.toString('utf8', p + 8, p + 8 + n);
    p += 8 + n;
    const nd = dv.getUint32(p, true);
    p += 4;
    const ne: bigint[] = [];
    for (let d = 0; d < nd; d++, p += 8) ne.push(dv.getBigInt64(p, true));
    const type = dv.getUint32(p, true);
    const off = dv.getBigUint64(p + 4, true);
    p += 12;
    infos.push({ name, ne, type, off });
  }
  const dataStart = Math.ceil(p / 32) * 32;
  const data = b.subarray(dataStart);
  const head: Buffer[] = [b.subarray(0, 8)];
  const u64 = (v: number | bigint) => {
    const x = Buffer.alloc(8);
    x.writeBigUInt64LE(BigInt(v));
    head.push(x);
  };
  const u32 = (v: number) => {
    const x = Buffer.alloc(4);
    x.writeUInt32LE(v);
    head.push(x);
  };
  u64(nTensors + extra.length);
  u64(nKv);
  head.push(b.subarray(24, infosStart));
  const put = (name: string, ne: (number | bigint)[], type: number, off: number | bigint) => {
    u64(Buffer.byteLength(name));
    head.push(Buffer.from(name));
    u32(ne.length);
    for (const d of ne) {
      const x = Buffer.alloc(8);
      x.writeBigInt64LE(BigInt(d));
      head.push(x);
    }
    u32(type);
    u64(off);
  };
  for (const t of infos) put(t.name, t.ne, t.type, t.off);
  let off = Math.ceil(data.length / 32) * 32;
  const tails: Buffer[] = [];
  for (const t of extra) {
    put(t.name, t.ne, t.type, off);
    const padded = Buffer.alloc(Math.ceil(t.data.length / 32) * 32);
    padded.set(t.data);
    tails.push(padded);
    off += padded.length;
  }
  const h = Buffer.concat(head);
  const start = Math.ceil(h.length / 32) * 32;
  const dataPadded = Buffer.alloc(Math.ceil(data.length / 32) * 32);
  dataPadded.set(data);
  return Buffer.concat([h, Buffer.alloc(start - h.length), dataPadded, ...tails]);
}

// ---- hostile headers from parts ----

class W {
  parts: Buffer[] = [];
  private n(size: number, f: (b: Buffer) => void) {
    const b = Buffer.alloc(size);
    f(b);
    this.parts.push(b);
    return this;
  }
  u32 = (v: number) => this.n(4, (b) => b.writeUInt32LE(v >>> 0));
  u64 = (v: number | bigint) => this.n(8, (b) => b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v))));
  i64 = (v: number | bigint) => this.n(8, (b) => b.writeBigInt64LE(BigInt.asIntN(64, BigInt(v))));
  bytes = (b: Uint8Array) => {
    this.parts.push(Buffer.from(b));
    return this;
  };
  str = (s: string) => {
    const b = Buffer.from(s);
    return this.u64(b.length).bytes(b);
  };
  build = (pad = 256) => Buffer.concat([...this.parts, Buffer.alloc(pad)]);
}

const header = (nT: number | bigint, nKv: number | bigint, version = 3) =>
  new W().bytes(Buffer.from('GGUF')).u32(version).u64(nT).u64(nKv);

const hostile: [string, () => Buffer][] = [
  ['tensor count 2^63', () => header(2n ** 63n - 1n, 0).build()],
  ['kv count 2^40', () => header(0, 2n ** 40n).build()],
  [
    'key length 2^62',
    () =>
      header(0, 1)
        .u64(2n ** 62n)
        .build(),
  ],
  ['key length past EOF', () => header(0, 1).u64(1000).bytes(Buffer.from('k')).build(8)],
  [
    'string value 2^40',
    () =>
      header(0, 1)
        .str('k')
        .u32(8)
        .u64(2n ** 40n)
        .build(),
  ],
  ['string value past EOF', () => header(0, 1).str('k').u32(8).u64(500).build(10)],
  [
    'array of 2^50 u8',
    () =>
      header(0, 1)
        .str('k')
        .u32(9)
        .u32(0)
        .u64(2n ** 50n)
        .build(),
  ],
  [
    'array of 2^40 strings',
    () =>
      header(0, 1)
        .str('k')
        .u32(9)
        .u32(8)
        .u64(2n ** 40n)
        .build(),
  ],
  ['array of 10^6 u32 in 1 KiB', () => header(0, 1).str('k').u32(9).u32(4).u64(1e6).build(1024)],
  ['array item type 77', () => header(0, 1).str('k').u32(9).u32(77).u64(1).build()],
  ['value type 13', () => header(0, 1).str('k').u32(13).build()],
  ['value type 2^32−1', () => header(0, 1).str('k').u32(0xffffffff).build()],
  [
    'arrays nested 10 deep',
    () => {
      const w = header(0, 1).str('k');
      for (let i = 0; i < 10; i++) w.u32(9).u32(9).u64(1);
      return w.build();
    },
  ],
  [
    'key invalid UTF-8',
    () => header(0, 1).u64(2).bytes(Uint8Array.of(0xff, 0xfe)).u32(4).u32(1).build(),
  ],
  ['alignment 0', () => header(0, 1).str('general.alignment').u32(4).u32(0).build()],
  ['alignment 3', () => header(0, 1).str('general.alignment').u32(4).u32(3).build()],
  [
    'alignment 2^31',
    () =>
      header(0, 1)
        .str('general.alignment')
        .u32(4)
        .u32(2 ** 31)
        .build(),
  ],
  ['alignment as a string', () => header(0, 1).str('general.alignment').u32(8).str('32').build()],
  ['version 1', () => header(0, 0, 1).build()],
  ['version 4', () => header(0, 0, 4).build()],
  ['version byte-swapped', () => header(0, 0, 0x03000000).build()],
  ...(
    [
      ['n_dims 2^31', [], 0, 0, 2 ** 31],
      ['ne 2^62', [2n ** 62n], 0, 0],
      ['ne −1', [-1], 0, 0],
      ['ne 2^40 × 4', [2n ** 40n, 2n ** 40n, 2n ** 40n, 2n ** 40n], 0, 0],
      ['ne product beyond 2^64', [2n ** 33n, 2n ** 33n], 0, 0],
      ['misaligned offset', [4], 0, 5],
      ['offset past EOF', [4], 0, 2n ** 40n],
      ['offset 2^64−1', [4], 0, 2n ** 64n - 1n],
      ['range past EOF', [100000], 0, 0],
      ['type 4 (removed)', [32], 4, 0],
      ['type 2^32−1', [32], 0xffffffff, 0],
      ['row of 33 in Q8_0', [33], 8, 0],
      ['Q6_K row of 255', [255], 14, 0],
    ] as [string, (number | bigint)[], number, number | bigint, number?][]
  ).map(([label, ne, type, off, nDims]): [string, () => Buffer] => [
    `tensor: ${label}`,
    () => {
      const w = header(1, 0)
        .str('t')
        .u32(nDims ?? ne.length);
      for (const d of ne) w.i64(d);
      return w.u32(type).u64(off).build(1024);
    },
  ]),
  [
    'tensor name 2^62 long',
    () =>
      header(1, 0)
        .u64(2n ** 62n)
        .build(),
  ],
  [
    'tensor name 100 bytes',
    () => header(1, 0).str('x'.repeat(100)).u32(1).i64(1).u32(0).u64(0).build(),
  ],
  ['tensor name empty', () => header(1, 0).str('').u32(1).i64(1).u32(0).u64(0).build()],
  [
    'rwkv7 lerp_fused of the wrong size',
    () =>
      header(2, 2)
        .str('general.architecture')
        .u32(8)
        .str('rwkv7')
        .str('rwkv7.wkv.head_size')
        .u32(4)
        .u32(16)
        .str('token_embd.weight')
        .u32(2)
        .i64(32)
        .i64(4)
        .u32(0)
        .u64(0)
        .str('blk.0.time_mix_lerp_fused.weight')
        .u32(1)
        .i64(100)
        .u32(0)
        .u64(512)
        .build(2048),
  ],
  [
    'rwkv6 time_mix_w2 as a matrix',
    () =>
      header(2, 1)
        .str('general.architecture')
        .u32(8)
        .str('rwkv6')
        .str('token_embd.weight')
        .u32(2)
        .i64(32)
        .i64(4)
        .u32(0)
        .u64(0)
        .str('blk.0.time_mix_w2.weight')
        .u32(2)
        .i64(8)
        .i64(32)
        .u32(0)
        .u64(512)
        .build(2048),
  ],
];

describe('fuzz: GGUF', () => {
  test('the bases read cleanly', () => {
    for (const [name, b] of Object.entries(bases))
      assert.equal(attempt(`base ${name}`, b), 'ok', name);
    // the tokenizer base builds its World tokenizer
    writeFileSync(join(dir, 'tok.gguf'), bases['rwkv7-q8']);
    assert.deepEqual(loadTokenizer(join(dir, 'tok.gguf')).encode('ab\\c'), [1, 4]);
  });

  test('hand-built hostile headers', () => {
    for (const [label, make] of hostile) {
      const o = attempt(label, make());
      assert.equal(o, 'error', `${label} is refused`);
    }
  });

  test('truncations', () => {
    const r = rng(5);
    for (const [name, b] of Object.entries(bases)) {
      const cuts = new Set<number>();
      for (let i = 0; i < 64; i++) cuts.add(i); // inside the fixed header and first key
      for (let i = 0; i < 50; i++) cuts.add(Math.floor(r() * b.length));
      for (const n of cuts) attempt(`${name} cut at ${n}`, b.subarray(0, n));
    }
  });

  test('random byte flips in the header and data', () => {
    const r = rng(9);
    for (const [name, b] of Object.entries(bases)) {
      // the header region is where flips change structure; a few land in the data
      const headerEnd = Math.min(b.length, 4096);
      for (let i = 0; i < 110; i++) {
        const m = new Uint8Array(b);
        const flips = 1 + Math.floor(r() * 4);
        for (let k = 0; k < flips; k++) {
          const at = r() < 0.9 ? Math.floor(r() * headerEnd) : Math.floor(r() * b.length);
          m[at] = r() < 0.5 ? m[at] ^ (1 << Math.floor(r() * 8)) : Math.floor(r() * 256);
        }
        attempt(`${name} flip #${i}`, m);
      }
    }
  });

  test('u64 fields set to extremes', () => {
    // Overwrite each 8-byte-aligned word of the first KiB with 2^63 or 2^32 + small.
    for (const [name, b] of Object.entries(bases)) {
      for (let at = 8; at < Math.min(1024, b.length - 8); at += 24) {
        for (const v of [2n ** 63n, 2n ** 32n + 7n]) {
          const m = Buffer.from(b);
          m.writeBigUInt64LE(v, at);
          attempt(`${name} word ${at} = ${v}`, m);
        }
      }
    }
  });

  test('whole run: fast, bounded memory, mostly errors', (t) => {
    t.diagnostic(
      `${outcomes.cases} cases: ${outcomes.error} errors, ${outcomes.ok} read; slowest ${outcomes.slowest.toFixed(1)} ms (${outcomes.slowestLabel}); peak extra heap+buffers ${(peakExtra / 2 ** 20).toFixed(1)} MiB`,
    );
    assert.ok(outcomes.cases > 400, `only ${outcomes.cases} cases`);
    assert.ok(outcomes.error > outcomes.cases / 2);
    // Each case is one small file: anything near a second means a loop over a claimed count.
    assert.ok(
      outcomes.slowest < 1500,
      `slowest case ${outcomes.slowestLabel}: ${outcomes.slowest} ms`,
    );
    // Claims of 2^40..2^63 items never turn into allocations.
    assert.ok(peakExtra < 256 * 2 ** 20, `memory grew by ${peakExtra} bytes`);
  });
});
