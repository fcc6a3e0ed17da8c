/**
 * The native backend: a Node addon (C++ in this folder, built by scripts/build-native.mjs
 * into build/native/actsparse.node). Its own kernels come in AVX-512, AVX2 and scalar
 * versions, chosen at run time from the CPU. GEMM goes through OpenBLAS when the build
 * found it, unless the own kernels are AVX-512 (which measured faster, see `useBlas`);
 * GEMV and sparse GEMV use the own kernels, and so do the per-element ops (`ops`: layer
 * norm, token shift, sigmoid, relu², the WKV recurrence, the sites' threshold and zero
 * count), and the RWKV-5/6/7 state updates (`families`: wkv5, wkv6, wkv7). A pool of persistent
 * threads (2 on the project's machines) serves every call.
 * Weights are copied into addon memory (64-byte aligned, huge pages) by `prepare` and
 * freed by `release` (or, as a safety net, when the Linear is garbage-collected).
 *
 * The addon's state (threads, kernels, OpenBLAS) is per process, so there is one backend
 * object; `setThreads`, `setSimd` and `useBlas` change it for every caller.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { f32, type Linear, type PrepareOptions } from '../backend.ts';
import type { CpuKernels, ElementwiseOps } from '../cpu.ts';
import type { Wkv5Args } from '../families/wkv5.ts';
import type { Wkv7Args } from '../families/wkv7.ts';

/** An addon weight handle (an N-API External); opaque to TypeScript. */
type Handle = { readonly __nativeWeight: 'NativeWeight' };

export type SimdLevel = 'avx512' | 'avx2' | 'scalar';

export interface NativeInfo {
  /** The OpenBLAS the addon loaded, e.g. "OpenBLAS 0.3.21 (Haswell kernels)", or null. */
  blas: string | null;
  /** Who runs GEMM now: OpenBLAS or the addon's own kernels (see `useBlas`). */
  gemm: 'openblas' | 'own';
  /** Kernels used where BLAS is not: "avx512", "avx2" or "scalar". */
  simd: string;
  /** Threads per product, the calling thread included. */
  threads: number;
}

/**
 * The exports of actsparse.node (src/tensor/native/addon.cc). The elementwise ops take
 * reference.ts's arguments (sizes checked, defaults `eps = 1e-5` and `n = out.length`,
 * or x.length for threshold and countZeros, applied in C++); an output may be its
 * elementwise input itself (in place), but must not otherwise overlap another argument.
 */
interface Addon extends ElementwiseOps {
  prepare(w: Float32Array, rows: number, cols: number, sparse: boolean): Handle;
  release(h: Handle): void;
  bytes(h: Handle): number;
  gemv(h: Handle, y: Float32Array, x: Float32Array): void;
  gemm(h: Handle, y: Float32Array, x: Float32Array, tokens: number): void;
  sparseGemv(h: Handle, y: Float32Array, x: Float32Array): number;
  readBandwidth(bytes: number, threads: number): number;
  /** RWKV-5/6's state update over a packed batch (wkv56.h); w per token when `perToken`. */
  wkvHeads(
    out: Float32Array,
    r: Float32Array,
    k: Float32Array,
    v: Float32Array,
    w: Float32Array,
    u: Float32Array,
    state: Float32Array,
    offsets: Int32Array,
    H: number,
    N: number,
    perToken: boolean,
  ): void;
  setThreads(n: number): number;
  setSimd(level: string): string;
  useBlas(mode: boolean | 'auto'): boolean;
  info(): NativeInfo & { blasReason: string | null };
  /** families/wkv7.ts over a packed batch: offsets = Seqs.offsets. */
  wkv7(
    out: Float32Array,
    bonus: Float32Array,
    r: Float32Array,
    w: Float32Array,
    k: Float32Array,
    v: Float32Array,
    a: Float32Array,
    b: Float32Array,
    u: Float32Array,
    state: Float32Array,
    offsets: Int32Array,
    heads: number,
    headSize: number,
  ): void;
  sgemm?(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    own: boolean,
  ): void;
}

