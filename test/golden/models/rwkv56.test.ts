/**
 * RWKV-5 and RWKV-6 against reference implementations: rwkv.cpp's expected logits for
 * every tiny file (its own tolerances), float64 per-position references; the version
 * told from tensor names and shapes; sequence mode equal to step mode; every format
 * giving the same logits; the site tables' MAC counts equal to the products run.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { countModel } from '../../../src/hardware/ops.ts';
import type { Checkpoint } from '../../../src/io/checkpoint.ts';
import { memoryCheckpoint, readAll } from '../../../src/io/memory.ts';
import { openCheckpoint } from '../../../src/io/open.ts';
import { writePth } from '../../../src/io/pth-writer.ts';
import { writeSafetensors } from '../../../src/io/safetensors.ts';
import {
  forward,
  type LanguageModel,
  makeBatch,
  type SiteHook,
  sequenceLogits,
} from '../../../src/models/model.ts';
import { materialize, rwkv5Specs, rwkv6Specs } from '../../../src/models/random.ts';
import { architecture, detectArchitecture, loadModel } from '../../../src/models/registry.ts';
import { LN_X_EPS, Rwkv5, rwkv5Version } from '../../../src/models/rwkv5.ts';
import { RWKV6_SITES, Rwkv6 } from '../../../src/models/rwkv6.ts';
import { type Backend, Seqs } from '../../../src/tensor/backend.ts';
import { CountingBackend } from '../../../src/tensor/count.ts';
import { wkvHeadsCost } from '../../../src/tensor/families/wkv5.ts';
import { logSoftmax } from '../../../src/tensor/reference.ts';
import { jsBackend } from '../../../src/tensor/select.ts';
import { assertClose, maxAbsDiff } from '../../helpers/assert.ts';
import { cpuBackends } from '../../helpers/backends.ts';
import { runCommand } from '../../helpers/cli.ts';
import { logitsOf, stepAll } from '../../helpers/model.ts';
import { needsShared, shared, tmpDir } from '../../helpers/shared.ts';

const f32 = (path: string) => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};

/** rwkv.cpp's GroupNorm eps for RWKV-5, with which its expected logits were computed. */
const RWKVCPP_V5_EPS = 1e-5;

/** Loads a file with the GroupNorm eps its reference numbers were computed with. */
function load(path: string, lnXEps?: number): LanguageModel {
  const ckpt = openCheckpoint(path);
  try {
    const arch = detectArchitecture(ckpt);
    if (arch === 'rwkv5') return Rwkv5.load(ckpt, jsBackend, { lnXEps });
    if (arch === 'rwkv6') return Rwkv6.load(ckpt, jsBackend, { lnXEps });
    throw new Error(`${path}: ${arch}`);
  } finally {
    ckpt.close();
  }
}

function meanNll(logits: Float32Array, tokens: number[], V: number): number {
  let sum = 0;
  for (let t = 0; t + 1 < tokens.length; t++)
    sum -= logSoftmax(logits.subarray(t * V, (t + 1) * V))[tokens[t + 1]];
  return sum / (tokens.length - 1);
}

const tiny = (ver: string, fmt: string) => `models/rwkvcpp/tiny-rwkv-${ver}-${fmt}.bin`;
const prompt = [...'"in'].map((c) => c.charCodeAt(0));

/**
 * rwkv.cpp's tests/test_tiny_rwkv.c accepts |Σ(logits − expected)| ≤ 1.05·|bound|, with
 * the bounds of its FP32, FP16 and FP32-to-Q5 files. FP32 and FP16 are also held to a
 * max abs difference (1e-4, 2e-2) and the expected argmax. The Q5 files move logits by up
 * to 1.74 (5v1 Q5_0, which turns a 0.0004 lead of byte 112 over 115 around), so for them
 * the sum is the check, with 2.5 as a loose bound on any one logit.
 */
const Q5 = 2.5;
const RWKVCPP: { ver: string; eps: number; files: [string, number, number][] }[] = [
  {
    ver: '5v1-730K',
    eps: RWKVCPP_V5_EPS,
    files: [
      ['FP32', 1e-4, 0.001],
      ['FP16', 2e-2, 0.289921],
      ['Q5_0', Q5, 163.439407],
      ['Q5_1', Q5, 18.017435],
    ],
  },
  {
    ver: '5v2-730K',
    eps: RWKVCPP_V5_EPS,
    files: [
      ['FP32', 1e-4, 0.001],
      ['FP16', 2e-2, 0.455912],
      ['Q5_0', Q5, 25.273308],
      ['Q5_1', Q5, 48.068733],
    ],
  },
  {
    // Only the quantized files exist (< 4 MiB); RWKV-6's eps is 64e-5 in rwkv.cpp too.
    ver: '6v0-3m',
    eps: LN_X_EPS,
    files: [
      ['Q5_0', Q5, 27.332073],
      ['Q5_1', Q5, 3.576909],
    ],
  },
];

