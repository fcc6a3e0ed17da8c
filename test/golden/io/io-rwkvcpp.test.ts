import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { FormatError } from '../../../src/errors.ts';
import { floatToHalf, halfToFloat } from '../../../src/io/dtype.ts';
import {
  BLOCK_BYTES,
  dequantize,
  dequantizeAll,
  type QuantType,
  quantizedByteLength,
} from '../../../src/io/quant.ts';
import { isRwkvCpp, openRwkvCpp, writeRwkvCpp } from '../../../src/io/rwkvcpp.ts';
import type { TensorToWrite } from '../../../src/io/safetensors.ts';
import { assertClose } from '../../helpers/assert.ts';
import { needsShared, shared, tmpDir } from '../../helpers/shared.ts';

const dir = 'models/rwkvcpp';
const file = (name: string) => shared(`${dir}/tiny-rwkv-${name}.bin`);

// ---- an independent minimal parser, to check the reader's transforms against raw data ----

interface Raw {
  code: number;
  ggmlShape: number[];
  bytes: Buffer;
}

function rawTensors(path: string): Map<string, Raw> {
  const b = readFileSync(path);
  const out = new Map<string, Raw>();
  let p = 24;
  while (p < b.length) {
    const [nDims, keyLen, code] = [b.readInt32LE(p), b.readInt32LE(p + 4), b.readInt32LE(p + 8)];
    const ggmlShape = Array.from({ length: nDims }, (_, i) => b.readInt32LE(p + 12 + 4 * i));
    p += 12 + 4 * nDims;
    const key = b.toString('utf8', p, p + keyLen);
    p += keyLen;
    const n = ggmlShape.reduce((a, d) => a * d, 1);
    const size =
      code === 0
        ? n * 4
        : code === 1
          ? n * 2
          : (n / 32) * [0, 0, 18, 20, 0, 0, 0, 22, 24, 34][code];
    out.set(key, { code, ggmlShape, bytes: b.subarray(p, p + size) });
    p += size;
  }
  return out;
}

function rawF32(r: Raw): Float32Array {
  assert.equal(r.code, 0);
  return new Float32Array(
    r.bytes.buffer.slice(r.bytes.byteOffset, r.bytes.byteOffset + r.bytes.length),
  );
}

// ---- ggml's reference quantizers (quantize_row_q5_{0,1}_ref), in float32 arithmetic ----

const f = Math.fround;

function quantizeQ5(x: Float32Array, type: 'q5_0' | 'q5_1'): Uint8Array {
  const size = BLOCK_BYTES[type];
  const out = new Uint8Array((x.length / 32) * size);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < x.length / 32; i++) {
    const b = x.subarray(i * 32, i * 32 + 32);
    const p = i * size;
    let q: (v: number) => number;
    if (type === 'q5_0') {
      // d = max / −16 where max is the value of largest magnitude; q = min(31, ⌊x/d + 16.5⌋)
      let amax = 0;
      let max = 0;
      for (const v of b) if (amax < Math.abs(v)) [amax, max] = [Math.abs(v), v];
      const d = f(max / -16);
      const id = d ? f(1 / d) : 0;
      dv.setUint16(p, floatToHalf(d), true);
      q = (v) => Math.min(31, Math.trunc(f(f(v * id) + 16.5)));
    } else {
      // d = (max − min) / 31, m = min; q = ⌊(x − min)/d + 0.5⌋
      let min = Number.POSITIVE_INFINITY;
      let max = Number.NEGATIVE_INFINITY;
      for (const v of b) [min, max] = [Math.min(min, v), Math.max(max, v)];
      const d = f(f(max - min) / 31);
      const id = d ? f(1 / d) : 0;
      dv.setUint16(p, floatToHalf(d), true);
      dv.setUint16(p + 2, floatToHalf(min), true);
      q = (v) => Math.trunc(f(f(f(v - min) * id) + 0.5));
    }
    const qs = p + size - 16;
    let qh = 0;
    for (let j = 0; j < 16; j++) {
      const [a, c] = [q(b[j]), q(b[j + 16])];
      out[qs + j] = (a & 15) | ((c & 15) << 4);
      qh |= ((a >> 4) << j) | ((c >> 4) << (j + 16));
    }
    dv.setUint32(qs - 4, qh >>> 0, true);
  }
  return out;
}

