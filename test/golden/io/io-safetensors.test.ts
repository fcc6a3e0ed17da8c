import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { FormatError, UserError } from '../../../src/errors.ts';
import { bf16ToFloat, floatToBf16, floatToHalf, halfToFloat } from '../../../src/io/dtype.ts';
import { blinkToHf, hfToBlink, isHfRwkvNames } from '../../../src/io/names.ts';
import { openRwkvCpp } from '../../../src/io/rwkvcpp.ts';
import {
  openSafetensors,
  type TensorToWrite,
  writeSafetensors,
} from '../../../src/io/safetensors.ts';
import { needsShared, shared, tmpDir } from '../../helpers/shared.ts';

/** The header of a safetensors file, parsed independently of the reader. */
function rawHeader(path: string): { len: number; json: Record<string, unknown>; text: string } {
  const b = readFileSync(path);
  const len = Number(b.readBigUInt64LE(0));
  const text = b.toString('utf8', 8, 8 + len);
  return { len, json: JSON.parse(text), text };
}

function sample(): TensorToWrite[] {
  return [
    { name: 'a', shape: [2, 3], data: Float32Array.of(1, -2, 0.1, 1.2345678, 1e-8, -65504) },
    { name: 'b.bias', shape: [5], data: Float32Array.of(0.333333, 7, -0.5, 1 / 3, 2 ** -20) },
    { name: 'empty', shape: [0, 4], data: new Float32Array(0) },
    { name: 'scalar', shape: [], data: Float32Array.of(42.5) },
  ];
}

describe('safetensors write → read', () => {
  test('f32 is exact; header is 8-byte padded with spaces; metadata kept', () => {
    const p = join(tmpDir(), 'm.safetensors');
    writeSafetensors(p, sample(), { dtype: 'f32', metadata: { format: 'pt', note: 'x' } });
    const h = rawHeader(p);
    assert.equal(h.len % 8, 0);
    assert.match(h.text, /\} *$/);
    assert.deepEqual(h.json.__metadata__, { format: 'pt', note: 'x' });
    assert.deepEqual(h.json.a, { dtype: 'F32', shape: [2, 3], data_offsets: [0, 24] });
    assert.deepEqual(h.json['b.bias'], { dtype: 'F32', shape: [5], data_offsets: [24, 44] });
    const c = openSafetensors(p);
    try {
      assert.equal(c.format, 'safetensors');
      assert.deepEqual([...c.tensors.keys()], ['a', 'b.bias', 'empty', 'scalar']);
      assert.deepEqual(c.meta.metadata, { format: 'pt', note: 'x' });
      assert.equal(c.meta.names, 'as-is');
      for (const t of sample()) {
        const got = c.read(t.name);
        assert.deepEqual(got.shape, t.shape);
        assert.deepEqual(got.data, t.data, t.name);
      }
      assert.equal(c.tensors.get('a')?.dtype, 'f32');
      assert.equal(c.tensors.get('a')?.byteLength, 24);
    } finally {
      c.close();
    }
  });

  for (const dtype of ['f16', 'bf16'] as const) {
    test(`${dtype} rounds to nearest even and reads back exactly that`, () => {
      const p = join(tmpDir(), `m-${dtype}.safetensors`);
      writeSafetensors(p, sample(), { dtype });
      const round =
        dtype === 'f16'
          ? (v: number) => halfToFloat(floatToHalf(v))
          : (v: number) => bf16ToFloat(floatToBf16(v));
      const c = openSafetensors(p);
      try {
        assert.equal(
          (rawHeader(p).json.a as { dtype: string }).dtype,
          dtype === 'f16' ? 'F16' : 'BF16',
        );
        for (const t of sample()) {
          const x = t.data as Float32Array;
          const got = c.read(t.name).data;
          assert.deepEqual(got, x.map(round), t.name);
          // and the rounding is within half a step: 2^-11 (f16) or 2^-8 (bf16) relative
          const rel = dtype === 'f16' ? 2 ** -11 : 2 ** -8;
          for (let i = 0; i < x.length; i++)
            assert.ok(Math.abs(got[i] - x[i]) <= Math.abs(x[i]) * rel + 2 ** -25);
        }
      } finally {
        c.close();
      }
    });
  }

  test('lazy tensors are fetched one at a time, in order', () => {
    const p = join(tmpDir(), 'lazy.safetensors');
    const order: string[] = [];
    const lazy = sample().map((t) => ({
      ...t,
      data: () => {
        order.push(t.name);
        return t.data as Float32Array;
      },
    }));
    writeSafetensors(p, lazy, { dtype: 'f32' });
    assert.deepEqual(order, ['a', 'b.bias', 'empty', 'scalar']);
  });

  test('writer refusals leave no file behind', () => {
    const d = tmpDir();
    const p = join(d, 'x.safetensors');
    assert.throws(
      () =>
        writeSafetensors(p, [{ name: 'a', shape: [1], data: Float32Array.of(1e5) }], {
          dtype: 'f16',
        }),
      (e: unknown) => e instanceof UserError && /f16 range/.test(e.message),
    );
    assert.throws(
      () =>
        writeSafetensors(p, [{ name: 'a', shape: [2], data: new Float32Array(3) }], {
          dtype: 'f32',
        }),
      /3 values/,
    );
    assert.throws(
      () =>
        writeSafetensors(
          p,
          [
            { name: 'a', shape: [1], data: new Float32Array(1) },
            { name: 'a', shape: [1], data: new Float32Array(1) },
          ],
          { dtype: 'f32' },
        ),
      /given twice/,
    );
    assert.deepEqual(readdirSync(d), [], 'no partial or temporary file');
  });
});

