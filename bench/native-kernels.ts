/**
 * Timings of the native addon against this machine's limits (docs/PERF.md) and the
 * targets of the "Fast kernels" issue.
 * Run: node --import tsx bench/native-kernels.ts   (after node scripts/build-native.mjs)
 * Every figure is the median, min and max over repeated runs in this process. GEMV weights
 * (64 MiB each) are twice the L3 and timed alternately, so GEMV numbers are DRAM numbers.
 */
import {
  info,
  loadNativeBackend,
  memoryReadBandwidth,
  nativeUnavailableReason,
  setSimd,
  setThreads,
  useBlas,
} from '../src/tensor/native/index.ts';

const backend = loadNativeBackend();
if (!backend) {
  console.error(`native backend unavailable: ${nativeUnavailableReason()}`);
  process.exit(1);
}
const hasBlas = useBlas(true);
const blasName = info().blas;
const simd = info().simd;
const cores = setThreads(1 << 20);

/** Seconds of one call of `fn`. */
function seconds(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function median(a: number[]): number {
  const s = [...a].sort((p, q) => p - q);
  return s[Math.floor(s.length / 2)];
}

function random(n: number, zeros = 0): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() < zeros ? 0 : Math.random() * 2 - 1;
  return a;
}

const table: string[][] = [];
/** One row from rates (work per second): median, min–max, and a note. */
function row(what: string, unit: string, rates: number[], note: string): number {
  const m = median(rates);
  const range = `${Math.min(...rates).toFixed(1)}–${Math.max(...rates).toFixed(1)}`;
  table.push([what, `${m.toFixed(1)} ${unit}`, range, note]);
  return m;
}
const pct = (a: number, b: number) => `${((100 * a) / b).toFixed(0)}%`;
const verdict = (ok: boolean) => (ok ? 'meets target' : 'BELOW target');

// --- memory read bandwidth: 256 MiB, each call is itself the median of 5 passes ---
const MiB256 = 256 << 20;
const bw: number[] = [];
for (const threads of [1, 2]) {
  const rates = Array.from({ length: 5 }, () => memoryReadBandwidth(MiB256, threads));
  bw[threads] = row(
    `memory read, ${threads} thread${threads > 1 ? 's' : ''}`,
    'GB/s',
    rates,
    '256 MiB',
  );
}

// --- GEMM: 128 tokens through a 4096×1024 linear layer ---
const N = 4096;
const T = 128;
const K = 1024;
const G = backend.prepare(random(N * K), N, K);
const xg = random(T * K);
const yg = new Float32Array(T * N);
const gflop = (2 * T * K * N) / 1e9;
const gemmRuns: { name: string; blas: boolean; simd: 'auto' | 'avx2' }[] = [];
if (hasBlas)
  gemmRuns.push({
    name: `OpenBLAS (${blasName?.replace(/^OpenBLAS /, '')})`,
    blas: true,
    simd: 'auto',
  });
gemmRuns.push({ name: `own ${simd}`, blas: false, simd: 'auto' });
if (simd === 'avx512') gemmRuns.push({ name: 'own avx2', blas: false, simd: 'avx2' });
for (const run of gemmRuns) {
  useBlas(run.blas);
  setSimd(run.simd);
  for (const threads of [1, 2]) {
    setThreads(threads);
    backend.gemm(yg, G, xg, T);
    const rates = Array.from(
      { length: 15 },
      () => gflop / seconds(() => backend.gemm(yg, G, xg, T)),
    );
    const target = threads === 2 ? `; target ≥ 150: ${verdict(median(rates) >= 150)}` : '';
    row(
      `GEMM 128×1024→4096, ${run.name}, ${threads}T`,
      'GFLOPS',
      rates,
      `${gflop.toFixed(2)} GFLOP${target}`,
    );
  }
}
setSimd('auto');
useBlas('auto');
backend.release(G);

// --- dense GEMV 4096×4096, two weights timed alternately so neither is cached ---
const A = backend.prepare(random(N * N), N, N);
const B = backend.prepare(random(N * N), N, N, { sparse: true });
const y = new Float32Array(N);
const x = random(N);
const gbytes = (N * N * 4) / 1e9;
const gemvRuns = [{ name: `own ${simd}`, blas: false }];
if (hasBlas) gemvRuns.push({ name: 'OpenBLAS', blas: true });
for (const run of gemvRuns) {
  useBlas(run.blas);
  for (const threads of [1, 2]) {
    setThreads(threads);
    backend.gemv(y, A, x);
    backend.gemv(y, B, x);
    const rates: number[] = [];
    for (let i = 0; i < 30; i++) {
      rates.push(gbytes / seconds(() => backend.gemv(y, A, x)));
      rates.push(gbytes / seconds(() => backend.gemv(y, B, x)));
    }
    const m = median(rates);
    const target = threads === 2 ? `; target ≥ 85%: ${verdict(m >= 0.85 * bw[threads])}` : '';
    const note = `${pct(m, bw[threads])} of memory read ${threads}T${target}`;
    row(`dense GEMV 4096×4096, ${run.name}, ${threads}T`, 'GB/s', rates, note);
  }
}
useBlas('auto');

// --- sparse GEMV on B's input-major copy vs dense GEMV on B, both cold, interleaved ---
setThreads(2);
for (const zeros of [0, 0.5, 0.7, 0.9]) {
  const xs = Array.from({ length: 8 }, () => random(N, zeros));
  const sp: number[] = [];
  const dn: number[] = [];
  let active = 0;
  for (let i = 0; i < 24; i++) {
    const xi = xs[i % xs.length];
    backend.gemv(y, A, xi); // evicts B (both layouts) from the caches
    sp.push(seconds(() => backend.sparseGemv(y, B, xi)));
    backend.gemv(y, A, xi);
    dn.push(seconds(() => backend.gemv(y, B, xi)));
    active += xi.reduce((n, v) => n + (v !== 0 ? 1 : 0), 0);
  }
  const ideal = (N * sp.length) / active;
  const speedup = median(dn) / median(sp);
  const ok = speedup >= 0.8 * ideal;
  const note = `${speedup.toFixed(2)}× dense (ideal ${ideal.toFixed(2)}×): ${pct(speedup, ideal)} of ideal; target ≥ 80%: ${verdict(ok)}`;
  row(
    `sparse GEMV ${zeros * 100}% zeros, 2T`,
    'GB/s eq.',
    sp.map((t) => gbytes / t),
    note,
  );
}
backend.release(A);
backend.release(B);
setThreads(2);

const header = ['kernel', 'median', 'min–max', 'notes'];
const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)));
const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
console.log(`${backend.description}; ${cores} cores available; node ${process.version}`);
console.log(line(header));
console.log(line(widths.map((w) => '-'.repeat(w))));
for (const r of table) console.log(line(r));
console.log('T = threads. GB/s eq.: dense-equivalent bytes (rows·cols·4) per second.');
