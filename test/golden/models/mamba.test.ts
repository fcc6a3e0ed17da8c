/**
 * Mamba and Mamba-2 against references: the shared mamba-A and mamba2-A with logits from
 * transformers' own MambaForCausalLM / Mamba2ForCausalLM (every position, every CPU
 * backend), and an independent float64 forward (plain loops over transformers' formulas,
 * thresholds at the four / two sites) for random models in every supported variant
 * (biases, no conv bias, untied head, groups, conv kernels, time-step limits). Properties:
 * sequence mode = step mode, also across calls; fp16 and bf16 safetensors of the same
 * weights load and agree within their precision; config.json fields are honoured or
 * refused by name.
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { UserError } from '../../../src/errors.ts';
import type { Checkpoint } from '../../../src/io/checkpoint.ts';
import { bf16ToFloat, floatToBf16, floatToHalf, halfToFloat } from '../../../src/io/dtype.ts';
import { memoryCheckpoint, type NamedTensor, readAll } from '../../../src/io/memory.ts';
import { openCheckpoint } from '../../../src/io/open.ts';
import { writeSafetensors } from '../../../src/io/safetensors.ts';
import { MAMBA_SITES, Mamba, type MambaConfig } from '../../../src/models/mamba.ts';
import { MAMBA2_SITES, type Mamba2, type Mamba2Config } from '../../../src/models/mamba2.ts';
import type { LanguageModel } from '../../../src/models/model.ts';
import { architecture, detectArchitecture, loadModel } from '../../../src/models/registry.ts';
import { perTokenQuantileThresholds } from '../../../src/sparsity/quantile.ts';
import { softplus } from '../../../src/tensor/families/selective-scan.ts';
import { backendNotices, jsBackend } from '../../../src/tensor/select.ts';
import { assertClose } from '../../helpers/assert.ts';
import { cpuBackends } from '../../helpers/backends.ts';
import { logitsOf, observe, stepAll } from '../../helpers/model.ts';
import { needsShared, shared, tmpDir } from '../../helpers/shared.ts';

const f32 = (path: string) => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
const maxAbs = (a: ArrayLike<number>) =>
  Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);

// ---------------------------------------------------------------- transformers' references

const REFS = [
  { name: 'mamba-A', arch: 'mamba', dims: [3, 64, 320] },
  { name: 'mamba2-A', arch: 'mamba2', dims: [2, 64, 320] },
] as const;

describe('mamba-A and mamba2-A against transformers (every position ≤ 1e-4)', () => {
  for (const r of REFS) {
    const dir = `models/mamba/${r.name}`;
    const files = needsShared(dir, `${dir}.ref.f32`, `${dir}.tokens.json`);
    for (const [bname, backend] of cpuBackends()) {
      const skip =
        files.skip ||
        (backend ? false : `${bname} backend not built here: ${backendNotices.join(' ')}`);
      test(
        `${r.name} on ${bname}: sequence, step, and a sequence continued across calls`,
        { skip },
        async () => {
          const tokens: number[] = JSON.parse(readFileSync(shared(`${dir}.tokens.json`), 'utf8'));
          const expected = f32(shared(`${dir}.ref.f32`));
          const ckpt = openCheckpoint(shared(dir));
          assert.equal(detectArchitecture(ckpt), r.arch);
          const model = loadModel(ckpt, backend!, { sparse: true });
          ckpt.close();
          assert.deepEqual([model.nLayer, model.nEmbd, model.nVocab], [...r.dims]);
          const seq = assertClose(await logitsOf(model, tokens), expected, {
            atol: 1e-4,
            label: 'sequence',
          });
          const step = assertClose(await stepAll(model, tokens), expected, {
            atol: 1e-4,
            label: 'step',
          });
          // 17 tokens, then 1, then 0, then the rest, from one state.
          const state = model.newState();
          const parts: Float32Array[] = [];
          for (const [a, b] of [
            [0, 17],
            [17, 18],
            [18, 18],
            [18, 40],
          ])
            parts.push(await logitsOf(model, tokens.slice(a, b), state));
          const joined = new Float32Array(expected.length);
          let o = 0;
          for (const p of parts) {
            joined.set(p, o);
            o += p.length;
          }
          assertClose(joined, expected, { atol: 1e-4, label: 'continued' });
          console.log(
            `  ${r.name} ${bname}: max |Δ| sequence ${seq.toExponential(2)}, step ${step.toExponential(2)}`,
          );
        },
      );
    }
  }
});

// ---------------------------------------------------------------- fp16 and bf16 files

describe('fp16 and bf16 safetensors of mamba-A and mamba2-A (every CPU tier)', () => {
  for (const r of REFS) {
    const dir = `models/mamba/${r.name}`;
    test(r.name, needsShared(dir, `${dir}.ref.f32`, `${dir}.tokens.json`), async () => {
      const tokens: number[] = JSON.parse(readFileSync(shared(`${dir}.tokens.json`), 'utf8'));
      const expected = f32(shared(`${dir}.ref.f32`));
      const src = openCheckpoint(shared(dir));
      const tensors = [...readAll(src)];
      const config = src.meta.config;
      src.close();
      for (const [dtype, round, tol] of [
        ['f16', (v: number) => halfToFloat(floatToHalf(v)), 1e-2],
        ['bf16', (v: number) => bf16ToFloat(floatToBf16(v)), 6e-2],
      ] as const) {
        const d = tmpDir();
        copyFileSync(shared(`${dir}/config.json`), join(d, 'config.json'));
        writeSafetensors(join(d, 'model.safetensors'), tensors, { dtype });
        // Exactly the float32 model of the rounded weights on every tier: the file's
        // precision is all that changed.
        const rounded = tensors.map((t) => ({ ...t, data: t.data.map(round) }));
        let diff = 0;
        for (const [, backend] of cpuBackends()) {
          if (!backend) continue;
          const ckpt = openCheckpoint(d);
          const got = await logitsOf(loadModel(ckpt, backend), tokens);
          ckpt.close();
          const same = await logitsOf(
            loadModel(memoryCheckpoint(rounded, 'rounded', { config }), backend),
            tokens,
          );
          assert.deepEqual(got, same);
          diff = Math.max(
            diff,
            assertClose(got, expected, {
              atol: tol,
              label: `${dtype} vs float32 on ${backend.name}`,
            }),
          );
        }
        assert.ok(diff > 1e-6, `${dtype}: the weights were not rounded (max |Δ| ${diff})`);
        console.log(`  ${r.name} ${dtype}: max |Δ| to the float32 logits ${diff.toExponential(2)}`);
      }
    });
  }
});

// ---------------------------------------------------------------- an independent float64 forward

type Tensors = Map<string, Float32Array>;
const tensorsOf = (c: Checkpoint): Tensors => new Map([...readAll(c)].map((t) => [t.name, t.data]));
const silu = (x: number) => x / (1 + Math.exp(-x));
/** Keep |x| > λ (the models' comparison). */
const cut = (v: number[], lambda: number) =>
  v.map((x) => (lambda > 0 && !(Math.abs(x) > lambda) ? 0 : x));
