/**
 * `actsparse bench`: what this machine's kernels reach against its limits. Every
 * figure is the median of repeated runs, with min and max, measured in one process so
 * that ratios are fair on a shared, noisy machine.
 */
import { cpus } from 'node:os';
import {
  BENCH_FORMAT_VERSION,
  type BenchResult,
  type GpuBench,
  type ModelBench,
  type Stat,
} from '../formats/bench.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import {
  forward,
  type LanguageModel,
  makeBatch,
  type SiteHook,
  sequenceLogits,
  step,
} from '../models/model.ts';
import { architecture, loadModel } from '../models/registry.ts';
import { ModelEvaluator } from '../sparsity/evaluator.ts';
import type { Backend, WeightDType } from '../tensor/backend.ts';
import * as native from '../tensor/native/index.ts';
import { WebGpuBackend } from '../tensor/webgpu/backend.ts';
import { parseTiles } from '../tensor/webgpu/kernels/matmul.ts';
import { Stopped, stopPoint } from '../util/cancel.ts';
import { rng } from '../util/random.ts';
import { textTable } from '../util/table.ts';

export interface BenchOptions {
  backends: Backend[];
  /** Repeats per measurement (the median is reported). */
  repeats: number;
  /** A checkpoint to time, or random weights of `shape` when absent. */
  checkpoint?: Checkpoint;
  shape?: { nLayer: number; nEmbd: number; nVocab: number };
  /** The architecture of the random model (default rwkv4). */
  arch?: string;
  /** Fraction of zeros to aim for at every block site for the sparse decode figure. */
  sparsity: number;
  sequenceT: number;
  /** Smaller problems, for tests. */
  quick?: boolean;
  /** Only the model figures (decode and sequence speed), not the kernel tables. */
  modelOnly?: boolean;
  /** Calibrated λ per site for the sparse decode (else λ for `sparsity` from a probe). */
  thresholds?: (model: LanguageModel) => void;
  /**
   * Fraction of zeros to aim for at each site (global index block × sites + site), in
   * place of one `sparsity` everywhere: λ per site from the probe's quantiles.
   */
  siteZeros?: ArrayLike<number>;
  /** What `siteZeros` are, for the result (e.g. "zeros per site of runs/cal"). */
  siteZerosSource?: string;
  /** Tokens per timed decode run (default: about 0.3 s of decoding, at least 16). */
  decodeTokens?: number;
  /**
   * Checked between measurements: when aborted, the result so far is returned with
   * `interrupted: true`.
   */
  signal?: AbortSignal;
  log?: (line: string) => void;
}

/**
 * Median, min and max of `repeats` timings of `fn` in milliseconds (after one warm-up).
 * `before` runs untimed ahead of each run (e.g. to evict the caches).
 */
export async function timeMs(
  fn: () => unknown,
  repeats: number,
  before?: () => void,
): Promise<Stat> {
  await fn();
  const t: number[] = [];
  for (let i = 0; i < repeats; i++) {
    before?.();
    const t0 = performance.now();
    await fn();
    t.push(performance.now() - t0);
  }
  return stat(t);
}

function stat(values: number[]): Stat {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  const median = s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
  return { median, min: s[0], max: s[s.length - 1] };
}

/** Converts a time Stat (ms) to a rate Stat: work / time (the fastest run gives the max). */
function rate(ms: Stat, work: number): Stat {
  return { median: work / ms.median, min: work / ms.max, max: work / ms.min };
}

function randomArray(n: number, seed: number): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

/**
 * Reads 256 MiB so the next kernel starts with cold caches: a sparse GEMV at 90% zeros
 * reads only 6 MiB, which would otherwise stay cached between runs. (The VM reports a
 * 32 MiB L3, but a 64 MiB GEMV ran faster than DRAM streams: the host's cache is larger.)
 */
let evictBuffer: Float32Array | null = null;
/** Where the eviction sums go, so the reads cannot be optimised away. */
export let evictSink = 0;
function evictCaches(): void {
  evictBuffer ??= new Float32Array(64 << 20).fill(1);
  let s = 0;
  for (let i = 0; i < evictBuffer.length; i += 16) s += evictBuffer[i];
  evictSink += s;
}