for (const { ver, eps, files } of RWKVCPP) {
  describe(`tiny ${ver} (rwkv.cpp files) against expected-logits-${ver}.bin`, () => {
    const expectedFile = `models/rwkvcpp/expected-logits-${ver}.bin`;
    for (const [fmt, atol, sumBound] of files) {
      test(fmt, needsShared(tiny(ver, fmt), expectedFile), async () => {
        const expected = f32(shared(expectedFile));
        const model = load(shared(tiny(ver, fmt)), eps);
        const steps = await stepAll(model, prompt);
        const seq = await sequenceLogits(model, prompt, model.newState(), 'last');
        for (const [mode, got] of [
          ['step', steps.subarray(2 * 256)],
          ['sequence', seq],
        ] as const) {
          let sum = 0;
          for (let i = 0; i < 256; i++) sum += got[i] - expected[i];
          const { maxAbs } = maxAbsDiff(got, expected);
          console.log(
            `  ${ver} ${fmt} ${mode}: difference sum ${sum.toFixed(6)} (rwkv.cpp's bound ${sumBound}), max abs ${maxAbs.toExponential(2)}`,
          );
          assert.ok(Math.abs(sum) <= 1.05 * sumBound, `${fmt} ${mode}: difference sum ${sum}`);
          assertClose(got, expected, { atol, label: `${fmt} ${mode}` });
          if (atol < Q5) {
            const argmax = (a: Float32Array) => a.indexOf(Math.max(...a));
            assert.equal(argmax(got), argmax(expected), `${fmt} ${mode}: argmax`);
          }
        }
      });
    }
  });
}

describe('tiny models against the 70-token float64 references', () => {
  const refJson = 'models/reference/tiny-rwkv-prompt70-reference.json';
  const cases: [string, number][] = [
    ['tiny-rwkv-5v1-730K-FP32.bin', RWKVCPP_V5_EPS],
    ['tiny-rwkv-5v2-730K-FP32.bin', RWKVCPP_V5_EPS],
    ['tiny-rwkv-6v0-3m-Q5_1.bin', LN_X_EPS],
  ];
  for (const [file, eps] of cases) {
    const logitsFile = `models/reference/${file.replace('.bin', '.prompt70.logits.f32')}`;
    test(
      `${file}: every position, sequence and step mode; mean NLL`,
      {
        ...needsShared(refJson, logitsFile, `models/rwkvcpp/${file}`),
      },
      async () => {
        const ref = JSON.parse(readFileSync(shared(refJson), 'utf8'));
        const tokens: number[] = ref.tokens;
        const expected = f32(shared(logitsFile));
        const model = load(shared(`models/rwkvcpp/${file}`), eps);
        const seq = await logitsOf(model, tokens);
        const steps = await stepAll(model, tokens);
        const dSeq = assertClose(seq, expected, { atol: 1e-4, label: `${file} sequence` });
        const dStep = assertClose(steps, expected, { atol: 1e-4, label: `${file} step` });
        const entry = ref.models.find((m: { model: string }) => m.model === file);
        assert.ok(entry, `the reference JSON lists ${file}`);
        const nll = meanNll(seq, tokens, 256);
        console.log(
          `  ${file}: max abs diff sequence ${dSeq.toExponential(2)}, step ${dStep.toExponential(2)}; mean NLL ${nll.toFixed(6)} (reference ${entry.mean_nll_nats.toFixed(6)})`,
        );
        assert.ok(Math.abs(nll - entry.mean_nll_nats) <= 1e-4, `mean NLL ${nll}`);
      },
    );
  }

  for (const [name, backend] of cpuBackends()) {
    test(
      `${name} backend: 5v2 and 6v0, sequence and step`,
      {
        ...needsShared(refJson, tiny('5v2-730K', 'FP32'), tiny('6v0-3m', 'Q5_1')),
        ...(backend ? {} : { skip: `${name} backend not built here` }),
      },
      async () => {
        const tokens: number[] = JSON.parse(readFileSync(shared(refJson), 'utf8')).tokens;
        for (const [file, eps] of cases.slice(1)) {
          const ck = openCheckpoint(shared(`models/rwkvcpp/${file}`));
          const model = file.includes('6v0')
            ? Rwkv6.load(ck, backend as Backend, { lnXEps: eps })
            : Rwkv5.load(ck, backend as Backend, { lnXEps: eps });
          ck.close();
          const expected = f32(
            shared(`models/reference/${file.replace('.bin', '.prompt70.logits.f32')}`),
          );
          const d = assertClose(await logitsOf(model, tokens), expected, {
            atol: 1e-4,
            label: `${name} ${file} sequence`,
          });
          assertClose(await stepAll(model, tokens.slice(0, 16)), expected.subarray(0, 16 * 256), {
            atol: 1e-4,
            label: `${name} ${file} step`,
          });
          console.log(`  ${name} ${file}: max abs diff ${d.toExponential(2)}`);
        }
      },
    );
  }

  test(
    'the default GroupNorm eps is the official 64e-5, and it matters here',
    needsShared(tiny('5v2-730K', 'FP32'), 'models/rwkvcpp/expected-logits-5v2-730K.bin'),
    async () => {
      const expected = f32(shared('models/rwkvcpp/expected-logits-5v2-730K.bin'));
      const model = load(shared(tiny('5v2-730K', 'FP32')));
      assert.equal(model.config.lnXEps, 64e-5);
      const got = await sequenceLogits(model, prompt, model.newState(), 'last');
      // Heads of 8 channels have small variances: eps 64e-5 moves the logits visibly.
      assert.ok(maxAbsDiff(got, expected).maxAbs > 0.1);
    },
  );
});

