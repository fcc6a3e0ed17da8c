/**
 * GGUF: the container (every metadata type, tensor infos, alignment), ggml's block
 * types (hand-made blocks, per-element formulas written independently of the reader's
 * loops, rwkv.cpp's Q5 files), the writer, and the RWKV-6/7 name and layout mapping —
 * checked against a file assembled here step by step as llama.cpp's converter does
 * (convert_hf_to_gguf.py Rwkv6Model / Rwkv7Model), not through our own writer.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { FormatError, UserError } from '../../../src/errors.ts';
import type { Checkpoint } from '../../../src/io/checkpoint.ts';
import { bf16ToFloat, floatToBf16, floatToHalf, halfToFloat } from '../../../src/io/dtype.ts';
import { FileSource } from '../../../src/io/file.ts';
import {
  type GgufKVIn,
  isGguf,
  openGguf,
  readGgufHeader,
  writeGguf,
  writeGgufFile,
} from '../../../src/io/gguf.ts';
import { dequantizeK, K_BLOCK_BYTES, type KQuantType, QK_K } from '../../../src/io/kquant.ts';
import { openCheckpoint } from '../../../src/io/open.ts';
import { BLOCK_BYTES, dequantizeAll, type QuantType, quantize } from '../../../src/io/quant.ts';
import { openRwkvCpp } from '../../../src/io/rwkvcpp.ts';
import type { TensorToWrite } from '../../../src/io/safetensors.ts';
import { loadTokenizer, tokenizerForModel, WorldTokenizer } from '../../../src/io/tokenizer.ts';
import { rng } from '../../../src/util/random.ts';
import { assertClose } from '../../helpers/assert.ts';
import { needsShared, shared, tmpDir } from '../../helpers/shared.ts';

const dir = tmpDir('actsparse-gguf-');
const fixture = (name: string) => shared(`models/rwkvcpp/tiny-rwkv-${name}.bin`);

// ---- an independent GGUF byte builder (the spec, not the writer under test) ----

class Bytes {
  readonly parts: Buffer[] = [];
  private push(n: number, w: (b: Buffer) => void): this {
    const b = Buffer.alloc(n);
    w(b);
    this.parts.push(b);
    return this;
  }
  u8 = (v: number) => this.push(1, (b) => b.writeUInt8(v));
  i8 = (v: number) => this.push(1, (b) => b.writeInt8(v));
  u16 = (v: number) => this.push(2, (b) => b.writeUInt16LE(v));
  i16 = (v: number) => this.push(2, (b) => b.writeInt16LE(v));
  u32 = (v: number) => this.push(4, (b) => b.writeUInt32LE(v));
  i32 = (v: number) => this.push(4, (b) => b.writeInt32LE(v));
  f32 = (v: number) => this.push(4, (b) => b.writeFloatLE(v));
  f64 = (v: number) => this.push(8, (b) => b.writeDoubleLE(v));
  u64 = (v: number | bigint) => this.push(8, (b) => b.writeBigUInt64LE(BigInt(v)));
  i64 = (v: number | bigint) => this.push(8, (b) => b.writeBigInt64LE(BigInt(v)));
  str = (s: string) => {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.parts.push(b);
    return this;
  };
  raw = (b: Uint8Array) => {
    this.parts.push(Buffer.from(b));
    return this;
  };
  get length(): number {
    return this.parts.reduce((a, p) => a + p.length, 0);
  }
  build(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** GGUF value type codes (gguf-py constants.py GGUFValueType). */
const T = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, str: 8, arr: 9 };
const T64 = { u64: 10, i64: 11, f64: 12 };
/** ggml type codes (GGMLQuantizationType). */
const G = { F32: 0, F16: 1, Q4_0: 2, Q4_1: 3, Q5_0: 6, Q5_1: 7, Q8_0: 8 } as const;
const GK = { Q2_K: 10, Q3_K: 11, Q4_K: 12, Q5_K: 13, Q6_K: 14, Q8_K: 15, IQ2_XXS: 16, BF16: 30 };

interface RawTensor {
  name: string;
  /** ggml order: ne[0] contiguous. */
  ne: (number | bigint)[];
  type: number;
  data: Uint8Array;
  /** Overrides the offset written in the tensor info. */
  offset?: number | bigint;
}

/**
 * A GGUF file from parts: `kv` writes its own key/value bytes; tensor data are laid out
 * in order, each padded to the alignment, as gguf-py does.
 */
function ggufFile(
  kv: ((b: Bytes) => void)[],
  tensors: RawTensor[],
  { version = 3, alignment = 32, nKv = kv.length, nTensors = tensors.length } = {},
): Buffer {
  const b = new Bytes().raw(Buffer.from('GGUF')).u32(version).u64(nTensors).u64(nKv);
  for (const w of kv) w(b);
  let off = 0;
  const offsets: number[] = [];
  for (const t of tensors) {
    b.str(t.name).u32(t.ne.length);
    for (const d of t.ne) b.i64(d);
    b.u32(t.type).u64(t.offset ?? off);
    offsets.push(off);
    off += Math.ceil(t.data.length / alignment) * alignment;
  }
  const head = b.build();
  const dataStart = Math.ceil(head.length / alignment) * alignment;
  const out = Buffer.alloc(dataStart + off);
  head.copy(out);
  tensors.forEach((t, i) => {
    out.set(t.data, dataStart + offsets[i]);
  });
  return out;
}

const kvStr = (key: string, v: string) => (b: Bytes) => b.str(key).u32(T.str).str(v);
const kvU32 = (key: string, v: number) => (b: Bytes) => b.str(key).u32(T.u32).u32(v);

