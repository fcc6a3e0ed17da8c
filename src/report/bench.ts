/**
 * `actsparse bench`: what this machine's kernels reach against its limits. Every
 * figure is the median of repeated runs, with min and max, measured in one process so
 * that ratios are fair on a shared, noisy machine.
 */
import { cpus } from 'node:os';
import type { BenchResult, ModelBench, Stat } from '../formats/bench.ts';
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
import type { Backend } from '../tensor/backend.ts';
import * as native from '../tensor/native/index.ts';
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
    formatVersion: 1,
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
  }
  if (r.interrupted) lines.push('', 'interrupted: the measurements above are all that was made');
  return `${lines.join('\n')}\n`;
}