describe('the version from tensor names and shapes', () => {
  test(
    'rwkv.cpp files: 5v1 is ChatRWKV 5.0 (no gate), 5v2 is 5.2, 6v0 is RWKV-6',
    {
      ...needsShared(tiny('5v1-730K', 'FP32'), tiny('5v2-730K', 'FP32'), tiny('6v0-3m', 'Q5_1')),
    },
    () => {
      const facts = (rel: string) => {
        const ck = openCheckpoint(shared(rel));
        const m = loadModel(ck, jsBackend);
        ck.close();
        return { arch: m.arch, config: m.config, sites: m.sites.perBlock.map((s) => s.id) };
      };
      const v51 = facts(tiny('5v1-730K', 'FP32'));
      assert.equal(v51.arch, 'rwkv5');
      assert.equal(rwkv5Version(v51.config as { gate: boolean; perChannel: boolean }), '5.0');
      assert.ok(!v51.sites.includes('att.gate'));
      const v52 = facts(tiny('5v2-730K', 'FP32'));
      assert.deepEqual(
        { ...v52.config },
        {
          nLayer: 12,
          nEmbd: 64,
          nVocab: 256,
          nFfn: 256,
          dimAtt: 64,
          headSize: 8,
          gate: true,
          perChannel: true,
          lnXEps: 64e-5,
        },
      );
      const v6 = facts(tiny('6v0-3m', 'Q5_1'));
      assert.equal(v6.arch, 'rwkv6');
      assert.deepEqual(
        { ...v6.config },
        {
          nLayer: 12,
          nEmbd: 128,
          nVocab: 256,
          nFfn: 448,
          dimAtt: 128,
          headSize: 8,
          maaLora: 32,
          decayLora: 64,
          lnXEps: 64e-5,
        },
      );
      assert.deepEqual(v6.sites, [...RWKV6_SITES]);
    },
  );

  test('random checkpoints of 5.0, 5.1, 5.2 and 6 are told apart', () => {
    const dims = { nLayer: 1, nEmbd: 32, nVocab: 20, headSize: 8 };
    for (const [gate, perChannel, version] of [
      [false, false, '5.0'],
      [true, false, '5.1'],
      [true, true, '5.2'],
    ] as const) {
      const ck = memoryCheckpoint(materialize(rwkv5Specs({ ...dims, gate, perChannel })));
      assert.equal(detectArchitecture(ck), 'rwkv5');
      const m = loadModel(ck, jsBackend) as Rwkv5;
      assert.equal(rwkv5Version(m.config), version);
      assert.equal(m.sites.perBlock.length, gate ? 8 : 7);
    }
    const ck = memoryCheckpoint(materialize(rwkv6Specs(dims)));
    assert.equal(detectArchitecture(ck), 'rwkv6');
    assert.equal(loadModel(ck, jsBackend).arch, 'rwkv6');
  });

  test('inconsistent shapes are refused with what was expected', () => {
    const dims = { nLayer: 1, nEmbd: 32, nVocab: 20, headSize: 8 };
    const change = (tensors: ReturnType<typeof materialize>, name: string, shape: number[]) =>
      memoryCheckpoint(
        tensors.map((t) =>
          t.name === name
            ? { name, shape, data: new Float32Array(shape.reduce((a, b) => a * b)) }
            : t,
        ),
      );
    const v5 = materialize(rwkv5Specs(dims));
    assert.throws(
      () => loadModel(change(v5, 'blocks.0.att.time_decay', [5]), jsBackend),
      /time_decay has shape \[5\], which does not split the time-mix width 32 into heads/,
    );
    assert.throws(
      () => loadModel(change(v5, 'blocks.0.att.ln_x.weight', [16]), jsBackend),
      /"blocks.0.att.ln_x.weight" has shape \[16\], expected \[32\]/,
    );
    const v6 = materialize(rwkv6Specs(dims));
    assert.throws(
      () => loadModel(change(v6, 'blocks.0.att.time_maa_w1', [32, 33]), jsBackend),
      /time_maa_w1 has shape \[32, 33\]; expected \[32, 5·D\]/,
    );
    assert.throws(
      () => loadModel(change(v6, 'blocks.0.att.time_maa_w2', [5, 16, 32]), jsBackend),
      /"blocks.0.att.time_maa_w2" has shape \[5, 16, 32\], expected \[5, 32, 32\]/,
    );
  });
});