function save(name: string, bytes: Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

function withCk<R>(path: string, f: (c: Checkpoint) => R): R {
  const c = openCheckpoint(path);
  try {
    return f(c);
  } finally {
    c.close();
  }
}

const f32Bytes = (a: ArrayLike<number>) => Buffer.from(Float32Array.from(a).buffer);

// ---- container ----

describe('GGUF container', () => {
  test('every metadata value type, arrays of each, nested arrays, 64-bit edges', () => {
    const kv = [
      (b: Bytes) => b.str('t.u8').u32(T.u8).u8(250),
      (b: Bytes) => b.str('t.i8').u32(T.i8).i8(-120),
      (b: Bytes) => b.str('t.u16').u32(T.u16).u16(65000),
      (b: Bytes) => b.str('t.i16').u32(T.i16).i16(-32000),
      (b: Bytes) => b.str('t.u32').u32(T.u32).u32(4000000000),
      (b: Bytes) => b.str('t.i32').u32(T.i32).i32(-2000000000),
      (b: Bytes) => b.str('t.f32').u32(T.f32).f32(0.1),
      (b: Bytes) => b.str('t.bool').u32(T.bool).u8(1),
      (b: Bytes) => b.str('t.bool0').u32(T.bool).u8(0),
      (b: Bytes) => b.str('t.str').u32(T.str).str('héllo\nwörld'),
      (b: Bytes) =>
        b
          .str('t.u64')
          .u32(T64.u64)
          .u64(2 ** 40 + 3),
      (b: Bytes) =>
        b
          .str('t.u64big')
          .u32(T64.u64)
          .u64(2n ** 63n + 5n),
      (b: Bytes) =>
        b
          .str('t.i64')
          .u32(T64.i64)
          .i64(-(2 ** 50)),
      (b: Bytes) => b.str('t.f64').u32(T64.f64).f64(Math.PI),
      (b: Bytes) => b.str('a.u8').u32(T.arr).u32(T.u8).u64(3).u8(1).u8(2).u8(255),
      (b: Bytes) => b.str('a.i16').u32(T.arr).u32(T.i16).u64(2).i16(-5).i16(7),
      (b: Bytes) => b.str('a.i32').u32(T.arr).u32(T.i32).u64(2).i32(-1).i32(6),
      (b: Bytes) => b.str('a.f32').u32(T.arr).u32(T.f32).u64(2).f32(1.5).f32(-2.25),
      (b: Bytes) => b.str('a.f64').u32(T.arr).u32(T64.f64).u64(1).f64(1e300),
      (b: Bytes) =>
        b
          .str('a.i64')
          .u32(T.arr)
          .u32(T64.i64)
          .u64(2)
          .i64(-3)
          .i64(2n ** 62n),
      (b: Bytes) => b.str('a.bool').u32(T.arr).u32(T.bool).u64(3).u8(1).u8(0).u8(1),
      (b: Bytes) => b.str('a.str').u32(T.arr).u32(T.str).u64(3).str('a').str('').str('\\x41'),
      (b: Bytes) => b.str('a.empty').u32(T.arr).u32(T.u32).u64(0),
      (b: Bytes) =>
        b
          .str('a.nested')
          .u32(T.arr)
          .u32(T.arr)
          .u64(2)
          .u32(T.u16)
          .u64(2)
          .u16(1)
          .u16(2)
          .u32(T.str)
          .u64(1)
          .str('x'),
      kvStr('general.architecture', 'testarch'),
      kvU32('general.alignment', 64),
    ];
    const data = f32Bytes([1, 2, 3, 4, 5, 6]);
    const bytes = ggufFile(
      kv,
      [
        { name: 'w', ne: [3, 2], type: G.F32, data },
        { name: 'b', ne: [2], type: G.F32, data: f32Bytes([7, 8]) },
      ],
      { alignment: 64 },
    );
    const p = save('types.gguf', bytes);
    assert.ok(isGguf(bytes));
    const f = new FileSource(p);
    try {
      const h = readGgufHeader(f);
      const v = (k: string) => h.kv.get(k)?.value;
      const type = (k: string) => h.kv.get(k)?.type;
      assert.equal(h.version, 3);
      assert.equal(h.alignment, 64);
      assert.equal(h.dataOffset % 64, 0);
      assert.deepEqual(
        ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'str', 'u64', 'i64', 'f64'].map(
          (t) => type(`t.${t}`),
        ),
        ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'string', 'u64', 'i64', 'f64'],
      );
      assert.equal(v('t.u8'), 250);
      assert.equal(v('t.i8'), -120);
      assert.equal(v('t.u16'), 65000);
      assert.equal(v('t.i16'), -32000);
      assert.equal(v('t.u32'), 4000000000);
      assert.equal(v('t.i32'), -2000000000);
      assert.equal(v('t.f32'), Math.fround(0.1));
      assert.equal(v('t.bool'), true);
      assert.equal(v('t.bool0'), false);
      assert.equal(v('t.str'), 'héllo\nwörld');
      assert.equal(v('t.u64'), 2 ** 40 + 3);
      assert.equal(v('t.u64big'), 2n ** 63n + 5n, 'beyond 2^53 stays exact as a bigint');
      assert.equal(v('t.i64'), -(2 ** 50));
      assert.equal(v('t.f64'), Math.PI);
      assert.deepEqual(v('a.u8'), Uint8Array.of(1, 2, 255));
      assert.equal(h.kv.get('a.u8')?.itemType, 'u8');
      assert.deepEqual(v('a.i16'), Int16Array.of(-5, 7));
      assert.deepEqual(v('a.i32'), Int32Array.of(-1, 6));
      assert.deepEqual(v('a.f32'), Float32Array.of(1.5, -2.25));
      assert.deepEqual(v('a.f64'), Float64Array.of(1e300));
      assert.deepEqual(v('a.i64'), BigInt64Array.of(-3n, 2n ** 62n));
      assert.deepEqual(v('a.bool'), Uint8Array.of(1, 0, 1));
      assert.deepEqual(v('a.str'), ['a', '', '\\x41']);
      assert.deepEqual(v('a.empty'), new Uint32Array(0));
      assert.deepEqual(v('a.nested'), [Uint16Array.of(1, 2), ['x']]);
      assert.deepEqual(
        h.tensors.map((t) => [t.name, t.ne, t.shape, t.type.name]),
        [
          ['w', [3, 2], [2, 3], 'F32'],
          ['b', [2], [2], 'F32'],
        ],
      );
      assert.equal(h.tensors[1].offset - h.tensors[0].offset, 64, 'data padded to 64');
    } finally {
      f.close();
    }
    // Another architecture: the file's own names, shapes in PyTorch order.
    withCk(p, (c) => {
      assert.equal(c.format, 'gguf');
      assert.equal(c.meta.architecture, 'testarch');
      assert.deepEqual([...c.tensors.keys()], ['w', 'b']);
      const w = c.read('w');
      assert.deepEqual(w.shape, [2, 3]);
      assert.deepEqual(w.data, Float32Array.of(1, 2, 3, 4, 5, 6));
      assert.deepEqual(c.read('b').data, Float32Array.of(7, 8));
    });
  });

  test('the writer produces the bytes of the spec for the same input', () => {
    const kv = new Map<string, GgufKVIn>([
      ['general.architecture', { type: 'string', value: 'x' }],
      ['k.i8', { type: 'i8', value: -2 }],
      ['k.f64', { type: 'f64', value: 0.5 }],
      ['k.u64', { type: 'u64', value: 2n ** 60n }],
      ['k.bool', { type: 'bool', value: true }],
      ['k.arr', { type: 'array', itemType: 'string', value: ['p', 'qr'] }],
      ['k.ai32', { type: 'array', itemType: 'i32', value: [3, -4] }],
    ]);
    const p = join(dir, 'w.gguf');
    writeGgufFile(p, kv, [
      { name: 't', shape: [2, 2], type: 'f32', data: Float32Array.of(1, 2, 3, 4) },
    ]);
    const want = ggufFile(
      [
        kvStr('general.architecture', 'x'),
        (b) => b.str('k.i8').u32(T.i8).i8(-2),
        (b) => b.str('k.f64').u32(T64.f64).f64(0.5),
        (b) =>
          b
            .str('k.u64')
            .u32(T64.u64)
            .u64(2n ** 60n),
        (b) => b.str('k.bool').u32(T.bool).u8(1),
        (b) => b.str('k.arr').u32(T.arr).u32(T.str).u64(2).str('p').str('qr'),
        (b) => b.str('k.ai32').u32(T.arr).u32(T.i32).u64(2).i32(3).i32(-4),
      ],
      [{ name: 't', ne: [2, 2], type: G.F32, data: f32Bytes([1, 2, 3, 4]) }],
    );
    assert.deepEqual(readFileSync(p), want);
  });

  test('F16, BF16, I8/I16/I32 tensors decode to float32', () => {
    const h = [1, -2, 0.5, 65504].map(floatToHalf);
    const bf = [1, -2.5, 3e38, 1e-30].map(floatToBf16);
    const u16 = (v: number[]) => Buffer.from(Uint16Array.from(v).buffer);
    const p = save(
      'plain.gguf',
      ggufFile(
        [kvStr('general.architecture', 'x')],
        [
          { name: 'h', ne: [4], type: G.F16, data: u16(h) },
          { name: 'bf', ne: [4], type: GK.BF16, data: u16(bf) },
          { name: 'i8', ne: [3], type: 24, data: Buffer.from(Int8Array.of(-128, 0, 127).buffer) },
          { name: 'i16', ne: [2], type: 25, data: Buffer.from(Int16Array.of(-300, 300).buffer) },
          { name: 'i32', ne: [2], type: 26, data: Buffer.from(Int32Array.of(-70000, 9).buffer) },
        ],
      ),
    );
    withCk(p, (c) => {
      assert.deepEqual(c.read('h').data, Float32Array.from(h.map(halfToFloat)));
      assert.deepEqual(c.read('bf').data, Float32Array.from(bf.map(bf16ToFloat)));
      assert.deepEqual(c.read('i8').data, Float32Array.of(-128, 0, 127));
      assert.deepEqual(c.read('i16').data, Float32Array.of(-300, 300));
      assert.deepEqual(c.read('i32').data, Float32Array.of(-70000, 9));
      assert.equal(c.tensors.get('bf')?.dtype, 'bf16');
    });
  });

  test('types actsparse cannot dequantize open, and reading one says so', () => {
    const p = save(
      'iq.gguf',
      ggufFile(
        [kvStr('general.architecture', 'llama')],
        [{ name: 'blk.0.attn_q.weight', ne: [256, 1], type: GK.IQ2_XXS, data: new Uint8Array(66) }],
      ),
    );
    withCk(p, (c) => {
      assert.equal(c.tensors.get('blk.0.attn_q.weight')?.dtype, 'iq2_xxs');
      assert.throws(
        () => c.read('blk.0.attn_q.weight'),
        (e: unknown) => e instanceof UserError && /IQ2_XXS.*cannot dequantize/.test(e.message),
      );
    });
  });

  test('keys and architectures named like Object properties stay plain data', () => {
    const p = save(
      'proto.gguf',
      ggufFile([kvStr('general.architecture', 'constructor'), kvU32('__proto__', 7)], []),
    );
    withCk(p, (c) => {
      assert.equal(c.meta.architecture, 'constructor');
      const m = c.meta.metadata as Record<string, unknown>;
      assert.equal(Object.getPrototypeOf(m), Object.prototype);
      assert.equal(Object.getOwnPropertyDescriptor(m, '__proto__')?.value, 7);
    });
  });

  test('RWKV-6 on Qwen2 and ARWKV-7 are refused by name; other architectures open as-is', () => {
    for (const arch of ['rwkv6qwen2', 'arwkv7']) {
      const p = save(`${arch}.gguf`, ggufFile([kvStr('general.architecture', arch)], []));
      assert.throws(
        () => openGguf(p),
        (e: unknown) => e instanceof UserError && e.message.includes(`'${arch}'`) && !!e.hint,
      );
    }
  });
});

