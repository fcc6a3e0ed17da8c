/**
 * The WebAssembly SIMD128 backend: loads build/wasm/kernels.wasm (compiled from
 * ./assembly/kernels.ts by scripts/build-wasm.mjs) and implements the CPU kernels with it.
 * Weights are copied once into linear memory in the kernels' layouts; activations are
 * copied into scratch space per call (small next to the weights each call reads).
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Buf, f32, type Linear, type PrepareOptions, Seqs } from '../backend.ts';
import { type CpuKernels, referenceOps } from '../cpu.ts';
import type { Conv1dArgs } from '../families/conv1d.ts';
import type { SelectiveScanArgs } from '../families/selective-scan.ts';
import type { SsdArgs } from '../families/ssd.ts';
import { type Wkv5Args, wkvHeadsBatched } from '../families/wkv5.ts';
import type { Wkv7Args } from '../families/wkv7.ts';
import { Heap, MAX_WASM_BYTES, type WasmMemory } from './heap.ts';
import {
  BLOCK,
  packBlocks,
  packTransposed,
  SPARSE_GROUP,
  transposedSize,
  transposedStride,
} from './layout.ts';

/** The exports of kernels.wasm; pointers are byte offsets into `memory`. */
interface Kernels {
  memory: WasmMemory;
  heapBase(): number;
  gemv(y: number, w: number, x: number, blocks: number, cols: number): void;
  gemm(y: number, w: number, x: number, tokens: number, blocks: number, cols: number): void;
  sparseGemv(y: number, wt: number, x: number, idx: number, ld: number, cols: number): number;
  // Mamba's families (assembly/mamba.ts): pointers, then the batch's offsets and sizes.
  conv1d(
    out: number,
    x: number,
    w: number,
    bias: number,
    state: number,
    offsets: number,
    batch: number,
    C: number,
    K: number,
    scratch: number,
  ): void;
  selectiveScan(
    y: number,
    u: number,
    delta: number,
    deltaBias: number,
    A: number,
    B: number,
    C: number,
    D: number,
    state: number,
    offsets: number,
    batch: number,
    E: number,
    N: number,
    scratch: number,
  ): void;
  ssd(
    y: number,
    x: number,
    dt: number,
    dtBias: number,
    A: number,
    B: number,
    C: number,
    D: number,
    state: number,
    offsets: number,
    batch: number,
    H: number,
    P: number,
    G: number,
    N: number,
    dtMin: number,
    dtMax: number,
    scratch: number,
  ): void;
  wkvHeads(
    out: number,
    r: number,
    k: number,
    v: number,
    w: number,
    wStride: number,
    u: number,
    s: number,
    acc: number,
    T: number,
    H: number,
    N: number,
  ): void;
  wkv7(
    out: number,
    bonus: number,
    r: number,
    w: number,
    k: number,
    v: number,
    a: number,
    b: number,
    u: number,
    state: number,
    tokens: number,
    heads: number,
    headSize: number,
  ): void;
}

/** The slice of the WebAssembly JS API used here (absent from the project's type libs). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
}

// Resolves to <project root>/build/wasm from both src/tensor/wasm/ and dist/tensor/wasm/.
const KERNELS_URL = new URL('../../../build/wasm/kernels.wasm', import.meta.url);
const EXPORTS = [
  'memory',
  'heapBase',
  'gemv',
  'gemm',
  'sparseGemv',
  'wkvHeads',
  'wkv7',
  'conv1d',
  'selectiveScan',
  'ssd',
];

export function wasmKernelsPath(): string {
  return fileURLToPath(KERNELS_URL);
}

type Compiled = { module: object; api: WasmApi } | { reason: string };
let compiled: Compiled | undefined;

/** Reads and compiles kernels.wasm once; on failure remembers why. */
function compile(): Compiled {
  if (compiled) return compiled;
  const path = wasmKernelsPath();
  const api = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (!api) compiled = { reason: 'this JavaScript runtime has no WebAssembly' };
  else if (!existsSync(path)) {
    compiled = { reason: `wasm kernels not built (${path} is missing): run npm run build:wasm` };
  } else {
    try {
      const module = new api.Module(readFileSync(path));
      const missing = EXPORTS.filter((e) => !(e in new api.Instance(module, {}).exports));
      compiled = missing.length
        ? { reason: `${path} lacks ${missing.join(', ')} (stale build?): run npm run build:wasm` }
        : { module, api };
    } catch (e) {
      // CompileError: a corrupt file or an engine without SIMD128.
      compiled = { reason: `cannot load ${path}: ${(e as Error).message}` };
    }
  }
  return compiled;
}