const rms = (v: number[], w: Float32Array, eps: number) => {
  const inv = 1 / Math.sqrt(v.reduce((s, x) => s + x * x, 0) / v.length + eps);
  return v.map((x, i) => x * inv * w[i]);
};
/** y = W[rows, cols]·x (+ b) for rows r0 … r0+n−1 of W. */
const mv = (W: Float32Array, x: number[], r0: number, n: number, b?: Float32Array) =>
  Array.from({ length: n }, (_, r) => {
    let s = b ? b[r0 + r] : 0;
    for (let c = 0; c < x.length; c++) s += W[(r0 + r) * x.length + c] * x[c];
    return s;
  });

/** Causal depthwise conv of channel rows xs[t][c] with weight [C, 1, K] and bias. */
function conv(
  xs: number[][],
  w: Float32Array,
  b: Float32Array | undefined,
  c0: number,
  K: number,
): number[][] {
  return xs.map((_, t) =>
    xs[t].map((__, c) => {
      let s = b ? b[c0 + c] : 0;
      for (let k = 0; k < K; k++) {
        const i = t + k - (K - 1);
        if (i >= 0) s += w[(c0 + c) * K + k] * xs[i][c];
      }
      return s;
    }),
  );
}

/** logits [T, V] of transformers' MambaForCausalLM.slow_forward in float64, thresholds λ per site. */
function refMamba(W: Tensors, c: MambaConfig, tokens: number[], lambda: Float32Array): number[][] {
  const { nEmbd: d, nInner: E, nState: N, dtRank: R, convKernel: K, eps } = c;
  const emb = W.get('backbone.embeddings.weight')!;
  let x = tokens.map((t) => Array.from(emb.subarray(t * d, (t + 1) * d)));
  for (let l = 0; l < c.nLayer; l++) {
    const m = (n: string) => W.get(`backbone.layers.${l}.mixer.${n}`)!;
    const lam = (s: string) => lambda[l * MAMBA_SITES.length + MAMBA_SITES.indexOf(s as 'in_proj')];
    const h = x.map((v) =>
      cut(rms(v, W.get(`backbone.layers.${l}.norm.weight`)!, eps), lam('in_proj')),
    );
    const xs = h.map((v) =>
      mv(m('in_proj.weight'), v, 0, E, W.get(`backbone.layers.${l}.mixer.in_proj.bias`)),
    );
    const z = h.map((v) =>
      mv(m('in_proj.weight'), v, E, E, W.get(`backbone.layers.${l}.mixer.in_proj.bias`)),
    );
    const u = conv(
      xs,
      m('conv1d.weight'),
      W.get(`backbone.layers.${l}.mixer.conv1d.bias`),
      0,
      K,
    ).map((v) => v.map(silu));
    const state = new Float64Array(E * N);
    const out = u.map((ut, t) => {
      const ux = cut(ut, lam('x_proj'));
      const dtr = cut(mv(m('x_proj.weight'), ux, 0, R), lam('dt_proj'));
      const B = mv(m('x_proj.weight'), ux, R, N);
      const C = mv(m('x_proj.weight'), ux, R + N, N);
      const delta = mv(m('dt_proj.weight'), dtr, 0, E, m('dt_proj.bias')).map(softplus);
      const y = ut.map((uv, e) => {
        let s = m('D')[e] * uv;
        for (let n = 0; n < N; n++) {
          const k = e * N + n;
          state[k] =
            Math.exp(-Math.exp(m('A_log')[k]) * delta[e]) * state[k] + delta[e] * B[n] * uv;
          s += state[k] * C[n];
        }
        return s * silu(z[t][e]);
      });
      return mv(
        m('out_proj.weight'),
        cut(y, lam('out_proj')),
        0,
        d,
        W.get(`backbone.layers.${l}.mixer.out_proj.bias`),
      );
    });
    x = x.map((v, t) => v.map((a, i) => a + out[t][i]));
  }
  const head = c.tied ? emb : W.get('lm_head.weight')!;
  return x.map((v) => mv(head, rms(v, W.get('backbone.norm_f.weight')!, eps), 0, c.nVocab));
}