// ---- block types ----

/** Independent per-element definitions of the k-quants (ggml-common.h layouts). */
const half = (b: Uint8Array, at: number) => halfToFloat(b[at] | (b[at + 1] << 8));
const i8 = (v: number) => (v >= 128 ? v - 256 : v);

/** Element e (0..255) of one super-block. */
function refK(type: KQuantType, b: Uint8Array, e: number): number {
  const n = e >> 7; // which half of 128
  const r = e & 127;
  switch (type) {
    case 'q2_k': {
      // 8 groups of 16 per half: group g = 2·(r >> 5) + ((r >> 4) & 1), 2 bits at shift 2·(r >> 5)
      const shift = 2 * (r >> 5);
      const off = (r >> 4) & 1;
      const sc = b[16 * 0 + 8 * n + 2 * (r >> 5) + off];
      const q = (b[16 + 32 * n + 16 * off + (r & 15)] >> shift) & 3;
      return half(b, 80) * (sc & 15) * q - half(b, 82) * (sc >> 4);
    }
    case 'q3_k': {
      const j4 = r >> 5;
      const off = (r >> 4) & 1;
      const l = r & 15;
      const is = 8 * n + 2 * j4 + off;
      const s = b.subarray(96, 108);
      const low = is < 8 ? s[is] & 15 : s[is - 8] >> 4;
      const high = (s[8 + (is % 4)] >> (2 * Math.floor(is / 4))) & 3;
      const scale = (low | (high << 4)) - 32;
      const q2 = (b[32 + 32 * n + 16 * off + l] >> (2 * j4)) & 3;
      const hbit = (b[16 * off + l] >> (4 * n + j4)) & 1;
      return half(b, 108) * scale * (q2 - (hbit ? 0 : 4));
    }
    case 'q4_k':
    case 'q5_k': {
      const j = e >> 5; // sub-block of 32
      const l = e & 31;
      const s = b.subarray(4, 16);
      const sc = j < 4 ? s[j] & 63 : (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
      const m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
      const qs = type === 'q4_k' ? 16 : 48;
      const byte = b[qs + 32 * (j >> 1) + l];
      let q = j & 1 ? byte >> 4 : byte & 15;
      if (type === 'q5_k') q += ((b[16 + l] >> j) & 1) * 16;
      return half(b, 0) * sc * q - half(b, 2) * m;
    }
    case 'q6_k': {
      const g = r >> 5;
      const l = r & 31;
      const qlByte = b[64 * n + l + (g & 1) * 32];
      const low = g < 2 ? qlByte & 15 : qlByte >> 4;
      const high = (b[128 + 32 * n + l] >> (2 * g)) & 3;
      const sc = i8(b[192 + 8 * n + (l >> 4) + 2 * g]);
      return half(b, 208) * sc * ((low | (high << 4)) - 32);
    }
    case 'q8_k':
      return new DataView(b.buffer, b.byteOffset).getFloat32(0, true) * i8(b[4 + e]);
  }
}

describe('ggml block types', () => {
  const K_TYPES: KQuantType[] = ['q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k', 'q8_k'];

  test('k-quant block sizes are ggml-common.h’s', () => {
    assert.deepEqual(
      { ...K_BLOCK_BYTES },
      { q2_k: 84, q3_k: 110, q4_k: 144, q5_k: 176, q6_k: 210, q8_k: 292 },
    );
  });

  test('Q4_K hand-made block: packed 6-bit scales and mins, nibbles per sub-block', () => {
    const b = new Uint8Array(144);
    const dv = new DataView(b.buffer);
    dv.setUint16(0, floatToHalf(0.5), true); // d
    dv.setUint16(2, floatToHalf(0.25), true); // dmin
    // sub-block j: scale 2j+1, min j (j < 4 in bytes j, j+4; j ≥ 4 split as ggml packs them)
    const sc = [1, 3, 5, 7, 9, 11, 63, 40];
    const mn = [0, 1, 2, 3, 4, 5, 6, 63];
    for (let j = 0; j < 8; j++) {
      if (j < 4) {
        b[4 + j] = sc[j];
        b[4 + j + 4] = mn[j];
      } else {
        b[4 + j + 4] = (sc[j] & 15) | ((mn[j] & 15) << 4);
        b[4 + j - 4] |= (sc[j] >> 4) << 6;
        b[4 + j] |= (mn[j] >> 4) << 6;
      }
    }
    // quants: element 32c + l gets l & 15 (low nibble), element 32c + 32 + l gets 15 − (l & 15)
    for (let c = 0; c < 4; c++)
      for (let l = 0; l < 32; l++) b[16 + 32 * c + l] = (l & 15) | ((15 - (l & 15)) << 4);
    const y = new Float32Array(256);
    dequantizeK('q4_k', b, y);
    // y = d·sc·q − dmin·m
    assert.equal(y[0], 0.5 * 1 * 0 - 0.25 * 0);
    assert.equal(y[5], 0.5 * 1 * 5);
    assert.equal(y[32 + 2], 0.5 * 3 * 13 - 0.25 * 1);
    assert.equal(y[6 * 32 + 7], 0.5 * 63 * 7 - 0.25 * 6);
    assert.equal(y[7 * 32 + 1], 0.5 * 40 * 14 - 0.25 * 63);
    for (let e = 0; e < 256; e++)
      assert.equal(y[e], Math.fround(refK('q4_k', b, e)), `element ${e}`);
  });

  test('Q6_K hand-made block: signed 8-bit scales, 6-bit quants from ql and qh', () => {
    const b = new Uint8Array(210);
    new DataView(b.buffer).setUint16(208, floatToHalf(0.125), true);
    for (let i = 0; i < 16; i++) b[192 + i] = (i % 2 ? -i : i) & 255;
    b[0] = 0x2f; // element 0 low 4 bits 15, element 64 low bits 2
    b[128] = 0b11_10_01_11; // high bits: element 0 → 3, 32 → 1, 64 → 2, 96 → 3
    b[32] = 0x01; // element 32 low 1, element 96 low 0
    const y = new Float32Array(256);
    dequantizeK('q6_k', b, y);
    // y = d·sc·(q − 32): element 0 q = 15 | 3<<4 = 63, scale sc[0] = 0
    assert.equal(y[0], 0);
    assert.equal(y[32], 0.125 * 2 * ((1 | (1 << 4)) - 32)); // sc[2] = 2
    assert.equal(y[64], 0.125 * 4 * ((2 | (2 << 4)) - 32)); // sc[4] = 4
    assert.equal(y[96], 0.125 * 6 * ((0 | (3 << 4)) - 32)); // sc[6] = 6
    assert.equal(y[16], 0.125 * -1 * -32); // sc[1] = −1, q = 0
    for (let e = 0; e < 256; e++)
      assert.equal(y[e], Math.fround(refK('q6_k', b, e)), `element ${e}`);
  });

  test('Q2_K, Q3_K, Q5_K, Q8_K hand values', () => {
    // Q2_K: scales[0] = 0x21 (scale 1, min 2); qs[16] = 0b11100100 → elements 0, 32, 64, 96 q = 0..3
    let b = new Uint8Array(84);
    let dv = new DataView(b.buffer);
    dv.setUint16(80, floatToHalf(2), true);
    dv.setUint16(82, floatToHalf(0.5), true);
    b.fill(0x21, 0, 16);
    b[16] = 0b11_10_01_00;
    let y = new Float32Array(256);
    dequantizeK('q2_k', b, y);
    assert.deepEqual([y[0], y[32], y[64], y[96]], [-1, 1, 3, 5]); // 2·1·q − 0.5·2
    // Q3_K: scale j = 33 (→ +1) everywhere; element 0: low bits 3, high bit set → 3; element 1: 0, unset → −4
    b = new Uint8Array(110);
    dv = new DataView(b.buffer);
    dv.setUint16(108, floatToHalf(0.5), true);
    for (let j = 0; j < 8; j++) b[96 + j] = 0x11; // low nibbles 1 for all 16 scales
    for (let j = 0; j < 4; j++) b[96 + 8 + j] = 0b10_10_10_10; // high bits 2 → 33
    b[0] = 1; // hmask bit 0 of element 0
    b[32] = 3;
    y = new Float32Array(256);
    dequantizeK('q3_k', b, y);
    assert.equal(y[0], 0.5 * 1 * 3);
    assert.equal(y[1], 0.5 * 1 * -4);
    // Q5_K: like Q4_K with qh bit j of byte l adding 16 to sub-block j
    b = new Uint8Array(176);
    dv = new DataView(b.buffer);
    dv.setUint16(0, floatToHalf(1), true);
    b[4] = 1; // scale of sub-block 0 = 1, min 0
    b[5] = 2; // scale of sub-block 1 = 2
    b[16 + 3] = 0b11; // element 3 (sub-block 0) and element 32+3 (sub-block 1) get +16
    b[48 + 3] = 0x52; // element 3 low nibble 2, element 35 nibble 5
    y = new Float32Array(256);
    dequantizeK('q5_k', b, y);
    assert.equal(y[3], 18);
    assert.equal(y[35], 2 * 21);
    // Q8_K: f32 d times int8
    b = new Uint8Array(292);
    new DataView(b.buffer).setFloat32(0, 0.75, true);
    b[4] = 0x80;
    b[5] = 3;
    y = new Float32Array(256);
    dequantizeK('q8_k', b, y);
    assert.deepEqual([y[0], y[1], y[2]], [-96, 2.25, 0]);
  });

  test('random super-blocks: the reader equals the per-element definition, bit for bit', () => {
    const r = rng(7);
    for (const type of K_TYPES) {
      const n = 6;
      const b = new Uint8Array(n * K_BLOCK_BYTES[type]);
      for (let i = 0; i < b.length; i++) b[i] = Math.floor(r() * 256);
      // keep the f16 scales finite and moderate
      for (let k = 0; k < n; k++) {
        const p = k * K_BLOCK_BYTES[type];
        const dv = new DataView(b.buffer);
        const at = {
          q2_k: [80, 82],
          q3_k: [108],
          q4_k: [0, 2],
          q5_k: [0, 2],
          q6_k: [208],
          q8_k: [],
        }[type];
        for (const a of at) dv.setUint16(p + a, floatToHalf((r() - 0.5) * 0.1), true);
        if (type === 'q8_k') dv.setFloat32(p, (r() - 0.5) * 0.01, true);
      }
      const y = new Float32Array(n * QK_K);
      dequantizeK(type, b, y);
      for (let k = 0; k < n; k++) {
        const blk = b.subarray(k * K_BLOCK_BYTES[type], (k + 1) * K_BLOCK_BYTES[type]);
        for (let e = 0; e < QK_K; e++) {
          const want = Math.fround(refK(type, blk, e));
          if (y[k * QK_K + e] !== want)
            assert.fail(`${type} block ${k} element ${e}: ${y[k * QK_K + e]} != ${want}`);
        }
      }
    }
  });

  test('every block type through a GGUF file equals the direct decoding; rows are ne[0]', () => {
    const r = rng(11);
    const rows = 3;
    const tensors: RawTensor[] = [];
    const direct = new Map<string, Float32Array>();
    for (const [name, code, block, bytes] of [
      ['q4_0', G.Q4_0, 32, 18],
      ['q4_1', G.Q4_1, 32, 20],
      ['q5_0', G.Q5_0, 32, 22],
      ['q5_1', G.Q5_1, 32, 24],
      ['q8_0', G.Q8_0, 32, 34],
      ['q2_k', GK.Q2_K, 256, 84],
      ['q3_k', GK.Q3_K, 256, 110],
      ['q4_k', GK.Q4_K, 256, 144],
      ['q5_k', GK.Q5_K, 256, 176],
      ['q6_k', GK.Q6_K, 256, 210],
      ['q8_k', GK.Q8_K, 256, 292],
    ] as const) {
      const perRow = 2; // blocks per row
      const data = new Uint8Array(rows * perRow * bytes);
      for (let i = 0; i < data.length; i++) data[i] = Math.floor(r() * 256);
      const dv = new DataView(data.buffer);
      for (let k = 0; k < rows * perRow; k++) {
        // sane scales: f16 at the ggml positions (f32 for Q8_K)
        const p = k * bytes;
        const at =
          block === 32
            ? [0, 2]
            : ({ 84: [80, 82], 110: [108], 144: [0, 2], 176: [0, 2], 210: [208], 292: [] }[bytes] ??
              []);
        if (block === 32 && (name === 'q4_0' || name === 'q5_0' || name === 'q8_0')) at.pop();
        for (const a of at) dv.setUint16(p + a, floatToHalf((r() - 0.5) * 0.1), true);
        if (name === 'q8_k') dv.setFloat32(p, 0.01, true);
      }
      tensors.push({ name, ne: [perRow * block, rows], type: code, data });
      const want = new Float32Array(rows * perRow * block);
      if (block === 32) want.set(dequantizeAll(name as QuantType, data, want.length));
      else dequantizeK(name as KQuantType, data, want);
      direct.set(name, want);
    }
    const p = save('blocks.gguf', ggufFile([kvStr('general.architecture', 'blocks')], tensors));
    withCk(p, (c) => {
      for (const [name, want] of direct) {
        const t = c.read(name);
        const block = name.endsWith('_k') ? 256 : 32;
        assert.deepEqual(t.shape, [rows, 2 * block], name);
        assert.deepEqual(t.data, want, name);
      }
    });
  });

  test(
    'Q5_0 / Q5_1 blocks of a real rwkv.cpp file decode the same in GGUF',
    needsShared('models/rwkvcpp'),
    () => {
      for (const t of ['Q5_0', 'Q5_1'] as const) {
        const rc = openRwkvCpp(fixture(`7v0-834K-${t}`));
        try {
          // Raw blocks of ffn.key (quantized, [256, 64]) copied into a GGUF tensor as is.
          const e = rc.tensors.get('blocks.3.ffn.key.weight')!;
          const raw = readFileSync(fixture(`7v0-834K-${t}`));
          const bytes = findTensorBytes(raw, 'blocks.3.ffn.key.weight', e.byteLength);
          const p = save(
            `rc-${t}.gguf`,
            ggufFile(
              [kvStr('general.architecture', 'x')],
              [{ name: 'k', ne: [64, 256], type: t === 'Q5_0' ? G.Q5_0 : G.Q5_1, data: bytes }],
            ),
          );
          withCk(p, (c) =>
            assert.deepEqual(c.read('k').data, rc.read('blocks.3.ffn.key.weight').data),
          );
        } finally {
          rc.close();
        }
      }
    },
  );
});

/** The data bytes of a tensor in an rwkv.cpp file (after its key). */
function findTensorBytes(file: Buffer, key: string, byteLength: number): Uint8Array {
  const at = file.indexOf(Buffer.from(key)) + Buffer.byteLength(key);
  return new Uint8Array(file.subarray(at, at + byteLength));
}

describe('ggml reference quantizers', () => {
  test(
    'Q5_0 / Q5_1 blocks equal the real rwkv.cpp files (quantize_row_q5_*_ref)',
    needsShared('models/rwkvcpp'),
    () => {
      const ref = openRwkvCpp(fixture('4v0-660K-FP32'));
      try {
        for (const t of ['q5_0', 'q5_1'] as const) {
          const file = readFileSync(fixture(`4v0-660K-${t.toUpperCase()}`));
          const q = openRwkvCpp(fixture(`4v0-660K-${t.toUpperCase()}`));
          try {
            let n = 0;
            for (const [name, e] of q.tensors) {
              if (e.dtype !== t) continue;
              const want = findTensorBytes(file, name, e.byteLength);
              assert.deepEqual(quantize(t, ref.read(name).data), want, `${t} ${name}`);
              n++;
            }
            assert.equal(n, 28);
          } finally {
            q.close();
          }
        }
      } finally {
        ref.close();
      }
    },
  );

  test('Q8_0, Q4_0, Q4_1 on hand blocks', () => {
    const x = Float32Array.from({ length: 32 }, (_, i) => i - 10); // −10 … 21
    // Q8_0: d = amax/127 = 21/127; q = round(x·127/21), halves away from zero
    const q8 = quantize('q8_0', x);
    assert.equal(
      halfToFloat(q8[0] | (q8[1] << 8)),
      halfToFloat(floatToHalf(Math.fround(21 / 127))),
    );
    assert.equal(i8(q8[2 + 31]), 127);
    assert.equal(i8(q8[2]), -60); // −10·127/21 = −60.48
    assert.equal(i8(q8[2 + 10]), 0);
    // Q4_0: max magnitude 21 (positive) → d = 21/−8, values map to 8 − x/ (21/8)
    const q4 = quantize('q4_0', x);
    const d4 = halfToFloat(q4[0] | (q4[1] << 8));
    assert.equal(d4, halfToFloat(floatToHalf(-21 / 8)));
    assert.equal(q4[2 + 15] >> 4, 0, 'element 31 (21) → level 0: (0 − 8)·d = 21');
    assert.equal(
      q4[2] & 15,
      Math.min(15, Math.trunc(Math.fround(-10 * (1 / Math.fround(-21 / 8)) + 8.5))),
    );
    // Q4_1: d = (max − min)/15 = 31/15, m = −10; level = ⌊(x + 10)/d + 0.5⌋
    const q41 = quantize('q4_1', x);
    assert.equal(halfToFloat(q41[2] | (q41[3] << 8)), -10);
    assert.equal(q41[4] & 15, 0);
    assert.equal(q41[4 + 15] >> 4, 15);
    // every type: dequantized within the block's step (plus f16 rounding of the scale)
    const r = rng(3);
    const y = Float32Array.from({ length: 32 * 64 }, () => (r() - 0.5) * 4);
    for (const t of ['q4_0', 'q4_1', 'q5_0', 'q5_1', 'q8_0'] as const) {
      const back = dequantizeAll(t, quantize(t, y), y.length);
      const step = { q4_0: 4 / 7, q4_1: 4 / 15, q5_0: 4 / 15, q5_1: 4 / 31, q8_0: 4 / 127 }[t];
      for (let i = 0; i < y.length; i++)
        assert.ok(Math.abs(back[i] - y[i]) <= step * 1.01, `${t} ${i}`);
      assert.equal(quantize(t, y).length, 64 * BLOCK_BYTES[t]);
    }
  });
});

// ---- RWKV layouts ----

type Canon = Map<string, { shape: number[]; data: Float32Array }>;

function canonical(path: string): Canon {
  const c = openRwkvCpp(path);
  try {
    return new Map(
      [...c.tensors.values()].map((e) => [
        e.name,
        { shape: [...e.shape], data: c.read(e.name).data },
      ]),
    );
  } finally {
    c.close();
  }
}

const toWrite = (m: Canon): TensorToWrite[] =>
  [...m].map(([name, t]) => ({ name, shape: t.shape, data: t.data }));

function transposeT(x: Float32Array, a: number, b: number): Float32Array {
  const out = new Float32Array(a * b);
  for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) out[j * a + i] = x[i * b + j];
  return out;
}

