/**
 * Timings of the wasm kernels against this machine's limits (docs/PERF.md).
 * Run: node --import tsx bench/wasm-kernels.ts   (after npm run build:wasm)
 * Every figure is the median, min and max over repeated runs in this process; GEMV
 * weights (64 MiB) are twice the L3 and a 64 MiB sweep runs between timed sparse calls,
 * so GEMV numbers are DRAM numbers.
 */
import type { Linear } from '../src/tensor/backend.ts';
import * as ref from '../src/tensor/reference.ts';
import {
  loadWasmBackend,
  type WasmBackend,
  wasmUnavailableReason,
} from '../src/tensor/wasm/index.ts';

const loaded = loadWasmBackend();
if (!loaded) {
  console.error(`wasm backend unavailable: ${wasmUnavailableReason()}`);
  process.exit(1);
}
const backend: WasmBackend = loaded;

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
/** One row: throughput `work / t` for the median, slowest and fastest time. */
function row(kernel: string, unit: string, times: number[], work: number, note: string): void {
  const f = (t: number) => (work / t).toFixed(1);
  const lo = f(Math.max(...times));
  const hi = f(Math.min(...times));
  const ms = (median(times) * 1e3).toFixed(3);
  table.push([kernel, `${f(median(times))} ${unit}`, `${lo}–${hi}`, `${ms} ms`, note]);
}

// --- dense GEMV 4096×4096, two weights timed alternately so neither is cached ---
const N = 4096;
const wA = random(N * N);
const wB = random(N * N);
let t0 = performance.now();
const A = backend.prepare(wA, N, N);
const prepDense = performance.now() - t0;
t0 = performance.now();
const B = backend.prepare(wB, N, N, { sparse: true });
const prepSparse = performance.now() - t0;
const y = new Float32Array(N);
const x = random(N);
const gbytes = (N * N * 4) / 1e9;
backend.gemv(y, A, x);
backend.gemv(y, B, x);
const dense: number[] = [];
for (let i = 0; i < 30; i++) {
  dense.push(seconds(() => backend.gemv(y, A, x)));
  dense.push(seconds(() => backend.gemv(y, B, x)));
}
row('dense GEMV 4096×4096', 'GB/s', dense, gbytes, 'packed [out/16][in][16]');
const js = [0, 1, 2].map(() => seconds(() => ref.gemv(y, wA, x, N, N)));
row(
  'js reference GEMV',
  'GB/s',
  js,
  gbytes,
  `wasm ${(median(js) / median(dense)).toFixed(1)}× faster`,
);

// --- GEMM: 128 tokens through a 4096×1024 linear layer ---
const T = 128;
const K = 1024;
const wg = random(N * K);
const G = backend.prepare(wg, N, K);
const xg = random(T * K);
const yg = new Float32Array(T * N);
backend.gemm(yg, G, xg, T);
const gemm = Array.from({ length: 15 }, () => seconds(() => backend.gemm(yg, G, xg, T)));
const gflop = (2 * T * K * N) / 1e9;
const jsGemm = seconds(() => ref.gemm(yg, wg, xg, T, N, K));
row(
  'GEMM 128×1024→4096',
  'GFLOPS',
  gemm,
  gflop,
  `4×8 tiles; js ref ${(gflop / jsGemm).toFixed(1)} GFLOPS`,
);
backend.release(G);

// --- sparse GEMV on an input-major copy vs dense GEMV on the same weight, both cold ---
function sparseRows(w: Linear, shape: string, zerosList: number[]): void {
  const yw = new Float32Array(w.rows);
  for (const zeros of zerosList) {
    const xs = Array.from({ length: 8 }, () => random(w.cols, zeros));
    const sp: number[] = [];
    const dn: number[] = [];
    let active = 0;
    for (let i = 0; i < 24; i++) {
      const xi = xs[i % xs.length];
      backend.gemv(y, A, x); // a 64 MiB sweep evicts w (both layouts) from the caches
      sp.push(seconds(() => backend.sparseGemv(yw, w, xi)));
      dn.push(seconds(() => backend.gemv(yw, w, xi)));
      active += xi.reduce((n, v) => n + (v !== 0 ? 1 : 0), 0);
    }
    const ideal = (w.cols * sp.length) / active;
    const speedup = median(dn) / median(sp);
    const note = `${speedup.toFixed(2)}× dense (ideal ${ideal.toFixed(2)}×): ${((100 * speedup) / ideal).toFixed(0)}% of ideal`;
    row(
      `sparse GEMV ${shape} ${zeros * 100}% 0s`,
      'GB/s eq.',
      sp,
      (w.rows * w.cols * 4) / 1e9,
      note,
    );
  }
}
sparseRows(B, '4096×4096', [0, 0.5, 0.7, 0.9]);
// Short rows of Wᵀ (1024 outputs, 4 KiB), as in an FFN down-projection: same 64 MiB.
const C = backend.prepare(random(1024 * 16384), 1024, 16384, { sparse: true });
sparseRows(C, '1024×16384', [0.5, 0.9]);

const header = ['kernel', 'median', 'min–max', 'time', 'notes'];
const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)));
const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
console.log(`${backend.description}, node ${process.version}`);
console.log(line(header));
console.log(line(widths.map((w) => '-'.repeat(w))));
for (const r of table) console.log(line(r));
console.log('GB/s eq.: dense-equivalent bytes (rows·cols·4) per second; time is the median.');
console.log(
  `prepare 4096×4096: ${prepDense.toFixed(0)} ms packed, ${prepSparse.toFixed(0)} ms packed + Wᵀ; wasm memory ${(backend.memoryBytes / 2 ** 20).toFixed(0)} MiB`,
);