/** Why `loadWasmKernels()` returns null, or null when the wasm backend is usable. */
export function wasmUnavailableReason(): string | null {
  const c = compile();
  return 'reason' in c ? c.reason : null;
}

export interface WasmBackendOptions {
  /** Cap on linear memory (default and maximum 4 GiB); tests use a small one. */
  maxMemoryBytes?: number;
  /**
   * Bound on the per-row arrays one Mamba conv/scan call copies in (default 16 MiB):
   * larger batches run in pieces of whole sequences, longer sequences in pieces of rows.
   * Tests use a small one.
   */
  scanScratchBytes?: number;
}

/** The wasm kernels plus what tests and benchmarks inspect about its memory. */
export interface WasmKernels extends CpuKernels {
  /** Linear memory reserved (grows, never shrinks). */
  readonly memoryBytes: number;
  /** Bytes in live weights and scratch. */
  readonly usedBytes: number;
}

/**
 * A new wasm backend with its own linear memory, or null when kernels.wasm is not built
 * or cannot be loaded (see `wasmUnavailableReason()`). Callers keep the instance.
 */
export function loadWasmKernels(opts: WasmBackendOptions = {}): WasmKernels | null {
  const c = compile();
  if ('reason' in c) return null;
  const kernels = new c.api.Instance(c.module, {}).exports as unknown as Kernels;
  const maxBytes = Math.min(opts.maxMemoryBytes ?? MAX_WASM_BYTES, MAX_WASM_BYTES);
  return new WasmKernelsImpl(kernels, maxBytes, opts.scanScratchBytes ?? GEMM_SCRATCH_BYTES);
}

class WasmLinear implements Linear {
  released = false;
  constructor(
    readonly owner: WasmKernelsImpl,
    readonly rows: number,
    readonly cols: number,
    /** Packed layout (layout.ts `packBlocks`): byte offset and size. */
    readonly packed: number,
    readonly packedBytes: number,
    /** Input-major copy Wᵀ [cols + 1, ld], last row zero (0 when not sparse). */
    readonly wt: number,
    readonly wtBytes: number,
  ) {}
  get sparse(): boolean {
    return this.wtBytes > 0;
  }
  get bytes(): number {
    return this.packedBytes + this.wtBytes;
  }
  get blocks(): number {
    return Math.ceil(this.rows / BLOCK);
  }
}

/** Scratch for one gemm call is kept under this size; longer inputs go in token chunks. */
const GEMM_SCRATCH_BYTES = 16 * 1024 * 1024;