function threadCounts(b: Backend): number[] {
  return b.name === 'native' ? [1, 2] : [1];
}

async function withThreads<T>(b: Backend, n: number, fn: () => Promise<T>): Promise<T> {
  if (b.name !== 'native') return fn();
  const before = native.info().threads;
  native.setThreads(n);
  try {
    return await fn();
  } finally {
    native.setThreads(before);
  }
}

export async function runBench(o: BenchOptions): Promise<BenchResult> {
  const log = o.log ?? (() => {});
  const result: BenchResult = {
    formatVersion: BENCH_FORMAT_VERSION,
    machine: {
      cpu: cpus()[0]?.model ?? 'unknown',
      cores: cpus().length,
      node: process.versions.node,
    },
    backends: o.backends.map((b) => b.description),
    bandwidth: [],
    gemm: [],
    gemv: [],
    sparse: [],
  };
  try {
    await measureAll(o, result, log);
  } catch (e) {
    if (!(e instanceof Stopped)) throw e;
    result.interrupted = true;
  }
  return result;
}

async function measureAll(o: BenchOptions, result: BenchResult, log: (s: string) => void) {
  const stop = () => stopPoint(o.signal);
  const nativeB = o.backends.find((b) => b.name === 'native');
  if (o.modelOnly) {
    result.model = await benchModel(o, o.backends[0], null, log);
    return;
  }
  if (nativeB) {
    const bytes = o.quick ? 64 << 20 : 256 << 20;
    for (const threads of [1, 2]) {
      await stop();
      const runs = Array.from({ length: Math.max(3, o.repeats) }, () =>
        native.memoryReadBandwidth(bytes, threads),
      );
      result.bandwidth.push({ threads, gbps: stat(runs) });
      log(`bandwidth ${threads} thread(s): ${stat(runs).median.toFixed(1)} GB/s`);
    }
  }

  // GEMM: 128 tokens × 1024 inputs → 4096 outputs, the shape of a calibration product.
  const [gT, gK, gN] = o.quick ? [32, 256, 512] : [128, 1024, 4096];
  // GEMV out of cache: 4096 × 4096 fp32 = 64 MiB, twice the L3.
  const [vR, vC] = o.quick ? [512, 512] : [4096, 4096];
  for (const b of o.backends) {
    if (b instanceof WebGpuBackend) {
      result.gpu = [...(result.gpu ?? []), await benchGpu(o, b, log)];
      continue;
    }
    const gx = b.upload(randomArray(gT * gK, 1));
    const gy = b.alloc(gT * gN);
    const vx = randomArray(vC, 2);
    const vxb = b.upload(vx.slice());
    const vy = b.alloc(vR);
    const gw = b.prepare(randomArray(gN * gK, 3), gN, gK);
    const vw = b.prepare(randomArray(vR * vC, 4), vR, vC, { sparse: true });
    const done = () => b.read(vy, 0, 1);
    for (const threads of threadCounts(b)) {
      await stop();
      await withThreads(b, threads, async () => {
        // js is ~50× slower: fewer repeats keep the run short without changing the median much.
        const reps = b.name === 'js' ? Math.min(3, o.repeats) : o.repeats;
        const g = rate(
          await timeMs(() => {
            b.matmul(gy, gw, gx, gT);
            return b.read(gy, 0, 1);
          }, reps),
          (2 * gT * gK * gN) / 1e6,
        );
        result.gemm.push({ backend: b.name, threads, shape: `${gT}x${gK}->${gN}`, gflops: g });
        const dense = await timeMs(
          () => {
            b.matmul(vy, vw, vxb, 1);
            return done();
          },
          o.repeats,
          evictCaches,
        );
        result.gemv.push({
          backend: b.name,
          threads,
          shape: `${vR}x${vC}`,
          gbps: rate(dense, (4 * vR * vC) / 1e6),
        });
        log(
          `${b.name} ${threads}t: gemm ${g.median.toFixed(1)} GFLOPS, gemv ${((4 * vR * vC) / 1e6 / dense.median).toFixed(1)} GB/s`,
        );
        // The zero-skipping kernel at each share of zeros, against the fastest dense path:
        // the dense GEMV or the same kernel on dense input, whichever is faster. Ideal 1/(1 − s).
        const times: { zeros: number; t: Stat }[] = [];
        for (const zeros of [0, 0.5, 0.7, 0.9]) {
          await stop();
          const xs = vx.slice();
          const r = rng(5);
          for (let i = 0; i < xs.length; i++) if (r() < zeros) xs[i] = 0;
          const xb = b.upload(xs);
          const t = await timeMs(
            () => {
              b.matmul(vy, vw, xb, 1, { skipZeros: true });
              return done();
            },
            o.repeats,
            evictCaches,
          );
          b.free(xb);
          times.push({ zeros, t });
        }
        const base = times[0].t.median < dense.median ? times[0].t : dense;
        const baseline = base === dense ? 'dense GEMV' : 'zero-skipping kernel, dense input';
        for (const { zeros, t } of times) {
          const speedup = {
            median: base.median / t.median,
            min: base.min / t.max,
            max: base.max / t.min,
          };
          result.sparse.push({
            backend: b.name,
            threads,
            zeros,
            speedup,
            ideal: 1 / (1 - zeros),
            baseline,
          });
        }
      });
    }
    b.release(gw);
    b.release(vw);
    for (const x of [gx, gy, vxb, vy]) b.free(x);
  }

  await stop();
  const fastest = o.backends[0];
  result.model = await benchModel(o, fastest, result.bandwidth.at(-1)?.gbps.median ?? null, log);
}