/**
 * llama.cpp's converter, step by step, on Hugging Face-named tensors (what
 * convert_hf_to_gguf.py reads): Rwkv6Model.modify_tensors / Rwkv7Model.modify_tensors
 * and the names of tensor_mapping.py. Returns GGUF tensors as (name, PyTorch shape, f32).
 */
function llamaCppConvert(arch: 'rwkv6' | 'rwkv7', m: Canon, rescale: number, fla: boolean) {
  const out: { name: string; shape: number[]; data: Float32Array }[] = [];
  const C = m.get('emb.weight')!.shape[1];
  const squeeze = (s: number[]) =>
    s.filter((d) => d !== 1).length ? s.filter((d) => d !== 1) : [1];
  const nLayer =
    Math.max(...[...m.keys()].map((k) => Number(/^blocks\.(\d+)/.exec(k)?.[1] ?? -1))) + 1;
  const push = (name: string, shape: number[], data: Float32Array) =>
    out.push({ name, shape, data });
  const g = (k: string) => m.get(k)!;
  push('token_embd.weight', g('emb.weight').shape, g('emb.weight').data);
  push('token_embd_norm.weight', [C], g('blocks.0.ln0.weight').data);
  push('token_embd_norm.bias', [C], g('blocks.0.ln0.bias').data);
  for (let L = 0; L < nLayer; L++) {
    const b = (k: string) => g(`blocks.${L}.${k}`);
    const blk = `blk.${L}.`;
    for (const w of ['weight', 'bias']) {
      push(`${blk}attn_norm.${w}`, [C], b(`ln1.${w}`).data);
      push(`${blk}attn_norm_2.${w}`, [C], b(`ln2.${w}`).data);
      push(`${blk}time_mix_ln.${w}`, [C], b(`att.ln_x.${w}`).data);
    }
    if (arch === 'rwkv6') {
      // "if new_name.endswith('time_mix_w1.weight') or decay_w1 or decay_w2: transpose(0, 1)"
      const w1 = b('att.time_maa_w1');
      push(
        `${blk}time_mix_w1.weight`,
        [w1.shape[1], w1.shape[0]],
        transposeT(w1.data, w1.shape[0], w1.shape[1]),
      );
      for (const k of ['w1', 'w2']) {
        const t = b(`att.time_decay_${k}`);
        push(
          `${blk}time_mix_decay_${k}.weight`,
          [t.shape[1], t.shape[0]],
          transposeT(t.data, t.shape[0], t.shape[1]),
        );
      }
      // "time_mix_w2: permute(0, 2, 1)"
      const w2 = b('att.time_maa_w2');
      const [n, d, c] = w2.shape;
      const p = new Float32Array(w2.data.length);
      for (let t = 0; t < n; t++)
        p.set(transposeT(w2.data.subarray(t * d * c, (t + 1) * d * c), d, c), t * d * c);
      push(`${blk}time_mix_w2.weight`, [n, c, d], p);
      // "time_mix_decay or lerp: squeeze()"; lerp w,k,v,r,g stacked (5, 1, 1, C)
      push(
        `${blk}time_mix_decay.weight`,
        squeeze(b('att.time_decay').shape),
        b('att.time_decay').data,
      );
      push(`${blk}time_mix_lerp_x.weight`, [C], b('att.time_maa_x').data);
      const fused = new Float32Array(5 * C);
      ['w', 'k', 'v', 'r', 'g'].forEach((x, i) => {
        fused.set(b(`att.time_maa_${x}`).data, i * C);
      });
      push(`${blk}time_mix_lerp_fused.weight`, [5, 1, 1, C], fused);
      push(`${blk}time_mix_first.weight`, b('att.time_faaaa').shape, b('att.time_faaaa').data);
      // "rescale: time_mix_output and channel_mix_value div_(2 ** (bid // rescale_every))"
      const div = rescale > 0 ? 2 ** Math.floor(L / rescale) : 1;
      for (const k of ['key', 'value', 'receptance', 'gate', 'output']) {
        const t = b(`att.${k}.weight`);
        push(
          `${blk}time_mix_${k}.weight`,
          t.shape,
          k === 'output' ? t.data.map((v) => v / div) : t.data,
        );
      }
      push(`${blk}channel_mix_lerp_k.weight`, [C], b('ffn.time_maa_k').data);
      push(`${blk}channel_mix_lerp_r.weight`, [C], b('ffn.time_maa_r').data);
      for (const k of ['key', 'receptance', 'value']) {
        const t = b(`ffn.${k}.weight`);
        push(
          `${blk}channel_mix_${k}.weight`,
          t.shape,
          k === 'value' ? t.data.map((v) => v / div) : t.data,
        );
      }
    } else {
      // x_r … x_g: torch.stack of (1,1,C) → (6, 1, 1, C)
      const fused = new Float32Array(6 * C);
      ['r', 'w', 'k', 'v', 'a', 'g'].forEach((x, i) => {
        fused.set(b(`att.x_${x}`).data, i * C);
      });
      push(`${blk}time_mix_lerp_fused.weight`, [6, 1, 1, C], fused);
      for (const x of ['w', 'a', 'v']) {
        if (x === 'v' && L === 0) continue;
        push(`${blk}time_mix_${x}0.weight`, [C], b(`att.${x}0`).data);
      }
      for (const x of ['w', 'a', 'v', 'g']) {
        if (x === 'v' && L === 0) continue;
        for (const k of ['1', '2']) {
          // BlinkDL-layout HF: lora_needs_transpose → transpose(0, 1); fla's nn.Linear
          // weights arrive already as (D, C) / (C, D) and are kept
          const t = b(`att.${x}${k}`);
          const hf = fla ? transposeT(t.data, t.shape[0], t.shape[1]) : t.data;
          const hfShape = fla ? [t.shape[1], t.shape[0]] : t.shape;
          const data = fla ? hf : transposeT(hf, hfShape[0], hfShape[1]);
          push(`${blk}time_mix_${x}${k}.weight`, [t.shape[1], t.shape[0]], data);
        }
      }
      // "if bid == 0 and time_mix_a in new_name: yield a copy as time_mix_v"
      if (L === 0) {
        push(`${blk}time_mix_v0.weight`, [C], b('att.a0').data);
        for (const k of ['1', '2']) {
          const t = b(`att.a${k}`);
          push(
            `${blk}time_mix_v${k}.weight`,
            [t.shape[1], t.shape[0]],
            transposeT(t.data, t.shape[0], t.shape[1]),
          );
        }
      }
      push(`${blk}time_mix_k_k.weight`, [C], b('att.k_k').data);
      push(`${blk}time_mix_k_a.weight`, [C], b('att.k_a').data);
      push(`${blk}time_mix_r_k.weight`, [C], b('att.r_k').data); // "r_k: flatten()"
      for (const k of ['key', 'value', 'receptance', 'output']) {
        push(`${blk}time_mix_${k}.weight`, b(`att.${k}.weight`).shape, b(`att.${k}.weight`).data);
      }
      push(`${blk}channel_mix_lerp_k.weight`, [C], b('ffn.x_k').data);
      for (const k of ['key', 'value'])
        push(
          `${blk}channel_mix_${k}.weight`,
          b(`ffn.${k}.weight`).shape,
          b(`ffn.${k}.weight`).data,
        );
    }
  }
  push('output_norm.weight', [C], g('ln_out.weight').data);
  push('output_norm.bias', [C], g('ln_out.bias').data);
  push('output.weight', g('head.weight').shape, g('head.weight').data);
  return out;
}