/** Random models of every version, with realistic magnitudes (3 layers, 4 heads of 16). */
function randomModels(): [string, LanguageModel][] {
  const dims = { nLayer: 3, nEmbd: 64, nVocab: 97, headSize: 16 };
  return [
    ['5.0', architecture('rwkv5').random({ ...dims, gate: false, perChannel: false }, 7)],
    ['5.1', architecture('rwkv5').random({ ...dims, gate: true, perChannel: false }, 8)],
    ['5.2', architecture('rwkv5').random(dims, 9)],
    ['6', architecture('rwkv6').random(dims, 10)],
  ].map(([v, ck]) => [v as string, loadModel(ck as Checkpoint, jsBackend)]);
}

describe('sequence mode equals step mode', () => {
  const relClose = (a: Float32Array, b: Float32Array, label: string) => {
    let scale = 0;
    for (const v of b) scale = Math.max(scale, Math.abs(v));
    const { maxAbs } = maxAbsDiff(a, b);
    console.log(`  ${label}: max abs diff ${maxAbs.toExponential(2)} (scale ${scale.toFixed(2)})`);
    assert.ok(maxAbs <= 1e-5 * scale, `${label}: max abs diff ${maxAbs} > 1e-5 × ${scale}`);
  };

  test('random models of every version, across calls that carry state', async () => {
    const tokens = Array.from({ length: 40 }, (_, i) => (i * 37 + 11) % 97);
    for (const [version, model] of randomModels()) {
      const steps = await stepAll(model, tokens);
      // Two sequence calls: 25 tokens, then 15 continuing from the carried state.
      const s = model.newState();
      const a = await logitsOf(model, tokens.slice(0, 25), s);
      const b = await logitsOf(model, tokens.slice(25), s);
      const seq = new Float32Array(steps.length);
      seq.set(a);
      seq.set(b, a.length);
      relClose(seq, steps, `RWKV-${version}`);
      // Every site sees a healthy mix of values (nothing vanishes or saturates).
      const nonzero = new Float64Array(model.sites.perBlock.length);
      const total = new Float64Array(model.sites.perBlock.length);
      const hook: SiteHook = (g, x, rows, cols) => {
        const i = g % model.sites.perBlock.length;
        for (const v of (x as Float32Array).subarray(0, rows * cols)) nonzero[i] += v !== 0 ? 1 : 0;
        total[i] += rows * cols;
      };
      forward(model, makeBatch(model, [tokens]), model.newState(), { hook, logits: 'none' });
      model.sites.perBlock.forEach((site, i) => {
        const density = nonzero[i] / total[i];
        const low = site.id === 'ffn.value' ? 0.2 : 0.99;
        assert.ok(density >= low, `RWKV-${version} ${site.id}: density ${density}`);
      });
    }
  });

  for (const [ver, fmt, eps] of [
    ['5v1-730K', 'FP32', RWKVCPP_V5_EPS],
    ['5v2-730K', 'FP32', RWKVCPP_V5_EPS],
    ['6v0-3m', 'Q5_1', LN_X_EPS],
  ] as const) {
    test(`tiny ${ver}`, needsShared(tiny(ver, fmt)), async () => {
      const model = load(shared(tiny(ver, fmt)), eps);
      const tokens = [...'Hello, sparse world!'].map((c) => c.charCodeAt(0));
      relClose(await logitsOf(model, tokens), await stepAll(model, tokens), ver);
    });
  }

  test('a cloned state continues identically', async () => {
    for (const [version, model] of randomModels()) {
      const s = model.newState();
      await logitsOf(model, [1, 2, 3, 4], s);
      const c = s.clone();
      const a = await stepAll(model, [5, 6], s);
      const b = await stepAll(model, [5, 6], c);
      assert.deepEqual(a, b, `RWKV-${version}`);
    }
  });
});

