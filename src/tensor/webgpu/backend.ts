/**
 * The WebGPU backend: every op of `Backend` as WGSL kernels on Dawn (runtime.ts records
 * and batches them; kernels/ holds the WGSL). Buffers live in device memory; `read` and
 * `readTally` are the only steps that wait for the GPU.
 *
 * Operands larger than one binding (a 206 MB head on an adapter that binds 128 MiB)
 * are handled in pieces: elementwise ops and row ops run piece by piece over windows of
 * their buffers, weights are split into row blocks at `prepare`, gathers read the table
 * window by window. Call `close()` when done: Dawn keeps Node running while a device
 * exists.
 */
import { UserError } from '../../errors.ts';
import type {
  Backend,
  BinaryOp,
  Buf,
  IdBuf,
  KernelFamily,
  Linear,
  MatmulOptions,
  PrepareOptions,
  Seqs,
  Tally,
  UnaryOp,
} from '../backend.ts';
import { openDevice } from './device.ts';
import { hasWebGpuFamily, webGpuFamily } from './families.ts';
import './families/index.ts';
import {
  AFFINE,
  addMulKernel,
  binaryKernel,
  COPY,
  type Reach,
  thresholdKernel,
  unaryKernel,
} from './kernels/elementwise.ts';
import {
  checkTiles,
  type GemmTiles,
  gemmKernel,
  gemvKernel,
  type MatrixShape,
  matrixGemmKernel,
  parseTiles,
  SLICE_SUM,
  skipKernel,
  type WeightFormat,
} from './kernels/matmul.ts';
import {
  ACCUMULATE,
  ACCUMULATE_LISTED,
  NLL_ROWS,
  quantileKernel,
  SUM_PARTIAL,
  ZEROS_PARTIAL,
} from './kernels/reduce.ts';
import {
  ATTENTION,
  GATHER,
  L2_NORM,
  LAST_ROWS,
  LAYER_NORM,
  RMS_NORM,
  SCATTER_ROWS,
  TIME_SHIFT_MIX,
  TOKEN_SHIFT,
} from './kernels/rows.ts';
import {
  GpuBuf,
  GpuIds,
  groupsFor,
  type Kernel,
  type Operand,
  Runtime,
  type RuntimeOptions,
  type Store,
} from './runtime.ts';

export interface WebGpuOptions extends RuntimeOptions {
  /** Accept a CPU software adapter (lavapipe): tests, and `--backend webgpu` without a GPU. */
  software?: boolean;
  /** GEMM tiles for large products (default 128x128x16/8x8; env ACTSPARSE_WEBGPU_GEMM). */
  gemmTiles?: GemmTiles;
  /** GEMM tiles for products of fewer rows or outputs (default 64x64x16/4x4). */
  gemmTilesSmall?: GemmTiles;
}

/** One block of rows of a weight, in one buffer: rows row0 … row0 + rows − 1. */
interface WeightPart {
  store: Store;
  row0: number;
  rows: number;
  /** Padded row length (a multiple of 4 values). */
  ld: number;
}

class GpuLinear implements Linear {
  constructor(
    readonly rows: number,
    readonly cols: number,
    readonly format: WeightFormat,
    /** W [rows, cols] in row blocks. */
    readonly parts: WeightPart[],
    /** Wᵀ [cols, rows] in blocks of output columns (zero skipping), or empty. */
    readonly tparts: WeightPart[],
  ) {}
  get sparse(): boolean {
    return this.tparts.length > 0;
  }
  get bytes(): number {
    return [...this.parts, ...this.tparts].reduce((a, p) => a + p.store.bytes, 0);
  }
}

class GpuTally implements Tally {
  constructor(
    readonly buf: GpuBuf,
    readonly size: number,
  ) {}
}

