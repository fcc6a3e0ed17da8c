/**
 * bench.json versions: version 2 (GPU figures, the calibration rate) is written and
 * read; version 1 files, without them, are still read; an unknown version is refused
 * with the file's name.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { formatBench } from '../../../src/bench/run.ts';
import { UserError } from '../../../src/errors.ts';
import {
  BENCH_FORMAT_VERSION,
  type BenchResult,
  readBench,
  writeBench,
} from '../../../src/formats/bench.ts';
import { tmpDir } from '../../helpers/shared.ts';

const st = (median: number) => ({ median, min: median, max: median });
const model = {
  source: 'random RWKV-4 1x8, vocab 16',
  backend: 'webgpu',
  shape: '1x8 (ffn 32, vocab 16)',
  weightBytesPerToken: 3840,
  decodeDense: st(100),
  floorTokensPerSec: null,
  decodeSparse: st(120),
  targetZeros: 0.5,
  measuredZeros: 0.5,
  sequenceT: 64,
  sequence: st(5000),
};
const v1 = {
  formatVersion: 1,
  machine: { cpu: 'test cpu', cores: 2, node: '20' },
  backends: ['native'],
  bandwidth: [],
  gemm: [],
  gemv: [],
  sparse: [],
  model,
};

test('bench.json: version 2 round trip, version 1 read, version 3 refused', () => {
  const dir = tmpDir();
  const v2: BenchResult = {
    ...v1,
    formatVersion: BENCH_FORMAT_VERSION,
    backends: ['webgpu (llvmpipe, CPU software adapter)'],
    gpu: [
      {
        backend: 'webgpu (llvmpipe, CPU software adapter)',
        software: true,
        device: { adapter: 'llvmpipe' },
        copyGbps: st(1),
        gemm: [{ variant: 'fp32 tiles 128x128x16/8x8', shape: '512x256->512', tflops: st(0.004) }],
        gemv: [{ dtype: 'f32', shape: '1024x1024', gbps: st(0.2) }],
        sparse: [{ zeros: 0.5, speedup: st(1.5), ideal: 2 }],
        matrix: 'no float16 → float32 subgroup matrices on this adapter',
      },
    ],
    model: { ...model, calibration: { windows: 2, ctx: 32, blockTokensPerSec: st(2000) } },
  };
  writeBench(join(dir, 'v2.json'), v2);
  const back = readBench(join(dir, 'v2.json'));
  assert.deepEqual(back, v2);
  const text = formatBench(back);
  assert.match(text, /CPU software adapter: these figures test the code path/);
  assert.match(text, /0\.00400 \(0\.00400–0\.00400\)/);
  assert.match(text, /calibration +2000 \(2000–2000\) block-token forwards\/s/);

  writeFileSync(join(dir, 'v1.json'), JSON.stringify(v1));
  const old = readBench(join(dir, 'v1.json'));
  assert.equal(old.formatVersion, 1);
  assert.equal(old.gpu, undefined);
  assert.doesNotMatch(formatBench(old), /calibration/);

  writeFileSync(join(dir, 'v3.json'), JSON.stringify({ ...v1, formatVersion: 3 }));
  assert.throws(
    () => readBench(join(dir, 'v3.json')),
    (e: unknown) => e instanceof UserError && /v3\.json: not a bench result/.test(e.message),
  );
});