/** GEMM tile shapes tried on a GPU (the backend's default first). */
const TILE_CANDIDATES = [
  '128x128x16/8x8',
  '128x128x32/8x8',
  '128x64x16/8x8',
  '64x128x16/8x8',
  '128x128x16/8x4',
  '64x64x16/4x4',
];

/**
 * The GPU kernels: copy bandwidth, GEMM (fp32 tiles, each candidate tile shape on a
 * hardware adapter, float16 weights, the subgroup-matrix kernel when it passes its
 * check), GEMV (fp32 and bf16 weights) and the zero-skipping GEMV against the dense one.
 */
async function benchGpu(
  o: BenchOptions,
  b: WebGpuBackend,
  log: (s: string) => void,
): Promise<GpuBench> {
  const quick = !!o.quick;
  const software = b.rt.facts.software;
  const stop = () => stopPoint(o.signal);
  // Copy 1 GiB (read + write): the device's streaming rate.
  const cn = quick ? 4 << 20 : 128 << 20;
  const src = b.alloc(cn);
  const dst = b.alloc(cn);
  const copy = rate(
    await timeMs(() => {
      b.copy(dst, src);
      return b.read(dst, 0, 1);
    }, o.repeats),
    (8 * cn) / 1e6,
  );
  b.free(src);
  b.free(dst);
  log(`webgpu copy ${copy.median.toPrecision(3)} GB/s`);

  await stop();
  // GEMM 16384 tokens × 1024 → 4096 (the issue's shape: a calibration batch's ffn.key).
  const [gT, gK, gN] = quick ? [512, 256, 512] : [16384, 1024, 4096];
  const gx = b.upload(randomArray(gT * gK, 1));
  const gy = b.alloc(gT * gN);
  // 2·T·K·N flop; per millisecond ÷ 1e9 = TFLOP/s.
  const gflop = (2 * gT * gK * gN) / 1e9;
  const gemm: GpuBench['gemm'] = [];
  const timeGemm = async (variant: string, dtype: WeightDType) => {
    await stop();
    const w = b.prepare(randomArray(gN * gK, 3), gN, gK, { dtype });
    const t = rate(
      await timeMs(() => {
        b.matmul(gy, w, gx, gT);
        return b.read(gy, 0, 1);
      }, o.repeats),
      gflop,
    );
    b.release(w);
    gemm.push({ variant, shape: `${gT}x${gK}->${gN}`, tflops: t });
    log(`webgpu gemm ${variant}: ${t.median.toPrecision(3)} TFLOP/s`);
  };
  const tiles = software || quick ? [TILE_CANDIDATES[0]] : TILE_CANDIDATES;
  for (const t of tiles) {
    b.setGemmTiles(parseTiles(t));
    await timeGemm(`fp32 tiles ${t}`, 'f32');
  }
  // The best tiles stay for the rest (and the model figures).
  const best = gemm.reduce((x, y) => (y.tflops.median > x.tflops.median ? y : x));
  b.setGemmTiles(parseTiles(best.variant.slice('fp32 tiles '.length)));
  await timeGemm('f16 weights, fp32 math', 'f16');
  const matrix = await b.enableMatrixGemm();
  log(`webgpu ${matrix}`);
  if (matrix.startsWith('subgroup-matrix GEMM on')) {
    await timeGemm('subgroup matrix, f16 tiles', 'f16');
    b.disableMatrixGemm();
  }
  b.free(gx);
  b.free(gy);

  await stop();
  // GEMV 8192 × 8192 (256 MiB of fp32, beyond the caches of any GPU).
  const [vR, vC] = quick ? [1024, 1024] : [8192, 8192];
  const vx = randomArray(vC, 2);
  const vxb = b.upload(vx.slice());
  const vy = b.alloc(vR);
  const gemv: GpuBench['gemv'] = [];
  const done = () => b.read(vy, 0, 1);
  let denseF32: Stat | null = null;
  for (const dtype of ['f32', 'bf16'] as const) {
    const w = b.prepare(randomArray(vR * vC, 4), vR, vC, { dtype });
    const t = await timeMs(() => {
      b.matmul(vy, w, vxb, 1);
      return done();
    }, o.repeats);
    const bytes = (dtype === 'f32' ? 4 : 2) * vR * vC;
    if (dtype === 'f32') denseF32 = t;
    gemv.push({ dtype, shape: `${vR}x${vC}`, gbps: rate(t, bytes / 1e6) });
    log(`webgpu gemv ${dtype}: ${(bytes / 1e6 / t.median).toPrecision(3)} GB/s`);
    b.release(w);
  }
  // Zero skipping against the fastest dense fp32 GEMV (of the plain weights or of the
  // zero-skipping copy), at each share of zeros; ideal 1/(1 − s).
  const sw = b.prepare(randomArray(vR * vC, 4), vR, vC, { sparse: true });
  const denseSw = await timeMs(() => {
    b.matmul(vy, sw, vxb, 1);
    return done();
  }, o.repeats);
  const dense = denseF32 && denseF32.median < denseSw.median ? denseF32 : denseSw;
  const sparse: GpuBench['sparse'] = [];
  for (const zeros of [0, 0.5, 0.6, 0.7, 0.9]) {
    await stop();
    const xs = vx.slice();
    const r = rng(5);
    for (let i = 0; i < xs.length; i++) if (r() < zeros) xs[i] = 0;
    const xb = b.upload(xs);
    const t = await timeMs(() => {
      b.matmul(vy, sw, xb, 1, { skipZeros: true });
      return done();
    }, o.repeats);
    b.free(xb);
    const speedup = {
      median: dense.median / t.median,
      min: dense.min / t.max,
      max: dense.max / t.min,
    };
    sparse.push({ zeros, speedup, ideal: 1 / (1 - zeros) });
  }
  b.release(sw);
  b.free(vxb);
  b.free(vy);
  return {
    backend: b.description,
    software,
    device: b.details(),
    copyGbps: copy,
    gemm,
    gemv,
    sparse,
    matrix,
  };
}