function llamaCppFile(arch: 'rwkv6' | 'rwkv7', m: Canon, rescale: number, fla = false): string {
  const tensors = llamaCppConvert(arch, m, rescale, fla);
  const headSize =
    arch === 'rwkv6'
      ? m.get('blocks.0.att.time_faaaa')!.shape[1]
      : m.get('blocks.0.att.r_k')!.shape[1];
  const kv = [
    kvStr('general.architecture', arch),
    kvU32(`${arch}.context_length`, 1048576),
    kvU32(`${arch}.block_count`, 12),
    kvU32(`${arch}.wkv.head_size`, headSize),
    kvU32('general.file_type', 0),
  ];
  if (arch === 'rwkv6') kv.push(kvU32('rwkv6.rescale_every_n_layers', rescale));
  const bytes = ggufFile(
    kv,
    tensors.map((t) => ({
      name: t.name,
      ne: [...t.shape].reverse(),
      type: G.F32,
      data: f32Bytes(t.data),
    })),
  );
  return save(`llamacpp-${arch}-${fla ? 'fla' : 'hf'}.gguf`, bytes);
}

function assertSame(c: Checkpoint, want: Canon, label: string, tol?: (name: string) => number) {
  assert.deepEqual([...c.tensors.keys()].sort(), [...want.keys()].sort(), `${label}: names`);
  for (const [name, t] of want) {
    const got = c.read(name);
    assert.deepEqual(got.shape, t.shape, `${label}: ${name} shape`);
    const atol = tol?.(name) ?? 0;
    if (atol === 0) assert.deepEqual(got.data, t.data, `${label}: ${name}`);
    else assertClose(got.data, t.data, { atol, rtol: atol, label: `${label}: ${name}` });
  }
}