describe('one model, every format', () => {
  for (const rel of [tiny('5v1-730K', 'FP32'), tiny('5v2-730K', 'FP32'), tiny('6v0-3m', 'Q5_1')]) {
    test(`${rel}: as .pth and safetensors, the same logits`, needsShared(rel), async () => {
      const tokens = [...'The format must not matter.'].map((c) => c.charCodeAt(0));
      const logits = async (ck: Checkpoint) => {
        const m = loadModel(ck, jsBackend);
        ck.close();
        return logitsOf(m, tokens);
      };
      const src = openCheckpoint(shared(rel));
      const tensors = [...readAll(src)];
      src.close();
      const want = await logits(openCheckpoint(shared(rel)));
      const dir = tmpDir();
      writePth(join(dir, 'm.pth'), tensors, 'f32');
      writeSafetensors(join(dir, 'm.safetensors'), tensors, { dtype: 'f32' });
      for (const f of ['m.pth', 'm.safetensors']) {
        const ck = openCheckpoint(join(dir, f));
        assert.equal(ck.format, f.endsWith('.pth') ? 'pth' : 'safetensors');
        assert.deepEqual(await logits(ck), want, `${rel} as ${f}`);
      }
      // And from memory (no file at all).
      assert.deepEqual(await logits(memoryCheckpoint(tensors)), want);
    });
  }
});

describe('site tables', () => {
  test('each site feeds products of exactly its MACs; no block product is left out', () => {
    for (const [version, model] of randomModels()) {
      const be = new CountingBackend();
      const arch = architecture(model.arch);
      const counted = arch.load(arch.skeleton({ ...model.config } as never), be);
      be.start();
      const batch = makeBatch(counted, [[0]]);
      const x = counted.embed(batch, counted.newState());
      counted.block(0, x, batch, counted.newState());
      const per = counted.sites.perBlock;
      const macs = new Float64Array(per.length);
      for (const m of be.matmuls) {
        assert.ok(m.site !== undefined, `RWKV-${version}: a block product reads no site`);
        macs[m.site] += m.rows * m.cols;
      }
      for (const [i, s] of per.entries())
        assert.equal(macs[i], s.rows * s.cols, `RWKV-${version} ${s.id}: MACs of its products`);
    }
  });

  test('hw counts the state update of one token from the family cost', () => {
    for (const [version, model] of randomModels()) {
      const { dimAtt, headSize, nLayer } = model.config as Record<string, number>;
      const c = countModel({
        architecture: model.arch,
        nLayer: model.nLayer,
        nEmbd: model.nEmbd,
        nVocab: model.nVocab,
        sites: [],
        config: { ...model.config },
      });
      const family = model.arch === 'rwkv5' ? 'ops: wkv5' : 'ops: wkv6';
      const group = c.groups.find((g) => g.id === family);
      assert.ok(group, `RWKV-${version}: ${family} counted`);
      const one = wkvHeadsCost(new Seqs([1]), dimAtt / headSize, headSize);
      assert.equal(group.counts.mul, nLayer * (one.mul ?? 0));
      assert.equal(group.counts.stateReads, nLayer * (one.stateReads ?? 0));
      assert.deepEqual(
        c.sites.map((s) => s.id),
        model.sites.perBlock.map((s) => s.id),
      );
    }
  });
});

describe('commands take RWKV-5/6 shapes', () => {
  test('hw what-if for an RWKV-6 shape costs its LoRA sites and the state update', async () => {
    const { out } = await runCommand([
      'hw',
      '--sparsity',
      '0.5',
      '--shape',
      '2x128',
      '--arch',
      'rwkv6',
      '--vocab',
      '256',
      '--profile',
      'seneca',
    ]);
    assert.match(out, /att\.time_maa_w1 128→160, att\.time_maa_w2 160→128/);
    assert.match(out, /att\.time_decay_w1 128→64, att\.time_decay_w2 64→128/);
    assert.match(out, /ops: wkv6/);
  });

  test('bench --arch goes with --shape', async () => {
    await assert.rejects(runCommand(['bench', '--arch', 'rwkv5']), /--arch goes with --shape/);
    await assert.rejects(
      runCommand(['bench', '--shape', '1x64', '--arch', 'rwkv9']),
      /--arch rwkv9: expected one of .*rwkv4/,
    );
  });
});
