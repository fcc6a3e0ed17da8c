/**
 * OPT against references: the trained brown-opt-3m and its Hugging Face-exact logits,
 * and an independent float64 forward (plain loops, the HF formulas) for random 2-layer
 * models in every supported variant (no biases, untied head, post-LN, no LN affine,
 * project_in/out). Properties: sequence mode = step mode (also across calls that
 * continue a state), λ = 0 = dense, thresholded sequence = thresholded sparse step;
 * the config is checked and unsupported values refused by name.
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { UserError } from '../../../src/errors.ts';
import type { Checkpoint } from '../../../src/io/checkpoint.ts';
import { memoryCheckpoint, type NamedTensor, readAll } from '../../../src/io/memory.ts';
import { openCheckpoint } from '../../../src/io/open.ts';
import { writePth } from '../../../src/io/pth-writer.ts';
import { makeBatch, sequenceLogits } from '../../../src/models/model.ts';
import { OPT_SITES, Opt, optConfig } from '../../../src/models/opt.ts';
import { detectArchitecture, loadModel } from '../../../src/models/registry.ts';
import { perTokenQuantileThresholds } from '../../../src/sparsity/quantile.ts';
import { threshold as applyThreshold, logSoftmax } from '../../../src/tensor/reference.ts';
import { jsBackend } from '../../../src/tensor/select.ts';
import { rng } from '../../../src/util/random.ts';
import { assertClose } from '../../helpers/assert.ts';
import { logitsOf, observe, stepAll } from '../../helpers/model.ts';
import { needsShared, shared, tmpDir } from '../../helpers/shared.ts';

const DIR = 'models/opt/brown-opt-3m';
const REF = 'models/opt/brown-opt-3m.prompt.ref.f32';
const TOKENS = 'models/pth/brown-rwkv4-3m.prompt-tokens.json';
const fixture = needsShared(DIR, REF, TOKENS);

const f32 = (path: string) => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

function loadPath(path: string, sparse = false): Opt {
  const ckpt = openCheckpoint(path);
  try {
    const m = loadModel(ckpt, jsBackend, { sparse });
    assert.ok(m instanceof Opt);
    return m;
  } finally {
    ckpt.close();
  }
}

function meanNll(logits: Float32Array, tokens: readonly number[], V: number): number {
  let sum = 0;
  for (let t = 0; t + 1 < tokens.length; t++)
    sum -= logSoftmax(logits.subarray(t * V, (t + 1) * V))[tokens[t + 1]];
  return sum / (tokens.length - 1);
}

/** ≤ 1e-5 relative to the largest logit (rounding of GEMM vs GEMV order only). */
function assertSame(a: Float32Array, b: Float32Array, label: string): void {
  const scale = b.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  assertClose(a, b, { atol: 1e-5 * scale, label });
}

// ---------------------------------------------------------------- the trained model

describe('brown-opt-3m against the Hugging Face-exact reference', () => {
  test('every position ≤ 1e-4, mean NLL 1.7953, step = sequence', fixture, async () => {
    const tokens: number[] = JSON.parse(readFileSync(shared(TOKENS), 'utf8'));
    const expected = f32(shared(REF));
    const model = loadPath(shared(DIR));
    assert.equal(tokens.length, 256);
    assert.deepEqual(
      [model.nLayer, model.nEmbd, model.config.nHead, model.config.nFfn, model.nVocab],
      [6, 192, 6, 768, 256],
    );
    const seq = await logitsOf(model, tokens);
    const d = assertClose(seq, expected, { atol: 1e-4, label: 'sequence' });
    const nll = meanNll(seq, tokens, 256);
    assert.ok(Math.abs(nll - 1.7953) < 5e-5, `mean NLL ${nll}`);
    const steps = await stepAll(model, tokens);
    assertClose(steps, expected, { atol: 1e-4, label: 'step' });
    assertSame(steps, seq, 'step vs sequence');
    console.log(`  max abs diff ${d.toExponential(2)}, mean NLL ${nll.toFixed(5)}`);
  });

  test(
    'pytorch_model.bin (.pth reader) with config.json beside it: same logits and fingerprint',
    fixture,
    async () => {
      const tokens: number[] = JSON.parse(readFileSync(shared(TOKENS), 'utf8')).slice(0, 64);
      const expected = f32(shared(REF)).subarray(0, 64 * 256);
      const dir = tmpDir();
      const src = openCheckpoint(shared(DIR));
      const bin = join(dir, 'pytorch_model.bin');
      writePth(bin, [...readAll(src)], 'f32');
      src.close();
      // Without config.json the head count is unknown: a clear error naming the file.
      assert.throws(
        () => loadPath(bin),
        (e: Error) =>
          e instanceof UserError &&
          /config\.json/.test(e.message) &&
          /num_attention_heads/.test(e.message),
      );
      copyFileSync(join(shared(DIR), 'config.json'), join(dir, 'config.json'));
      const model = loadPath(bin);
      assertClose(await logitsOf(model, tokens), expected, { atol: 1e-4, label: 'pth' });
      assert.equal(model.fingerprint, loadPath(shared(DIR)).fingerprint);
    },
  );

  test('fc2 input is naturally sparse (ReLU), qkv and fc1 dense', fixture, async () => {
    const tokens: number[] = JSON.parse(readFileSync(shared(TOKENS), 'utf8'));
    const model = loadPath(shared(DIR));
    const zeros = [0, 0, 0];
    const total = [0, 0, 0];
    observe(model, tokens, (g, x) => {
      const s = g % OPT_SITES.length;
      for (const v of x) zeros[s] += v === 0 ? 1 : 0;
      total[s] += x.length;
    });
    const frac = zeros.map((z, i) => z / total[i]);
    assert.ok(frac[2] > 0.8 && frac[2] < 0.92, `fc2 ${frac[2]}`);
    assert.ok(frac[0] < 0.01 && frac[1] < 0.01, `qkv ${frac[0]}, fc1 ${frac[1]}`);
  });
});