/** logits [T, V] of transformers' Mamba2ForCausalLM (its recurrence) in float64. */
function refMamba2(
  W: Tensors,
  c: Mamba2Config,
  tokens: number[],
  lambda: Float32Array,
): number[][] {
  const {
    nEmbd: d,
    nInner: E,
    nHead: H,
    headDim: P,
    nGroups: G,
    nState: N,
    convKernel: K,
    eps,
  } = c;
  const GN = G * N;
  const emb = W.get('backbone.embeddings.weight')!;
  let x = tokens.map((t) => Array.from(emb.subarray(t * d, (t + 1) * d)));
  for (let l = 0; l < c.nLayer; l++) {
    const m = (n: string) => W.get(`backbone.layers.${l}.mixer.${n}`)!;
    const bias = W.get(`backbone.layers.${l}.mixer.in_proj.bias`);
    const convB = W.get(`backbone.layers.${l}.mixer.conv1d.bias`);
    const h = x.map((v) =>
      cut(rms(v, W.get(`backbone.layers.${l}.norm.weight`)!, eps), lambda[l * 2]),
    );
    // in_proj = [z, xBC, dt]; the conv runs over xBC = [x, B, C]
    const z = h.map((v) => mv(m('in_proj.weight'), v, 0, E, bias));
    const xBC = conv(
      h.map((v) => mv(m('in_proj.weight'), v, E, E + 2 * GN, bias)),
      m('conv1d.weight'),
      convB,
      0,
      K,
    ).map((v) => v.map(silu));
    const dt = h.map((v) => mv(m('in_proj.weight'), v, 2 * E + 2 * GN, H, bias));
    const state = new Float64Array(H * P * N);
    const out = xBC.map((r, t) => {
      const y = new Array<number>(E);
      for (let hd = 0; hd < H; hd++) {
        const g = Math.floor(hd / (H / G));
        const step = Math.min(Math.max(softplus(dt[t][hd] + m('dt_bias')[hd]), c.dtMin), c.dtMax);
        const decay = Math.exp(step * -Math.exp(m('A_log')[hd]));
        for (let p = 0; p < P; p++) {
          const xv = r[hd * P + p];
          let s = m('D')[hd] * xv;
          for (let n = 0; n < N; n++) {
            const k = (hd * P + p) * N + n;
            state[k] = state[k] * decay + step * r[E + g * N + n] * xv;
            s += state[k] * r[E + GN + g * N + n];
          }
          y[hd * P + p] = s * silu(z[t][hd * P + p]);
        }
      }
      const yn = cut(rms(y, m('norm.weight'), eps), lambda[l * 2 + 1]);
      return mv(m('out_proj.weight'), yn, 0, d, W.get(`backbone.layers.${l}.mixer.out_proj.bias`));
    });
    x = x.map((v, t) => v.map((a, i) => a + out[t][i]));
  }
  const head = c.tied ? emb : W.get('lm_head.weight')!;
  return x.map((v) => mv(head, rms(v, W.get('backbone.norm_f.weight')!, eps), 0, c.nVocab));
}

