/**
 * The same RWKV-5/6/7 weights through every format and layout actsparse reads — rwkv.cpp,
 * .pth, safetensors with BlinkDL names, Hugging Face names (v5/v6), fla names (v7),
 * web-rwkv `.st` (v5/v6), GGUF (v6/v7) — give the identical canonical tensors. The
 * foreign layouts are built here from the converters' own rules (fla's
 * utils/convert_from_rwkv7.py, web-rwkv-converter's RENAME/TRANSPOSE tables, the HF
 * conversion scripts' renames), not with names.ts.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { Checkpoint } from '../../../src/io/checkpoint.ts';
import { floatToHalf, halfToFloat } from '../../../src/io/dtype.ts';
import { writeGguf } from '../../../src/io/gguf.ts';
import { blinkToHf, canonicalParts, detectNameScheme, hfToBlink } from '../../../src/io/names.ts';
import { openCheckpoint } from '../../../src/io/open.ts';
import { writePth } from '../../../src/io/pth-writer.ts';
import { openRwkvCpp } from '../../../src/io/rwkvcpp.ts';
import { type TensorToWrite, writeSafetensors } from '../../../src/io/safetensors.ts';
import { needsShared, shared, tmpDir } from '../../helpers/shared.ts';

const dir = tmpDir('actsparse-layouts-');

type Canon = Map<string, { shape: number[]; data: Float32Array }>;

function canonical(name: string): Canon {
  const c = openRwkvCpp(shared(`models/rwkvcpp/tiny-rwkv-${name}.bin`));
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

function transpose(x: Float32Array, a: number, b: number): Float32Array {
  const out = new Float32Array(a * b);
  for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) out[j * a + i] = x[i * b + j];
  return out;
}

/** Opens `path` and checks it holds exactly `want` (names, shapes, values mapped by `value`). */
function expectSame(
  path: string,
  want: Canon,
  label: string,
  value: (x: number) => number = (x) => x,
): Checkpoint['meta'] {
  const c = openCheckpoint(path);
  try {
    assert.deepEqual([...c.tensors.keys()].sort(), [...want.keys()].sort(), `${label}: names`);
    for (const [name, t] of want) {
      const got = c.read(name);
      assert.deepEqual(got.shape, t.shape, `${label}: ${name} shape`);
      assert.deepEqual(got.data, t.data.map(value), `${label}: ${name}`);
    }
    return c.meta;
  } finally {
    c.close();
  }
}

const list = (m: Canon): TensorToWrite[] =>
  [...m].map(([name, t]) => ({ name, shape: t.shape, data: t.data }));

/** fla's translate_into_fla (utils/convert_from_rwkv7.py), with its transposes and squeezes. */
function toFla(m: Canon, fusedLerp: boolean): TensorToWrite[] {
  const C = m.get('emb.weight')!.shape[1];
  const out: TensorToWrite[] = [];
  const emb: Record<string, string> = {
    'emb.weight': 'model.embeddings.weight',
    'ln_out.weight': 'model.norm.weight',
    'ln_out.bias': 'model.norm.bias',
    'head.weight': 'lm_head.weight',
  };
  const proj: Record<string, string> = {
    receptance: 'r_proj',
    key: 'k_proj',
    value: 'v_proj',
    ln_x: 'g_norm',
    output: 'o_proj',
  };
  const part: Record<string, string> = {
    att: 'attn',
    ffn: 'ffn',
    ln0: 'pre_norm',
    ln1: 'attn_norm',
    ln2: 'ffn_norm',
  };
  const lerp = new Map<string, Float32Array[]>();
  for (const [name, t] of m) {
    if (emb[name]) {
      out.push({ name: emb[name], shape: t.shape, data: t.data });
      continue;
    }
    const c = name.split('.');
    c[0] = 'model.layers';
    c[2] = part[c[2]];
    let data = t.data;
    let shape = t.shape;
    if (/^[wvag][012]$/.test(c[3])) {
      const [typ, num] = c[3];
      c[3] = `${typ}_lora.lora.${{ 0: '2.bias', 1: '0.weight', 2: '2.weight' }[num]}`;
      if (num !== '0') {
        data = transpose(data, shape[0], shape[1]);
        shape = [shape[1], shape[0]];
      }
    } else if (c[2] === 'attn' && proj[c[3]]) c[3] = proj[c[3]];
    // "if shape == [1, 1, hidden]: squeeze" — except x_*, which fla keeps (1, 1, C)
    const isX = c[2] === 'attn' && c[3].startsWith('x_');
    if (!isX && shape.length === 3 && shape[0] === 1 && shape[1] === 1) shape = [C];
    if (isX && fusedLerp) {
      const key = `${c[0]}.${c[1]}`;
      lerp.set(key, [...(lerp.get(key) ?? []), data]);
      continue;
    }
    out.push({ name: c.join('.'), shape, data });
  }
  for (const [key, parts] of lerp) {
    // a fused (6, C) x_x in the order r, w, k, v, a, g (as llama.cpp's converter expects)
    const x = new Float32Array(6 * C);
    parts.forEach((p, i) => {
      x.set(p, i * C);
    });
    out.push({ name: `${key}.attn.x_x`, shape: [6, C], data: x });
  }
  return out;
}