/** Decode (step mode) tokens/s, dense and with thresholds, and sequence-mode tokens/s. */
async function benchModel(
  o: BenchOptions,
  backend: Backend,
  bandwidth: number | null,
  log: (s: string) => void,
): Promise<ModelBench> {
  const shape = o.shape ?? { nLayer: 2, nEmbd: 256, nVocab: 1000 };
  const arch = architecture(o.arch ?? 'rwkv4');
  const source = o.checkpoint
    ? o.checkpoint.path
    : `random ${arch.label} ${shape.nLayer}x${shape.nEmbd}, vocab ${shape.nVocab}`;
  log(`model: loading ${source}`);
  const ckpt = o.checkpoint ?? arch.random(shape, 1);
  const model = loadModel(ckpt, backend, { sparse: true });
  const { nLayer, nEmbd: d, nVocab: V } = model;
  const per = model.sites.perBlock;
  // Every block-site weight is read once per token, and the head.
  const weightBytesPerToken = 4 * (nLayer * per.reduce((a, s) => a + s.rows * s.cols, 0) + V * d);

  // λ per site for the target sparsity, from the dense model's activations on a short text.
  const probe = Array.from(
    { length: Math.min(64, model.maxContext) },
    (_, i) => (i * 7919 + 13) % V,
  );
  let lambdas = new Float32Array(model.thresholds.length);
  if (o.thresholds) {
    o.thresholds(model);
    lambdas = Float32Array.from(model.thresholds);
    model.setThresholds(new Float32Array(lambdas.length));
  } else {
    const t = backend.tally(model.thresholds.length);
    const probeRows = probe.length;
    const target = (g: number) => (o.siteZeros ? o.siteZeros[g] : o.sparsity);
    if (o.siteZeros && o.siteZeros.length !== model.thresholds.length) {
      throw new Error(
        `siteZeros: ${o.siteZeros.length} values for ${model.thresholds.length} sites`,
      );
    }
    const hook: SiteHook = (g, x, rows, cols) =>
      backend.tallyQuantiles(t, g, x, rows, cols, [target(g)]);
    const batch = makeBatch(model, [probe]);
    const state = model.newState();
    forward(model, batch, state, { hook, logits: 'none' });
    state.free();
    lambdas = Float32Array.from(await backend.readTally(t), (s) => s / probeRows);
  }

  const decode = async (n: number) => {
    const s = model.newState();
    let tok = 1;
    for (let i = 0; i < n; i++) {
      const logits = await step(model, tok, s);
      tok = (i * 31 + (logits[0] > 0 ? 1 : 0)) % V;
    }
    s.free();
  };
  // Tokens per timed run: about 0.3 s of decoding (small models need many to be timed well).
  let n = o.decodeTokens ?? (o.quick ? 4 : 0);
  if (!n) {
    const t16 = (await timeMs(() => decode(16), 1)).median;
    n = Math.min(4096, Math.max(16, Math.round((16 * 300) / Math.max(t16, 1e-3))));
  }
  n = Math.min(n, model.maxContext);
  const reps = Math.max(o.decodeTokens ? 1 : 3, Math.min(o.repeats, 7));
  await stopPoint(o.signal);
  const dense = rate(await timeMs(() => decode(n), reps), n * 1000);
  model.setThresholds(lambdas);
  // Measure the zeros the thresholds really give while decoding.
  const zt = backend.tally(1);
  let total = 0;
  const count: SiteHook = (_g, x, rows, cols) => {
    backend.tallyZeros(zt, 0, x, rows * cols);
    total += rows * cols;
  };
  {
    const s = model.newState();
    const toks = Array.from({ length: n }, (_, i) => (i * 31 + 1) % V);
    for (const tok of toks) {
      const batch = makeBatch(model, [[tok]]);
      forward(model, batch, s, { hook: count, logits: 'none' });
      backend.free(batch.ids);
    }
    s.free();
  }
  const zeros = (await backend.readTally(zt))[0];
  await stopPoint(o.signal);
  const sparse = rate(await timeMs(() => decode(n), reps), n * 1000);
  model.setThresholds(new Float32Array(lambdas.length));
  log(`decode dense ${dense.median.toFixed(1)} tok/s, sparse ${sparse.median.toFixed(1)} tok/s`);

  let sequence: Stat | null = null;
  const T = Math.min(o.sequenceT, model.maxContext);
  if (T > 0) {
    const toks = Array.from({ length: T }, (_, i) => (i * 104729) % V);
    sequence = rate(
      await timeMs(
        () => sequenceLogits(model, toks, model.newState(), 'last'),
        Math.min(3, o.repeats),
      ),
      T * 1000,
    );
    log(`sequence T=${T}: ${sequence.median.toFixed(0)} tok/s`);
  }

  await stopPoint(o.signal);
  // Calibration: loss passes over a batch of windows (a GPU takes the search's batch of
  // 16 × 1024 tokens; a CPU a smaller one), the input of block 0 cached as the search does.
  const gpu = backend instanceof WebGpuBackend;
  const [nw, ctx] = o.quick ? [2, 32] : gpu ? [16, 1024] : [4, 128];
  const wctx = Math.min(ctx, model.maxContext - 1);
  const windows = Array.from({ length: nw }, (_, w) =>
    Array.from({ length: wctx + 1 }, (_, i) => (i * 7919 + w * 104729 + 1) % V),
  );
  const ev = new ModelEvaluator(model, windows);
  const calib = rate(
    await timeMs(() => ev.loss(), Math.min(5, o.repeats)),
    nLayer * nw * wctx * 1e3,
  );
  ev.free();
  log(`calibration: ${calib.median.toFixed(0)} block-token forwards/s`);
  return {
    source,
    backend: backend.description,
    shape: `${model.arch} ${nLayer}x${d} (vocab ${V})`,
    weightBytesPerToken,
    decodeDense: dense,
    floorTokensPerSec: bandwidth ? (bandwidth * 1e9) / weightBytesPerToken : null,
    targetZeros: o.thresholds || o.siteZeros ? null : o.sparsity,
    ...(o.siteZeros ? { zerosSource: o.siteZerosSource ?? 'a zero fraction per site' } : {}),
    decodeTokens: n,
    measuredZeros: total ? zeros / total : 0,
    decodeSparse: sparse,
    sequenceT: T,
    sequence,
    calibration: { windows: nw, ctx: wctx, blockTokensPerSec: calib },
    facts: {
      architecture: model.arch,
      nLayer,
      nEmbd: d,
      nVocab: V,
      siteShapes: per.map((x) => ({ id: x.id, rows: x.rows, cols: x.cols })),
      config: { ...model.config },
    },
  };
}