// ---- quant ----

describe('ggml dequantization', () => {
  /** One block: scale(s) as f16 bits, then the rest of the bytes. */
  const block = (type: QuantType, head: number[], rest: number[]) => {
    const b = new Uint8Array(BLOCK_BYTES[type]);
    const dv = new DataView(b.buffer);
    for (let i = 0; i < head.length; i++) dv.setUint16(2 * i, head[i], true);
    b.set(rest, 2 * head.length);
    return b;
  };
  const u32 = (v: number) => [v & 255, (v >>> 8) & 255, (v >>> 16) & 255, v >>> 24];

  test('block sizes', () => {
    assert.deepEqual({ ...BLOCK_BYTES }, { q4_0: 18, q4_1: 20, q5_0: 22, q5_1: 24, q8_0: 34 });
    assert.equal(quantizedByteLength('q5_0', 64), 44);
    assert.equal(quantizedByteLength('q8_0', 96), 102);
    assert.throws(() => quantizedByteLength('q4_0', 48), RangeError);
  });

  test('Q4_0: low nibble is element j, high nibble element j+16, y = (q−8)·d', () => {
    const qs = Array.from({ length: 16 }, (_, j) => j | ((15 - j) << 4));
    const y = dequantizeAll('q4_0', block('q4_0', [0x3800 /* 0.5 */], qs), 32);
    for (let j = 0; j < 16; j++) {
      assert.equal(y[j], (j - 8) * 0.5);
      assert.equal(y[j + 16], (15 - j - 8) * 0.5);
    }
  });

  test('Q4_1: y = q·d + m', () => {
    const qs = Array.from({ length: 16 }, (_, j) => j | ((15 - j) << 4));
    const y = dequantizeAll('q4_1', block('q4_1', [0x3400 /* 0.25 */, 0xbc00 /* −1 */], qs), 32);
    assert.equal(y[0], -1);
    assert.equal(y[15], 15 * 0.25 - 1);
    assert.equal(y[16], 15 * 0.25 - 1);
    assert.equal(y[31], -1);
  });

  test('Q5_0: bit j of qh tops element j, bit j+16 tops element j+16', () => {
    // All low nibbles 0: elements are −16·d unless their fifth bit is set (then 0).
    const d = 0x4000; // 2
    let y = dequantizeAll(
      'q5_0',
      block('q5_0', [d], [...u32(1 << 16), ...new Array(16).fill(0)]),
      32,
    );
    assert.deepEqual(
      Array.from(y),
      Array.from({ length: 32 }, (_, i) => (i === 16 ? 0 : -32)),
    );
    y = dequantizeAll(
      'q5_0',
      block('q5_0', [d], [...u32((1 << 5) | (1 << 31)), ...new Array(16).fill(0)]),
      32,
    );
    assert.deepEqual(
      [0, 4, 5, 6, 20, 31].map((i) => y[i]),
      [-32, -32, 0, -32, -32, 0],
    );
    // Nibbles and the fifth bit together: q = 16 + 15 = 31 → 15·d; q = 15 → −1·d.
    y = dequantizeAll(
      'q5_0',
      block('q5_0', [d], [...u32(0x0000ffff), ...new Array(16).fill(0xff)]),
      32,
    );
    assert.equal(y[3], 30);
    assert.equal(y[19], -2);
  });

  test('Q5_1: y = q·d + m with the fifth bit from qh', () => {
    const y = dequantizeAll(
      'q5_1',
      block(
        'q5_1',
        [0x3800 /* 0.5 */, 0x3c00 /* 1 */],
        [...u32(0xffff0000), ...new Array(16).fill(0x21)],
      ),
      32,
    );
    // element j: q = 1 (low nibble 1, no fifth bit); element j+16: q = 2 + 16
    for (let j = 0; j < 16; j++) {
      assert.equal(y[j], 1 * 0.5 + 1);
      assert.equal(y[j + 16], 18 * 0.5 + 1);
    }
  });

  test('Q8_0: signed bytes times d', () => {
    const qs = Array.from({ length: 32 }, (_, j) => (j === 31 ? 0x80 : (j - 16) & 255));
    const y = dequantizeAll('q8_0', block('q8_0', [0x3000 /* 0.125 */], qs), 32);
    assert.equal(y[0], -2);
    assert.equal(y[16], 0);
    assert.equal(y[30], 14 / 8);
    assert.equal(y[31], -16);
  });

  test('several blocks land at the right output offset', () => {
    const two = new Uint8Array(36);
    two.set(block('q4_0', [0x3c00], new Array(16).fill(0x99)), 0); // q = 9 → 1
    two.set(block('q4_0', [0x4000], new Array(16).fill(0x00)), 18); // q = 0 → −16
    const out = new Float32Array(70).fill(7);
    dequantize('q4_0', two, out, 3, 2);
    assert.equal(out[2], 7);
    assert.equal(out[3], 1);
    assert.equal(out[34], 1);
    assert.equal(out[35], -16);
    assert.equal(out[66], -16);
    assert.equal(out[67], 7);
    assert.throws(() => dequantize('q4_0', two, out, 40, 2), RangeError);
  });
});

