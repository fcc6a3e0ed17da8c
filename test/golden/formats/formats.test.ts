/**
 * The same weights in every format give the same logits: .pth (f32, bf16), safetensors
 * (canonical and Hugging Face names), rwkv.cpp FP32; and `convert` keeps them.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { Checkpoint } from '../../../src/io/checkpoint.ts';
import { bf16ToFloat, floatToBf16 } from '../../../src/io/dtype.ts';
import { memoryCheckpoint, type NamedTensor } from '../../../src/io/memory.ts';
import { openCheckpoint } from '../../../src/io/open.ts';
import { writePth } from '../../../src/io/pth-writer.ts';
import { writeRwkvCpp } from '../../../src/io/rwkvcpp.ts';
import { writeSafetensors } from '../../../src/io/safetensors.ts';
import { sequenceLogits } from '../../../src/models/model.ts';
import { randomRwkv4 } from '../../../src/models/random.ts';
import { Rwkv4 } from '../../../src/models/rwkv4.ts';
import { jsBackend } from '../../../src/tensor/select.ts';
import { assertClose } from '../../helpers/assert.ts';
import { needsShared, shared, tmpDir } from '../../helpers/shared.ts';

const tokens = [3, 14, 15, 92, 65, 35, 89, 79, 32, 38, 46, 26, 43];

async function logitsOf(ckpt: Checkpoint): Promise<Float32Array> {
  try {
    const m = Rwkv4.load(ckpt, jsBackend);
    return await sequenceLogits(m, tokens, m.newState());
  } finally {
    ckpt.close();
  }
}

describe('one model, every format', () => {
  const weights = randomRwkv4({ nLayer: 2, nEmbd: 48, nVocab: 100, seed: 11 });
  const dir = tmpDir();
  const expectedP = logitsOf(memoryCheckpoint(weights));

  test('pth f32, safetensors (canonical and HF names), rwkv.cpp FP32', async () => {
    const expected = await expectedP;
    writePth(join(dir, 'm.pth'), weights, 'f32');
    writeSafetensors(join(dir, 'm.safetensors'), weights, { dtype: 'f32' });
    writeSafetensors(join(dir, 'hf.safetensors'), weights, { dtype: 'f32', names: 'hf-rwkv' });
    writeRwkvCpp(join(dir, 'm.bin'), { nVocab: 100, nEmbed: 48, nLayer: 2 }, weights, 'f32');
    for (const f of ['m.pth', 'm.safetensors', 'hf.safetensors']) {
      const ck = openCheckpoint(join(dir, f));
      assert.equal(ck.tensors.size, weights.length, `${f}: tensor count`);
      assert.deepEqual(await logitsOf(ck), expected, `${f}: identical logits`);
    }
    // rwkv.cpp stores −exp(time_decay); undoing it costs float rounding only.
    const d = assertClose(await logitsOf(openCheckpoint(join(dir, 'm.bin'))), expected, {
      atol: 1e-5,
      label: 'rwkv.cpp',
    });
    console.log(`  rwkv.cpp FP32 vs in-memory: max abs diff ${d.toExponential(2)}`);
  });

  test('pth bf16 equals the bf16-rounded weights exactly', async () => {
    writePth(join(dir, 'b.pth'), weights, 'bf16');
    writeSafetensors(join(dir, 'b.safetensors'), weights, { dtype: 'bf16' });
    const rounded: NamedTensor[] = weights.map((t) => ({
      ...t,
      data: t.data.map((v) => bf16ToFloat(floatToBf16(v))),
    }));
    const want = await logitsOf(memoryCheckpoint(rounded));
    assert.deepEqual(await logitsOf(openCheckpoint(join(dir, 'b.pth'))), want);
    assert.deepEqual(await logitsOf(openCheckpoint(join(dir, 'b.safetensors'))), want);
  });
});

describe('real checkpoints converted to safetensors keep their logits', () => {
  const cases = [
    'models/pth/brown-rwkv4-3m.bf16.pth',
    'models/rwkvcpp/tiny-rwkv-4v0-660K-Q5_1.bin',
  ];
  for (const rel of cases) {
    test(rel, needsShared(rel), async () => {
      const src = openCheckpoint(shared(rel));
      const before = await logitsOf(openCheckpoint(shared(rel)));
      const out = join(tmpDir(), 'converted.safetensors');
      const list = [...src.tensors.values()].map((e) => ({
        name: e.name,
        shape: e.shape,
        data: () => src.read(e.name).data,
      }));
      writeSafetensors(out, list, { dtype: 'f32' });
      src.close();
      assert.deepEqual(await logitsOf(openCheckpoint(out)), before);
    });
  }
});
