/**
 * The trainer: gradients of every parameter against central finite differences (float64),
 * the WKV backward in both evaluations, the training forward against Rwkv4's logits, the
 * matrix products against the reference, AdamW on hand-computed numbers, a falling loss,
 * resume equality, the written model, and the errors of the run directory and the CLI.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { trainCommand } from '../../../src/cli/commands/train.ts';
import { invoke } from '../../../src/cli/dispatch.ts';
import { UserError } from '../../../src/errors.ts';
import { memoryCheckpoint } from '../../../src/io/memory.ts';
import { openSafetensors } from '../../../src/io/safetensors.ts';
import { sequenceLogits } from '../../../src/models/model.ts';
import { randomRwkv4 } from '../../../src/models/random.ts';
import { Rwkv4 } from '../../../src/models/rwkv4.ts';
import { jsKernels } from '../../../src/tensor/cpu.ts';
import * as native from '../../../src/tensor/native/index.ts';
import { jsBackend } from '../../../src/tensor/select.ts';
import { adamwUpdate, clipGradNorm, learningRate } from '../../../src/train/adamw.ts';
import {
  backendMatmul,
  bestMatmul,
  type Matmul,
  referenceMatmul,
  type Sgemm,
  sgemmMatmul,
} from '../../../src/train/matmul.ts';
import { dataParallel, sharedF32, singleThread } from '../../../src/train/parallel.ts';
import { initRwkv4, ParamSet } from '../../../src/train/params.ts';
import { Rwkv4Grad } from '../../../src/train/rwkv4-grad.ts';
import { TRAIN_DEFAULTS, type TrainConfig, train } from '../../../src/train/trainer.ts';
import { WkvSaved, WkvScratch, wkv4Backward, wkv4Forward } from '../../../src/train/wkv4-grad.ts';
import { rng } from '../../../src/util/random.ts';
import { assertClose } from '../../helpers/assert.ts';
import { tmpDir } from '../../helpers/shared.ts';

const tiny = { nLayer: 2, nEmbd: 8, nVocab: 16, nFfn: 32 };
const f64 = (n: number) => new Float64Array(n);
const f32 = (n: number) => new Float32Array(n);

/** A float64 model with randomRwkv4's weights (every gradient non-zero). */
function tinyModel(mode: 'auto' | 'stabilized', seed = 3) {
  const params = new ParamSet(tiny, f64);
  params.assign(randomRwkv4({ ...tiny, seed }));
  const model = new Rwkv4Grad(params, {
    matmul: referenceMatmul<Float64Array>(),
    alloc: f64,
    wkvMode: mode,
  });
  return { params, model };
}

const tokensOf = (n: number, V: number, seed: number) => {
  const r = rng(seed);
  return Array.from({ length: n }, () => Math.floor(r() * V));
};

/**
 * Worst error per tensor of the analytic gradient against (L(θ+h) − L(θ−h)) / 2h, as
 * max|g − fd| / max|fd| over the tensor (elements too small to matter cannot inflate it).
 */
function gradientErrors(
  params: ParamSet<Float64Array>,
  model: Rwkv4Grad<Float64Array>,
  tokens: number[],
  B: number,
  T: number,
  only?: (name: string) => boolean,
): Map<string, number> {
  const grads = new ParamSet(params.config, f64);
  model.lossAndGrad(tokens, B, T, grads);
  const errors = new Map<string, number>();
  const h = 1e-5;
  for (const [i, spec] of params.specs.entries()) {
    if (only && !only(spec.name)) continue;
    const p = params.tensors[i];
    const g = grads.tensors[i];
    let maxFd = 0;
    let maxDiff = 0;
    for (let j = 0; j < p.length; j++) {
      const keep = p[j];
      p[j] = keep + h;
      const up = model.lossAndGrad(tokens, B, T);
      p[j] = keep - h;
      const down = model.lossAndGrad(tokens, B, T);
      p[j] = keep;
      const fd = (up - down) / (2 * h);
      maxFd = Math.max(maxFd, Math.abs(fd));
      maxDiff = Math.max(maxDiff, Math.abs(fd - g[j]));
    }
    assert.ok(maxFd > 1e-8, `${spec.name}: gradient is zero, the check would prove nothing`);
    errors.set(spec.name, maxDiff / maxFd);
  }
  return errors;
}

