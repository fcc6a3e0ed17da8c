/**
 * Seeded mutations of rwkv.cpp and safetensors files: every outcome must be a valid read
 * or a UserError / FormatError naming the file — never another exception or a hang.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { FormatError, UserError } from '../../../src/errors.ts';
import type { Checkpoint } from '../../../src/io/checkpoint.ts';
import { BLOCK_BYTES } from '../../../src/io/quant.ts';
import { openRwkvCpp, writeRwkvCpp } from '../../../src/io/rwkvcpp.ts';
import {
  openSafetensors,
  type TensorToWrite,
  writeSafetensors,
} from '../../../src/io/safetensors.ts';
import { numel } from '../../../src/tensor/tensor.ts';
import { rng } from '../../../src/util/random.ts';
import { tmpDir } from '../../helpers/shared.ts';

const dir = tmpDir('actsparse-fuzz-');
const outcomes = { ok: 0, error: 0 };

/** Opens `bytes` as a file and reads every tensor; only clean outcomes are allowed. */
function attempt(
  label: string,
  bytes: Uint8Array,
  open: (p: string) => Checkpoint,
  name = 'f.bin',
): void {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  let c: Checkpoint | undefined;
  try {
    c = open(path);
    for (const [n, e] of c.tensors) {
      const t = c.read(n);
      assert.equal(t.data.length, numel(e.shape), `${label}: ${n} has the size of its shape`);
    }
    outcomes.ok++;
  } catch (e) {
    if (!(e instanceof UserError)) {
      assert.fail(
        `${label}: ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}\n${(e as Error)?.stack}`,
      );
    }
    if (e instanceof FormatError)
      assert.ok(e.message.startsWith(dir), `${label}: error names the file: ${e.message}`);
    assert.ok(!e.message.includes('\n'), `${label}: message is not one line: ${e.message}`);
    outcomes.error++;
  } finally {
    c?.close();
  }
}

// ---- rwkv.cpp ----

interface RawTensor {
  key: string;
  code: number;
  ggmlShape: number[];
  bytes: Uint8Array;
}

/** Assembles an rwkv.cpp file from raw parts (no validation: the fuzzer's own builder). */
function build(header: number[], tensors: RawTensor[]): Uint8Array {
  const parts: Buffer[] = [Buffer.from(Int32Array.from(header).buffer)];
  for (const t of tensors) {
    const key = Buffer.from(t.key);
    parts.push(
      Buffer.from(Int32Array.from([t.ggmlShape.length, key.length, t.code, ...t.ggmlShape]).buffer),
      key,
      Buffer.from(t.bytes),
    );
  }
  return new Uint8Array(Buffer.concat(parts));
}

/** Byte offsets of each tensor header in a well-formed file. */
function headerOffsets(b: Uint8Array): number[] {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const out: number[] = [];
  let p = 24;
  while (p < b.length) {
    out.push(p);
    const nd = dv.getInt32(p, true);
    const kl = dv.getInt32(p + 4, true);
    const code = dv.getInt32(p + 8, true);
    const shape = Array.from({ length: nd }, (_, i) => dv.getInt32(p + 12 + 4 * i, true));
    const n = numel(shape);
    const size =
      code === 0
        ? 4 * n
        : code === 1
          ? 2 * n
          : (n / 32) * [0, 0, 18, 20, 0, 0, 0, 22, 24, 34][code];
    p += 12 + 4 * nd + kl + size;
  }
  return out;
}

/** A tiny RWKV-4 (C = 32, vocab 32, 1 layer), written by writeRwkvCpp in f16. */
function v4Base(): Uint8Array {
  const C = 32;
  const r = rng(7);
  const t = (name: string, shape: number[]) => ({
    name,
    shape,
    data: Float32Array.from({ length: numel(shape) }, () => r() - 0.5),
  });
  const list: TensorToWrite[] = [
    t('emb.weight', [32, C]),
    t('blocks.0.ln0.weight', [C]),
    t('blocks.0.ln0.bias', [C]),
  ];
  for (const n of [
    'ln1.weight',
    'ln1.bias',
    'ln2.weight',
    'ln2.bias',
    'att.time_decay',
    'att.time_first',
  ])
    list.push(t(`blocks.0.${n}`, [C]));
  for (const n of [
    'att.time_mix_k',
    'att.time_mix_v',
    'att.time_mix_r',
    'ffn.time_mix_k',
    'ffn.time_mix_r',
  ])
    list.push(t(`blocks.0.${n}`, [1, 1, C]));
  for (const n of ['key', 'value', 'receptance', 'output'])
    list.push(t(`blocks.0.att.${n}.weight`, [C, C]));
  list.push(
    t('blocks.0.ffn.key.weight', [C, C]),
    t('blocks.0.ffn.value.weight', [C, C]),
    t('ln_out.weight', [C]),
    t('head.weight', [32, C]),
  );
  const p = join(dir, 'base.bin');
  writeRwkvCpp(p, { nVocab: 32, nEmbed: C, nLayer: 1 }, list, 'f16');
  return new Uint8Array(readFileSync(p));
}