// ---------------------------------------------------------------- random models

interface Variant {
  nLayer: number;
  d: number;
  heads: number;
  ffn: number;
  vocab: number;
  positions: number;
  proj: number;
  preLN: boolean;
  bias: boolean;
  affine: boolean;
  tied: boolean;
}

const BASE: Variant = {
  nLayer: 2,
  d: 16,
  heads: 4,
  ffn: 40,
  vocab: 23,
  positions: 20,
  proj: 16,
  preLN: true,
  bias: true,
  affine: true,
  tied: true,
};

function hfConfig(v: Variant): Record<string, unknown> {
  return {
    model_type: 'opt',
    vocab_size: v.vocab,
    hidden_size: v.d,
    num_hidden_layers: v.nLayer,
    num_attention_heads: v.heads,
    ffn_dim: v.ffn,
    max_position_embeddings: v.positions,
    word_embed_proj_dim: v.proj,
    do_layer_norm_before: v.preLN,
    activation_function: 'relu',
    layer_norm_elementwise_affine: v.affine,
    enable_bias: v.bias,
    tie_word_embeddings: v.tied,
    dropout: 0.1,
    torch_dtype: 'float32',
  };
}

/** Random weights with the tensor names of OPTForCausalLM for this variant. */
function randomTensors(v: Variant, seed: number): NamedTensor[] {
  const u = rng(seed);
  const gauss = () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
  const out: NamedTensor[] = [];
  const add = (name: string, shape: number[], g: () => number) =>
    out.push({
      name,
      shape,
      data: Float32Array.from({ length: shape.reduce((a, b) => a * b) }, g),
    });
  const lin = (name: string, rows: number, cols: number) =>
    add(`${name}.weight`, [rows, cols], () => gauss() / Math.sqrt(cols));
  const bias = (name: string, n: number) => v.bias && add(`${name}.bias`, [n], () => 0.2 * gauss());
  const ln = (name: string) => {
    if (!v.affine) return;
    add(`${name}.weight`, [v.d], () => 1 + 0.2 * gauss());
    add(`${name}.bias`, [v.d], () => 0.2 * gauss());
  };
  const p = 'model.decoder';
  add(`${p}.embed_tokens.weight`, [v.vocab, v.proj], () => gauss());
  add(`${p}.embed_positions.weight`, [v.positions + 2, v.d], () => 0.5 * gauss());
  if (v.proj !== v.d) lin(`${p}.project_in`, v.d, v.proj);
  for (let l = 0; l < v.nLayer; l++) {
    const n = `${p}.layers.${l}`;
    for (const c of ['q', 'k', 'v', 'out']) {
      lin(`${n}.self_attn.${c}_proj`, v.d, v.d);
      bias(`${n}.self_attn.${c}_proj`, v.d);
    }
    ln(`${n}.self_attn_layer_norm`);
    lin(`${n}.fc1`, v.ffn, v.d);
    bias(`${n}.fc1`, v.ffn);
    lin(`${n}.fc2`, v.d, v.ffn);
    bias(`${n}.fc2`, v.d);
    ln(`${n}.final_layer_norm`);
  }
  if (v.preLN) ln(`${p}.final_layer_norm`);
  if (v.proj !== v.d) lin(`${p}.project_out`, v.proj, v.d);
  if (!v.tied) lin('lm_head', v.vocab, v.proj);
  return out;
}