/** λ per site for about half zeros, from the dense activations of `tokens`. */
function halfZeros(model: LanguageModel, tokens: number[]): Float32Array {
  const lambda = new Float32Array(model.thresholds.length);
  observe(model, tokens, (g, x, rows, cols) => {
    lambda[g] = perTokenQuantileThresholds(x, rows, cols, [0.5])[0];
  });
  return lambda;
}

const VARIANTS: { arch: 'mamba' | 'mamba2'; shape: Record<string, unknown> }[] = [
  { arch: 'mamba', shape: {} },
  { arch: 'mamba', shape: { bias: true, convBias: false, tied: false, convKernel: 2, nState: 6 } },
  { arch: 'mamba', shape: { nInner: 48, dtRank: 3, convKernel: 1, eps: 1e-3 } },
  { arch: 'mamba2', shape: { headDim: 8, nGroups: 2, nState: 8 } },
  {
    arch: 'mamba2',
    shape: { headDim: 16, nState: 4, bias: true, convBias: false, tied: false, convKernel: 3 },
  },
  { arch: 'mamba2', shape: { headDim: 4, nGroups: 4, nState: 5, dtMin: 0.05, dtMax: 0.2 } },
];

describe('random models in every variant against a float64 forward of transformers’ formulas', () => {
  const tokens = Array.from({ length: 11 }, (_, i) => (i * 13 + 5) % 50);
  for (const [i, v] of VARIANTS.entries()) {
    test(`${v.arch} ${JSON.stringify(v.shape)}: dense and thresholded, sequence = step`, async () => {
      const ckpt = architecture(v.arch).random(
        { nLayer: 2, nEmbd: 32, nVocab: 50, ...v.shape },
        10 + i,
      );
      const W = tensorsOf(ckpt);
      const model = loadModel(ckpt, jsBackend);
      const ref = (lambda: Float32Array) =>
        (model instanceof Mamba
          ? refMamba(W, model.config, tokens, lambda)
          : refMamba2(W, (model as Mamba2).config, tokens, lambda)
        ).flat();
      for (const lambda of [new Float32Array(model.thresholds.length), halfZeros(model, tokens)]) {
        model.setThresholds(lambda);
        const want = ref(lambda);
        const label = lambda[0] ? 'thresholded' : 'dense';
        assertClose(await logitsOf(model, tokens), want, {
          atol: 2e-5 * maxAbs(want),
          label: `${label} sequence`,
        });
        assertClose(await stepAll(model, tokens), want, {
          atol: 2e-5 * maxAbs(want),
          label: `${label} step`,
        });
      }
    });
  }
});

// ---------------------------------------------------------------- sites