/** web-rwkv-converter (src/lib.rs): RENAME in order, TRANSPOSE of the last two dims, f16. */
function toWebRwkv(m: Canon): TensorToWrite[] {
  const rename: [string, string][] = [
    ['time_faaaa', 'time_first'],
    ['time_maa', 'time_mix'],
  ];
  const transposeNames = ['time_mix_w1', 'time_mix_w2', 'time_decay_w1', 'time_decay_w2'];
  return [...m].map(([name0, t]) => {
    const name = rename.reduce((n, [p, to]) => n.split(p).join(to), name0);
    if (!transposeNames.some((p) => name.includes(p)))
      return { name, shape: t.shape, data: t.data };
    const rows = t.shape[t.shape.length - 2];
    const cols = t.shape[t.shape.length - 1];
    const batch = t.data.length / (rows * cols);
    const data = new Float32Array(t.data.length);
    for (let b = 0; b < batch; b++) {
      data.set(
        transpose(t.data.subarray(b * rows * cols, (b + 1) * rows * cols), rows, cols),
        b * rows * cols,
      );
    }
    return { name, shape: [...t.shape.slice(0, -2), cols, rows], data };
  });
}

const f16 = (x: number) => halfToFloat(floatToHalf(x));

describe('one set of weights, every format', needsShared('models/rwkvcpp'), () => {
  for (const [fixture, version] of [
    ['5v1-730K-FP32', '5.1'],
    ['5v2-730K-FP32', '5.2'],
    ['6v0-3m-Q5_1', '6'],
    ['7v0-834K-FP32', '7'],
  ] as const) {
    test(`RWKV-${version} (${fixture})`, () => {
      const m = canonical(fixture);
      const base = join(dir, fixture);
      // .pth and safetensors with BlinkDL names
      writePth(
        `${base}.pth`,
        list(m).map((t) => ({ ...t, shape: [...t.shape], data: t.data as Float32Array })),
        'f32',
      );
      expectSame(`${base}.pth`, m, 'pth');
      writeSafetensors(`${base}.safetensors`, list(m), { dtype: 'f32' });
      assert.equal(expectSame(`${base}.safetensors`, m, 'safetensors').names, 'as-is');
      if (version !== '7') {
        // Hugging Face RWKV-5/6 names
        writeSafetensors(`${base}.hf.safetensors`, list(m), { dtype: 'f32', names: 'hf-rwkv' });
        assert.equal(expectSame(`${base}.hf.safetensors`, m, 'hf').names, 'hf-rwkv');
        // web-rwkv .st (f16): v5.2 and v6 get renamed/transposed, v5.1 (ChatRWKV 5.0) is not
        writeSafetensors(`${base}.st`, toWebRwkv(m), { dtype: 'f16' });
        const names = expectSame(`${base}.st`, m, 'web-rwkv', f16).names;
        assert.equal(names, { '5.1': 'as-is', '5.2': 'web-rwkv5', '6': 'web-rwkv6' }[version]);
      } else {
        for (const fused of [false, true]) {
          const p = `${base}.fla${fused ? '-fused' : ''}.safetensors`;
          writeSafetensors(p, toFla(m, fused), { dtype: 'f32' });
          assert.equal(expectSame(p, m, fused ? 'fla x_x' : 'fla').names, 'fla-rwkv7');
        }
        // web-rwkv leaves RWKV-7 alone
        writeSafetensors(`${base}.st`, toWebRwkv(m), { dtype: 'f16' });
        assert.equal(expectSame(`${base}.st`, m, 'web-rwkv v7', f16).names, 'as-is');
      }
      if (version === '6' || version === '7') {
        writeGguf(`${base}.gguf`, list(m), { architecture: version === '6' ? 'rwkv6' : 'rwkv7' });
        expectSame(`${base}.gguf`, m, 'gguf');
      }
    });
  }
});