function checkpointOf(tensors: NamedTensor[], config: Record<string, unknown> | null): Checkpoint {
  const c = memoryCheckpoint(tensors);
  return config ? { ...c, meta: { config } } : c;
}

function randomModel(v: Variant, seed = 1, sparse = false): Opt {
  return Opt.load(checkpointOf(randomTensors(v, seed), hfConfig(v)), jsBackend, { sparse });
}

/**
 * The Hugging Face OPTForCausalLM forward, written independently of src/ in float64
 * with plain loops: returns logits [T][V].
 */
function referenceForward(v: Variant, tensors: NamedTensor[], tokens: number[]): number[][] {
  const W = new Map(tensors.map((t) => [t.name, Array.from(t.data)]));
  const get = (n: string) => {
    const w = W.get(n);
    if (!w) throw new Error(`reference: no ${n}`);
    return w;
  };
  const linear = (x: number[], name: string, rows: number, hasBias: boolean) => {
    const w = get(`${name}.weight`);
    const cols = x.length;
    const b = hasBias ? get(`${name}.bias`) : null;
    return Array.from({ length: rows }, (_, r) => {
      let s = b ? b[r] : 0;
      for (let c = 0; c < cols; c++) s += w[r * cols + c] * x[c];
      return s;
    });
  };
  const layerNorm = (x: number[], name: string) => {
    const mean = x.reduce((a, b) => a + b) / x.length;
    const varc = x.reduce((a, b) => a + (b - mean) ** 2, 0) / x.length;
    const wt = v.affine ? get(`${name}.weight`) : null;
    const bs = v.affine ? get(`${name}.bias`) : null;
    return x.map(
      (e, i) => ((e - mean) / Math.sqrt(varc + 1e-5)) * (wt ? wt[i] : 1) + (bs ? bs[i] : 0),
    );
  };
  const p = 'model.decoder';
  const { d, heads } = v;
  const hd = d / heads;
  // inputs_embeds (project_in) + embed_positions[t + 2]
  let xs = tokens.map((tok, t) => {
    let e = get(`${p}.embed_tokens.weight`).slice(tok * v.proj, (tok + 1) * v.proj);
    if (v.proj !== d) e = linear(e, `${p}.project_in`, d, false);
    const pos = get(`${p}.embed_positions.weight`);
    return e.map((x, i) => x + pos[(t + 2) * d + i]);
  });
  for (let l = 0; l < v.nLayer; l++) {
    const n = `${p}.layers.${l}`;
    const a = xs.map((x) => (v.preLN ? layerNorm(x, `${n}.self_attn_layer_norm`) : x));
    const q = a.map((x) =>
      linear(x, `${n}.self_attn.q_proj`, d, v.bias).map((e) => e / Math.sqrt(hd)),
    );
    const k = a.map((x) => linear(x, `${n}.self_attn.k_proj`, d, v.bias));
    const val = a.map((x) => linear(x, `${n}.self_attn.v_proj`, d, v.bias));
    const att = xs.map((_, t) => {
      const o = new Array<number>(d).fill(0);
      for (let h = 0; h < heads; h++) {
        const s: number[] = [];
        for (let j = 0; j <= t; j++) {
          let dot = 0;
          for (let i = 0; i < hd; i++) dot += q[t][h * hd + i] * k[j][h * hd + i];
          s.push(dot);
        }
        const m = Math.max(...s);
        const e = s.map((x) => Math.exp(x - m));
        const z = e.reduce((x, y) => x + y);
        for (let j = 0; j <= t; j++)
          for (let i = 0; i < hd; i++) o[h * hd + i] += (e[j] / z) * val[j][h * hd + i];
      }
      return o;
    });
    xs = xs.map((x, t) => {
      let h = linear(att[t], `${n}.self_attn.out_proj`, d, v.bias).map((e, i) => e + x[i]);
      if (!v.preLN) h = layerNorm(h, `${n}.self_attn_layer_norm`);
      const m = v.preLN ? layerNorm(h, `${n}.final_layer_norm`) : h;
      const hidden = linear(m, `${n}.fc1`, v.ffn, v.bias).map((e) => Math.max(e, 0));
      let y = linear(hidden, `${n}.fc2`, d, v.bias).map((e, i) => e + h[i]);
      if (!v.preLN) y = layerNorm(y, `${n}.final_layer_norm`);
      return y;
    });
  }
  return xs.map((x) => {
    let h = v.preLN ? layerNorm(x, `${p}.final_layer_norm`) : x;
    if (v.proj !== d) h = linear(h, `${p}.project_out`, v.proj, false);
    return v.tied
      ? linear(h, `${p}.embed_tokens`, v.vocab, false)
      : linear(h, 'lm_head', v.vocab, false);
  });
}