describe('sites', () => {
  test('Mamba: in_proj, x_proj, dt_proj, out_proj with their MACs; Mamba-2: in_proj, out_proj', () => {
    const m = loadModel(
      architecture('mamba').random({ nLayer: 2, nEmbd: 48, nVocab: 20 }),
      jsBackend,
    );
    // d 48, E 96, N 16, R ⌈48/16⌉ = 3
    assert.deepEqual(
      m.sites.perBlock.map((s) => [s.id, s.cols, s.rows, s.fedBy ?? null]),
      [
        ['in_proj', 48, 192, null],
        ['x_proj', 96, 35, null],
        ['dt_proj', 3, 96, 'x_proj'],
        ['out_proj', 96, 48, null],
      ],
    );
    const m2 = loadModel(
      architecture('mamba2').random({
        nLayer: 1,
        nEmbd: 48,
        nVocab: 20,
        headDim: 24,
        nGroups: 2,
        nState: 8,
      }),
      jsBackend,
    );
    // z, x: 96 each; B, C: 2·8 each; dt: 4 heads
    assert.deepEqual(
      m2.sites.perBlock.map((s) => [s.id, s.cols, s.rows]),
      [
        ['in_proj', 48, 96 + 96 + 32 + 4],
        ['out_proj', 96, 48],
      ],
    );
    assert.deepEqual(MAMBA2_SITES, ['in_proj', 'out_proj']);
  });

  test('the x_proj threshold acts on its product only: the scan still reads the dense u', async () => {
    const ckpt = architecture('mamba').random({ nLayer: 1, nEmbd: 32, nVocab: 40 }, 3);
    const model = loadModel(ckpt, jsBackend);
    const tokens = [1, 5, 9, 2, 7, 3];
    const lambda = new Float32Array(4);
    lambda[MAMBA_SITES.indexOf('x_proj')] = halfZeros(model, tokens)[1];
    model.setThresholds(lambda);
    const seen: number[] = [];
    observe(model, tokens, (g, x) => {
      if (g === 1) seen.push(x.filter((v) => v === 0).length / x.length);
    });
    assert.ok(seen[0] > 0.4, `x_proj input ${seen[0]} zeros`);
    const want = refMamba(tensorsOf(ckpt), (model as Mamba).config, tokens, lambda).flat();
    assertClose(await logitsOf(model, tokens), want, { atol: 2e-5 * maxAbs(want) });
  });
});

// ---------------------------------------------------------------- config.json

/** mamba-like random checkpoint with config.json fields changed (undefined deletes). */
function withConfig(
  arch: 'mamba' | 'mamba2',
  change: Record<string, unknown>,
  shape: Record<string, unknown> = {},
): Checkpoint {
  const c = architecture(arch).random({ nLayer: 1, nEmbd: 32, nVocab: 30, ...shape });
  const config = { ...(c.meta.config as Record<string, unknown>), ...change };
  for (const [k, v] of Object.entries(change)) if (v === undefined) delete config[k];
  const tensors: NamedTensor[] = [...readAll(c)];
  return memoryCheckpoint(tensors, `<${arch}>`, { config });
}

const refused = (ckpt: Checkpoint, re: RegExp) =>
  assert.throws(
    () => loadModel(ckpt, jsBackend),
    (e: unknown) => e instanceof UserError && re.test(e.message),
  );