// ---- real files ----

describe('rwkv.cpp reader on the tiny RWKV-4', needsShared(dir), () => {
  test('header, names and PyTorch-order shapes of the FP32 file', () => {
    const c = openRwkvCpp(file('4v0-660K-FP32'));
    try {
      assert.equal(c.format, 'rwkvcpp');
      assert.deepEqual(c.meta, {
        version: 100,
        n_vocab: 256,
        n_embed: 128,
        n_layer: 4,
        data_type: 0,
        data_type_name: 'FP32',
        rwkvVersion: '4',
      });
      assert.equal(c.tensors.size, 4 * 18 + 6);
      const shape = (n: string) => c.tensors.get(n)?.shape;
      assert.deepEqual(shape('emb.weight'), [256, 128]);
      assert.deepEqual(shape('head.weight'), [256, 128]);
      assert.deepEqual(shape('blocks.0.ln0.weight'), [128]);
      assert.deepEqual(shape('blocks.0.att.key.weight'), [128, 128]);
      assert.deepEqual(shape('blocks.3.ffn.key.weight'), [256, 128]);
      assert.deepEqual(shape('blocks.3.ffn.value.weight'), [128, 256]);
      assert.deepEqual(shape('blocks.2.att.time_mix_k'), [1, 1, 128]);
      assert.deepEqual(shape('blocks.2.ffn.time_mix_r'), [1, 1, 128]);
      assert.deepEqual(shape('blocks.2.att.time_decay'), [128]);
      assert.deepEqual(shape('blocks.2.att.time_first'), [128]);
      assert.equal(c.tensors.get('emb.weight')?.byteLength, 256 * 128 * 4);
      // ffn.key is stored ggml [128, 256]: row i of the PyTorch [256,128] matrix is contiguous
      const raw = rawTensors(file('4v0-660K-FP32')).get('blocks.0.ffn.key.weight')!;
      assert.deepEqual(raw.ggmlShape, [128, 256]);
      assert.deepEqual(c.read('blocks.0.ffn.key.weight').data, rawF32(raw));
      assert.throws(() => c.read('nope'), /no tensor named 'nope'/);
    } finally {
      c.close();
    }
  });

  test('time_decay is read back as w from the stored −exp(w)', () => {
    const path = file('4v0-660K-FP32');
    const raw = rawTensors(path);
    const c = openRwkvCpp(path);
    try {
      for (let l = 0; l < 4; l++) {
        const name = `blocks.${l}.att.time_decay`;
        const s = rawF32(raw.get(name)!);
        const w = c.read(name).data;
        for (let i = 0; i < s.length; i++) {
          assert.ok(s[i] < 0, 'the converter stores −exp(w)');
          // re-applying the converter's transform gives the stored value back exactly
          assert.equal(f(-Math.exp(w[i])), s[i], `${name}[${i}]`);
        }
        // Only block 0 of this model learned decays (w in −0.085…0.30); the others sit at
        // w ≈ 0 (s ≈ −1, a few float32 steps away).
        const spread = Math.max(...w) - Math.min(...w);
        if (l === 0)
          assert.ok(spread > 0.3 && w.every((v) => Math.abs(v) < 0.5), `spread ${spread}`);
        else assert.ok(w.every((v) => Math.abs(v) < 1e-6));
        // time_first is stored untouched
        assert.deepEqual(
          c.read(`blocks.${l}.att.time_first`).data,
          rawF32(raw.get(`blocks.${l}.att.time_first`)!),
        );
      }
    } finally {
      c.close();
    }
  });

  test('FP16 file = float16 rounding of the FP32 file (matrices), identical vectors', () => {
    const ref = openRwkvCpp(file('4v0-660K-FP32'));
    const c = openRwkvCpp(file('4v0-660K-FP16'));
    try {
      assert.deepEqual([...c.tensors.keys()], [...ref.tensors.keys()]);
      let maxAbs = 0;
      for (const [name, e] of c.tensors) {
        const x = ref.read(name).data;
        const y = c.read(name).data;
        assert.equal(e.dtype, e.shape.length > 1 && !name.includes('.time_') ? 'f16' : 'f32', name);
        for (let i = 0; i < x.length; i++) {
          const want = e.dtype === 'f16' ? halfToFloat(floatToHalf(x[i])) : x[i];
          if (y[i] !== want)
            assert.fail(`${name}[${i}]: ${y[i]} is not the f16 rounding of ${x[i]}`);
          maxAbs = Math.max(maxAbs, Math.abs(y[i] - x[i]));
        }
      }
      // half an f16 step of the largest weight (|w| ≤ 0.56): 2^-12 · 0.56 ≈ 1.4e-4
      assert.ok(maxAbs > 0 && maxAbs <= 2 ** -11 * 0.56, `FP16 max abs diff ${maxAbs}`);
    } finally {
      c.close();
      ref.close();
    }
  });

  for (const t of ['q5_0', 'q5_1'] as const) {
    test(`${t.toUpperCase()} file = ggml's quantization of the FP32 weights, within the block bound`, () => {
      const ref = openRwkvCpp(file('4v0-660K-FP32'));
      const c = openRwkvCpp(file(`4v0-660K-${t.toUpperCase()}`));
      const raw = rawTensors(file(`4v0-660K-${t.toUpperCase()}`));
      try {
        let nQuant = 0;
        let maxAbs = 0;
        let worstRatio = 0;
        for (const [name, e] of c.tensors) {
          const x = ref.read(name).data;
          const y = c.read(name).data;
          if (e.dtype === 'f32') {
            assert.deepEqual(y, x, name);
            continue;
          }
          assert.equal(e.dtype, t, name);
          nQuant++;
          // 1. Exact: re-quantizing the FP32 weights as ggml does gives these very bytes,
          //    which pins down the block layout (scale, qh bit order, nibbles).
          assert.deepEqual(
            Buffer.from(quantizeQ5(x, t)),
            raw.get(name)!.bytes,
            `${name}: blocks differ`,
          );
          // 2. Bound per block, from the quantizer (d, m as stored in f16; 2^-25 is half the
          //    smallest f16 step, for scales that underflow):
          //    Q5_0  |x − y| ≤ 1·|d| (0.5 rounding + 0.5 where max(q)=31 clips the value −max)
          //                   + 17·(|d|·2^-11 + 2^-25)     (f16 rounding of d, times |q−16| ≤ 16)
          //    Q5_1  |x − y| ≤ 0.5·d + 32·(d·2^-11 + 2^-25) + |m|·2^-11 + 2^-25
          const bytes = raw.get(name)!.bytes;
          const bb = BLOCK_BYTES[t];
          for (let b = 0; b < x.length / 32; b++) {
            const d = Math.abs(halfToFloat(bytes.readUInt16LE(b * bb)));
            const m = t === 'q5_1' ? Math.abs(halfToFloat(bytes.readUInt16LE(b * bb + 2))) : 0;
            const bound =
              t === 'q5_0'
                ? d + 17 * (d * 2 ** -11 + 2 ** -25)
                : 0.5 * d + 32 * (d * 2 ** -11 + 2 ** -25) + m * 2 ** -11 + 2 ** -25;
            for (let i = b * 32; i < b * 32 + 32; i++) {
              const diff = Math.abs(x[i] - y[i]);
              if (diff > bound)
                assert.fail(`${name}[${i}]: |diff| ${diff} > bound ${bound} (d ${d})`);
              maxAbs = Math.max(maxAbs, diff);
              if (d > 1e-4) worstRatio = Math.max(worstRatio, diff / d);
            }
          }
        }
        assert.equal(nQuant, 4 * 7, 'every block matrix is quantized, emb and head are not');
        // Measured: Q5_0 0.0147, Q5_1 0.0102 (the trained block-0 matrices, |w| ≤ 0.5).
        assert.ok(maxAbs < 0.02, `max abs diff ${maxAbs}`);
        // Rounding alone gives ≤ 0.5·d; only Q5_0's clipped −max reaches ~1·d.
        assert.ok(worstRatio <= (t === 'q5_0' ? 1.01 : 0.52), `worst |diff|/d ${worstRatio}`);
      } finally {
        c.close();
        ref.close();
      }
    });
  }
});