/** The same layout with its matrices in every quantized type, blocks of random bytes. */
function quantBase(): Uint8Array {
  const r = rng(11);
  const codes = [2, 3, 7, 8, 9];
  const names = ['att.key', 'att.value', 'att.receptance', 'att.output', 'ffn.key', 'ffn.value'];
  const tensors: RawTensor[] = [
    {
      key: 'emb.weight',
      code: 0,
      ggmlShape: [32, 32],
      bytes: new Uint8Array(Float32Array.from({ length: 1024 }, r).buffer),
    },
    { key: 'blocks.0.att.time_first', code: 0, ggmlShape: [32], bytes: new Uint8Array(128) },
    {
      key: 'blocks.0.att.time_decay',
      code: 0,
      ggmlShape: [32],
      bytes: new Uint8Array(new Float32Array(32).fill(-0.5).buffer),
    },
  ];
  names.forEach((n, i) => {
    const code = codes[i % codes.length];
    const bb = [0, 0, 18, 20, 0, 0, 0, 22, 24, 34][code];
    const bytes = Uint8Array.from({ length: 32 * bb }, () => Math.floor(r() * 256));
    // keep the f16 scales finite: clear the top exponent bit
    for (let b = 0; b < 32; b++) bytes[b * bb + 1] &= 0x3f;
    tensors.push({ key: `blocks.0.${n}.weight`, code, ggmlShape: [32, 32], bytes });
  });
  return build([0x67676d66, 101, 32, 32, 1, 7], tensors);
}

describe('fuzz: rwkv.cpp', () => {
  const bases = { f16: v4Base(), quant: quantBase() };

  test('the base files read cleanly', () => {
    for (const [name, b] of Object.entries(bases)) {
      const before = outcomes.ok;
      attempt(`base ${name}`, b, openRwkvCpp);
      assert.equal(outcomes.ok, before + 1, `${name} base is valid`);
    }
    const c = openRwkvCpp(join(dir, 'f.bin')); // the quant base, written last
    try {
      const types = new Set([...c.tensors.values()].map((e) => e.dtype));
      for (const t of Object.keys(BLOCK_BYTES))
        assert.ok(types.has(t as never), `quant base has ${t}`);
    } finally {
      c.close();
    }
  });

  test('truncation at every header byte and at random places', { timeout: 20_000 }, () => {
    for (const [name, b] of Object.entries(bases)) {
      const cuts = new Set<number>();
      for (const h of [0, ...headerOffsets(b)]) for (let i = -1; i < 40; i++) cuts.add(h + i);
      const r = rng(1);
      for (let i = 0; i < 60; i++) cuts.add(Math.floor(r() * b.length));
      for (const n of cuts)
        if (n >= 0 && n < b.length)
          attempt(`${name} truncated to ${n}`, b.subarray(0, n), openRwkvCpp);
    }
  });

  test('bit flips in the file and tensor headers', { timeout: 20_000 }, () => {
    for (const [name, b] of Object.entries(bases)) {
      const heads = headerOffsets(b);
      const r = rng(2);
      for (let i = 0; i < 250; i++) {
        const m = new Uint8Array(b);
        // half in the 24-byte file header, half in a tensor header (fields, shape, key)
        const h = heads[Math.floor(r() * heads.length)];
        const pos = i % 2 ? Math.floor(r() * 24) : h + Math.floor(r() * 24);
        const bit = Math.floor(r() * 8);
        m[pos] ^= 1 << bit;
        attempt(`${name} flip byte ${pos} bit ${bit}`, m, openRwkvCpp);
      }
    }
  });

  test('absurd header fields', { timeout: 20_000 }, () => {
    const ints = [
      0,
      -1,
      1,
      3,
      4,
      5,
      6,
      10,
      31,
      33,
      255,
      1025,
      65536,
      2 ** 30,
      2 ** 31 - 1,
      -(2 ** 31),
    ];
    for (const [name, b] of Object.entries(bases)) {
      const heads = headerOffsets(b);
      const r = rng(3);
      for (let i = 0; i < 150; i++) {
        const m = new Uint8Array(b);
        const dv = new DataView(m.buffer);
        const v = ints[Math.floor(r() * ints.length)];
        const h = heads[Math.floor(r() * heads.length)];
        // file header field, or a tensor's n_dims / key_len / dtype / first dims
        const at = i % 3 === 0 ? 4 * Math.floor(r() * 6) : h + 4 * Math.floor(r() * 5);
        dv.setInt32(at, v, true);
        attempt(`${name} int32 at ${at} := ${v}`, m, openRwkvCpp);
      }
    }
  });

  test('garbage in data and trailing bytes', () => {
    const r = rng(4);
    for (const [name, b] of Object.entries(bases)) {
      for (let i = 0; i < 40; i++) {
        const m = new Uint8Array(b);
        const start = 24 + Math.floor(r() * (b.length - 64));
        for (let k = 0; k < 32; k++) m[start + k] = Math.floor(r() * 256);
        attempt(`${name} garbage at ${start}`, m, openRwkvCpp);
      }
      for (const extra of [1, 11, 12, 13, 40]) {
        const m = new Uint8Array(b.length + extra);
        m.set(b);
        attempt(`${name} + ${extra} zero bytes`, m, openRwkvCpp);
      }
    }
  });
});