class WasmKernelsImpl implements WasmKernels {
  readonly name = 'wasm' as const;
  // Elementwise work stays in JS: copying activations into wasm memory would cost as much.
  readonly ops = referenceOps;
  readonly description = 'wasm (SIMD128 kernels, 1 thread)';
  // The recurrences (RWKV-5/6/7 state updates, Mamba's scans: O(N) work per value copied in,
  // so they pay to run here) and Mamba's causal convolution.
  readonly families = {
    wkv5: (a: unknown) => wkvHeadsBatched(this.wkvSequence, a as Wkv5Args, false),
    wkv6: (a: unknown) => wkvHeadsBatched(this.wkvSequence, a as Wkv5Args, true),
    wkv7: (a: unknown) => this.wkv7(a as Wkv7Args),
    // Mamba's: in pieces of at most `scanScratchBytes` of per-row arrays (rows·floats/row·4).
    conv1d: (args: unknown) => {
      const a = args as Conv1dArgs;
      const C = a.channels;
      const S = (a.kernel - 1) * C;
      this.inPieces(a.seqs, 2 * C, (seqs, r0, s0) =>
        this.mamba.conv1d({
          ...a,
          seqs,
          out: rowsOf(a.out, r0, seqs.rows, C),
          x: rowsOf(a.x, r0, seqs.rows, C),
          state: rowsOf(a.state, s0, seqs.count, S),
        }),
      );
    },
    selectiveScan: (args: unknown) => {
      const a = args as SelectiveScanArgs;
      const { inner: E, stateSize: N } = a;
      this.inPieces(a.seqs, 3 * E + 2 * N, (seqs, r0, s0) =>
        this.mamba.selectiveScan({
          ...a,
          seqs,
          y: rowsOf(a.y, r0, seqs.rows, E),
          u: rowsOf(a.u, r0, seqs.rows, E),
          delta: rowsOf(a.delta, r0, seqs.rows, E),
          B: rowsOf(a.B, r0, seqs.rows, N),
          C: rowsOf(a.C, r0, seqs.rows, N),
          state: rowsOf(a.state, s0, seqs.count, E * N),
        }),
      );
    },
    ssd: (args: unknown) => {
      const a = args as SsdArgs;
      const { heads: H, headDim: P, groups: G, stateSize: N } = a;
      this.inPieces(a.seqs, 2 * H * P + H + 2 * G * N, (seqs, r0, s0) =>
        this.mamba.ssd({
          ...a,
          seqs,
          y: rowsOf(a.y, r0, seqs.rows, H * P),
          x: rowsOf(a.x, r0, seqs.rows, H * P),
          dt: rowsOf(a.dt, r0, seqs.rows, H),
          B: rowsOf(a.B, r0, seqs.rows, G * N),
          C: rowsOf(a.C, r0, seqs.rows, G * N),
          state: rowsOf(a.state, s0, seqs.count, H * P * N),
        }),
      );
    },
  };
  private readonly heap: Heap;
  private scratchPtr = 0;
  private scratchBytes = 0;

  constructor(
    private readonly k: Kernels,
    maxBytes: number,
    private readonly scanScratchBytes: number,
  ) {
    this.heap = new Heap(k.memory, k.heapBase(), maxBytes);
  }

  get memoryBytes(): number {
    return this.heap.memoryBytes;
  }
  get usedBytes(): number {
    return this.heap.usedBytes;
  }

  prepare(w: Float32Array, rows: number, cols: number, opts: PrepareOptions = {}): Linear {
    if (!(Number.isInteger(rows) && Number.isInteger(cols) && rows > 0 && cols > 0)) {
      throw new Error(`prepare: bad shape ${rows}×${cols}`);
    }
    if (w.length !== rows * cols) throw new Error(`prepare: ${w.length} values != ${rows}×${cols}`);
    const shape = `a ${rows}×${cols} weight`;
    const packedBytes = Math.ceil(rows / BLOCK) * BLOCK * cols * 4;
    const packed = this.heap.alloc(packedBytes, shape);
    let wt = 0;
    const wtBytes = opts.sparse ? transposedSize(rows, cols) * 4 : 0;
    if (opts.sparse) {
      try {
        wt = this.heap.alloc(wtBytes, `the input-major copy of ${shape}`);
      } catch (e) {
        this.heap.release(packed, packedBytes);
        throw e;
      }
      packTransposed(this.heap.f32, wt >>> 2, w, rows, cols);
    }
    // After both allocations: a grow re-creates heap.f32.
    packBlocks(this.heap.f32, packed >>> 2, w, rows, cols);
    return new WasmLinear(this, rows, cols, packed, packedBytes, wt, wtBytes);
  }