const EXPORTS = [
  'prepare',
  'release',
  'bytes',
  'gemv',
  'gemm',
  'sparseGemv',
  'readBandwidth',
  'layerNorm',
  'timeShiftMix',
  'sigmoid',
  'reluSquare',
  'wkv4',
  'wkvHeads',
  'wkv7',
  'threshold',
  'countZeros',
];
// Resolves to <project root>/build/native from both src/tensor/native/ and dist/tensor/native/.
const ADDON_URL = new URL('../../../build/native/actsparse.node', import.meta.url);
const REBUILD = 'run `node scripts/build-native.mjs` (needs a C++ compiler and Python 3)';

export function nativeAddonPath(): string {
  return fileURLToPath(ADDON_URL);
}

let loaded: { addon: Addon } | { reason: string } | undefined;

/** Loads the addon once; on failure remembers why. */
function load(): { addon: Addon } | { reason: string } {
  if (loaded) return loaded;
  const path = nativeAddonPath();
  if (!existsSync(path)) {
    loaded = { reason: `native kernels not built (${path} is missing): ${REBUILD}` };
    return loaded;
  }
  try {
    const addon = createRequire(import.meta.url)(path) as Addon;
    const missing = EXPORTS.filter(
      (e) => typeof (addon as unknown as Record<string, unknown>)[e] !== 'function',
    );
    loaded = missing.length
      ? { reason: `${path} lacks ${missing.join(', ')} (stale build?): ${REBUILD}` }
      : { addon };
  } catch (e) {
    // Wrong Node ABI, missing shared library, or a file that is not an addon.
    loaded = { reason: `cannot load ${path}: ${(e as Error).message}; ${REBUILD}` };
  }
  return loaded;
}

function addon(): Addon {
  const l = load();
  if ('reason' in l) throw new Error(l.reason);
  return l.addon;
}

/** Why `loadNativeBackend()` returns null, or null when the native backend is usable. */
export function nativeUnavailableReason(): string | null {
  const l = load();
  return 'reason' in l ? l.reason : null;
}

class NativeLinear implements Linear {
  released = false;
  constructor(
    readonly handle: Handle,
    readonly rows: number,
    readonly cols: number,
    readonly sparse: boolean,
    readonly bytes: number,
  ) {}
}

function handleOf(l: Linear, fn: string): Handle {
  if (!(l instanceof NativeLinear)) {
    throw new Error(`native ${fn}: this Linear was prepared by another backend`);
  }
  if (l.released) throw new Error(`native ${fn}: weight used after release()`);
  return l.handle;
}

function describe(a: Addon): string {
  const i = a.info();
  const simd = { avx512: 'AVX-512', avx2: 'AVX2', scalar: 'scalar' }[i.simd] ?? i.simd;
  const threads = `${i.threads} thread${i.threads === 1 ? '' : 's'}`;
  if (i.gemm === 'openblas') return `native (${i.blas} for GEMM, ${simd} kernels, ${threads})`;
  return `native (${simd} kernels, ${threads}${i.blas ? `; ${i.blas} loaded, unused` : ''})`;
}