const f1 = (s: Stat, digits = 1) =>
  `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;
/** Three significant digits: GPU figures span 1e-3 (a software adapter) to 1e3. */
const f3 = (s: Stat) =>
  `${s.median.toPrecision(3)} (${s.min.toPrecision(3)}–${s.max.toPrecision(3)})`;

/** The result as plain-text tables. */
export function formatBench(r: BenchResult): string {
  const lines: string[] = [];
  lines.push(`CPU: ${r.machine.cpu}, ${r.machine.cores} cores; Node ${r.machine.node}`);
  lines.push(`backends: ${r.backends.join('; ')}`);
  if (r.bandwidth.length) {
    lines.push('', 'memory read bandwidth (256 MiB), GB/s: median (min–max)');
    for (const b of r.bandwidth) lines.push(`  ${b.threads} thread(s)  ${f1(b.gbps)}`);
  }
  if (r.gemm.length) {
    const rows = [['kernel', 'threads', 'GEMM GFLOPS', 'dense GEMV GB/s', '% of bandwidth']];
    for (const g of r.gemm) {
      const v = r.gemv.find((x) => x.backend === g.backend && x.threads === g.threads);
      const bw = r.bandwidth.find((b) => b.threads === g.threads)?.gbps.median;
      const pct = bw && v ? `${((100 * v.gbps.median) / bw).toFixed(0)}%` : '-';
      rows.push([g.backend, String(g.threads), f1(g.gflops), v ? f1(v.gbps) : '-', pct]);
    }
    lines.push('', ...textTable(rows).map((l) => `  ${l}`));
    lines.push(
      '  (% of bandwidth: the dense GEMV against the memory read bandwidth, same threads)',
    );
  }
  if (r.sparse.length) {
    lines.push(
      '',
      'zero-skipping GEMV: speedup over the fastest dense path of the same backend and threads (baseline); ideal 1/(1−s)',
    );
    const rows = [['kernel', 'threads', 'zeros', 'speedup', 'ideal', 'of ideal', 'baseline']];
    for (const s of r.sparse) {
      rows.push([
        s.backend,
        String(s.threads),
        `${(s.zeros * 100).toFixed(0)}%`,
        f1(s.speedup, 2),
        s.ideal.toFixed(2),
        `${((100 * s.speedup.median) / s.ideal).toFixed(0)}%`,
        s.baseline ?? 'dense GEMV',
      ]);
    }
    lines.push(...textTable(rows).map((l) => `  ${l}`));
  }
  for (const g of r.gpu ?? []) {
    lines.push('', `GPU: ${g.backend}`);
    if (g.software)
      lines.push(
        '  (a CPU software adapter: these figures test the code path, they say nothing about a GPU)',
      );
    for (const [k, v] of Object.entries(g.device)) lines.push(`  ${k.padEnd(24)}${v}`);
    lines.push(`  copy bandwidth (read + write)  ${f3(g.copyGbps)} GB/s`);
    lines.push('  GEMM                                  shape                 TFLOP/s');
    for (const x of g.gemm)
      lines.push(`    ${x.variant.padEnd(36)}${x.shape.padEnd(22)}${f3(x.tflops)}`);
    lines.push(`    (${g.matrix})`);
    lines.push('  GEMV, one row      shape         GB/s of weights   % of copy bandwidth');
    for (const x of g.gemv) {
      const pct = ((100 * x.gbps.median) / g.copyGbps.median).toFixed(0);
      lines.push(`    ${x.dtype.padEnd(16)}${x.shape.padEnd(14)}${f3(x.gbps).padEnd(24)}${pct}%`);
    }
    lines.push(
      '  zero-skipping GEMV (fp32) over the fastest dense fp32 GEMV: zeros  speedup  ideal  of ideal',
    );
    for (const x of g.sparse) {
      lines.push(
        `    ${`${(x.zeros * 100).toFixed(0)}%`.padEnd(6)}${f1(x.speedup, 2).padEnd(20)}${x.ideal.toFixed(2).padEnd(7)}${((100 * x.speedup.median) / x.ideal).toFixed(0)}%`,
      );
    }
  }
  const m = r.model;
  if (m) {
    lines.push('', `model ${m.shape}: ${m.source}`, `  backend ${m.backend}`);
    lines.push(`  weights read per token ${(m.weightBytesPerToken / 1e6).toFixed(1)} MB`);
    const floor = m.floorTokensPerSec;
    const per = m.decodeTokens ? ` (${m.decodeTokens} tokens per timed run)` : '';
    lines.push(
      `  decode dense     ${f1(m.decodeDense)} tokens/s${floor ? `; bandwidth floor ${floor.toFixed(1)} (${((100 * m.decodeDense.median) / floor).toFixed(0)}%)` : ''}${per}`,
    );
    const how =
      m.targetZeros !== null
        ? `λ set for ${(100 * m.targetZeros).toFixed(0)}% zeros at every site`
        : (m.zerosSource ?? 'calibrated thresholds');
    lines.push(
      `  decode sparse    ${f1(m.decodeSparse)} tokens/s at ${(100 * m.measuredZeros).toFixed(1)}% zeros in block-site inputs (${how}): ${(m.decodeSparse.median / m.decodeDense.median).toFixed(2)}× dense`,
    );
    if (m.sequence) lines.push(`  sequence T=${m.sequenceT}  ${f1(m.sequence, 0)} tokens/s`);
    const c = m.calibration;
    if (c)
      lines.push(
        `  calibration      ${f1(c.blockTokensPerSec, 0)} block-token forwards/s (loss passes over ${c.windows} windows of ${c.ctx} tokens)`,
      );
  }
  if (r.interrupted) lines.push('', 'interrupted: the measurements above are all that was made');
  return `${lines.join('\n')}\n`;
}