describe('RWKV-6/7 GGUF layout', needsShared('models/rwkvcpp'), () => {
  test('a file assembled as llama.cpp converts (RWKV-6, rescale every 2) reads back canonical', () => {
    const m = canonical(fixture('6v0-3m-Q5_1'));
    const p = llamaCppFile('rwkv6', m, 2);
    withCk(p, (c) => {
      assertSame(c, m, 'rwkv6');
      assert.equal(c.meta.rwkvVersion, '6');
      assert.equal(c.meta.rescale_every, 2);
      assert.equal(c.meta.head_size, 8);
      assert.equal(c.meta.n_layer, 12);
      assert.equal(c.meta.context_length, 1048576);
      assert.equal(c.meta.file_type_name, 'ALL_F32');
      const e = c.tensors.get('blocks.5.att.time_maa_w')!;
      assert.equal(e.fileName, 'blk.5.time_mix_lerp_fused.weight');
      assert.equal(c.tensors.get('blocks.5.att.time_maa_w2')?.fileName, 'blk.5.time_mix_w2.weight');
    });
  });

  for (const fla of [false, true]) {
    test(`a file assembled as llama.cpp converts RWKV-7 from ${fla ? "fla's" : 'BlinkDL-layout'} LoRAs reads back canonical`, () => {
      const m = canonical(fixture('7v0-834K-FP32'));
      const p = llamaCppFile('rwkv7', m, 0, fla);
      withCk(p, (c) => {
        assertSame(c, m, 'rwkv7');
        assert.ok(!c.tensors.has('blocks.0.att.v0'), 'layer 0 copies of a0..a2 are dropped');
        assert.deepEqual(c.tensors.get('blocks.3.att.r_k')?.shape, [1, 64]);
        assert.equal(c.meta.rwkvVersion, '7');
      });
    });
  }

  test('the writer: f32 exact (rescaled RWKV-6), f16 = f16 rounding, q8_0 within its step', () => {
    for (const [name, arch] of [
      ['6v0-3m-Q5_0', 'rwkv6'],
      ['7v0-834K-FP16', 'rwkv7'],
    ] as const) {
      const m = canonical(fixture(name));
      const p32 = join(dir, `${name}.f32.gguf`);
      writeGguf(p32, toWrite(m), { architecture: arch, rescaleEvery: arch === 'rwkv6' ? 3 : 0 });
      withCk(p32, (c) => assertSame(c, m, `${name} f32`));
      if (arch === 'rwkv6') continue; // f16 and q8_0 on the smaller RWKV-7 only (time)
      const p16 = join(dir, `${name}.f16.gguf`);
      writeGguf(p16, toWrite(m), { architecture: arch, dtype: 'f16' });
      withCk(p16, (c) => {
        for (const [n, t] of m) {
          const e = c.tensors.get(n)!;
          const want = e.dtype === 'f16' ? t.data.map((v) => halfToFloat(floatToHalf(v))) : t.data;
          assert.deepEqual(c.read(n).data, want, n);
        }
        assert.equal(c.tensors.get('blocks.1.att.key.weight')?.dtype, 'f16');
        assert.equal(c.tensors.get('blocks.1.ln1.weight')?.dtype, 'f32');
      });
      const pq = join(dir, `${name}.q8.gguf`);
      writeGguf(pq, toWrite(m), { architecture: arch, dtype: 'q8_0' });
      withCk(pq, (c) => {
        for (const [n, t] of m) {
          const e = c.tensors.get(n)!;
          if (e.dtype !== 'q8_0') {
            assert.ok(e.dtype === 'f32' || e.dtype === 'f16', `${n} ${e.dtype}`);
            continue;
          }
          // Q8_0: |x − y| ≤ d/2 + 127·(f16 rounding of d ≤ d·2^-11), d = amax/127 per block
          const amax = t.data.reduce((a, v) => Math.max(a, Math.abs(v)), 0);
          assertClose(c.read(n).data, t.data, { atol: (amax / 127) * 0.57, label: n });
        }
        assert.equal(c.meta.file_type_name, 'MOSTLY_Q8_0');
        // never quantized by llama.cpp: LoRAs and fused lerps
        assert.equal(c.tensors.get('blocks.2.att.w1')?.dtype, 'f32');
        assert.equal(c.tensors.get('blocks.2.att.a1')?.dtype, 'f16');
        assert.equal(c.tensors.get('blocks.2.att.x_g')?.dtype, 'f32');
      });
    }
  });

  test('writer and independent assembly agree tensor for tensor (names, ggml shapes)', () => {
    const m = canonical(fixture('7v0-834K-FP32'));
    const ours = join(dir, 'ours7.gguf');
    writeGguf(ours, toWrite(m), { architecture: 'rwkv7' });
    const theirs = llamaCppConvert('rwkv7', m, 0, false);
    const f = new FileSource(ours);
    try {
      const h = readGgufHeader(f);
      const byName = new Map(h.tensors.map((t) => [t.name, t]));
      assert.equal(h.tensors.length, theirs.length);
      for (const t of theirs) {
        const o = byName.get(t.name);
        assert.ok(o, t.name);
        assert.deepEqual(o.shape, t.shape, t.name);
      }
      assert.equal(h.kv.get('rwkv7.attention.decay_lora_rank')?.value, 32);
    } finally {
      f.close();
    }
  });

  test('v5 has no llama.cpp architecture: written under another name it keeps BlinkDL names', () => {
    const m = canonical(fixture('5v2-730K-FP32'));
    const p = join(dir, 'v5.gguf');
    writeGguf(p, toWrite(m), { architecture: 'rwkv5-blinkdl' });
    withCk(p, (c) => {
      assert.equal(c.meta.architecture, 'rwkv5-blinkdl');
      assertSame(c, m, 'v5 as-is');
    });
  });
});