describe('names', () => {
  const pairs: [string, string][] = [
    ['emb.weight', 'rwkv.embeddings.weight'],
    ['blocks.0.ln0.weight', 'rwkv.blocks.0.pre_ln.weight'],
    ['blocks.0.ln0.bias', 'rwkv.blocks.0.pre_ln.bias'],
    ['blocks.3.ln1.weight', 'rwkv.blocks.3.ln1.weight'],
    ['blocks.11.ln2.bias', 'rwkv.blocks.11.ln2.bias'],
    ['blocks.2.att.time_decay', 'rwkv.blocks.2.attention.time_decay'],
    ['blocks.2.att.time_first', 'rwkv.blocks.2.attention.time_first'],
    ['blocks.2.att.time_mix_k', 'rwkv.blocks.2.attention.time_mix_key'],
    ['blocks.2.att.time_mix_v', 'rwkv.blocks.2.attention.time_mix_value'],
    ['blocks.2.att.time_mix_r', 'rwkv.blocks.2.attention.time_mix_receptance'],
    ['blocks.2.att.key.weight', 'rwkv.blocks.2.attention.key.weight'],
    ['blocks.2.att.output.weight', 'rwkv.blocks.2.attention.output.weight'],
    ['blocks.2.ffn.time_mix_k', 'rwkv.blocks.2.feed_forward.time_mix_key'],
    ['blocks.2.ffn.time_mix_r', 'rwkv.blocks.2.feed_forward.time_mix_receptance'],
    ['blocks.2.ffn.value.weight', 'rwkv.blocks.2.feed_forward.value.weight'],
    ['ln_out.weight', 'rwkv.ln_out.weight'],
    ['head.weight', 'head.weight'],
  ];

  test('BlinkDL ↔ Hugging Face RWKV, both directions', () => {
    for (const [blink, hf] of pairs) {
      assert.equal(blinkToHf(blink), hf, blink);
      assert.equal(hfToBlink(hf), blink, hf);
    }
  });

  test('OPT names are left alone; detection looks for the rwkv. prefix', () => {
    const opt = ['model.decoder.layers.0.fc1.weight', 'lm_head.weight'];
    for (const n of opt) assert.equal(hfToBlink(n), n);
    assert.ok(!isHfRwkvNames(opt));
    assert.ok(isHfRwkvNames(['head.weight', 'rwkv.ln_out.bias']));
  });

  test(
    'every tensor of a real RWKV-4 round-trips through the HF names',
    needsShared('models/rwkvcpp'),
    () => {
      const c = openRwkvCpp(shared('models/rwkvcpp/tiny-rwkv-4v0-660K-FP32.bin'));
      try {
        const hf = [...c.tensors.keys()].map(blinkToHf);
        assert.equal(new Set(hf).size, c.tensors.size);
        assert.ok(hf.every((n) => n === 'head.weight' || n.startsWith('rwkv.')));
        assert.deepEqual(hf.map(hfToBlink), [...c.tensors.keys()]);
      } finally {
        c.close();
      }
    },
  );
});