  gemv(y: Float32Array, w: Linear, x: Float32Array): void {
    const l = this.linear(w, 'gemv');
    checkLength('gemv', x, l.cols, 'x');
    checkLength('gemv', y, l.rows, 'y');
    const ld = l.blocks * BLOCK;
    const xBytes = align64(4 * l.cols);
    const s = this.scratch(xBytes + 4 * ld);
    const xp = s;
    const yp = s + xBytes;
    this.heap.f32.set(x.subarray(0, l.cols), xp >>> 2);
    this.k.gemv(yp, l.packed, xp, l.blocks, l.cols);
    y.set(this.heap.f32.subarray(yp >>> 2, (yp >>> 2) + l.rows));
  }

  gemm(y: Float32Array, w: Linear, x: Float32Array, tokens: number): void {
    const l = this.linear(w, 'gemm');
    if (!(Number.isInteger(tokens) && tokens >= 0))
      throw new Error(`gemm: bad token count ${tokens}`);
    const { rows, cols } = l;
    checkLength('gemm', x, tokens * cols, 'x');
    checkLength('gemm', y, tokens * rows, 'y');
    const ld = l.blocks * BLOCK;
    // Tokens per call: a multiple of 4 (the kernel's tile) within the scratch budget.
    const perToken = 4 * (cols + ld);
    const chunk = Math.max(4, Math.floor(GEMM_SCRATCH_BYTES / perToken / 4) * 4);
    const maxN = Math.min(tokens, chunk);
    const s = this.scratch(align64(4 * maxN * cols) + 4 * maxN * ld);
    for (let t0 = 0; t0 < tokens; t0 += chunk) {
      const n = Math.min(chunk, tokens - t0);
      const xp = s;
      const yp = s + align64(4 * n * cols);
      const f32 = this.heap.f32;
      f32.set(x.subarray(t0 * cols, (t0 + n) * cols), xp >>> 2);
      this.k.gemm(yp, l.packed, xp, n, l.blocks, cols);
      const y0 = yp >>> 2;
      if (ld === rows) y.set(f32.subarray(y0, y0 + n * rows), t0 * rows);
      else {
        // Drop the padding rows of each token's output.
        for (let t = 0; t < n; t++) {
          y.set(f32.subarray(y0 + t * ld, y0 + t * ld + rows), (t0 + t) * rows);
        }
      }
    }
  }

  sparseGemv(y: Float32Array, w: Linear, x: Float32Array): number {
    const l = this.linear(w, 'sparseGemv');
    if (!l.sparse) throw new Error('sparseGemv: weight was prepared without {sparse: true}');
    checkLength('sparseGemv', x, l.cols, 'x');
    checkLength('sparseGemv', y, l.rows, 'y');
    const ld = transposedStride(l.rows);
    // Scratch: x [cols + 1] f32, the active-input list [cols + SPARSE_GROUP] i32 (both
    // padded by the kernel), y [ld] f32.
    const xBytes = align64(4 * (l.cols + 1));
    const idxBytes = align64(4 * (l.cols + SPARSE_GROUP));
    const s = this.scratch(xBytes + idxBytes + 4 * ld);
    const xp = s;
    const idx = s + xBytes;
    const yp = idx + idxBytes;
    this.heap.f32.set(x.subarray(0, l.cols), xp >>> 2);
    const active = this.k.sparseGemv(yp, l.wt, xp, idx, ld, l.cols);
    y.set(this.heap.f32.subarray(yp >>> 2, (yp >>> 2) + l.rows));
    return active;
  }