describe('rwkv.cpp reader on RWKV-5, 6 and 7', needsShared(dir), () => {
  test('RWKV-5.1: decay and first back to (H) from exp(−exp(w)) and exp(u)', () => {
    const path = file('5v1-730K-FP32');
    const c = openRwkvCpp(path);
    const raw = rawTensors(path);
    try {
      assert.equal(c.meta.rwkvVersion, '5.1');
      assert.equal(c.meta.n_layer, 12);
      const w = c.read('blocks.4.att.time_decay');
      const u = c.read('blocks.4.att.time_first');
      assert.deepEqual(w.shape, [8]);
      assert.deepEqual(u.shape, [8]);
      const sw = rawF32(raw.get('blocks.4.att.time_decay')!);
      const su = rawF32(raw.get('blocks.4.att.time_first')!);
      assertClose(
        w.data.map((v) => Math.exp(-Math.exp(v))),
        sw,
        { atol: 0, rtol: 2 ** -23, label: 'decay' },
      );
      assertClose(u.data.map(Math.exp), su, { atol: 0, rtol: 2 ** -23, label: 'first' });
      assert.deepEqual(c.tensors.get('blocks.4.att.time_mix_r')?.shape, [1, 1, 64]);
      assert.ok(!c.tensors.has('blocks.0.att.gate.weight'));
    } finally {
      c.close();
    }
  });

  test('RWKV-5.2: decay (H,N) from exp(−exp(w)), time_faaaa raw, gate present', () => {
    for (const kind of ['FP32', 'Q5_1']) {
      const path = file(`5v2-730K-${kind}`);
      const c = openRwkvCpp(path);
      const raw = rawTensors(path);
      try {
        assert.equal(c.meta.rwkvVersion, '5.2');
        const w = c.read('blocks.0.att.time_decay');
        assert.deepEqual(w.shape, [8, 8]);
        const sw = rawF32(raw.get('blocks.0.att.time_decay')!);
        assertClose(
          w.data.map((v) => Math.exp(-Math.exp(v))),
          sw,
          { atol: 0, rtol: 2 ** -23 },
        );
        const faaaa = c.read('blocks.0.att.time_faaaa');
        assert.deepEqual(faaaa.shape, [8, 8]);
        assert.deepEqual(faaaa.data, rawF32(raw.get('blocks.0.att.time_faaaa')!));
        assert.deepEqual(c.tensors.get('blocks.11.att.gate.weight')?.shape, [64, 64]);
        assert.deepEqual(c.tensors.get('blocks.11.att.time_mix_g')?.shape, [1, 1, 64]);
      } finally {
        c.close();
      }
    }
  });

  test('RWKV-6: the transposed low-rank matrices come back in .pth order', () => {
    const path = file('6v0-3m-Q5_0');
    const c = openRwkvCpp(path);
    const raw = rawTensors(path);
    try {
      assert.equal(c.meta.rwkvVersion, '6');
      const shape = (n: string) => c.tensors.get(`blocks.5.${n}`)?.shape;
      assert.deepEqual(shape('att.time_maa_x'), [1, 1, 128]);
      assert.deepEqual(shape('att.time_maa_w1'), [128, 160]);
      assert.deepEqual(shape('att.time_maa_w2'), [5, 32, 128]);
      assert.deepEqual(shape('att.time_decay'), [1, 1, 128]);
      assert.deepEqual(shape('att.time_decay_w1'), [128, 64]);
      assert.deepEqual(shape('att.time_decay_w2'), [64, 128]);
      assert.deepEqual(shape('att.time_faaaa'), [16, 8]);
      assert.deepEqual(shape('ffn.time_maa_r'), [1, 1, 128]);
      // time_maa_w2 (5, D, C) is stored as (5, C, D): original [t][i][j] = stored [t][j][i]
      const w2 = c.read('blocks.5.att.time_maa_w2').data;
      const s2 = rawF32(raw.get('blocks.5.att.time_maa_w2')!);
      for (const [t, i, j] of [
        [0, 0, 0],
        [1, 3, 100],
        [4, 31, 127],
      ]) {
        assert.equal(w2[t * 32 * 128 + i * 128 + j], s2[t * 128 * 32 + j * 32 + i]);
      }
      // time_maa_w1 (C, 5D) stored quantized as (5D, C): compare with a dequantized raw read
      const r1 = raw.get('blocks.5.att.time_maa_w1')!;
      assert.deepEqual(r1.ggmlShape, [128, 160]);
      const s1 = dequantizeAll('q5_0', r1.bytes, 128 * 160); // stored row-major (160, 128)
      const w1 = c.read('blocks.5.att.time_maa_w1').data; // (128, 160)
      for (const [i, j] of [
        [0, 1],
        [77, 159],
        [127, 0],
      ]) {
        assert.equal(w1[i * 160 + j], s1[j * 128 + i]);
      }
      // time_decay is only reshaped, not exponentiated, in v6
      assert.deepEqual(
        c.read('blocks.5.att.time_decay').data,
        rawF32(raw.get('blocks.5.att.time_decay')!),
      );
    } finally {
      c.close();
    }
  });

  test('RWKV-7: x_rwkvag splits into x_r…x_g, w1…g2 transposed back', () => {
    const path = file('7v0-834K-FP32');
    const c = openRwkvCpp(path);
    const raw = rawTensors(path);
    try {
      assert.equal(c.meta.rwkvVersion, '7');
      assert.ok(!c.tensors.has('blocks.0.att.x_rwkvag'));
      const all = rawF32(raw.get('blocks.2.att.x_rwkvag')!); // (6, 1, 64)
      ['x_r', 'x_w', 'x_k', 'x_v', 'x_a', 'x_g'].forEach((p, i) => {
        const t = c.read(`blocks.2.att.${p}`);
        assert.deepEqual(t.shape, [1, 1, 64]);
        assert.deepEqual(t.data, all.slice(i * 64, i * 64 + 64), p);
        assert.equal(c.tensors.get(`blocks.2.att.${p}`)?.fileName, 'blocks.2.att.x_rwkvag');
      });
      for (const p of ['w1', 'a1', 'v1', 'g1']) {
        const t = c.read(`blocks.2.att.${p}`); // (C, D) = (64, 32)
        assert.deepEqual(t.shape, [64, 32], p);
        const s = rawF32(raw.get(`blocks.2.att.${p}`)!); // stored (32, 64)
        assert.equal(t.data[5 * 32 + 17], s[17 * 64 + 5], p);
      }
      assert.deepEqual(c.tensors.get('blocks.2.att.w2')?.shape, [32, 64]);
      assert.deepEqual(c.tensors.get('blocks.2.att.w0')?.shape, [1, 1, 64]);
      assert.deepEqual(c.tensors.get('blocks.2.att.r_k')?.shape, [1, 64]);
      assert.ok(!c.tensors.has('blocks.0.att.v1'), 'layer 0 has no v-residual LoRA');
      // the FP16 file holds the same values up to f16 rounding of its matrices
      const h = openRwkvCpp(file('7v0-834K-FP16'));
      try {
        assertClose(h.read('blocks.2.att.g2').data, c.read('blocks.2.att.g2').data, {
          atol: 2 ** -25,
          rtol: 2 ** -11,
        });
        assert.deepEqual(h.read('blocks.2.att.x_g').data, c.read('blocks.2.att.x_g').data);
      } finally {
        h.close();
      }
    } finally {
      c.close();
    }
  });

  test('every fixture opens and reads', () => {
    for (const name of [
      '5v1-730K-FP16',
      '5v1-730K-Q5_0',
      '5v2-730K-Q5_0',
      '6v0-3m-Q5_1',
      '7v0-834K-Q5_0',
      '7v0-834K-Q5_1',
    ]) {
      const c = openRwkvCpp(file(name));
      try {
        for (const [n, e] of c.tensors) {
          const t = c.read(n);
          assert.deepEqual(t.shape, e.shape);
          assert.ok(
            t.data.every((v) => Number.isFinite(v)),
            `${name} ${n} is finite`,
          );
        }
      } finally {
        c.close();
      }
    }
  });

  test('a version-100 file with quantized tensors is refused with a hint', () => {
    const b = readFileSync(file('4v0-660K-Q5_0'));
    b.writeInt32LE(100, 4);
    const p = join(tmpDir(), 'old.bin');
    writeFileSync(p, b);
    assert.throws(
      () => openRwkvCpp(p),
      (e: unknown) =>
        e instanceof FormatError &&
        /old quantization layout/.test(e.message) &&
        /Re-quantize/.test(e.hint ?? ''),
    );
  });
});