describe('gradients against finite differences (float64)', () => {
  for (const mode of ['auto', 'stabilized'] as const) {
    test(`every parameter tensor, WKV ${mode === 'auto' ? 'direct' : 'stabilized'}`, () => {
      const { params, model } = tinyModel(mode);
      const B = 2;
      const T = 5;
      const errors = gradientErrors(params, model, tokensOf(B * (T + 1), 16, 7), B, T);
      assert.equal(errors.size, params.specs.length);
      for (const [name, e] of errors) assert.ok(e < 1e-4, `${name}: relative error ${e}`);
    });
  }

  test('WKV with keys near 800 (e^k overflows float64): the stabilized backward', () => {
    // loss = Σ gy·wkv. The keys share an offset of 800, which the direct evaluation cannot
    // take (auto mode falls back) and wkv does not depend on: compare with keys − 800 too.
    const B = 1;
    const T = 6;
    const d = 3;
    const r = rng(21);
    const rand = (n: number, s: number) => Float64Array.from({ length: n }, () => s * (r() - 0.5));
    const k = Float64Array.from(rand(T * d, 4), (x) => x + 800);
    const v = rand(T * d, 2);
    const u = rand(d, 2);
    const w = Float64Array.from(rand(d, 2), (x) => -Math.exp(x));
    const gy = rand(T * d, 2);
    const s = new WkvScratch(T, d);
    const loss = () => {
      const y = new Float64Array(T * d);
      wkv4Forward(y, k, v, w, u, B, T, d, s);
      return y.reduce((a, x, i) => a + x * gy[i], 0);
    };
    const dk = new Float64Array(T * d);
    const dv = new Float64Array(T * d);
    const dw = new Float64Array(d);
    const du = new Float64Array(d);
    wkv4Backward(dk, dv, dw, du, gy, k, v, w, u, B, T, d, s);
    const h = 1e-6;
    for (const [x, g, label] of [
      [k, dk, 'k'],
      [v, dv, 'v'],
      [w, dw, 'w'],
      [u, du, 'u'],
    ] as const) {
      const fd = Array.from(x, (_, j) => {
        const keep = x[j];
        x[j] = keep + h;
        const up = loss();
        x[j] = keep - h;
        const down = loss();
        x[j] = keep;
        return (up - down) / (2 * h);
      });
      const scale = Math.max(...fd.map(Math.abs));
      assert.ok(scale > 1e-3, label);
      assertClose(g, fd, { atol: 1e-5 * scale, label: `∂/∂${label}` });
    }
    // Shift invariance: the same outputs as with keys around 0 (direct evaluation).
    const y1 = new Float64Array(T * d);
    const y0 = new Float64Array(T * d);
    wkv4Forward(y1, k, v, w, u, B, T, d, s);
    wkv4Forward(
      y0,
      k.map((x) => x - 800),
      v,
      w,
      u,
      B,
      T,
      d,
      s,
    );
    assertClose(y1, y0, { atol: 1e-9 });
  });
});

test('WKV: direct (state kept or recomputed) and stabilized evaluations agree', () => {
  const B = 2;
  const T = 7;
  const d = 5;
  const r = rng(4);
  const rand = (n: number, s: number) => Float64Array.from({ length: n }, () => s * (r() - 0.5));
  const k = rand(B * T * d, 10);
  const v = rand(B * T * d, 4);
  const u = rand(d, 3);
  const w = Float64Array.from(rand(d, 6), (x) => -Math.exp(x));
  const gy = rand(B * T * d, 2);
  const run = (mode: 'auto' | 'stabilized', keep: boolean) => {
    const s = new WkvScratch(T, d);
    const saved = keep ? new WkvSaved(B, T, d) : null;
    const y = new Float64Array(B * T * d);
    const dk = new Float64Array(B * T * d);
    const dv = new Float64Array(B * T * d);
    const dw = new Float64Array(d);
    const du = new Float64Array(d);
    wkv4Forward(y, k, v, w, u, B, T, d, s, saved, mode);
    wkv4Backward(dk, dv, dw, du, gy, k, v, w, u, B, T, d, s, saved, mode);
    return [y, dk, dv, dw, du];
  };
  // direct with the forward's state kept, direct recomputed, stabilized
  const a = run('auto', true);
  for (const b of [run('auto', false), run('stabilized', true)])
    for (let i = 0; i < a.length; i++) assertClose(a[i], b[i], { atol: 1e-12, rtol: 1e-10 });
  // Window 1 starts from the zero state: its first output is v itself.
  for (let i = 0; i < d; i++) assert.ok(Math.abs(a[0][T * d + i] - v[T * d + i]) < 1e-12);
});