// ---- tokenizer ----

/** Python's repr(bytes)[2:-1], as llama.cpp's converter stores World tokens. */
function pyBytesRepr(b: Uint8Array): string {
  const hasSingle = b.includes(0x27);
  const hasDouble = b.includes(0x22);
  const quote = hasSingle && !hasDouble ? 0x22 : 0x27;
  let s = '';
  for (const c of b) {
    if (c === 0x5c) s += '\\\\';
    else if (c === quote) s += `\\${String.fromCharCode(c)}`;
    else if (c === 9) s += '\\t';
    else if (c === 10) s += '\\n';
    else if (c === 13) s += '\\r';
    else if (c < 0x20 || c >= 0x7f) s += `\\x${c.toString(16).padStart(2, '0')}`;
    else s += String.fromCharCode(c);
  }
  return s;
}

describe('GGUF World tokenizer', needsShared('tokenizers/rwkv_vocab_v20230424.txt'), () => {
  test('tokens stored as llama.cpp does build the same World tokenizer', () => {
    const vocabPath = shared('tokenizers/rwkv_vocab_v20230424.txt');
    const ref = WorldTokenizer.fromFile(vocabPath);
    const tokens = ['<s>'];
    const types = [3];
    for (let id = 1; id <= 65529; id++) {
      tokens.push(pyBytesRepr(ref.decodeBytes([id])));
      types.push(1);
    }
    while (tokens.length < 65536) {
      tokens.push(`[PAD${tokens.length}]`);
      types.push(5);
    }
    const kv = [
      kvStr('general.architecture', 'rwkv7'),
      kvStr('tokenizer.ggml.model', 'rwkv'),
      (b: Bytes) => {
        b.str('tokenizer.ggml.tokens').u32(T.arr).u32(T.str).u64(tokens.length);
        for (const t of tokens) b.str(t);
      },
      (b: Bytes) => {
        b.str('tokenizer.ggml.token_type').u32(T.arr).u32(T.i32).u64(types.length);
        for (const t of types) b.i32(t);
      },
    ];
    const p = save('tok.gguf', ggufFile(kv, []));
    const tok = loadTokenizer(p);
    assert.equal(tok.kind, 'world');
    assert.equal(tok.vocabSize, 65536);
    for (const text of [
      '\nThe quick brown fox',
      'it\'s "quoted" \\ back\tslash',
      '你好，世界 — ok',
      '\r\n\x00\x7f',
    ]) {
      assert.deepEqual(tok.encode(text), ref.encode(text), text);
    }
    assert.equal(tok.prefixId, ref.prefixId);
    // the model's own tokenizer when none is given
    const fromModel = tokenizerForModel({ modelPath: p, vocabSize: 65536 });
    assert.deepEqual(fromModel.encode('Hello'), ref.encode('Hello'));
    // meta keeps the list for later steps
    const f = openGguf(p);
    try {
      assert.equal(f.meta.tokenizer_model, 'rwkv');
      assert.equal(f.meta.vocab_size, 65536);
      assert.equal(
        (f.meta.tokenizer as { tokens: string[] }).tokens[261],
        pyBytesRepr(ref.decodeBytes([261])),
      );
    } finally {
      f.close();
    }
  });

  test('a GGUF with another tokenizer is refused with a hint', () => {
    const p = save('gpt2tok.gguf', ggufFile([kvStr('tokenizer.ggml.model', 'gpt2')], []));
    assert.throws(
      () => loadTokenizer(p),
      (e: unknown) => e instanceof UserError && /'gpt2' tokenizer/.test(e.message) && !!e.hint,
    );
    // as a model, it falls back to the tokenizer files beside it (none here)
    assert.throws(
      () => tokenizerForModel({ modelPath: p, vocabSize: 50257 }),
      (e: unknown) => e instanceof UserError && /no tokenizer found next to/.test(e.message),
    );
  });
});