const tokensFor = (v: Variant, T: number) =>
  Array.from({ length: T }, (_, i) => (i * 7 + 3) % v.vocab);

describe('random 2-layer OPT against an independent float64 forward', () => {
  const variants: [string, Partial<Variant>][] = [
    ['pre-LN, biases, tied head', {}],
    ['enable_bias false', { bias: false }],
    ['untied head (lm_head.weight)', { tied: false }],
    ['post-LN (do_layer_norm_before false)', { preLN: false }],
    ['layer_norm_elementwise_affine false', { affine: false }],
    ['word_embed_proj_dim ≠ hidden (project_in/out), post-LN', { proj: 10, preLN: false }],
  ];
  for (const [label, over] of variants) {
    test(label, async () => {
      const v = { ...BASE, ...over };
      const tensors = randomTensors(v, 7);
      const model = Opt.load(checkpointOf(tensors, hfConfig(v)), jsBackend);
      const tokens = tokensFor(v, 12);
      const expected = Float32Array.from(referenceForward(v, tensors, tokens).flat());
      const seq = await logitsOf(model, tokens);
      assertClose(seq, expected, { atol: 1e-4, rtol: 1e-4, label: `${label} sequence` });
      assertSame(await stepAll(model, tokens), seq, `${label} step`);
    });
  }

  test('OPTModel names (decoder.… without model.) load the same model', async () => {
    const tensors = randomTensors(BASE, 3);
    const renamed = tensors.map((t) => ({ ...t, name: t.name.replace(/^model\./, '') }));
    const a = Opt.load(checkpointOf(tensors, hfConfig(BASE)), jsBackend);
    const ckpt = checkpointOf(renamed, hfConfig(BASE));
    assert.equal(detectArchitecture(ckpt), 'opt');
    const b = Opt.load(ckpt, jsBackend);
    const tokens = tokensFor(BASE, 9);
    assert.deepEqual(await logitsOf(b, tokens), await logitsOf(a, tokens));
    assert.equal(a.fingerprint, b.fingerprint);
  });
});

// ---------------------------------------------------------------- state and layers

describe('state, positions and the calibration API', () => {
  test('continuing a state (forward in pieces, clone, step after forward) = one forward', async () => {
    const model = randomModel(BASE, 5);
    const tokens = tokensFor(BASE, 20);
    const V = BASE.vocab;
    const full = await logitsOf(model, tokens);
    const s = model.newState();
    const a = await logitsOf(model, tokens.slice(0, 7), s);
    assert.equal(s.position(), 7);
    const fork = s.clone();
    const b = await logitsOf(model, tokens.slice(7, 15), s);
    assert.equal(s.position(), 15);
    assert.equal(fork.position(), 7);
    const c = await stepAll(model, [tokens[15]], s);
    const rest = await sequenceLogits(model, tokens.slice(16), s, 'last');
    assert.equal(s.position(), 20);
    assertSame(a, full.subarray(0, 7 * V), 'first piece');
    assertSame(b, full.subarray(7 * V, 15 * V), 'second piece');
    assertSame(c, full.subarray(15 * V, 16 * V), 'step after forward');
    assertSame(rest, full.subarray(19 * V), 'last logits');
    // The clone continues from its own position, unaffected by the original.
    assertSame(await logitsOf(model, tokens.slice(7, 15), fork), b, 'clone');
  });

  test('logits(block(…block(embed))) = forward, with embed continuing a state', async () => {
    const model = randomModel(BASE, 6);
    const tokens = tokensFor(BASE, 14);
    const V = BASE.vocab;
    const full = await logitsOf(model, tokens);
    const s = model.newState();
    for (const [lo, hi] of [
      [0, 5],
      [5, 14],
    ]) {
      const T = hi - lo;
      const batch = makeBatch(model, [tokens.slice(lo, hi)]);
      const x = model.embed(batch, s);
      for (let b = 0; b < model.nLayer; b++) model.block(b, x, batch, s);
      const logits = await model.backend.read(model.head(x, T));
      assertSame(logits, full.subarray(lo * V, hi * V), `tokens ${lo}..${hi}`);
    }
    assert.equal(s.position(), 14);
  });

  test('sequences beyond max_position_embeddings are refused', async () => {
    const model = randomModel(BASE, 2);
    const n = BASE.positions;
    // Exactly max_position_embeddings tokens fit; one more does not.
    assert.equal((await logitsOf(model, tokensFor(BASE, n))).length, n * BASE.vocab);
    await assert.rejects(
      () => logitsOf(model, tokensFor(BASE, n + 1)),
      (e: Error) => e instanceof UserError && /max_position_embeddings 20/.test(e.message),
    );
    const s = model.newState();
    await logitsOf(model, tokensFor(BASE, n), s);
    await assert.rejects(() => stepAll(model, [1], s), /max_position_embeddings/);
    await assert.rejects(() => logitsOf(model, [BASE.vocab]), /outside the vocabulary/);
  });
});