  /**
   * Mamba's families: every array the call reads is copied into linear memory, the
   * kernel runs over the whole batch, and the outputs (and the state) are copied back.
   */
  private readonly mamba = {
    conv1d: (args: unknown) => {
      const a = args as Conv1dArgs;
      const { seqs, channels: C, kernel: K } = a;
      const rows = seqs.rows;
      const bias = f32(a.bias);
      const [out, x, w, b, st, off] = this.copyIn(
        'conv1d',
        [
          [f32(a.out), rows * C, 'out'],
          [f32(a.x), rows * C, 'x'],
          [f32(a.weight), C * K, 'weight'],
          [bias, bias.length ? C : 0, 'bias'],
          [f32(a.state), seqs.count * (K - 1) * C, 'state'],
          [seqs.offsets, seqs.count + 1, 'offsets'],
        ],
        K * C,
      );
      this.k.conv1d(
        out.ptr,
        x.ptr,
        w.ptr,
        bias.length ? b.ptr : 0,
        st.ptr,
        off.ptr,
        seqs.count,
        C,
        K,
        this.scratchTail,
      );
      this.copyOut(out, st);
    },
    selectiveScan: (args: unknown) => {
      const a = args as SelectiveScanArgs;
      const { seqs, inner: E, stateSize: N } = a;
      const rows = seqs.rows;
      const p = this.copyIn(
        'selectiveScan',
        [
          [f32(a.y), rows * E, 'y'],
          [f32(a.u), rows * E, 'u'],
          [f32(a.delta), rows * E, 'delta'],
          [f32(a.deltaBias), E, 'deltaBias'],
          [f32(a.A), E * N, 'A'],
          [f32(a.B), rows * N, 'B'],
          [f32(a.C), rows * N, 'C'],
          [f32(a.D), E, 'D'],
          [f32(a.state), seqs.count * E * N, 'state'],
          [seqs.offsets, seqs.count + 1, 'offsets'],
        ],
        64 * E,
      );
      const [y, u, d, db, A, B, C, D, st, off] = p.map((q) => q.ptr);
      this.k.selectiveScan(y, u, d, db, A, B, C, D, st, off, seqs.count, E, N, this.scratchTail);
      this.copyOut(p[0], p[8]);
    },
    ssd: (args: unknown) => {
      const a = args as SsdArgs;
      const { seqs, heads: H, headDim: P, groups: G, stateSize: N } = a;
      const rows = seqs.rows;
      const p = this.copyIn(
        'ssd',
        [
          [f32(a.y), rows * H * P, 'y'],
          [f32(a.x), rows * H * P, 'x'],
          [f32(a.dt), rows * H, 'dt'],
          [f32(a.dtBias), H, 'dtBias'],
          [f32(a.A), H, 'A'],
          [f32(a.B), rows * G * N, 'B'],
          [f32(a.C), rows * G * N, 'C'],
          [f32(a.D), H, 'D'],
          [f32(a.state), seqs.count * H * P * N, 'state'],
          [seqs.offsets, seqs.count + 1, 'offsets'],
        ],
        2 * 64 * H,
      );
      const [y, x, dt, db, A, B, C, D, st, off] = p.map((q) => q.ptr);
      this.k.ssd(
        y,
        x,
        dt,
        db,
        A,
        B,
        C,
        D,
        st,
        off,
        seqs.count,
        H,
        P,
        G,
        N,
        a.dtMin,
        a.dtMax,
        this.scratchTail,
      );
      this.copyOut(p[0], p[8]);
    },
  };

  /**
   * Runs `piece` on consecutive whole sequences of at most `scanScratchBytes` of per-row
   * arrays together (`floatsPerRow` each), and on a longer sequence in pieces of rows: the
   * state carries from one piece to the next, so the pieces compute the whole. `r0` is the
   * piece's first row in the batch, `s0` its first sequence.
   */
  private inPieces(
    seqs: Seqs,
    floatsPerRow: number,
    piece: (seqs: Seqs, r0: number, s0: number) => void,
  ): void {
    const maxRows = Math.max(1, Math.floor(this.scanScratchBytes / (4 * floatsPerRow)));
    const o = seqs.offsets;
    for (let s = 0; s < seqs.count; ) {
      if (seqs.length(s) > maxRows) {
        for (let t = 0; t < seqs.length(s); t += maxRows)
          piece(new Seqs([Math.min(maxRows, seqs.length(s) - t)]), o[s] + t, s);
        s++;
        continue;
      }
      let e = s + 1; // sequences s … e − 1 fit together
      while (e < seqs.count && o[e + 1] - o[s] <= maxRows) e++;
      piece(new Seqs(Array.from({ length: e - s }, (_, i) => seqs.length(s + i))), o[s], s);
      s = e;
    }
  }