describe('GGUF refusals are one-line FormatErrors naming the file', () => {
  const cases: [string, () => Buffer, RegExp][] = [
    ['v1', () => ggufFile([], [], { version: 1 }), /version 1/],
    [
      'big-endian',
      () => {
        const b = ggufFile([], []);
        b.writeUInt32BE(3, 4);
        return b;
      },
      /big-endian/,
    ],
    ['duplicate key', () => ggufFile([kvU32('a', 1), kvU32('a', 2)], []), /'a' appears twice/],
    [
      'duplicate tensor',
      () =>
        ggufFile(
          [],
          [
            { name: 't', ne: [1], type: G.F32, data: f32Bytes([1]) },
            { name: 't', ne: [1], type: G.F32, data: f32Bytes([1]) },
          ],
        ),
      /'t' appears twice/,
    ],
    ['bad alignment', () => ggufFile([kvU32('general.alignment', 24)], []), /power of two/],
    [
      'misaligned offset',
      () => ggufFile([], [{ name: 't', ne: [1], type: G.F32, data: f32Bytes([1]), offset: 4 }]),
      /multiple of the alignment/,
    ],
    [
      'past EOF',
      () => ggufFile([], [{ name: 't', ne: [1000], type: G.F32, data: f32Bytes([1]) }]),
      /needs bytes|more than the file/,
    ],
    [
      'overlap',
      () =>
        ggufFile(
          [],
          [
            { name: 'a', ne: [16], type: G.F32, data: new Uint8Array(64) },
            { name: 'b', ne: [8], type: G.F32, data: new Uint8Array(32), offset: 32 },
          ],
        ),
      /overlap/,
    ],
    [
      'row not whole blocks',
      () => ggufFile([], [{ name: 'q', ne: [48], type: G.Q8_0, data: new Uint8Array(51) }]),
      /multiple of Q8_0/,
    ],
    [
      'unknown type',
      () => ggufFile([], [{ name: 'q', ne: [1], type: 4, data: new Uint8Array(4) }]),
      /unknown ggml type 4/,
    ],
    [
      'too many dims',
      () => ggufFile([], [{ name: 'q', ne: [1, 1, 1, 1, 1], type: 0, data: new Uint8Array(4) }]),
      /n_dims = 5/,
    ],
    [
      'negative dim',
      () => ggufFile([], [{ name: 'q', ne: [-1], type: 0, data: new Uint8Array(4) }]),
      /dimension 0 is -1/,
    ],
    ['huge kv count', () => ggufFile([], [], { nKv: 2 ** 40 }), /metadata count/],
    [
      'huge array',
      () =>
        ggufFile(
          [
            (b) =>
              b
                .str('a')
                .u32(T.arr)
                .u32(T.u32)
                .u64(2n ** 50n),
          ],
          [],
        ),
      /cannot fit/,
    ],
    [
      'bad value type',
      () => ggufFile([(b) => b.str('a').u32(13).u32(0)], []),
      /unknown value type 13/,
    ],
    [
      'rwkv7 without head size',
      () =>
        ggufFile(
          [kvStr('general.architecture', 'rwkv7')],
          [
            { name: 'token_embd.weight', ne: [4, 2], type: 0, data: new Uint8Array(32) },
            { name: 'blk.0.time_mix_r_k.weight', ne: [4], type: 0, data: new Uint8Array(16) },
          ],
        ),
      /head_size/,
    ],
  ];
  for (const [label, make, re] of cases) {
    test(label, () => {
      const p = save(`bad-${label.replace(/ /g, '-')}.gguf`, make());
      assert.throws(
        () => {
          const c = openGguf(p);
          c.close();
        },
        (e: unknown) =>
          e instanceof FormatError &&
          e.message.startsWith(p) &&
          re.test(e.message.slice(p.length)) &&
          !e.message.includes('\n'),
      );
    });
  }
});