describe('Hugging Face layouts', () => {
  test("writing with names 'hf-rwkv' stores HF names and reads back canonical ones", () => {
    const p = join(tmpDir(), 'rwkv.safetensors');
    const t = (name: string, shape: number[]) => ({
      name,
      shape,
      data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i),
    });
    writeSafetensors(
      p,
      [
        t('emb.weight', [4, 2]),
        t('blocks.0.ln0.weight', [2]),
        t('blocks.0.att.time_mix_k', [1, 1, 2]),
        t('head.weight', [4, 2]),
      ],
      {
        dtype: 'f32',
        names: 'hf-rwkv',
      },
    );
    assert.deepEqual(Object.keys(rawHeader(p).json), [
      'rwkv.embeddings.weight',
      'rwkv.blocks.0.pre_ln.weight',
      'rwkv.blocks.0.attention.time_mix_key',
      'head.weight',
    ]);
    const c = openSafetensors(p);
    try {
      assert.equal(c.meta.names, 'hf-rwkv');
      assert.deepEqual(
        [...c.tensors.keys()],
        ['emb.weight', 'blocks.0.ln0.weight', 'blocks.0.att.time_mix_k', 'head.weight'],
      );
      assert.equal(
        c.tensors.get('blocks.0.att.time_mix_k')?.fileName,
        'rwkv.blocks.0.attention.time_mix_key',
      );
      assert.deepEqual(c.read('blocks.0.att.time_mix_k').data, Float32Array.of(0, 1));
    } finally {
      c.close();
    }
  });

  test('two shards with an index and config.json: by folder and by index path', () => {
    const d = tmpDir();
    const t = (name: string, v: number) => ({
      name,
      shape: [3],
      data: Float32Array.of(v, v + 1, v + 2),
    });
    writeSafetensors(join(d, 'model-00001-of-00002.safetensors'), [t('x.a', 1), t('x.b', 4)], {
      dtype: 'f32',
    });
    writeSafetensors(join(d, 'model-00002-of-00002.safetensors'), [t('x.c', 7)], { dtype: 'bf16' });
    const weightMap = {
      'x.a': 'model-00001-of-00002.safetensors',
      'x.b': 'model-00001-of-00002.safetensors',
      'x.c': 'model-00002-of-00002.safetensors',
    };
    writeFileSync(
      join(d, 'model.safetensors.index.json'),
      JSON.stringify({ metadata: { total_size: 36 }, weight_map: weightMap }),
    );
    writeFileSync(join(d, 'config.json'), JSON.stringify({ model_type: 'opt', hidden_size: 3 }));
    for (const path of [d, join(d, 'model.safetensors.index.json')]) {
      const c = openSafetensors(path);
      try {
        assert.deepEqual([...c.tensors.keys()], ['x.a', 'x.b', 'x.c']);
        assert.deepEqual(c.read('x.b').data, Float32Array.of(4, 5, 6));
        assert.deepEqual(c.read('x.c').data, Float32Array.of(7, 8, 9));
        assert.equal(c.tensors.get('x.c')?.dtype, 'bf16');
        assert.deepEqual(c.meta.config, { model_type: 'opt', hidden_size: 3 });
        assert.deepEqual(c.meta.metadata, { total_size: 36 });
        assert.deepEqual(c.meta.files, [
          'model-00001-of-00002.safetensors',
          'model-00002-of-00002.safetensors',
        ]);
      } finally {
        c.close();
      }
    }
    // An index naming a tensor its shard does not hold, or a path out of the folder.
    const bad = (weight_map: Record<string, string>) => {
      writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ weight_map }));
      return () => openSafetensors(d);
    };
    assert.throws(
      bad({ ...weightMap, 'x.d': 'model-00002-of-00002.safetensors' }),
      (e: unknown) => e instanceof FormatError && /x\.d/.test(e.message),
    );
    assert.throws(
      bad({ 'x.a': '../model-00001-of-00002.safetensors' }),
      (e: unknown) => e instanceof FormatError && /same folder/.test(e.message),
    );
    assert.throws(
      bad({ 'x.a': 'missing.safetensors' }),
      (e: unknown) => e instanceof UserError && /no such file/.test(e.message),
    );
    writeFileSync(join(d, 'model.safetensors.index.json'), '{"weight_map": ');
    assert.throws(
      () => openSafetensors(d),
      (e: unknown) => e instanceof FormatError && /not valid JSON/.test(e.message),
    );
  });

  test('folders without a single model file are refused with a hint', () => {
    const d = tmpDir();
    assert.throws(
      () => openSafetensors(d),
      (e: unknown) => e instanceof UserError && /no \.safetensors/.test(e.message),
    );
    mkdirSync(join(d, 'sub'));
    writeSafetensors(join(d, 'a.safetensors'), sample(), { dtype: 'f32' });
    const c = openSafetensors(d); // exactly one file: taken
    c.close();
    writeSafetensors(join(d, 'b.safetensors'), sample(), { dtype: 'f32' });
    assert.throws(
      () => openSafetensors(d),
      (e: unknown) => e instanceof UserError && /2 \.safetensors files/.test(e.message),
    );
    assert.throws(
      () => openSafetensors(join(d, 'nope')),
      (e: unknown) => e instanceof UserError && /no such file/.test(e.message),
    );
  });

  test(
    'the brown-opt-3m folder opens with HF OPT names',
    needsShared('models/opt/brown-opt-3m'),
    () => {
      const dir = shared('models/opt/brown-opt-3m');
      const c = openSafetensors(dir);
      try {
        assert.equal(c.meta.names, 'as-is');
        assert.equal((c.meta.config as { model_type: string }).model_type, 'opt');
        assert.deepEqual(c.meta.metadata, { format: 'pt' });
        assert.equal(c.tensors.size, 2 + 6 * 16 + 2);
        assert.ok(!c.tensors.has('__metadata__'));
        const shape = (n: string) => c.tensors.get(n)?.shape;
        assert.deepEqual(shape('model.decoder.embed_tokens.weight'), [256, 192]);
        assert.deepEqual(shape('model.decoder.embed_positions.weight'), [258, 192]);
        assert.deepEqual(shape('model.decoder.layers.5.fc1.weight'), [768, 192]);
        assert.deepEqual(shape('model.decoder.layers.5.fc2.weight'), [192, 768]);
        assert.deepEqual(shape('model.decoder.final_layer_norm.bias'), [192]);
        // values: compare one tensor with the bytes at its offsets
        const h = rawHeader(join(dir, 'model.safetensors'));
        const e = h.json['model.decoder.layers.2.self_attn.k_proj.bias'] as {
          data_offsets: number[];
        };
        const b = readFileSync(join(dir, 'model.safetensors'));
        const start = 8 + h.len + e.data_offsets[0];
        const want = Float32Array.from({ length: 192 }, (_, i) => b.readFloatLE(start + 4 * i));
        assert.deepEqual(c.read('model.decoder.layers.2.self_attn.k_proj.bias').data, want);
        assert.ok(want.some((v) => v !== 0));
      } finally {
        c.close();
      }
    },
  );

  test(
    'rwkv.cpp → safetensors (HF names, f32) → same tensors',
    needsShared('models/rwkvcpp'),
    () => {
      const src = openRwkvCpp(shared('models/rwkvcpp/tiny-rwkv-4v0-660K-FP16.bin'));
      const p = join(tmpDir(), 'model.safetensors');
      try {
        const list = [...src.tensors.values()].map((e) => ({
          name: e.name,
          shape: e.shape,
          data: () => src.read(e.name).data,
        }));
        writeSafetensors(p, list, { dtype: 'f32', names: 'hf-rwkv', metadata: { format: 'pt' } });
        const c = openSafetensors(p);
        try {
          assert.deepEqual([...c.tensors.keys()], [...src.tensors.keys()]);
          for (const name of src.tensors.keys()) {
            const a = src.read(name);
            const b = c.read(name);
            assert.deepEqual(b.shape, a.shape, name);
            assert.deepEqual(b.data, a.data, name);
          }
        } finally {
          c.close();
        }
      } finally {
        src.close();
      }
    },
  );
});