test('the training forward gives Rwkv4’s logits, window by window', async () => {
  const cfg = { nLayer: 2, nEmbd: 16, nVocab: 32, nFfn: 64 };
  const named = randomRwkv4({ ...cfg, seed: 12 });
  const params = new ParamSet(cfg, f32);
  params.assign(named);
  const model = new Rwkv4Grad(params, { matmul: referenceMatmul<Float32Array>(), alloc: f32 });
  const ref = Rwkv4.load(memoryCheckpoint(named), jsBackend);
  const B = 2;
  const T = 9;
  const toks = tokensOf(B * (T + 1), 32, 2);
  const got = model.logits(toks, B, T);
  for (let b = 0; b < B; b++) {
    const win = toks.slice(b * (T + 1), b * (T + 1) + T);
    const want = await sequenceLogits(ref, win, ref.newState());
    assertClose(got.subarray(b * T * 32, (b + 1) * T * 32), want, {
      atol: 1e-4,
      label: `window ${b}`,
    });
  }
});

describe('matrix products', () => {
  const n = 37;
  const out = 19;
  const inp = 23;
  const r = rng(8);
  const rand = (len: number) => Float32Array.from({ length: len }, () => r() - 0.5);
  const x = rand(n * inp);
  const w = rand(out * inp);
  const dy = rand(n * out);
  // Plain float64 definitions.
  const want = { y: f64(n * out), dx: f64(n * inp), dw: f64(out * inp) };
  for (let t = 0; t < n; t++)
    for (let o = 0; o < out; o++)
      for (let i = 0; i < inp; i++) {
        want.y[t * out + o] += x[t * inp + i] * w[o * inp + i];
        want.dx[t * inp + i] += dy[t * out + o] * w[o * inp + i];
        want.dw[o * inp + i] += dy[t * out + o] * x[t * inp + i];
      }
  const check = (mm: Matmul<Float32Array>) => {
    const y = f32(n * out);
    const dx = f32(n * inp);
    const dw = f32(out * inp);
    mm.forward(y, x, w, n, out, inp);
    mm.backwardInput(dx, dy, w, n, out, inp);
    mm.backwardWeight(dw, dy, x, n, out, inp);
    assertClose(y, want.y, { atol: 1e-5, label: `${mm.description} forward` });
    assertClose(dx, want.dx, { atol: 1e-5, label: `${mm.description} backwardInput` });
    assertClose(dw, want.dw, { atol: 1e-5, label: `${mm.description} backwardWeight` });
  };
  test('reference', () => check(referenceMatmul<Float32Array>()));
  test('through the js kernels’ Y = X·Wᵀ', () => check(backendMatmul(jsKernels)));
  const backend = native.loadNativeKernels();
  test(
    'through the native backend, and the best available',
    { skip: !backend && 'no addon' },
    () => {
      check(backendMatmul(backend!));
      check(bestMatmul());
    },
  );
  // C = op(A)·op(B) in plain loops: checks how sgemmMatmul maps the products onto it.
  const jsSgemm: Sgemm = (ta, tb, m, nn, k, a, b, c) => {
    for (let i = 0; i < m; i++)
      for (let j = 0; j < nn; j++) {
        let acc = 0;
        for (let q = 0; q < k; q++)
          acc += a[ta ? q * m + i : i * k + q] * b[tb ? j * k + q : q * nn + j];
        c[i * nn + j] = acc;
      }
  };
  test('as general GEMMs (sgemm)', () => check(sgemmMatmul(jsSgemm, 'js sgemm')));
  // Exported by src/tensor/native/index.ts once the addon is built with train_gemm.cc.
  const lookup = (native as unknown as { nativeSgemm?: (own?: boolean) => Sgemm | null })
    .nativeSgemm;
  const addonSgemm = typeof lookup === 'function' ? lookup() : null;
  test(
    'the addon’s sgemm, OpenBLAS and own path',
    { skip: !addonSgemm && 'addon without sgemm' },
    () => {
      for (const own of [false, true]) {
        const sg = lookup!(own)!;
        check(sgemmMatmul(sg, own ? 'own sgemm' : 'sgemm'));
        for (const [ta, tb] of [
          [false, false],
          [true, true],
        ]) {
          const c = f32(n * out);
          const cRef = f32(n * out);
          const a = rand(n * inp);
          const b = rand(inp * out);
          sg(ta, tb, n, out, inp, a, b, c);
          jsSgemm(ta, tb, n, out, inp, a, b, cRef);
          assertClose(c, cRef, { atol: 1e-5, label: `transA ${ta} transB ${tb}` });
        }
      }
      const sg = lookup!()!;
      assert.throws(
        () => sg(false, false, 4, 4, 4, f32(15), f32(16), f32(16)),
        /a has 15 values; needs 16/,
      );
      const buf = f32(32);
      assert.throws(
        () => sg(false, false, 4, 4, 2, buf, f32(8), buf.subarray(4, 20)),
        /must not overlap/,
      );
    },
  );
});