// ---------------------------------------------------------------- thresholds

describe('thresholds (keep |x| ≥ λ)', () => {
  test('applyThreshold ge keeps |x| = λ and λ = 0 is the identity', async () => {
    const x = Float32Array.from([0.5, -0.5, 0.4, -0.49, 0, 2]);
    applyThreshold(x, 0.5, 'ge');
    assert.deepEqual(Array.from(x), [0.5, -0.5, 0, 0, 0, 2]);
    const y = Float32Array.from([1e-30, -0, 0, -3]);
    applyThreshold(y, 0, 'ge');
    assert.deepEqual(y, Float32Array.from([1e-30, -0, 0, -3]));
  });

  test('sites: 3 per layer with MAC rows 3d, ffn, d and comparison ge', async () => {
    const m = randomModel(BASE, 1);
    assert.equal(m.sites.comparison, 'ge');
    assert.deepEqual(
      m.sites.perBlock.map((s) => [s.id, s.cols, s.rows]),
      [
        ['qkv', 16, 48],
        ['fc1', 16, 40],
        ['fc2', 40, 16],
      ],
    );
    assert.equal(m.thresholds.length, 6);
  });

  test('a site input equal to λ is kept, the next smaller magnitude dropped', async () => {
    const m = randomModel(BASE, 3);
    const tokens = tokensFor(BASE, 4);
    let first = new Float32Array(0);
    observe(m, tokens, (g, x) => {
      if (g === 0) first = x.slice();
    });
    // λ = the 5th smallest magnitude of layer 0's qkv input (exactly representable).
    const mags = Array.from(first, Math.abs).sort((a, b) => a - b);
    const lambda = mags[4];
    const t = new Float32Array(m.thresholds.length);
    t[0] = lambda;
    m.setThresholds(t);
    let kept = new Float32Array(0);
    observe(m, tokens, (g, x) => {
      if (g === 0) kept = x.slice();
    });
    for (let i = 0; i < first.length; i++)
      assert.equal(kept[i], Math.abs(first[i]) >= lambda ? first[i] : 0, `element ${i}`);
    assert.equal(kept.filter((e) => e === 0).length, 4);
  });

  for (const [label, over] of [
    ['pre-LN', {}],
    ['post-LN', { preLN: false }],
  ] as const) {
    test(`${label}: λ = 0 is dense; thresholded sequence = thresholded sparse step`, async () => {
      const v: Variant = { ...BASE, ...over };
      const model = randomModel(v, 11, true);
      const tokens = tokensFor(v, 16);
      // λ for about 50% zeros at every site, from the dense activations.
      const lambda = new Float32Array(model.thresholds.length);
      observe(model, tokens, (g, x, T, cols) => {
        lambda[g] = perTokenQuantileThresholds(x, T, cols, [0.5])[0];
      });
      const dense = await logitsOf(model, tokens);
      model.setThresholds(new Float32Array(lambda.length));
      assert.deepEqual(await logitsOf(model, tokens), dense);

      model.setThresholds(lambda);
      let zeros = 0;
      let total = 0;
      let below = 0;
      observe(model, tokens, (g, x) => {
        for (const e of x) {
          zeros += e === 0 ? 1 : 0;
          below += e !== 0 && Math.abs(e) < lambda[g] ? 1 : 0;
        }
        total += x.length;
      });
      const seq = await logitsOf(model, tokens);
      const steps = await stepAll(model, tokens);
      assertClose(steps, seq, {
        atol: 1e-4,
        rtol: 1e-4,
        label: `${label} sparse step vs sequence`,
      });
      assert.equal(below, 0, 'a site input kept a value below λ');
      assert.ok(
        zeros / total > 0.4,
        `thresholds made ${((100 * zeros) / total).toFixed(1)}% zeros`,
      );
      let diff = 0;
      for (let i = 0; i < seq.length; i++) diff = Math.max(diff, Math.abs(seq[i] - dense[i]));
      assert.ok(diff > 1e-3, `thresholded logits differ from dense by only ${diff}`);
      // The residual stream is never thresholded: post-LN site inputs are copies.
      model.setThresholds(new Float32Array(lambda.length));
      assert.deepEqual(await logitsOf(model, tokens), dense);
    });
  }

  test('brown-opt-3m: thresholded sequence = thresholded sparse step', fixture, async () => {
    const tokens: number[] = JSON.parse(readFileSync(shared(TOKENS), 'utf8')).slice(0, 32);
    const model = loadPath(shared(DIR), true);
    const lambda = new Float32Array(model.thresholds.length);
    for (let b = 0; b < model.nLayer; b++) lambda.set([0.4, 0.3, 0.05], b * 3);
    model.setThresholds(lambda);
    const seq = await logitsOf(model, tokens);
    assertClose(await stepAll(model, tokens), seq, {
      atol: 1e-4,
      rtol: 1e-4,
      label: 'sparse step',
    });
  });
});

