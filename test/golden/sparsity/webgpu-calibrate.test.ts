/**
 * The search and the zero-shot evaluation on the WebGPU backend give the decisions the
 * CPU backend gives: the paper's calibration of the trained Brown RWKV-4 picks the same
 * K at every site, and 100 items of 4 tasks score the same accuracies and nearly the
 * same log-likelihoods. Sizes fit a software adapter (lavapipe runs these products at
 * about 1 GFLOP/s): calibration on 2 windows of 32 tokens, the tasks on a random byte
 * RWKV-4 of 2 layers × 64 (the trained model's 6 × 192 would take many minutes).
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { combineUnits, evaluateUnit } from '../../../src/eval/evaluate.ts';
import { getTask, resolveTaskPath } from '../../../src/eval/tasks/registry.ts';
import { memoryCheckpoint } from '../../../src/io/memory.ts';
import { openCheckpoint } from '../../../src/io/open.ts';
import { loadTokenizer, tokenizerForModel } from '../../../src/io/tokenizer.ts';
import type { LanguageModel } from '../../../src/models/model.ts';
import { randomRwkv4 } from '../../../src/models/random.ts';
import { loadModel } from '../../../src/models/registry.ts';
import { type CalibrationConfig, calibrate } from '../../../src/sparsity/calibrate.ts';
import type { Backend } from '../../../src/tensor/backend.ts';
import { selectBackend } from '../../../src/tensor/select.ts';
import { needsShared, shared, tmpDir } from '../../helpers/shared.ts';
import { testGpu } from '../../helpers/webgpu.ts';

const gpu = await testGpu();
const cpu = selectBackend();
const RWKV = 'models/pth/brown-rwkv4-3m.bf16.pth';
const TASKS = ['arc_easy', 'piqa', 'openbookqa', 'winogrande'];

function load(backend: Backend): LanguageModel {
  const ckpt = openCheckpoint(shared(RWKV));
  try {
    return loadModel(ckpt, backend);
  } finally {
    ckpt.close();
  }
}

describe(`webgpu against ${cpu.name}`, { skip: gpu.skip }, () => {
  test('calibration of brown-rwkv4: the same K at every site', needsShared(RWKV), async () => {
    const cfg: CalibrationConfig = {
      method: 'paper',
      data: 'brown',
      docs: 4,
      ctx: 32,
      windows: 2,
      seed: 42,
      statistic: 'per-token',
      lossInc: 1.0005,
      grid: 'linear',
      startK: 0.5,
      kNum: 10,
      faithful: false,
      keep: 0.5,
      targetSparsity: 0.5,
    };
    const dir = tmpDir();
    const source = { file: RWKV, fileSha256: '0', tool: { name: 'actsparse', version: 'test' } };
    const run = async (b: Backend) => {
      const model = load(b);
      const tok = tokenizerForModel({ modelPath: shared(RWKV), vocabSize: model.nVocab });
      return (await calibrate(model, tok, source, cfg, join(dir, b.name), { resume: false })).plan;
    };
    const got = await run(gpu.backend!);
    const want = await run(cpu);
    assert.deepEqual(
      got.sites.map((s) => `${s.site}@${s.block}: ${s.k}`),
      want.sites.map((s) => `${s.site}@${s.block}: ${s.k}`),
    );
    // Not a trivial plan: some sites went beyond K[0].
    assert.ok(got.sites.some((s) => s.k < 0.5));
    const r = (x: number) => Number(x.toPrecision(5));
    assert.equal(r(got.results.finalLoss), r(want.results.finalLoss));
  });

  test(
    'zero-shot: 100 items of arc_easy, piqa, openbookqa and winogrande, the same accuracies',
    needsShared('tasks'),
    async () => {
      const tasks = TASKS.map((name) => {
        const task = getTask(name);
        const items = task.load(resolveTaskPath(task, shared('tasks'))).slice(0, 100);
        return { kind: 'task' as const, name, items };
      });
      const bytes = loadTokenizer('bytes');
      const run = async (b: Backend) => {
        const ck = memoryCheckpoint(randomRwkv4({ nLayer: 2, nEmbd: 64, nVocab: 256, seed: 11 }));
        const model = loadModel(ck, b);
        const units = [];
        for (const t of tasks) units.push(await evaluateUnit(model, bytes, t));
        return combineUnits(model, units);
      };
      const got = await run(gpu.backend!);
      const want = await run(cpu);
      for (const name of TASKS) {
        assert.deepEqual(got.tasks[name].metrics, want.tasks[name].metrics, name);
        // Log-likelihoods agree closely, not only the decisions.
        const a = got.tasks[name].scores.flat().map((s) => s.logLikelihood);
        const b = want.tasks[name].scores.flat().map((s) => s.logLikelihood);
        for (let i = 0; i < a.length; i++)
          assert.ok(
            Math.abs(a[i] - b[i]) <= 1e-4 * (1 + Math.abs(b[i])),
            `${name} request ${i}: ${a[i]} vs ${b[i]}`,
          );
      }
      // Natural zeros (relu², λ = 0 here) can differ by a value whose sign the products'
      // rounding decides: a few in the 10^6 counted.
      for (const [g, v] of got.siteSparsity.entries()) {
        const w = want.siteSparsity[g];
        assert.ok(Math.abs(v - w) < 1e-5, `site ${g}: ${v} vs ${w}`);
      }
    },
  );
});