describe('refusals, as the safetensors library refuses (one-line FormatError with a hint)', () => {
  /** A safetensors file from a raw header text and `data` bytes of data area. */
  const st = (name: string, header: string, data: number): string => {
    const h = Buffer.from(header, 'utf8');
    const b = Buffer.alloc(8 + h.length + data);
    b.writeBigUInt64LE(BigInt(h.length));
    h.copy(b, 8);
    const p = join(tmpDir(), name);
    writeFileSync(p, b);
    return p;
  };
  const f32 = (shape: number[], a: number, b: number) =>
    `{"dtype":"F32","shape":${JSON.stringify(shape)},"data_offsets":[${a},${b}]}`;
  const refused = (p: string, re: RegExp) =>
    assert.throws(
      () => openSafetensors(p),
      (e: unknown) =>
        e instanceof FormatError &&
        e.message.startsWith(p) &&
        re.test(e.message) &&
        !e.message.includes('\n') &&
        !!e.hint,
    );

  test('the accepted form: packed from 0, covering the data area exactly', () => {
    const p = st('ok.safetensors', `{"a":${f32([2], 0, 8)},"b":${f32([1], 8, 12)}}`, 12);
    openSafetensors(p).close();
  });

  test('overlapping byte ranges', () => {
    refused(
      st('overlap.safetensors', `{"a":${f32([2], 0, 8)},"b":${f32([2], 4, 12)}}`, 12),
      /'b' data_offsets \[4, 12\] overlap tensor 'a'/,
    );
  });

  test('a gap between tensors, or before the first', () => {
    refused(
      st('gap.safetensors', `{"a":${f32([1], 0, 4)},"b":${f32([1], 8, 12)}}`, 12),
      /gap of 4 bytes after byte 4/,
    );
    refused(st('gap0.safetensors', `{"a":${f32([1], 4, 8)}}`, 8), /gap of 4 bytes after byte 0/);
  });

  test('bytes after the last tensor (the data area is not covered exactly)', () => {
    refused(st('trail.safetensors', `{"a":${f32([1], 0, 4)}}`, 12), /cover 4 bytes .* has 12/);
    refused(st('none.safetensors', '{"__metadata__":{"format":"pt"}}', 4), /cover 0 bytes/);
  });

  test('offsets out of range', () => {
    assert.throws(
      () => openSafetensors(st('oor.safetensors', `{"a":${f32([4], 0, 16)}}`, 8)),
      (e: unknown) => e instanceof FormatError && /outside the data area/.test(e.message),
    );
  });

  test('duplicate tensor names, and duplicate keys inside an entry', () => {
    refused(
      st('dup.safetensors', `{"a":${f32([1], 0, 4)},"a":${f32([1], 4, 8)}}`, 8),
      /key 'a' twice/,
    );
    refused(
      st(
        'dupkey.safetensors',
        '{"a":{"dtype":"F16","dtype":"F32","shape":[1],"data_offsets":[0,4]}}',
        4,
      ),
      /key 'dtype' twice/,
    );
    // an escaped spelling of the same key is the same key
    refused(
      st('dupesc.safetensors', `{"a":${f32([1], 0, 4)},"\\u0061":${f32([1], 4, 8)}}`, 8),
      /key 'a' twice/,
    );
  });

  test('a header that does not start with {', () => {
    refused(st('space.safetensors', ` {"a":${f32([1], 0, 4)}}`, 4), /does not start with '\{'/);
    refused(st('array.safetensors', '[1, 2]', 0), /does not start with '\{'/);
  });

  test('broken JSON and bad __metadata__ give one line', () => {
    const p = st('broken.safetensors', '{"a":\n\n  {"dtype": oops\n}}', 0);
    assert.throws(
      () => openSafetensors(p),
      (e: unknown) =>
        e instanceof FormatError && /not valid JSON/.test(e.message) && !e.message.includes('\n'),
    );
    assert.throws(
      () => openSafetensors(st('meta.safetensors', '{"__metadata__":{"n":1}}', 0)),
      (e: unknown) => e instanceof FormatError && /__metadata__/.test(e.message),
    );
  });
});