// ---------------------------------------------------------------- config

describe('configuration', () => {
  const refused = (over: Record<string, unknown>, field: RegExp) => {
    const config = { ...hfConfig(BASE), ...over };
    assert.throws(
      () => Opt.load(checkpointOf(randomTensors(BASE, 1), config), jsBackend),
      (e: Error) => e instanceof UserError && field.test(e.message),
    );
  };

  test('unsupported values are refused with the field named', async () => {
    refused({ activation_function: 'gelu' }, /activation_function = "gelu"/);
    refused({ _remove_final_layer_norm: true }, /_remove_final_layer_norm = true/);
    refused({ num_attention_heads: 5 }, /num_attention_heads = 5/);
    refused({ num_attention_heads: undefined }, /num_attention_heads/);
    refused({ do_layer_norm_before: 'yes' }, /do_layer_norm_before = "yes"/);
    refused({ enable_bias: null }, /enable_bias/);
    refused({ hidden_size: 32 }, /hidden_size = 32 does not match/);
    refused({ max_position_embeddings: 2048 }, /max_position_embeddings = 2048/);
    refused({ vocab_size: 50272 }, /vocab_size/);
    refused({ model_type: 'gpt2' }, /model_type/);
    refused({ quantization_config: { bits: 4 } }, /quantization_config/);
  });

  test('config.json and tensors that disagree are refused, naming the tensor', async () => {
    // enable_bias false, but the checkpoint has biases.
    refused({ enable_bias: false }, /self_attn\.q_proj\.bias" is not part/);
    // untied head without lm_head.weight.
    refused({ tie_word_embeddings: false }, /lm_head\.weight" is missing/);
    // post-LN model would leave model.decoder.final_layer_norm unused.
    refused({ do_layer_norm_before: false }, /final_layer_norm\.weight" is not part/);
  });

  test('a checkpoint without any config is refused, saying why', async () => {
    assert.throws(
      () => Opt.load(checkpointOf(randomTensors(BASE, 1), null), jsBackend),
      (e: Error) =>
        e instanceof UserError && /num_attention_heads cannot be inferred/.test(e.message),
    );
  });

  test('defaults when optional fields are absent; dimensions from shapes', async () => {
    const { num_attention_heads } = hfConfig(BASE);
    const c = optConfig(checkpointOf(randomTensors(BASE, 1), { num_attention_heads }));
    assert.deepEqual(
      [c.nLayer, c.nEmbd, c.nHead, c.nFfn, c.nVocab, c.nPositions, c.nProj],
      [2, 16, 4, 40, 23, 20, 16],
    );
    assert.deepEqual([c.preLN, c.lnAffine, c.bias, c.tied], [true, true, true, true]);
    const m = randomModel(BASE, 1);
    // Parameters: every tensor once (the tied head is not counted twice).
    const n = randomTensors(BASE, 1).reduce((a, t) => a + t.data.length, 0);
    assert.equal(m.stats.parameters, n);
    assert.notEqual(m.fingerprint, randomModel(BASE, 2).fingerprint);
  });
});