  /** Where the kernel's own scratch starts, after the arrays of the last `copyIn`. */
  private scratchTail = 0;

  /**
   * Copies the first `n` values of each array into scratch (16-byte aligned each) and
   * leaves `extraFloats` after them for the kernel (`scratchTail`).
   */
  private copyIn(
    op: string,
    arrays: [Float32Array | Int32Array, number, string][],
    extraFloats: number,
  ): { ptr: number; n: number; src: Float32Array | Int32Array }[] {
    let bytes = 0;
    const at: number[] = [];
    for (const [a, n, name] of arrays) {
      if (a.length < n) throw new Error(`${op}: ${name} has ${a.length} values, needs ${n}`);
      at.push(bytes);
      bytes += Math.ceil((4 * n) / 16) * 16;
    }
    const base = this.scratch(bytes + 4 * extraFloats);
    this.scratchTail = base + bytes;
    const buffer = this.heap.f32.buffer;
    return arrays.map(([a, n], i) => {
      const ptr = base + at[i];
      if (a instanceof Int32Array) new Int32Array(buffer, ptr, n).set(a.subarray(0, n));
      else new Float32Array(buffer, ptr, n).set(a.subarray(0, n));
      return { ptr, n, src: a };
    });
  }

  private copyOut(...outputs: { ptr: number; n: number; src: Float32Array | Int32Array }[]): void {
    for (const o of outputs)
      (o.src as Float32Array).set(new Float32Array(this.heap.f32.buffer, o.ptr, o.n));
  }

  /**
   * families/wkv5.ts `wkvHeadsSequence` for one sequence: its rows of r, k, v (and w),
   * u and its state are copied into scratch memory, the state and out copied back.
   */
  private readonly wkvSequence = (
    out: Float32Array,
    r: Float32Array,
    k: Float32Array,
    v: Float32Array,
    w: Float32Array,
    wStride: number,
    u: Float32Array,
    s: Float32Array,
    T: number,
    H: number,
    N: number,
  ): void => {
    const A = H * N;
    const rows = align64(4 * T * A);
    const wBytes = align64(4 * (wStride ? T * A : A));
    const uBytes = align64(4 * A);
    const sBytes = align64(4 * A * N);
    const base = this.scratch(4 * rows + wBytes + uBytes + sBytes + align64(4 * N));
    const [rp, kp, vp, op] = [0, 1, 2, 3].map((i) => base + i * rows);
    const wp = base + 4 * rows;
    const up = wp + wBytes;
    const sp = up + uBytes;
    const acc = sp + sBytes;
    const f = this.heap.f32;
    f.set(r.subarray(0, T * A), rp >>> 2);
    f.set(k.subarray(0, T * A), kp >>> 2);
    f.set(v.subarray(0, T * A), vp >>> 2);
    f.set(w.subarray(0, wStride ? T * A : A), wp >>> 2);
    f.set(u.subarray(0, A), up >>> 2);
    f.set(s.subarray(0, A * N), sp >>> 2);
    this.k.wkvHeads(op, rp, kp, vp, wp, wStride, up, sp, acc, T, H, N);
    out.set(f.subarray(op >>> 2, (op >>> 2) + T * A));
    s.set(f.subarray(sp >>> 2, (sp >>> 2) + A * N));
  };