// ---- writer ----

/** A small random RWKV-4 (C=32, vocab 64, 2 layers) in canonical .pth names and shapes. */
function tinyV4(seed: number, C = 32, V = 64, L = 2): TensorToWrite[] {
  let s = seed;
  const rnd = () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
  const t = (name: string, shape: number[], scale = 1) => ({
    name,
    shape,
    data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rnd() * scale),
  });
  const out = [t('emb.weight', [V, C]), t('blocks.0.ln0.weight', [C]), t('blocks.0.ln0.bias', [C])];
  for (let l = 0; l < L; l++) {
    const b = `blocks.${l}`;
    out.push(
      t(`${b}.ln1.weight`, [C]),
      t(`${b}.ln1.bias`, [C]),
      t(`${b}.ln2.weight`, [C]),
      t(`${b}.ln2.bias`, [C]),
    );
    out.push(t(`${b}.att.time_decay`, [C], 16), t(`${b}.att.time_first`, [C], 4));
    for (const k of ['k', 'v', 'r']) out.push(t(`${b}.att.time_mix_${k}`, [1, 1, C]));
    for (const k of ['key', 'value', 'receptance', 'output'])
      out.push(t(`${b}.att.${k}.weight`, [C, C]));
    out.push(t(`${b}.ffn.time_mix_k`, [1, 1, C]), t(`${b}.ffn.time_mix_r`, [1, 1, C]));
    out.push(t(`${b}.ffn.key.weight`, [4 * C, C]), t(`${b}.ffn.receptance.weight`, [C, C]));
    out.push(t(`${b}.ffn.value.weight`, [C, 4 * C]));
  }
  out.push(t('ln_out.weight', [C]), t('ln_out.bias', [C]), t('head.weight', [V, C]));
  return out;
}