function makeKernels(a: Addon): CpuKernels {
  // The addon's functions themselves: no JavaScript wrapper between caller and C++.
  const ops: ElementwiseOps = {
    layerNorm: a.layerNorm,
    timeShiftMix: a.timeShiftMix,
    sigmoid: a.sigmoid,
    reluSquare: a.reluSquare,
    wkv4: a.wkv4,
    threshold: a.threshold,
    countZeros: a.countZeros,
  };
  // RWKV-5 (one decay) and RWKV-6 (a decay per token): the whole batch in one call.
  const heads = (x: Wkv5Args, perToken: boolean) =>
    a.wkvHeads(
      f32(x.out),
      f32(x.r),
      f32(x.k),
      f32(x.v),
      f32(x.w),
      f32(x.u),
      f32(x.state),
      x.seqs.offsets,
      x.heads,
      x.headSize,
      perToken,
    );
  return {
    name: 'native',
    ops,
    get description() {
      return describe(a);
    },
    prepare(w: Float32Array, rows: number, cols: number, opts: PrepareOptions = {}): Linear {
      const sparse = !!opts.sparse;
      const h = a.prepare(w, rows, cols, sparse);
      return new NativeLinear(h, rows, cols, sparse, a.bytes(h));
    },
    gemv(y, l, x) {
      a.gemv(handleOf(l, 'gemv'), y, x);
    },
    gemm(y, l, x, tokens) {
      a.gemm(handleOf(l, 'gemm'), y, x, tokens);
    },
    sparseGemv(y, l, x) {
      return a.sparseGemv(handleOf(l, 'sparseGemv'), y, x);
    },
    families: {
      wkv5: (x) => heads(x as Wkv5Args, false),
      wkv6: (x) => heads(x as Wkv5Args, true),
      // The recurrence per (sequence, head), threaded (wkv7.cc).
      wkv7: (args) => {
        const x = args as Wkv7Args;
        a.wkv7(
          f32(x.out),
          f32(x.bonus),
          f32(x.r),
          f32(x.w),
          f32(x.k),
          f32(x.v),
          f32(x.a),
          f32(x.b),
          f32(x.u),
          f32(x.state),
          x.seqs.offsets,
          x.heads,
          x.headSize,
        );
      },
    },
    release(l) {
      // Releasing twice is harmless; using the weight afterwards is an error.
      if (l instanceof NativeLinear && l.released) return;
      a.release(handleOf(l, 'release'));
      (l as NativeLinear).released = true;
    },
  };
}

let kernels: CpuKernels | undefined;

/** The native tier's kernels, or null when the addon is not built or cannot load. */
export function loadNativeKernels(): CpuKernels | null {
  const l = load();
  if ('reason' in l) return null;
  kernels ??= makeKernels(l.addon);
  return kernels;
}

// ---- Tuning and benchmark primitives (for `actsparse bench` and the tests) ----

/** GB/s reading a buffer of `bytes` (≥ 256 MiB to leave the caches) with `threads` threads, median of 5 passes. */
export function memoryReadBandwidth(bytes: number, threads: number): number {
  return addon().readBandwidth(bytes, threads);
}

/** Threads per product (calling thread included), clamped to [1, available cores]; returns the value set. */
export function setThreads(n: number): number {
  return addon().setThreads(n);
}

export function info(): NativeInfo {
  const { blas, gemm, simd, threads } = addon().info();
  return { blas, gemm, simd, threads };
}

/** Why OpenBLAS did not load (not found at build time, library missing), or null. */
export function blasUnavailableReason(): string | null {
  return addon().info().blasReason;
}

/**
 * Forces the own kernels' instruction set ('auto' = the best this CPU has); throws if the
 * CPU lacks it. Tests use it to cover the AVX2 and scalar kernels on an AVX-512 machine.
 */
export function setSimd(level: SimdLevel | 'auto'): string {
  return addon().setSimd(level);
}

/**
 * OpenBLAS for dense products: true = GEMM and GEMV, false = never, 'auto' (the default) =
 * GEMM only when the own kernels are not AVX-512 (measured faster than OpenBLAS 0.3.21
 * here). Returns whether GEMM now goes through OpenBLAS (false when it did not load).
 */
export function useBlas(mode: boolean | 'auto'): boolean {
  return addon().useBlas(mode);
}

/** C = op(A)·op(B) for the trainer (OpenBLAS when loaded, else the addon's own GEMM), or null. */
export function nativeSgemm(
  own = false,
):
  | ((
      transA: boolean,
      transB: boolean,
      m: number,
      n: number,
      k: number,
      a: Float32Array,
      b: Float32Array,
      c: Float32Array,
    ) => void)
  | null {
  const l = load();
  if ('reason' in l || typeof l.addon.sgemm !== 'function') return null;
  const a = l.addon;
  return (transA, transB, m, n, k, x, y, c) => a.sgemm!(transA, transB, m, n, k, x, y, c, own);
}