test('two threads (data parallel) give one thread’s loss and gradients', () => {
  const cfg = { nLayer: 2, nEmbd: 16, nVocab: 256, nFfn: 64 };
  const params = new ParamSet(cfg, sharedF32);
  params.assign(randomRwkv4({ ...cfg, seed: 4 }));
  const B = 3; // split 2 + 1: the halves are weighted by their window counts
  const T = 6;
  const toks = Int32Array.from(tokensOf(B * (T + 1), 256, 5));
  const one = singleThread(params);
  const two = dataParallel(params, B, T);
  try {
    const g1 = new ParamSet(cfg, f32);
    const g2 = new ParamSet(cfg, f32);
    const l1 = one.lossAndGrad(toks, B, T, g1);
    const l2 = two.lossAndGrad(toks, B, T, g2);
    assert.ok(Math.abs(l1 - l2) < 1e-6, `loss ${l1} vs ${l2}`);
    assert.ok(Math.abs(two.loss(toks, B, T) - l1) < 1e-6);
    for (const [i, spec] of params.specs.entries()) {
      const scale = Math.max(...g1.tensors[i].map(Math.abs));
      assertClose(g2.tensors[i], g1.tensors[i], { atol: 1e-5 * scale, label: spec.name });
    }
    assert.throws(() => two.loss(toks, 1, T + 1), /built for T = 6/);
  } finally {
    two.close();
  }
});

describe('AdamW', () => {
  test('two steps with a constant gradient move each weight by lr (hand-computed)', () => {
    // Step 1: m = 0.1·g, v = 0.01·g², m̂ = g, v̂ = g²: the update is lr·sign(g).
    // Step 2: m = 0.19·g, v = 0.0199·g²; m̂ = g, v̂ = g² again.
    const cfg = { beta1: 0.9, beta2: 0.99, eps: 0, weightDecay: 0.1 };
    const p = Float32Array.of(1, -2);
    const g = Float32Array.of(0.5, -1);
    const m = f32(2);
    const v = f32(2);
    adamwUpdate(p, g, m, v, 1, 0.1, true, cfg);
    // p·(1 − 0.1·0.1) − 0.1·sign(g)
    assertClose(p, [0.99 - 0.1, -1.98 + 0.1], { atol: 1e-6 });
    assertClose(m, [0.05, -0.1], { atol: 1e-7 });
    assertClose(v, [0.0025, 0.01], { atol: 1e-8 });
    adamwUpdate(p, g, m, v, 2, 0.1, true, cfg);
    assertClose(p, [0.89 * 0.99 - 0.1, -1.88 * 0.99 + 0.1], { atol: 1e-6 });
    // Without decay (vectors): only the Adam step.
    const q = Float32Array.of(1);
    adamwUpdate(q, Float32Array.of(-3), f32(1), f32(1), 1, 0.01, false, cfg);
    assertClose(q, [1.01], { atol: 1e-7 });
  });

  test('clipping by global norm, and the schedule', () => {
    const a = Float32Array.of(3);
    const b = Float32Array.of(4);
    assert.equal(clipGradNorm([a, b], 1), 5);
    assertClose([a[0], b[0]], [0.6, 0.8], { atol: 1e-6 });
    const c = Float32Array.of(0.3, 0.4);
    assert.equal(Math.fround(clipGradNorm([c], 1)), Math.fround(0.5));
    assert.deepEqual(c, Float32Array.of(0.3, 0.4)); // below the threshold: untouched
    const s = { lr: 1, minLr: 0.1, warmup: 10, steps: 110 };
    assert.equal(learningRate(0, s), 0.1);
    assert.equal(learningRate(9, s), 1);
    assert.equal(learningRate(10, s), 1);
    assertClose([learningRate(60, s)], [0.55], { atol: 1e-12 }); // halfway down the cosine
    assertClose([learningRate(110, s)], [0.1], { atol: 1e-12 });
  });
});