describe('writeRwkvCpp', () => {
  test('ln(−s) on hand values', () => {
    const tensors = tinyV4(1);
    const decay = tensors.find((t) => t.name === 'blocks.0.att.time_decay')!;
    const w = decay.data as Float32Array;
    w.set([0, 1, 2, -1, Math.log(0.5), -7.25]);
    const p = join(tmpDir(), 'hand.bin');
    writeRwkvCpp(p, { nVocab: 64, nEmbed: 32, nLayer: 2 }, tensors, 'f32');
    const s = rawF32(rawTensors(p).get('blocks.0.att.time_decay')!);
    // stored −exp(w): −1, −e, −e², −1/e, −0.5, −exp(−7.25)
    assertClose(
      s.subarray(0, 6),
      [-1, -Math.E, -(Math.E ** 2), -1 / Math.E, -0.5, -Math.exp(-7.25)],
      {
        atol: 0,
        rtol: 2 ** -24,
      },
    );
    const c = openRwkvCpp(p);
    try {
      const back = c.read('blocks.0.att.time_decay').data;
      assert.equal(back[0], 0);
      assert.equal(back[4], f(Math.log(0.5)));
      assert.equal(back[5], -7.25);
      assertClose(back, w, { atol: 2 ** -23, label: 'time_decay' });
    } finally {
      c.close();
    }
  });

  test('f32 round trip: every tensor exact, time_decay to one float32 step of exp', () => {
    const tensors = tinyV4(2);
    const p = join(tmpDir(), 'v4.bin');
    writeRwkvCpp(p, { nVocab: 64, nEmbed: 32, nLayer: 2 }, tensors, 'f32');
    assert.ok(isRwkvCpp(readFileSync(p).subarray(0, 8)));
    const c = openRwkvCpp(p);
    try {
      assert.deepEqual(
        [...c.tensors.keys()],
        tensors.map((t) => t.name),
      );
      assert.equal(c.meta.data_type_name, 'FP32');
      for (const t of tensors) {
        const got = c.read(t.name);
        assert.deepEqual(got.shape, t.shape, t.name);
        if (t.name.endsWith('time_decay')) {
          // s = fl(−exp(w)) has relative error ≤ 2^-24, so ln(−s) is off by ≤ 2^-24 in absolute terms
          assertClose(got.data, t.data as Float32Array, { atol: 2 ** -23, label: t.name });
        } else {
          assert.deepEqual(got.data, t.data, t.name);
        }
      }
    } finally {
      c.close();
    }
  });

  test('f16: matrices rounded to f16, time_* and vectors kept f32; lazy tensors', () => {
    const tensors = tinyV4(3);
    let fetched = 0;
    const lazy = tensors.map((t) => ({
      ...t,
      data: () => {
        fetched++;
        return t.data as Float32Array;
      },
    }));
    const p = join(tmpDir(), 'v4h.bin');
    writeRwkvCpp(p, { nVocab: 64, nEmbed: 32, nLayer: 2 }, lazy, 'f16');
    assert.equal(fetched, tensors.length);
    const c = openRwkvCpp(p);
    try {
      for (const t of tensors) {
        const e = c.tensors.get(t.name)!;
        const x = t.data as Float32Array;
        const got = c.read(t.name).data;
        if (t.shape.length === 2) {
          assert.equal(e.dtype, 'f16');
          assert.deepEqual(
            got,
            x.map((v) => halfToFloat(floatToHalf(v))),
            t.name,
          );
        } else {
          assert.equal(e.dtype, 'f32', t.name);
        }
      }
    } finally {
      c.close();
    }
  });

  test('the real FP32 file survives read → write → read', needsShared(dir), () => {
    const src = openRwkvCpp(file('4v0-660K-FP32'));
    const p = join(tmpDir(), 'copy.bin');
    try {
      const list = [...src.tensors.values()].map((e) => ({
        name: e.name,
        shape: e.shape,
        data: () => src.read(e.name).data,
      }));
      writeRwkvCpp(p, { nVocab: 256, nEmbed: 128, nLayer: 4 }, list, 'f32');
      const c = openRwkvCpp(p);
      try {
        for (const name of src.tensors.keys()) {
          const a = src.read(name);
          const b = c.read(name);
          assert.deepEqual(b.shape, a.shape);
          if (name.endsWith('time_decay'))
            assertClose(b.data, a.data, { atol: 2 ** -23, label: name });
          else assert.deepEqual(b.data, a.data, name);
        }
      } finally {
        c.close();
      }
    } finally {
      src.close();
    }
  });

  test('refuses non-RWKV-4 tensors and mismatched data', () => {
    const p = join(tmpDir(), 'bad.bin');
    const h = { nVocab: 1, nEmbed: 1, nLayer: 1 };
    assert.throws(
      () =>
        writeRwkvCpp(
          p,
          h,
          [{ name: 'blocks.0.att.ln_x.weight', shape: [4], data: new Float32Array(4) }],
          'f32',
        ),
      /not an RWKV-4 tensor/,
    );
    assert.throws(
      () =>
        writeRwkvCpp(
          p,
          h,
          [{ name: 'emb.weight', shape: [4, 4], data: new Float32Array(3) }],
          'f32',
        ),
      /3 values/,
    );
    assert.throws(
      () =>
        writeRwkvCpp(
          p,
          h,
          [{ name: 'emb.weight', shape: [2, 1], data: Float32Array.of(1, 1e6) }],
          'f16',
        ),
      /beyond the f16 range/,
    );
  });
});

test('isRwkvCpp looks at magic and version only', () => {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(0x67676d66, 0);
  b.writeInt32LE(101, 4);
  assert.ok(isRwkvCpp(b));
  b.writeInt32LE(102, 4);
  assert.ok(!isRwkvCpp(b));
  assert.ok(!isRwkvCpp(Buffer.from('PK\x03\x04')));
  assert.ok(!isRwkvCpp(new Uint8Array(0)));
});