/** Float32 → IEEE half bits, round to nearest even (exact for values stored as f16). */
function halfBits(x: number): number {
  const f = new Float32Array([x]);
  const u = new Uint32Array(f.buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  let mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let h = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    if (rest > half || (rest === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && h & 1)) h++;
  return sign | h;
}

/** The largest float32 ≤ v, and the smallest ≥ v (v > 0). */
function f32Below(v: number): number {
  const f = Math.fround(v);
  return f <= v ? f : nextFloat(f, -1);
}
function f32Above(v: number): number {
  const f = Math.fround(v);
  return f >= v ? f : nextFloat(f, 1);
}
function nextFloat(f: number, dir: 1 | -1): number {
  const a = new Float32Array([f]);
  const u = new Uint32Array(a.buffer);
  u[0] += dir; // positive floats: the next bit pattern is the next value
  return a[0];
}
function bitsOf(f: number): number {
  return new Uint32Array(new Float32Array([f]).buffer)[0];
}

const ROW_GROUPS = 65535;
/** A 2-D grid of `count` workgroups (at most 65535 per dimension). */
function grid(count: number): [number, number] {
  const x = Math.min(count, ROW_GROUPS);
  return [x, Math.ceil(count / x)];
}

const DEFAULT_TILES = '128x128x16/8x8';
const DEFAULT_SMALL_TILES = '64x64x16/4x4';

export class WebGpuBackend implements Backend {
  readonly name = 'webgpu' as const;
  readonly batchRows = 1 << 14;
  readonly rt: Runtime;
  private tiles: GemmTiles;
  private smallTiles: GemmTiles;
  private readonly quantile: Kernel;
  private readonly seqArrays = new WeakMap<Seqs, Map<string, GpuIds>>();
  private readonly seqRelease = new FinalizationRegistry<Store[]>((stores) => {
    for (const s of stores) this.rt.release(s);
  });

  private constructor(rt: Runtime, opts: WebGpuOptions) {
    this.rt = rt;
    const env = process.env;
    this.tiles = opts.gemmTiles ?? parseTiles(env.ACTSPARSE_WEBGPU_GEMM ?? DEFAULT_TILES);
    this.smallTiles =
      opts.gemmTilesSmall ?? parseTiles(env.ACTSPARSE_WEBGPU_GEMM_SMALL ?? DEFAULT_SMALL_TILES);
    checkTiles(this.tiles);
    checkTiles(this.smallTiles);
    // Rows of up to `cache` values are selected in workgroup memory (2 KiB kept for the rest).
    const wg = rt.facts.limits.maxComputeWorkgroupStorageSize;
    const cache = Math.max(256, Math.min(8192, Math.floor((wg - 2304) / 4 / 256) * 256));
    this.quantile = quantileKernel(cache);
  }

  /** A backend on the best adapter, or why there is none (one line). */
  static async open(opts: WebGpuOptions = {}): Promise<WebGpuBackend | string> {
    const d = await openDevice(!!opts.software);
    if (typeof d === 'string') return d;
    return new WebGpuBackend(new Runtime(d.device, d.facts, opts, d.keep), opts);
  }

  get description(): string {
    const f = this.rt.facts;
    return `webgpu (${f.name}${f.software ? ', CPU software adapter' : ''})`;
  }

  /** Adapter, limits and the kernels' choices, for `info` and `bench`. */
  details(): Record<string, string> {
    const f = this.rt.facts;
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
    const t = (x: GemmTiles) => `${x.BM}x${x.BN}x${x.BK}/${x.TM}x${x.TN}`;
    return {
      adapter: f.name,
      'adapter features used': f.features.join(', ') || 'none',
      'max binding': `${mib(f.limits.maxStorageBufferBindingSize)} (used: ${mib(this.rt.maxBinding)})`,
      'max buffer': mib(f.limits.maxBufferSize),
      'workgroup memory': `${f.limits.maxComputeWorkgroupStorageSize} B`,
      'offset alignment': `${this.rt.align} B`,
      'subgroup sizes': `${f.limits.subgroupMinSize}–${f.limits.subgroupMaxSize}`,
      'subgroup matrices': f.subgroupMatrix.length
        ? f.subgroupMatrix.map((c) => `${c.component}→${c.result} ${c.M}x${c.N}x${c.K}`).join(', ')
        : 'none',
      'GEMM tiles': `${t(this.tiles)} (small: ${t(this.smallTiles)}), fp32 accumulation`,
      'GEMM on matrix units': this.matrix
        ? `on (float16 tiles, ${this.matrix.shape.M}x${this.matrix.shape.N}x${this.matrix.shape.K})`
        : 'off',
    };
  }

  /** The subgroup-matrix GEMM (float16 tiles) when enabled and checked, else null. */
  private matrix: { shape: MatrixShape; sg: number } | null = null;

  /**
   * Turns on the subgroup-matrix GEMM for products of many rows, after checking it
   * against the float32 kernel on a product with ragged edges. Returns what was done
   * (or why not), in one line.
   */
  async enableMatrixGemm(): Promise<string> {
    const f = this.rt.facts;
    const shape = f.subgroupMatrix
      .filter((c) => c.component === 'f16' && c.result === 'f32')
      .sort((a, b) => b.M * b.N * b.K - a.M * a.N * a.K)[0];
    if (!shape) return 'no float16 → float32 subgroup matrices on this adapter';
    const sg = f.limits.subgroupMaxSize;
    const candidate = { shape, sg };
    const [n, N, K] = [150, 200, 300];
    const r = (i: number) => Math.sin(i * 1.7) * 0.5;
    const w = this.prepare(
      Float32Array.from({ length: N * K }, (_, i) => r(i)),
      N,
      K,
      { dtype: 'f16' },
    );
    const x = this.upload(Float32Array.from({ length: n * K }, (_, i) => r(i + 7)));
    const want = this.alloc(n * N);
    const got = this.alloc(n * N);
    this.matmul(want, w, x, n);
    this.rt.device.pushErrorScope('validation');
    this.matrix = candidate;
    this.matmul(got, w, x, n);
    this.matrix = null;
    this.rt.flush();
    const err = await this.rt.device.popErrorScope();
    let worst = Number.NaN;
    if (!err) {
      const [a, b] = [await this.read(got), await this.read(want)];
      worst = 0;
      for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
    }
    for (const t of [x, want, got]) this.free(t);
    this.release(w);
    if (err) return `subgroup-matrix GEMM refused by the device: ${err.message.split('\n')[0]}`;
    // Float16 x (|x| ≤ 0.5, K = 300): errors near 1e-3 · √K; a wrong kernel is far off.
    if (!(worst < 0.05)) return `subgroup-matrix GEMM failed its check (max error ${worst})`;
    this.matrix = candidate;
    return `subgroup-matrix GEMM on (${shape.M}x${shape.N}x${shape.K} f16 → f32), max error ${worst.toExponential(1)} against fp32`;
  }

  /** Leaves the subgroup-matrix GEMM (products go back to float32 tiles). */
  disableMatrixGemm(): void {
    this.matrix = null;
  }

  /** Sets the GEMM tiles (benchmarks compare several). */
  setGemmTiles(large: GemmTiles, small = this.smallTiles): void {
    checkTiles(large);
    checkTiles(small);
    this.tiles = large;
    this.smallTiles = small;
  }

  /** Gives the device back (Dawn keeps the process alive while one exists). */
  close(): void {
    this.rt.close();
  }

  // ---------------------------------------------------------------- helpers for kernels

  private gpu(b: Buf): GpuBuf {
    if (!(b instanceof GpuBuf))
      throw new TypeError('the webgpu backend was given another backend’s buffer');
    return b;
  }
  private ids(b: IdBuf): GpuIds {
    if (!(b instanceof GpuIds))
      throw new TypeError('the webgpu backend was given another backend’s index buffer');
    return b;
  }

  /** Elements offset … offset + count − 1 of b as a kernel operand. */
  operand(b: Buf, offset: number, count: number): Operand {
    const g = this.gpu(b);
    if (offset < 0 || offset + count > g.length)
      throw new RangeError(`operand ${offset}+${count} outside a buffer of ${g.length}`);
    return { store: g.store, offset: g.offset + offset, count };
  }

  private idOperand(b: IdBuf, offset = 0, count = b.length - offset): Operand {
    return { store: this.ids(b).store, offset, count };
  }

  /**
   * Index arrays of a packed batch, made once per Seqs object: `offsets` [B + 1],
   * `rowPrev` [rows] (the row before, or −(b + 1) at the start of sequence b) and
   * `lastRow` [B] (−1 for an empty sequence).
   */
  seqOperand(seqs: Seqs, kind: 'offsets' | 'rowPrev' | 'lastRow'): Operand {
    let m = this.seqArrays.get(seqs);
    if (!m) {
      m = new Map();
      this.seqArrays.set(seqs, m);
    }
    let ids = m.get(kind);
    if (!ids) {
      const o = seqs.offsets;
      let host: Int32Array;
      if (kind === 'offsets') host = o.slice();
      else if (kind === 'lastRow')
        host = Int32Array.from({ length: seqs.count }, (_, b) =>
          o[b + 1] > o[b] ? o[b + 1] - 1 : -1,
        );
      else {
        host = new Int32Array(seqs.rows);
        for (let b = 0; b < seqs.count; b++)
          for (let r = o[b]; r < o[b + 1]; r++) host[r] = r === o[b] ? -(b + 1) : r - 1;
      }
      ids = this.uploadIds(host) as GpuIds;
      m.set(kind, ids);
      this.seqRelease.register(seqs, [ids.store]);
    }
    return this.idOperand(ids);
  }

  /** Records one dispatch (for kernel families in other files). */
  launch(k: Kernel, ops: Operand[], params: number[], groups: [number, number?, number?]): void {
    this.rt.dispatch(k, ops, params, groups);
  }

  /** [start, count] pieces of `total` rows of `rowElems` values each that fit one binding. */
  private pieces(total: number, rowElems: number): [number, number][] {
    const per = Math.max(1, Math.floor(this.rt.pieceElems / Math.max(rowElems, 1)));
    const out: [number, number][] = [];
    for (let r = 0; r < total; r += per) out.push([r, Math.min(per, total - r)]);
    return out;
  }

  /**
   * Whether two buffers share memory in a way an elementwise kernel cannot take: they
   * overlap, unless they are the very same range (in place) and `sameOk`.
   */
  private clash(a: Buf, b: Buf, sameOk = true): boolean {
    const x = this.gpu(a);
    const y = this.gpu(b);
    if (x.store !== y.store) return false;
    if (sameOk && x.offset === y.offset) return false;
    return x.offset < y.offset + y.length && y.offset < x.offset + x.length;
  }

  /** `src`, or a copy of it when it overlaps `out` in a way a parallel kernel cannot take. */
  private apart(out: Buf, src: Buf, temps: Buf[], sameOk = true): Buf {
    if (!this.clash(out, src, sameOk)) return src;
    const t = this.rt.scratch(src.length);
    this.copy(t, src);
    temps.push(t);
    return t;
  }

  // ---------------------------------------------------------------- memory

  alloc(n: number): Buf {
    return this.rt.alloc(n);
  }
  upload(data: Float32Array): Buf {
    return new GpuBuf(this.rt.storeOf(data), 0, data.length, true);
  }
  uploadIds(ids: Int32Array): IdBuf {
    return new GpuIds(this.rt.storeOf(ids), ids.slice());
  }
  async read(b: Buf, offset = 0, n = b.length - offset): Promise<Float32Array> {
    const g = this.gpu(b);
    if (offset < 0 || n < 0 || offset + n > g.length)
      throw new RangeError(`read: ${offset}+${n} outside a buffer of ${g.length}`);
    return new Float32Array(await this.rt.readBytes(g.store, 4 * (g.offset + offset), 4 * n));
  }
  view(b: Buf, offset: number, n: number): Buf {
    const g = this.gpu(b);
    if (offset < 0 || n < 0 || offset + n > g.length)
      throw new RangeError(`view: ${offset}+${n} outside a buffer of ${g.length}`);
    return new GpuBuf(g.store, g.offset + offset, n, false);
  }
  copy(dst: Buf, src: Buf, n = src.length): void {
    if (n <= 0) return;
    if (n > dst.length || n > src.length)
      throw new RangeError(`copy: ${n} values between buffers of ${src.length} and ${dst.length}`);
    const temps: Buf[] = [];
    const s = this.clash(this.view(dst, 0, n), this.view(src, 0, n), false)
      ? this.staged(src, n, temps)
      : src;
    for (const [p, m] of this.pieces(n, 1))
      this.launch(COPY, [this.operand(dst, p, m), this.operand(s, p, m)], [m], [groupsFor(m)]);
    for (const t of temps) this.free(t);
  }
  /** A copy of src[0:n] in its own buffer when it shares one with the destination. */
  private staged(src: Buf, n: number, temps: Buf[]): Buf {
    const g = this.gpu(src);
    const t = this.rt.scratch(n);
    this.rt.copyBytes(t.store, 0, g.store, 4 * g.offset, 4 * n);
    temps.push(t);
    return t;
  }
  fill(b: Buf, value: number): void {
    const g = this.gpu(b);
    this.rt.fill(g.store, g.offset, g.length, value);
  }
  free(b: Buf | IdBuf): void {
    if (b instanceof GpuBuf) {
      if (b.owner) this.rt.release(b.store);
    } else this.rt.release(this.ids(b).store);
  }

  // ---------------------------------------------------------------- linear layers

  prepare(w: Float32Array, rows: number, cols: number, opts: PrepareOptions = {}): Linear {
    if (w.length !== rows * cols) throw new Error(`prepare: ${w.length} values != ${rows}×${cols}`);
    const format: WeightFormat = opts.dtype === 'f16' || opts.dtype === 'bf16' ? opts.dtype : 'f32';
    const parts = this.weightParts(rows, cols, format, (r, c) => w[r * cols + c]);
    const tparts = opts.sparse
      ? this.weightParts(cols, rows, format, (c, r) => w[r * cols + c], true)
      : [];
    return new GpuLinear(rows, cols, format, parts, tparts);
  }

  /**
   * A [rows, cols] matrix (value(r, c)) as blocks that fit one binding, rows padded to a
   * multiple of 4 values. `byColumns` splits the columns instead (Wᵀ: each block holds
   * every input row for a range of outputs).
   */
  private weightParts(
    rows: number,
    cols: number,
    format: WeightFormat,
    value: (r: number, c: number) => number,
    byColumns = false,
  ): WeightPart[] {
    const esize = format === 'f32' ? 4 : 2;
    const max = this.rt.maxBinding;
    const parts: WeightPart[] = [];
    const blocks: [number, number, number, number][] = []; // r0, nr, c0, nc
    if (!byColumns) {
      const ld = Math.ceil(cols / 4) * 4;
      const per = Math.max(1, Math.floor(max / (ld * esize)));
      for (let r = 0; r < rows; r += per) blocks.push([r, Math.min(per, rows - r), 0, cols]);
    } else {
      const per = Math.max(4, Math.floor(max / (rows * esize) / 4) * 4);
      for (let c = 0; c < cols; c += per) blocks.push([0, rows, c, Math.min(per, cols - c)]);
    }
    for (const [r0, nr, c0, nc] of blocks) {
      const ld = Math.ceil(nc / 4) * 4;
      if (ld * nr * esize > max)
        throw new UserError(
          `a weight of ${rows}×${cols} cannot be split to fit the adapter's binding limit (${max} B)`,
          'Use another backend (--backend native).',
        );
      let host: Float32Array | Int32Array;
      if (format === 'f32') {
        const f = new Float32Array(nr * ld);
        for (let r = 0; r < nr; r++)
          for (let c = 0; c < nc; c++) f[r * ld + c] = value(r0 + r, c0 + c);
        host = f;
      } else {
        const h = new Uint16Array(nr * ld);
        for (let r = 0; r < nr; r++)
          for (let c = 0; c < nc; c++) {
            const v = value(r0 + r, c0 + c);
            h[r * ld + c] = format === 'f16' ? halfBits(v) : bitsOf(v) >>> 16;
          }
        host = new Int32Array(h.buffer);
      }
      parts.push({
        store: this.rt.storeOf(host),
        row0: byColumns ? c0 : r0,
        rows: byColumns ? nc : nr,
        ld,
      });
    }
    return parts;
  }

  release(w: Linear): void {
    const l = w as GpuLinear;
    for (const p of [...l.parts, ...l.tparts]) this.rt.destroy(p.store);
    l.parts.length = 0;
    l.tparts.length = 0;
  }

  matmul(y: Buf, w: Linear, x: Buf, n: number, opts: MatmulOptions = {}): void {
    const l = w as GpuLinear;
    if (!(l instanceof GpuLinear)) throw new TypeError('matmul: a weight of another backend');
    if (n <= 0) return;
    const { rows: N, cols: K } = l;
    if (x.length < n * K || y.length < n * N)
      throw new RangeError(`matmul: ${n} rows need x of ${n * K} and y of ${n * N} values`);
    if (opts.bias && opts.bias.length < N) throw new RangeError('matmul: bias shorter than W rows');
    const temps: Buf[] = [];
    x = this.apart(y, x, temps, false);
    const bias = opts.bias ? this.operand(opts.bias, 0, N) : this.noBias();
    const hasBias = opts.bias ? 1 : 0;
    if (n === 1 && opts.skipZeros && l.sparse) this.skipGemv(y, l, x, bias, hasBias);
    else {
      for (const [r0, nr] of this.pieces(n, Math.max(K, N))) {
        const xo = this.operand(x, r0 * K, nr * K);
        const yo = this.operand(y, r0 * N, nr * N);
        for (const p of l.parts) this.product(yo, xo, l, p, nr, bias, hasBias);
      }
    }
    for (const t of temps) this.free(t);
  }

  private placeholder: GpuBuf | null = null;
  /** The operand bound where a kernel has no bias (never read). */
  private noBias(): Operand {
    this.placeholder ??= this.rt.alloc(4);
    return { store: this.placeholder.store, offset: 0, count: 1 };
  }

  /** y rows (nr of them) = x · W_partᵀ, by the GEMV kernel for a few rows, else GEMM. */
  private product(
    y: Operand,
    x: Operand,
    l: GpuLinear,
    p: WeightPart,
    nr: number,
    bias: Operand,
    hasBias: number,
  ): void {
    const K = l.cols;
    const w: Operand = { store: p.store, offset: 0, count: (p.rows * p.ld) / 4 };
    const params = [nr, p.rows, K, p.ld / 4, l.rows, p.row0, p.row0, hasBias];
    if (nr <= 8) {
      // Invocations per row: about 4 vec4 loads each, 32 … 256.
      const tpr = Math.min(256, Math.max(32, 2 ** Math.floor(Math.log2(Math.max(1, K / 16)))));
      this.launch(
        gemvKernel(l.format),
        [y, x, w, bias],
        [...params, tpr],
        grid(Math.ceil(p.rows / (256 / tpr))),
      );
      return;
    }
    if (this.matrix && nr >= 64) {
      const { shape, sg } = this.matrix;
      const k = matrixGemmKernel(l.format, shape, sg);
      this.launch(k, [y, x, w, bias], params, [
        Math.ceil(p.rows / (4 * shape.N)),
        Math.ceil(nr / (4 * shape.M)),
      ]);
      return;
    }
    const t = nr >= 256 && p.rows >= 256 ? this.tiles : this.smallTiles;
    this.launch(gemmKernel(l.format, t), [y, x, w, bias], params, [
      Math.ceil(p.rows / t.BN),
      Math.ceil(nr / t.BM),
    ]);
  }

  /** y = W·x reading only the rows of Wᵀ whose input is non-zero (one input row). */
  private skipGemv(y: Buf, l: GpuLinear, x: Buf, bias: Operand, hasBias: number): void {
    const K = l.cols;
    const xo = this.operand(x, 0, K);
    const yo = this.operand(y, 0, l.rows);
    for (const p of l.tparts) {
      const tiles = Math.ceil(p.rows / 1024);
      // Slices of K: enough workgroups to fill a GPU (about 128), 32 … 256 inputs each.
      const slices = Math.max(
        Math.ceil(K / 256),
        Math.min(Math.ceil(128 / tiles), Math.ceil(K / 32)),
      );
      const sl = Math.min(256, Math.ceil(K / slices / 32) * 32);
      const g = Math.ceil(K / sl);
      const wt: Operand = { store: p.store, offset: 0, count: (K * p.ld) / 4 };
      const part = this.rt.scratch(g * p.ld);
      this.launch(
        skipKernel(l.format),
        [{ store: part.store, offset: 0, count: (g * p.ld) / 4 }, xo, wt],
        [p.rows, K, p.ld / 4, sl],
        [tiles, g],
      );
      this.launch(
        SLICE_SUM,
        [yo, { store: part.store, offset: 0, count: g * p.ld }, bias],
        [p.rows, p.ld, g, p.row0, p.row0, hasBias],
        [Math.ceil(p.rows / 256)],
      );
      this.rt.release(part.store);
    }
  }

  // ---------------------------------------------------------------- elementwise

  /**
   * An elementwise kernel over out[0:n] and inputs that are either full (n values) or
   * repeated (shorter, indexed modulo their length), piece by piece.
   */
  private elementwise(
    kernel: (reach: string) => Kernel,
    out: Buf,
    inputs: Buf[],
    n: number,
    extra: number[] = [],
  ): void {
    if (n <= 0) return;
    if (n > out.length) throw new RangeError(`n = ${n} beyond an output of ${out.length}`);
    const temps: Buf[] = [];
    const ins = inputs.map((b) => this.apart(out, b, temps));
    const lens = ins.map((b) => Math.min(b.length, n));
    for (const len of lens) {
      if (len === 0 || n % len !== 0)
        throw new RangeError(`an operand of ${len} values does not repeat evenly over ${n}`);
    }
    const reach = lens.map((len) => (len === n ? 'f' : 'r')).join('');
    const k = kernel(reach);
    for (const [p, m] of this.pieces(n, 1)) {
      const ops = [
        this.operand(out, p, m),
        ...ins.map((b, i) => (lens[i] === n ? this.operand(b, p, m) : this.operand(b, 0, lens[i]))),
      ];
      this.launch(k, ops, [m, p, ...lens, ...extra], [groupsFor(m)]);
    }
    for (const t of temps) this.free(t);
  }

  unary(op: UnaryOp, out: Buf, x: Buf, n = out.length): void {
    if (n <= 0) return;
    const temps: Buf[] = [];
    const xx = this.apart(out, x, temps);
    const k = unaryKernel(op);
    for (const [p, m] of this.pieces(n, 1))
      this.launch(k, [this.operand(out, p, m), this.operand(xx, p, m)], [m], [groupsFor(m)]);
    for (const t of temps) this.free(t);
  }
  binary(op: BinaryOp, out: Buf, a: Buf, b: Buf, n = out.length): void {
    this.elementwise((r) => binaryKernel(op, r as `${Reach}${Reach}`), out, [a, b], n);
  }
  addMul(out: Buf, a: Buf, b: Buf, c: Buf, n = out.length): void {
    this.elementwise((r) => addMulKernel(r as `${Reach}${Reach}${Reach}`), out, [a, b, c], n);
  }
  affine(out: Buf, x: Buf, scale: number, shift: number, n = out.length): void {
    if (n <= 0) return;
    const temps: Buf[] = [];
    const xx = this.apart(out, x, temps);
    for (const [p, m] of this.pieces(n, 1)) {
      this.launch(
        AFFINE,
        [this.operand(out, p, m), this.operand(xx, p, m)],
        [m, scale, shift],
        [groupsFor(m)],
      );
    }
    for (const t of temps) this.free(t);
  }

  /** A row-wise norm kernel over `rows` groups of n, piece by piece. */
  private norm(
    k: Kernel,
    out: Buf,
    x: Buf,
    w: Buf | null,
    b: Buf | null,
    rows: number,
    n: number,
    eps: number,
  ): void {
    if (rows <= 0 || n <= 0) return;
    const wl = w ? w.length : n;
    if (wl < n || wl % n !== 0)
      throw new RangeError(`norm: weights of ${wl} values for groups of ${n}`);
    const temps: Buf[] = [];
    const xx = this.apart(out, x, temps);
    for (const [r0, nr] of this.pieces(rows, n)) {
      const ops = [this.operand(out, r0 * n, nr * n), this.operand(xx, r0 * n, nr * n)];
      if (w) ops.push(this.operand(w, 0, wl));
      if (b) ops.push(this.operand(b, 0, wl));
      this.launch(k, ops, [nr, n, eps, wl / n, r0], grid(nr));
    }
    for (const t of temps) this.free(t);
  }

  layerNorm(out: Buf, x: Buf, w: Buf, b: Buf, rows: number, n: number, eps: number): void {
    this.norm(LAYER_NORM, out, x, w, b, rows, n, eps);
  }
  rmsNorm(out: Buf, x: Buf, w: Buf, rows: number, n: number, eps: number): void {
    this.norm(RMS_NORM, out, x, w, null, rows, n, eps);
  }
  l2Normalize(out: Buf, x: Buf, rows: number, n: number, eps: number): void {
    this.norm(L2_NORM, out, x, null, null, rows, n, eps);
  }

  // ---------------------------------------------------------------- sequences

  /** Token shift with or without mix; x is copied first when out overlaps it. */
  private shift(out: Buf, x: Buf, prev: Buf, mix: Buf | null, seqs: Seqs, cols: number): void {
    const n = seqs.rows * cols;
    if (n === 0) return;
    const temps: Buf[] = [];
    const xx = this.gpu(out).store === this.gpu(x).store ? this.staged(x, n, temps) : x;
    const ops = [
      this.operand(out, 0, n),
      this.operand(xx, 0, n),
      this.operand(prev, 0, seqs.count * cols),
      this.seqOperand(seqs, 'rowPrev'),
    ];
    if (mix) ops.push(this.operand(mix, 0, cols));
    this.launch(mix ? TIME_SHIFT_MIX : TOKEN_SHIFT, ops, [n, cols], [groupsFor(n)]);
    for (const t of temps) this.free(t);
  }

  timeShiftMix(out: Buf, x: Buf, prev: Buf, mix: Buf, seqs: Seqs, cols: number): void {
    this.shift(out, x, prev, mix, seqs, cols);
  }
  tokenShift(out: Buf, x: Buf, prev: Buf, seqs: Seqs, cols: number): void {
    this.shift(out, x, prev, null, seqs, cols);
  }
  lastRows(out: Buf, x: Buf, seqs: Seqs, cols: number): void {
    const n = seqs.count * cols;
    if (n === 0 || seqs.rows === 0) return;
    const temps: Buf[] = [];
    const xx = this.apart(out, x, temps);
    this.launch(
      LAST_ROWS,
      [
        this.operand(out, 0, n),
        this.operand(xx, 0, seqs.rows * cols),
        this.seqOperand(seqs, 'lastRow'),
      ],
      [n, cols],
      [groupsFor(n)],
    );
    for (const t of temps) this.free(t);
  }

  gather(out: Buf, table: Buf, idx: IdBuf, cols: number): void {
    const ids = this.ids(idx);
    const n = ids.length;
    if (n === 0 || cols === 0) return;
    const tableRows = Math.floor(table.length / cols);
    for (const r of ids.host)
      if (!(r >= 0 && r < tableRows)) throw new RangeError(`gather: row ${r} of ${tableRows}`);
    if (out.length < n * cols)
      throw new RangeError(`gather: ${n} rows of ${cols} into ${out.length}`);
    // Output rows in pieces; for each, the table window by window.
    const windows = this.pieces(tableRows, cols);
    for (const [o0, on] of this.pieces(n, cols)) {
      for (const [t0, tn] of windows) {
        this.launch(
          GATHER,
          [
            this.operand(out, o0 * cols, on * cols),
            this.operand(table, t0 * cols, tn * cols),
            this.idOperand(ids, o0, on),
          ],
          [on * cols, cols, t0, t0 + tn],
          [groupsFor(on * cols)],
        );
      }
    }
  }

  appendRows(
    cache: Buf,
    x: Buf,
    seqs: Seqs,
    starts: Int32Array,
    capacity: number,
    cols: number,
  ): void {
    const o = seqs.offsets;
    const dst = new Int32Array(seqs.rows);
    for (let b = 0; b < seqs.count; b++) {
      const len = o[b + 1] - o[b];
      if (starts[b] + len > capacity)
        throw new RangeError(`appendRows: ${starts[b] + len} rows exceed the capacity ${capacity}`);
      for (let t = 0; t < len; t++) dst[o[b] + t] = b * capacity + starts[b] + t;
    }
    const n = seqs.rows * cols;
    if (n === 0) return;
    // One dispatch for all sequences, or one per sequence when the caches exceed a binding.
    const whole = seqs.count * capacity * cols <= this.rt.pieceElems;
    for (let b = 0; b < (whole ? 1 : seqs.count); b++) {
      const [r0, r1] = whole ? [0, seqs.rows] : [o[b], o[b + 1]];
      if (r1 === r0) continue;
      const base = whole ? 0 : b * capacity;
      const d = this.uploadIds(dst.subarray(r0, r1).map((v) => v - base));
      this.launch(
        SCATTER_ROWS,
        [
          this.operand(cache, base * cols, (whole ? seqs.count * capacity : capacity) * cols),
          this.operand(x, r0 * cols, (r1 - r0) * cols),
          this.idOperand(d),
        ],
        [(r1 - r0) * cols, cols],
        [groupsFor((r1 - r0) * cols)],
      );
      this.free(d);
    }
  }

  attention(
    out: Buf,
    q: Buf,
    keys: Buf,
    values: Buf,
    seqs: Seqs,
    starts: Int32Array,
    capacity: number,
    heads: number,
    headDim: number,
    scale: number,
  ): void {
    const rows = seqs.rows;
    if (rows === 0) return;
    if (headDim > 256) throw new UserError(`attention: head size ${headDim} above 256 on webgpu`);
    const d = heads * headDim;
    // Per row: its sequence and how many cached keys it sees.
    const info = new Int32Array(2 * rows);
    const o = seqs.offsets;
    for (let b = 0; b < seqs.count; b++)
      for (let r = o[b]; r < o[b + 1]; r++) {
        info[2 * r] = b;
        info[2 * r + 1] = starts[b] + (r - o[b]) + 1;
      }
    // One dispatch for all sequences, or one per sequence when the caches exceed a binding.
    const whole = seqs.count * capacity * d <= this.rt.pieceElems;
    for (let b = 0; b < (whole ? 1 : seqs.count); b++) {
      const [r0, r1] = whole ? [0, rows] : [o[b], o[b + 1]];
      if (r1 === r0) continue;
      const part = info.subarray(2 * r0, 2 * r1).slice();
      if (!whole) for (let i = 0; i < part.length; i += 2) part[i] = 0;
      const ri = this.uploadIds(part);
      const c0 = whole ? 0 : b * capacity * d;
      const cn = (whole ? seqs.count : 1) * capacity * d;
      this.launch(
        ATTENTION,
        [
          this.operand(out, r0 * d, (r1 - r0) * d),
          this.operand(q, r0 * d, (r1 - r0) * d),
          this.operand(keys, c0, cn),
          this.operand(values, c0, cn),
          this.idOperand(ri),
        ],
        [r1 - r0, heads, headDim, capacity, scale],
        grid((r1 - r0) * heads),
      );
      this.free(ri);
    }
  }

  // ---------------------------------------------------------------- sites and reductions

  threshold(x: Buf, lambda: number, comparison: 'gt' | 'ge', n = x.length): void {
    if (!(Number.isInteger(n) && n >= 0 && n <= x.length))
      throw new RangeError(`threshold: n = ${n} is not an integer in [0, ${x.length}]`);
    if (comparison !== 'gt' && comparison !== 'ge')
      throw new RangeError(`threshold: comparison must be 'gt' or 'ge', not ${String(comparison)}`);
    if (!(lambda > 0)) {
      if (Number.isNaN(lambda)) throw new RangeError('threshold: λ is NaN');
      return;
    }
    // |x| > λ ⟺ |x| > the largest float32 ≤ λ; |x| ≥ λ ⟺ |x| ≥ the smallest float32 ≥ λ.
    const l = bitsOf(comparison === 'gt' ? f32Below(lambda) : f32Above(lambda));
    const k = thresholdKernel(comparison);
    for (const [p, m] of this.pieces(n, 1))
      this.launch(k, [this.operand(x, p, m)], [m, l], [groupsFor(m)]);
  }

  tally(size: number): Tally {
    return new GpuTally(this.rt.alloc(2 * size), size);
  }
  private tallyOf(t: Tally): GpuTally {
    if (!(t instanceof GpuTally))
      throw new TypeError('the webgpu backend was given another backend’s tally');
    return t;
  }
  private tallyOperand(t: GpuTally, slot: number, slots: number): Operand {
    if (slot < 0 || slot + slots > t.size)
      throw new RangeError(`tally slots ${slot}…${slot + slots - 1} of ${t.size}`);
    return { store: t.buf.store, offset: 0, count: t.size };
  }

  /** A per-workgroup partial kernel over x[0:n], then the partials into t[slot]. */
  private reduceInto(k: Kernel, t: Tally, slot: number, x: Buf, n: number): void {
    const tt = this.tallyOf(t);
    const to = this.tallyOperand(tt, slot, 1);
    for (const [p, m] of this.pieces(n, 1)) {
      // Per workgroup at most 2^23 values, so counts stay exact in float32.
      const groups = Math.min(65535, Math.max(Math.ceil(m / 2 ** 23), groupsFor(m / 4)));
      const part = this.rt.scratch(2 * groups);
      const po: Operand = { store: part.store, offset: 0, count: groups };
      this.launch(k, [this.operand(x, p, m), po], [m], [groups]);
      this.launch(ACCUMULATE, [po, to], [groups, 0, 1, slot], [1]);
      this.rt.release(part.store);
    }
  }

  tallyZeros(t: Tally, slot: number, x: Buf, n = x.length): void {
    if (n > 0) this.reduceInto(ZEROS_PARTIAL, t, slot, x, n);
  }
  tallySum(t: Tally, slot: number, x: Buf, n = x.length): void {
    if (n > 0) this.reduceInto(SUM_PARTIAL, t, slot, x, n);
  }

  private qinfo = new Map<string, GpuIds>();
  tallyQuantiles(
    t: Tally,
    slot: number,
    x: Buf,
    rows: number,
    cols: number,
    qs: readonly number[],
  ): void {
    const nq = qs.length;
    if (rows <= 0 || nq === 0) return;
    const tt = this.tallyOf(t);
    const to = this.tallyOperand(tt, slot, nq);
    // (lo, frac) of h = (cols − 1)·q in float64, as quantileSorted computes them.
    const key = `${cols}:${qs.join(',')}`;
    let qi = this.qinfo.get(key);
    if (!qi) {
      const info = new Int32Array(2 * nq);
      qs.forEach((q, k) => {
        const h = (cols - 1) * q;
        const lo = Math.floor(h);
        info[2 * k] = lo;
        info[2 * k + 1] = bitsOf(h - lo) | 0;
      });
      qi = this.uploadIds(info) as GpuIds;
      this.qinfo.set(key, qi);
    }
    for (const [r0, nr] of this.pieces(rows, cols)) {
      const part = this.rt.scratch(2 * nr * nq);
      const po: Operand = { store: part.store, offset: 0, count: nr * nq };
      this.launch(
        this.quantile,
        [this.operand(x, r0 * cols, nr * cols), this.idOperand(qi), po],
        [nr, cols, nq],
        grid(nr),
      );
      this.launch(ACCUMULATE, [po, to], [nr, 1, nq, slot], [nq]);
      this.rt.release(part.store);
    }
  }

  async readTally(t: Tally): Promise<Float64Array> {
    const tt = this.tallyOf(t);
    const pairs = await this.read(tt.buf);
    const out = new Float64Array(tt.size);
    for (let i = 0; i < tt.size; i++) out[i] = pairs[2 * i] + pairs[2 * i + 1];
    return out;
  }

  tallyNll(
    t: Tally,
    logits: Buf,
    targets: IdBuf,
    slots: IdBuf | number,
    rows: number,
    vocab: number,
    misses?: number,
  ): void {
    if (rows <= 0) return;
    const tt = this.tallyOf(t);
    const tg = this.ids(targets);
    for (let r = 0; r < rows; r++) {
      const v = tg.host[r];
      if (!(v >= 0 && v < vocab))
        throw new RangeError(`tallyNll: target ${v} of row ${r} outside 0..${vocab - 1}`);
    }
    const slotOf = typeof slots === 'number' ? null : this.ids(slots).host;
    for (const [r0, nr] of this.pieces(rows, vocab)) {
      // Rows grouped by slot: list = [starts (G + 1), slots (G), rows by slot].
      const bySlot = new Map<number, number[]>();
      for (let r = 0; r < nr; r++) {
        const s = slotOf ? slotOf[r0 + r] : (slots as number);
        let l = bySlot.get(s);
        if (!l) {
          l = [];
          bySlot.set(s, l);
        }
        l.push(r);
      }
      const G = bySlot.size;
      const list = new Int32Array(2 * G + 1 + nr);
      let g = 0;
      let j = 0;
      for (const [s, rs] of bySlot) {
        this.tallyOperand(tt, s, 1);
        if (misses !== undefined) this.tallyOperand(tt, s + misses, 1);
        list[g] = j;
        list[G + 1 + g] = s;
        for (const r of rs) list[2 * G + 1 + j++] = r;
        g++;
      }
      list[G] = j;
      const lo = this.uploadIds(list);
      const part = this.rt.scratch(4 * nr);
      this.launch(
        NLL_ROWS,
        [
          this.operand(logits, r0 * vocab, nr * vocab),
          this.idOperand(tg, r0, nr),
          { store: part.store, offset: 0, count: 2 * nr },
        ],
        [nr, vocab],
        grid(nr),
      );
      const to = { store: tt.buf.store, offset: 0, count: tt.size };
      const listOp = this.idOperand(lo);
      this.launch(
        ACCUMULATE_LISTED,
        [{ store: part.store, offset: 0, count: nr }, listOp, to],
        [G, 0],
        [G],
      );
      if (misses !== undefined) {
        this.launch(
          ACCUMULATE_LISTED,
          [{ store: part.store, offset: nr, count: nr }, listOp, to],
          [G, misses],
          [G],
        );
      }
      this.rt.release(part.store);
      this.free(lo);
    }
  }

  // ---------------------------------------------------------------- architectures

  /** Whether this backend has a kernel for the family of this name (e.g. `wkv7`). */
  static hasFamily(name: string): boolean {
    return hasWebGpuFamily(name);
  }

  run<A>(family: KernelFamily<A>, args: A): void {
    const own = webGpuFamily(family.name);
    if (!own) {
      throw new UserError(
        `the webgpu backend has no kernel for the "${family.name}" family`,
        'Use a CPU backend for this architecture (--backend auto picks one).',
      );
    }
    own(this, args);
  }
}