test('BlinkDL-like init: shapes, zero projections, decay ramp', () => {
  const cfg = { nLayer: 3, nEmbd: 12, nVocab: 256, nFfn: 48 };
  const p = new ParamSet(cfg, f32);
  initRwkv4(p, 1);
  assert.deepEqual(
    p.specs.map((s) => [s.name, s.shape]),
    randomRwkv4({ ...cfg }).map((t) => [t.name, t.shape]),
  );
  assert.ok(p.get('blocks.1.att.output.weight').every((x) => x === 0));
  assert.ok(p.get('emb.weight').every((x) => Math.abs(x) <= 1e-4));
  const td = p.get('blocks.2.att.time_decay');
  assert.equal(td[0], -5);
  assert.ok(Math.abs(td[11] - 3) < 1e-6);
  const v = p.get('blocks.0.att.value.weight');
  const std = Math.sqrt(v.reduce((a, x) => a + x * x, 0) / v.length);
  assert.ok(std > 0.2 && std < 0.4, `att.value std ${std} (expected ~1/√12)`);
});

describe('training runs', () => {
  const dir = tmpDir();
  const text = join(dir, 'repeat.txt');
  writeFileSync(text, 'the cat sat on the mat. '.repeat(400));
  const cfg: TrainConfig = {
    ...TRAIN_DEFAULTS,
    data: text,
    layers: 1,
    embd: 16,
    ffn: 64,
    ctx: 24,
    batch: 4,
    steps: 40,
    lr: 1e-2,
    minLr: 1e-3,
    warmup: 5,
    saveEvery: 20,
    evalEvery: 20,
    evalWindows: 4,
    dtype: 'f32',
  };

  test('the loss falls on repetitive text, and the model loads with Rwkv4.load', async () => {
    const out = join(dir, 'falls');
    const r = await train(cfg, out);
    const log = readFileSync(join(out, 'loss.csv'), 'utf8').trim().split('\n');
    assert.equal(log.length, 41);
    const first = Number(log[1].split(',')[2]);
    assert.ok(first > 5, `first loss ${first} (≈ ln 256)`);
    assert.ok(r.finalLoss < 1.5, `loss ${first} → ${r.finalLoss} after 40 steps`);
    assert.ok(r.heldOut !== null && r.heldOut < 1.5, `held-out ${r.heldOut}`);
    // model.safetensors gives the trainer's logits through the inference model.
    const ck = openSafetensors(r.model!);
    const loaded = Rwkv4.load(ck, jsBackend);
    ck.close();
    const toks = Array.from(Buffer.from('the cat sat on the mat.'));
    const mine = new Rwkv4Grad(r.params, { matmul: referenceMatmul<Float32Array>(), alloc: f32 });
    const want = await sequenceLogits(loaded, toks.slice(0, -1), loaded.newState());
    assertClose(mine.logits(toks, 1, toks.length - 1), want, { atol: 1e-4 });
  });

  test('K steps + resume + N−K steps equals N steps, bit for bit', async () => {
    const straight = await train({ ...cfg, steps: 8, saveEvery: 4 }, join(dir, 'straight'));
    const out = join(dir, 'resumed');
    const part = await train({ ...cfg, steps: 8, saveEvery: 4 }, out, { stopAfter: 3 });
    assert.equal(part.step, 3);
    assert.equal(part.model, null);
    // A save interrupted before its commit point leaves a stale *.next: dropped on resume.
    writeFileSync(
      join(out, 'checkpoint.safetensors.next'),
      readFileSync(join(dir, 'straight', 'checkpoint.safetensors')),
    );
    const rest = await train({ ...cfg, steps: 8, saveEvery: 4 }, out, { resume: true });
    assert.equal(rest.stepsNow, 5);
    assert.ok(!existsSync(join(out, 'checkpoint.safetensors.next')));
    for (const [i, t] of straight.params.tensors.entries())
      assert.deepEqual(rest.params.tensors[i], t, straight.params.specs[i].name);
    const losses = (o: string) =>
      readFileSync(join(o, 'loss.csv'), 'utf8')
        .trim()
        .split('\n')
        .slice(1)
        .map((l) => l.split(',')[2]);
    assert.deepEqual(losses(out), losses(join(dir, 'straight')));
  });

  test('resume equality with two threads too', async () => {
    const c2 = { ...cfg, steps: 4, saveEvery: 2, threads: 2 };
    const straight = await train(c2, join(dir, 'straight2'));
    const out = join(dir, 'resumed2');
    await train(c2, out, { stopAfter: 2 });
    const rest = await train(c2, out, { resume: true });
    for (const [i, t] of straight.params.tensors.entries())
      assert.deepEqual(rest.params.tensors[i], t, straight.params.specs[i].name);
    assert.match(rest.matmul, /2 threads/);
  });

  test('run directory errors', async () => {
    const out = join(dir, 'errors');
    await train({ ...cfg, steps: 2 }, out);
    await assert.rejects(() => train({ ...cfg, steps: 2 }, out), /already holds a training run/);
    await assert.rejects(
      () => train({ ...cfg, steps: 2, lr: 0.5 }, out, { resume: true }),
      (e: unknown) => e instanceof UserError && /lr 0\.01.*lr 0\.5/.test(e.message),
    );
    writeFileSync(join(out, 'train-state.json'), '{"formatVersion": 1}');
    await assert.rejects(
      () => train({ ...cfg, steps: 2 }, out, { resume: true }),
      /not a train-state file/,
    );
    const short = join(dir, 'short.txt');
    writeFileSync(short, 'too short');
    await assert.rejects(
      () => train({ ...cfg, data: short }, join(dir, 'e2')),
      /fewer than one window/,
    );
  });

  test('CLI: summary, and refusals', async () => {
    let stdout = '';
    let stderr = '';
    const io = {
      out: (s: string) => {
        stdout += s;
      },
      err: (s: string) => {
        stderr += s;
      },
      tty: false,
    };
    const out = join(dir, 'cli');
    await invoke(
      trainCommand,
      [
        '--out',
        out,
        '--data',
        text,
        '--layers',
        '1',
        '--embd',
        '8',
        '--ctx',
        '16',
        '--batch',
        '2',
        '--steps',
        '3',
        '--eval-every',
        '3',
        '--dtype',
        'bf16',
      ],
      io,
    );
    assert.match(stdout, /model rwkv4 1x8 \(ffn 32, vocab 256 bytes\)/);
    assert.match(stdout, /wrote .*model\.safetensors \(bf16\)/);
    assert.match(stderr, /train step 3\/3: loss [\d.]+, held-out [\d.]+/);
    const ck = openSafetensors(join(out, 'model.safetensors'));
    assert.equal(ck.tensors.get('head.weight')?.dtype, 'bf16');
    ck.close();
    // --resume alone takes the run's own configuration (here: nothing left to do).
    stdout = '';
    await invoke(trainCommand, ['--out', out, '--resume'], io);
    assert.match(stdout, /steps 3\/3 \(0 now\)/);
    await assert.rejects(
      async () => invoke(trainCommand, ['--out', out, '--resume', '--ctx', '8'], io),
      /started with ctx 16.*now ctx 8/,
    );
    await assert.rejects(
      async () => invoke(trainCommand, ['--data', text], io),
      /--out DIR is required/,
    );
    await assert.rejects(
      async () => invoke(trainCommand, ['--out', out, '--dtype', 'f8'], io),
      /--dtype f8: expected one of/,
    );
  });
});