describe('config.json: honoured or refused by name', () => {
  test('Mamba', () => {
    // time_step_rank "auto" = ⌈hidden_size/16⌉: 2 for hidden 32
    assert.equal(
      (loadModel(withConfig('mamba', { time_step_rank: 'auto' }), jsBackend) as Mamba).config
        .dtRank,
      2,
    );
    refused(
      withConfig('mamba', { time_step_rank: 'auto' }, { dtRank: 3 }),
      /time_step_rank = "auto" \(⌈32\/16⌉\) does not match .* \(3\)/,
    );
    refused(
      withConfig('mamba', { hidden_act: 'gelu' }),
      /hidden_act = "gelu" is not supported \(only "silu" or "swish"\)/,
    );
    assert.ok(loadModel(withConfig('mamba', { hidden_act: 'swish' }), jsBackend));
    refused(withConfig('mamba', { model_type: 'mamba2' }), /model_type = "mamba2" is not "mamba"/);
    refused(
      withConfig('mamba', { intermediate_size: 48 }),
      /intermediate_size = 48 does not match the checkpoint's tensors \(64\)/,
    );
    refused(
      withConfig('mamba', { expand: 3, intermediate_size: undefined }),
      /expand = 3 × hidden_size 32/,
    );
    refused(withConfig('mamba', { state_size: 8 }), /state_size = 8 does not match/);
    refused(withConfig('mamba', { use_bias: true }), /in_proj.bias" is missing/);
    refused(
      withConfig('mamba', { use_bias: false }, { bias: true }),
      /in_proj.bias" is not part of the Mamba model/,
    );
    refused(
      withConfig('mamba', { use_conv_bias: 'yes' }),
      /use_conv_bias = "yes" is not true or false/,
    );
    refused(withConfig('mamba', { tie_word_embeddings: false }), /lm_head.weight" is missing/);
    refused(
      withConfig('mamba', { layer_norm_epsilon: 'small' }),
      /layer_norm_epsilon = "small" is not a number/,
    );
    refused(
      withConfig('mamba', { quantization_config: { bits: 4 } }),
      /quantization_config .* is not supported/,
    );
    // Fields that only initialise weights or choose how a scan is computed are accepted.
    assert.ok(
      loadModel(
        withConfig('mamba', {
          rescale_prenorm_residual: true,
          use_mambapy: true,
          residual_in_fp32: false,
        }),
        jsBackend,
      ),
    );
    // layer_norm_epsilon is honoured
    const a = loadModel(withConfig('mamba', { layer_norm_epsilon: 0.5 }), jsBackend) as Mamba;
    assert.equal(a.config.eps, 0.5);
  });

  test('Mamba-2', () => {
    const noConfig = architecture('mamba2').random({ nLayer: 1, nEmbd: 32, nVocab: 30 });
    refused(
      memoryCheckpoint([...readAll(noConfig)], '<mamba2>'),
      /needs its config.json \(n_groups and state_size/,
    );
    refused(
      withConfig('mamba2', { n_groups: 3 }, { headDim: 16 }),
      /n_groups = 3 does not divide num_heads 4/,
    );
    refused(
      withConfig('mamba2', { n_groups: 2 }, { headDim: 16, nState: 8 }),
      /state_size = 8 with n_groups 2 does not match conv1d's 80 channels/,
    );
    refused(withConfig('mamba2', { head_dim: 8 }, { headDim: 16 }), /head_dim = 8 does not match/);
    refused(
      withConfig('mamba2', { num_heads: 8 }, { headDim: 16 }),
      /num_heads = 8 does not match/,
    );
    refused(withConfig('mamba2', { rms_norm: false }), /rms_norm = false is not supported/);
    refused(
      withConfig('mamba2', { time_step_limit: [1, 0.5] }),
      /time_step_limit .* has min > max/,
    );
    refused(withConfig('mamba2', { time_step_limit: 3 }), /time_step_limit = 3 is not a pair/);
    refused(withConfig('mamba2', { hidden_act: 'relu' }), /hidden_act = "relu"/);
    refused(withConfig('mamba2', { model_type: 'mamba' }), /model_type = "mamba" is not "mamba2"/);
    // time_step_limit in both JSON spellings of infinity, and finite bounds honoured
    for (const inf of [{ __float__: 'Infinity' }, null]) {
      const m = loadModel(
        withConfig('mamba2', { time_step_limit: [0.0, inf] }),
        jsBackend,
      ) as Mamba2;
      assert.deepEqual([m.config.dtMin, m.config.dtMax], [0, Number.POSITIVE_INFINITY]);
    }
    const clamped = loadModel(
      withConfig('mamba2', { time_step_limit: [0.01, 0.1] }),
      jsBackend,
    ) as Mamba2;
    assert.deepEqual([clamped.config.dtMin, clamped.config.dtMax], [0.01, 0.1]);
    // chunk_size only chooses transformers' sequence algorithm; norm_before_gate is not read by it.
    assert.ok(
      loadModel(withConfig('mamba2', { chunk_size: 7, norm_before_gate: true }), jsBackend),
    );
  });

  test('a model rebuilt from its recorded config has the same shape (random / skeleton)', () => {
    for (const v of VARIANTS) {
      const a = architecture(v.arch);
      const m = loadModel(a.random({ nLayer: 2, nEmbd: 32, nVocab: 50, ...v.shape }), jsBackend);
      const again = loadModel(
        a.skeleton({ ...m.config, nLayer: 2, nEmbd: 32, nVocab: 50 }),
        jsBackend,
      );
      assert.deepEqual(again.config, m.config);
      assert.deepEqual(again.sites, m.sites);
    }
  });
});

test('a Mamba checkpoint with the older `backbone.embedding.weight` name loads (as transformers renames it)', async () => {
  const c = architecture('mamba').random({ nLayer: 1, nEmbd: 16, nVocab: 12 });
  const renamed = [...readAll(c)].map((t) => ({
    ...t,
    name: t.name.replace('embeddings.', 'embedding.'),
  }));
  const a = loadModel(c, jsBackend);
  const b = loadModel(memoryCheckpoint(renamed, 'old', { config: c.meta.config }), jsBackend);
  assert.deepEqual(await logitsOf(b, [1, 2, 3]), await logitsOf(a, [1, 2, 3]));
});