// ---- safetensors ----

function stBase(): Uint8Array {
  const p = join(dir, 'base.safetensors');
  const r = rng(5);
  const t = (name: string, shape: number[]) => ({
    name,
    shape,
    data: Float32Array.from({ length: numel(shape) }, r),
  });
  writeSafetensors(p, [t('a.weight', [4, 8]), t('a.bias', [8]), t('b', [2, 3, 4]), t('c', [])], {
    dtype: 'f32',
    metadata: { format: 'pt' },
  });
  return new Uint8Array(readFileSync(p));
}

/** A file with the given header object (or raw header text) and `dataBytes` of data. */
function stFile(header: unknown, dataBytes: number): Uint8Array {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return new Uint8Array(Buffer.concat([len, json, Buffer.alloc(dataBytes, 0x3f)]));
}

describe('fuzz: safetensors', () => {
  const base = stBase();
  const headerLen = Number(Buffer.from(base).readBigUInt64LE(0));
  const header = JSON.parse(Buffer.from(base).toString('utf8', 8, 8 + headerLen));
  const dataBytes = base.length - 8 - headerLen;
  const open = (p: string) => openSafetensors(p);

  test('truncation and header-length values', { timeout: 20_000 }, () => {
    const r = rng(6);
    const cuts = new Set<number>();
    for (let i = 0; i < 80; i++) cuts.add(i);
    for (let i = 0; i < 80; i++) cuts.add(Math.floor(r() * base.length));
    for (const n of cuts) attempt(`truncated to ${n}`, base.subarray(0, n), open, 'f.safetensors');
    for (const n of [
      0n,
      1n,
      2n,
      7n,
      BigInt(headerLen - 1),
      BigInt(headerLen + 1),
      BigInt(base.length),
      1n << 40n,
      (1n << 64n) - 1n,
    ]) {
      const m = Buffer.from(base);
      m.writeBigUInt64LE(n);
      attempt(`header length ${n}`, m, open, 'f.safetensors');
    }
  });

  test('bit flips in the JSON header', { timeout: 20_000 }, () => {
    const r = rng(7);
    for (let i = 0; i < 250; i++) {
      const m = new Uint8Array(base);
      const pos = 8 + Math.floor(r() * headerLen);
      m[pos] ^= 1 << Math.floor(r() * 8);
      attempt(`flip at ${pos}`, m, open, 'f.safetensors');
    }
  });

  test('hostile header values', { timeout: 20_000 }, () => {
    const r = rng(8);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
    const dtypes = [
      'F32',
      'F16',
      'BF16',
      'F64',
      'I64',
      'I32',
      'I16',
      'I8',
      'U8',
      'BOOL',
      'F8_E4M3',
      'f32',
      '',
      1,
      null,
      ['F32'],
    ];
    const shapes = [
      [],
      [0],
      [-1],
      [1.5],
      ['4'],
      [2 ** 53],
      [1e308],
      [2 ** 31, 2 ** 31, 0],
      [8, 4],
      [32],
      null,
      'x',
      {},
    ];
    const offsets = (b: number, e: number) => [
      [e, b],
      [-4, e],
      [b, dataBytes + 4],
      [0, e - b],
      [b, e, 0],
      [String(b), e],
      [b + 0.5, e],
      [2 ** 60, 2 ** 60 + e - b],
      null,
      [b, e],
    ];
    const names = Object.keys(header).filter((k) => k !== '__metadata__');
    for (let i = 0; i < 250; i++) {
      const h = structuredClone(header);
      const name = pick(names);
      const entry = h[name];
      const [b, e] = entry.data_offsets;
      switch (i % 5) {
        case 0:
          entry.dtype = pick(dtypes);
          break;
        case 1:
          entry.shape = pick(shapes);
          break;
        case 2:
          entry.data_offsets = pick(offsets(b, e));
          break;
        case 3:
          h[name] = pick([
            null,
            1,
            'x',
            [],
            { dtype: 'F32' },
            { shape: [1], data_offsets: [0, 4] },
          ]);
          break;
        default:
          h.__metadata__ = pick([null, 1, 'x', [], { a: 1 }]);
          h[`extra${i}`] = pick([
            { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
            { dtype: 'U8', shape: [1, 1], data_offsets: [5, 6] },
          ]);
      }
      attempt(`case ${i}: ${JSON.stringify(h[name])}`, stFile(h, dataBytes), open, 'f.safetensors');
    }
    for (const text of [
      '[]',
      'null',
      '1',
      '"x"',
      '{',
      '{"a": }',
      '\u00ff\u00fe',
      `${'['.repeat(100_000)}${']'.repeat(100_000)}`,
      '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": 5}',
    ]) {
      attempt(`header text ${text.slice(0, 20)}`, stFile(text, 16), open, 'f.safetensors');
    }
    // invalid UTF-8 inside the JSON header
    const bad = stFile('{"\u0000": 1}', 0);
    bad[9 + 1] = 0xff;
    attempt('invalid utf-8', bad, open, 'f.safetensors');
  });

  test('overlapping offsets are refused, as the safetensors library does', () => {
    const h = {
      x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
      y: { dtype: 'F32', shape: [1], data_offsets: [4, 8] },
    };
    const b = stFile(h, 8);
    const path = join(dir, 'overlap.safetensors');
    writeFileSync(path, b);
    assert.throws(
      () => openSafetensors(path),
      (e: unknown) =>
        e instanceof FormatError && /overlap/.test(e.message) && !e.message.includes('\n'),
    );
  });

  test('hostile shard indexes', () => {
    const d = tmpDir('actsparse-fuzz-shards-');
    writeFileSync(join(d, 'model-1.safetensors'), base);
    const cases: unknown[] = [
      {},
      { weight_map: null },
      { weight_map: [] },
      { weight_map: {} },
      { weight_map: { 'a.bias': 5 } },
      { weight_map: { 'a.bias': '' } },
      { weight_map: { 'a.bias': '.' } },
      { weight_map: { 'a.bias': '/etc/passwd' } },
      { weight_map: { 'a.bias': '..\\model-1.safetensors' } },
      { weight_map: { 'a.bias': 'model-2.safetensors' } },
      { weight_map: { zzz: 'model-1.safetensors' } },
      { weight_map: { 'a.bias': 'model-1.safetensors' } },
    ];
    for (const [i, idx] of cases.entries()) {
      writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify(idx));
      let c: Checkpoint | undefined;
      try {
        c = openSafetensors(d);
        assert.equal(i, cases.length - 1, `only the last index is valid (case ${i})`);
        assert.equal(c.tensors.size, 4);
      } catch (e) {
        if (!(e instanceof UserError)) assert.fail(`index case ${i}: ${(e as Error).stack}`);
        assert.notEqual(i, cases.length - 1, (e as Error).message);
      } finally {
        c?.close();
      }
    }
  });

  test('both outcomes happened', () => {
    // A fuzzer that only ever errors (or never does) is not testing what it claims.
    assert.ok(outcomes.ok > 50 && outcomes.error > 500, JSON.stringify(outcomes));
  });
});