  /**
   * families/wkv7.ts on each sequence: its state and u are copied into scratch once, its
   * tokens in chunks (scratch stays under GEMM_SCRATCH_BYTES for any length), the state
   * back at the end.
   */
  private wkv7(x: Wkv7Args): void {
    const { seqs, heads: H, headSize: N } = x;
    const C = H * N;
    const stateSize = H * N * N;
    // Per token: r, w, k, v, a, b in, out and bonus back.
    const chunk = Math.max(1, Math.floor(GEMM_SCRATCH_BYTES / (32 * C)));
    let maxT = 0;
    for (let s = 0; s < seqs.count; s++) maxT = Math.max(maxT, Math.min(chunk, seqs.length(s)));
    const tBytes = align64(4 * maxT * C);
    const uPtr = this.scratch(align64(4 * C) + align64(4 * stateSize) + 8 * tBytes);
    const sPtr = uPtr + align64(4 * C);
    const tPtr = sPtr + align64(4 * stateSize);
    const ins = [x.r, x.w, x.k, x.v, x.a, x.b].map(f32);
    const [out, bonus, state] = [f32(x.out), f32(x.bonus), f32(x.state)];
    const heap = () => this.heap.f32;
    heap().set(f32(x.u).subarray(0, C), uPtr >>> 2);
    for (let s = 0; s < seqs.count; s++) {
      const T = seqs.length(s);
      if (T === 0) continue;
      heap().set(state.subarray(s * stateSize, (s + 1) * stateSize), sPtr >>> 2);
      for (let t0 = 0; t0 < T; t0 += chunk) {
        const n = Math.min(chunk, T - t0);
        const r0 = (seqs.offsets[s] + t0) * C;
        const slot = (i: number) => tPtr + i * tBytes;
        for (const [i, a] of ins.entries()) heap().set(a.subarray(r0, r0 + n * C), slot(i) >>> 2);
        this.k.wkv7(
          slot(6),
          slot(7),
          slot(0),
          slot(1),
          slot(2),
          slot(3),
          slot(4),
          slot(5),
          uPtr,
          sPtr,
          n,
          H,
          N,
        );
        out.set(heap().subarray(slot(6) >>> 2, (slot(6) >>> 2) + n * C), r0);
        bonus.set(heap().subarray(slot(7) >>> 2, (slot(7) >>> 2) + n * C), r0);
      }
      state.set(heap().subarray(sPtr >>> 2, (sPtr >>> 2) + stateSize), s * stateSize);
    }
  }

  release(w: Linear): void {
    const l = this.linear(w, 'release', true);
    if (l.released) return;
    l.released = true;
    this.heap.release(l.packed, l.packedBytes);
    if (l.wtBytes) this.heap.release(l.wt, l.wtBytes);
  }

  private linear(w: Linear, op: string, allowReleased = false): WasmLinear {
    if (!(w instanceof WasmLinear) || w.owner !== this) {
      throw new Error(`${op}: the weight was not prepared by this wasm backend`);
    }
    if (w.released && !allowReleased) throw new Error(`${op}: the weight was released`);
    return w;
  }

  /** A scratch block of at least `bytes`, reused across calls and grown when needed. */
  private scratch(bytes: number): number {
    if (bytes > this.scratchBytes) {
      if (this.scratchBytes) this.heap.release(this.scratchPtr, this.scratchBytes);
      this.scratchBytes = 0;
      const size = Math.ceil(bytes / 65536) * 65536;
      this.scratchPtr = this.heap.alloc(size, 'scratch space for activations');
      this.scratchBytes = size;
    }
    return this.scratchPtr;
  }
}

function checkLength(op: string, a: Float32Array, need: number, name: string): void {
  if (a.length < need) throw new Error(`${op}: ${name} has ${a.length} values, needs ${need}`);
}

/** Rows r0 … r0 + n − 1 of a [rows, width] buffer, as a view. */
function rowsOf(b: Buf, r0: number, n: number, width: number): Float32Array {
  return f32(b).subarray(r0 * width, (r0 + n) * width);
}

function align64(bytes: number): number {
  return Math.ceil(bytes / 64) * 64;
}