describe('layout detection and names', () => {
  test('Hugging Face RWKV-5 gate and RWKV-6 names', () => {
    const pairs: [string, string][] = [
      ['blocks.1.att.time_mix_g', 'rwkv.blocks.1.attention.time_mix_gate'],
      ['blocks.1.att.gate.weight', 'rwkv.blocks.1.attention.gate.weight'],
      ['blocks.1.att.time_faaaa', 'rwkv.blocks.1.attention.time_faaaa'],
      ['blocks.1.att.ln_x.bias', 'rwkv.blocks.1.attention.ln_x.bias'],
      ['blocks.2.att.time_maa_w1', 'rwkv.blocks.2.attention.time_maa_w1'],
      ['blocks.2.att.time_decay_w2', 'rwkv.blocks.2.attention.time_decay_w2'],
      ['blocks.2.ffn.time_maa_k', 'rwkv.blocks.2.feed_forward.time_maa_k'],
    ];
    for (const [blink, hf] of pairs) {
      assert.equal(blinkToHf(blink), hf);
      assert.equal(hfToBlink(hf), blink);
    }
  });

  test('detection uses tensor names only', () => {
    const s = (...n: string[]) => new Set(n);
    assert.equal(detectNameScheme(s('model.layers.0.attn.r_k', 'lm_head.weight')), 'fla-rwkv7');
    assert.equal(detectNameScheme(s('model.decoder.layers.0.fc1.weight')), 'as-is');
    assert.equal(detectNameScheme(s('model.layers.0.self_attn.q_proj.weight')), 'as-is');
    assert.equal(detectNameScheme(s('rwkv.embeddings.weight')), 'hf-rwkv');
    assert.equal(detectNameScheme(s('blocks.0.att.time_maa_x')), 'as-is');
    assert.equal(detectNameScheme(s('blocks.0.att.time_mix_x')), 'web-rwkv6');
    const v5 = ['blocks.0.att.gate.weight', 'blocks.0.att.ln_x.weight'];
    assert.equal(detectNameScheme(s(...v5, 'blocks.0.att.time_first')), 'web-rwkv5');
    assert.equal(detectNameScheme(s(...v5, 'blocks.0.att.time_faaaa')), 'as-is');
    assert.equal(
      detectNameScheme(s('blocks.0.att.time_first', 'blocks.0.att.ln_x.weight')),
      'as-is',
    );
  });

  test('fla LoRA shapes are transposed to BlinkDL’s, biases become (1, 1, C)', () => {
    const [w1] = canonicalParts('fla-rwkv7', 'model.layers.3.attn.w_lora.lora.0.weight', [32, 64]);
    assert.deepEqual(
      [w1.name, w1.shape, w1.relayout.kind],
      ['blocks.3.att.w1', [64, 32], 'transpose'],
    );
    const [g2] = canonicalParts('fla-rwkv7', 'model.layers.3.attn.g_lora.lora.2.weight', [64, 32]);
    assert.deepEqual([g2.name, g2.shape], ['blocks.3.att.g2', [32, 64]]);
    const [w0] = canonicalParts('fla-rwkv7', 'model.layers.3.attn.w_lora.lora.2.bias', [64]);
    assert.deepEqual(
      [w0.name, w0.shape, w0.relayout.kind],
      ['blocks.3.att.w0', [1, 1, 64], 'none'],
    );
    const [kk] = canonicalParts('fla-rwkv7', 'model.layers.0.attn.k_k', [64]);
    assert.deepEqual([kk.name, kk.shape], ['blocks.0.att.k_k', [1, 1, 64]]);
    const [pre] = canonicalParts('fla-rwkv7', 'model.layers.0.pre_norm.bias', [64]);
    assert.equal(pre.name, 'blocks.0.ln0.bias');
  });
});
