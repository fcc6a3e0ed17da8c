/**
 * A backend that computes nothing and counts what it is asked to run: the elementwise
 * operations of every op (adds, multiplies, exponentials, …), the recurrent state each
 * token reads and writes, and every matrix product with its shape. `hw` runs a model's
 * own code for one token on it (hardware/ops.ts), so the cost model counts exactly what
 * the model file does, for every architecture, without restating its forward.
 *
 * Counting conventions (the simplifications of the cost model): a subtraction counts as
 * an add and a max as a compare; intermediate vectors stay in registers, so only the
 * recurrent state is memory traffic, and a state vector read by several ops of one token
 * (RWKV's token shift before each mix) is read once; an embedding row is a weight read.
 */
import type {
  Backend,
  BinaryOp,
  Buf,
  IdBuf,
  KernelFamily,
  Linear,
  MatmulOptions,
  OpCost,
  PrepareOptions,
  Seqs,
  Tally,
  UnaryOp,
} from './backend.ts';

/** A buffer of the counting backend: a length and whether it is recurrent state. */
class CountBuf implements Buf, IdBuf {
  constructor(
    readonly length: number,
    /** Allocated while not counting (a model's state, made before the counted token). */
    readonly persistent: boolean,
  ) {}
}

/** A matrix product as counted: which phase ran it, its shape, and the site it reads. */
export interface CountedMatmul {
  phase: string;
  rows: number;
  cols: number;
  /** Input rows (tokens) of the product. */
  n: number;
  site: number | undefined;
}

/** Elementwise operations per cost formula of one op (or family) call. */
const PER_UNARY: Record<UnaryOp, OpCost> = {
  // σ(x) = 1/(1 + e^−x)
  sigmoid: { exp: 1, add: 1, div: 1 },
  // x·σ(x)
  silu: { exp: 1, add: 1, div: 1, mul: 1 },
  relu: { cmp: 1 },
  reluSquare: { cmp: 1, mul: 1 },
  // tanh(x) = 1 − 2/(e^2x + 1)
  tanh: { exp: 1, add: 2, div: 1 },
  exp: { exp: 1 },
  // log(1 + e^x): the log counted as an exp-class op
  softplus: { exp: 2, add: 1 },
  abs: { cmp: 1 },
  neg: { mul: 1 },
};

const GROUP: Record<string, string> = {
  gather: 'ops: embedding',
  layerNorm: 'ops: layer norms',
  rmsNorm: 'ops: layer norms',
  l2Normalize: 'ops: normalize',
  shift: 'ops: token shift',
  elementwise: 'ops: elementwise (residual, gates)',
  bias: 'ops: biases',
  attention: 'ops: attention',
};

/** Counts per breakdown group: `ops: layer norms`, `ops: wkv4`, … */
export type CountedGroups = Map<string, Required<OpCost>>;

/** Every count at zero. */
export const emptyCost = (): Required<OpCost> => ({
  add: 0,
  mul: 0,
  cmp: 0,
  exp: 0,
  div: 0,
  rsqrt: 0,
  stateReads: 0,
  stateWrites: 0,
  weightReads: 0,
});

export class CountingBackend implements Backend {
  readonly name = 'count';
  readonly description = 'count (counts operations, computes nothing)';
  readonly batchRows = 1 << 14;
  /** Counting is on between `start()` and the end; before, ops are ignored. */
  private counting = false;
  /** The label matrix products are recorded under (the caller sets embed, block b, head). */
  phase = '';
  readonly groups: CountedGroups = new Map();
  readonly matmuls: CountedMatmul[] = [];
  /** State vectors already read by a token shift this token. */
  private readonly shiftReads = new Set<Buf>();

  /** Starts counting; everything allocated so far is persistent (weights or state). */
  start(): void {
    this.counting = true;
  }

  private add(group: string, c: OpCost, times = 1): void {
    if (!this.counting || times === 0) return;
    const g = this.groups.get(group) ?? emptyCost();
    for (const k of Object.keys(c) as (keyof OpCost)[]) g[k] += (c[k] ?? 0) * times;
    this.groups.set(group, g);
  }

  // ---------------------------------------------------------------- memory

  alloc(n: number): Buf {
    return new CountBuf(n, !this.counting);
  }
  upload(data: Float32Array): Buf {
    return new CountBuf(data.length, true);
  }
  uploadIds(ids: Int32Array): IdBuf {
    return new CountBuf(ids.length, false);
  }
  read(b: Buf, offset = 0, n = b.length - offset): Promise<Float32Array> {
    return Promise.resolve(new Float32Array(n));
  }
  view(b: Buf, _offset: number, n: number): Buf {
    return new CountBuf(n, (b as CountBuf).persistent);
  }
  copy(): void {}
  fill(): void {}
  free(): void {}

  // ---------------------------------------------------------------- linear layers

  prepare(_w: Float32Array, rows: number, cols: number, opts: PrepareOptions = {}): Linear {
    return { rows, cols, sparse: !!opts.sparse, bytes: 0 };
  }
  release(): void {}
  matmul(_y: Buf, w: Linear, _x: Buf, n: number, opts: MatmulOptions = {}): void {
    if (this.counting)
      this.matmuls.push({ phase: this.phase, rows: w.rows, cols: w.cols, n, site: opts.site });
    // y += bias: one add per output value.
    if (opts.bias) this.add(GROUP.bias, { add: n * w.rows });
  }

  // ---------------------------------------------------------------- elementwise

  unary(op: UnaryOp, out: Buf, _x: Buf, n = out.length): void {
    this.add(`ops: ${op === 'reluSquare' ? 'relu²' : op}`, PER_UNARY[op], n);
  }
  binary(op: BinaryOp, out: Buf, _a: Buf, _b: Buf, n = out.length): void {
    this.add(GROUP.elementwise, op === 'mul' ? { mul: 1 } : { add: 1 }, n);
  }
  addMul(out: Buf, _a: Buf, _b: Buf, _c: Buf, n = out.length): void {
    this.add(GROUP.elementwise, { add: 1, mul: 1 }, n);
  }
  affine(out: Buf, _x: Buf, _s: number, _t: number, n = out.length): void {
    this.add(GROUP.elementwise, { add: 1, mul: 1 }, n);
  }
  /**
   * Per group of n: mean (n adds, 1 mul), variance (n subs, n squares, n adds, 1 mul),
   * rsqrt(var + eps) (1 add, 1 rsqrt), (x−μ)·rstd·w + b (2n muls, n adds).
   */
  layerNorm(_o: Buf, _x: Buf, _w: Buf, _b: Buf, rows: number, n: number): void {
    this.add(GROUP.layerNorm, { add: 4 * n + 1, mul: 3 * n + 2, rsqrt: 1 }, rows);
  }
  /** Per group of n: Σx² (n muls, n adds), 1 mul, rsqrt(· + eps) (1 add, 1 rsqrt), x·r·w (2n muls). */
  rmsNorm(_o: Buf, _x: Buf, _w: Buf, rows: number, n: number): void {
    this.add(GROUP.rmsNorm, { add: n + 1, mul: 3 * n + 1, rsqrt: 1 }, rows);
  }
  /** Per group of n: Σx² (n muls, n adds), √ and max (1 rsqrt, 1 cmp), x/‖x‖ (n muls). */
  l2Normalize(_o: Buf, _x: Buf, rows: number, n: number): void {
    this.add(GROUP.l2Normalize, { add: n, mul: 2 * n, rsqrt: 1, cmp: 1 }, rows);
  }

  // ---------------------------------------------------------------- sequences

  /** The previous token's vector is state: read once per token whatever the number of mixes. */
  private readShift(prev: Buf): number {
    if (!this.counting || this.shiftReads.has(prev)) return 0;
    this.shiftReads.add(prev);
    return prev.length;
  }
  /** x·mix + sx·(1 − mix), with 1 − mix precomputed: 2 muls and 1 add per value. */
  timeShiftMix(_o: Buf, _x: Buf, prev: Buf, _m: Buf, seqs: Seqs, cols: number): void {
    const n = seqs.rows * cols;
    this.add(GROUP.shift, { mul: 2 * n, add: n, stateReads: this.readShift(prev) });
  }
  tokenShift(_o: Buf, _x: Buf, prev: Buf): void {
    this.add(GROUP.shift, { stateReads: this.readShift(prev) });
  }
  /** Saving each sequence's last row into the state is the state's write. */
  lastRows(out: Buf, _x: Buf, seqs: Seqs, cols: number): void {
    if ((out as CountBuf).persistent) this.add(GROUP.shift, { stateWrites: seqs.count * cols });
  }
  /** Rows of a weight table (an embedding) are weight reads; of anything else, copies. */
  gather(_o: Buf, table: Buf, idx: IdBuf, cols: number): void {
    if ((table as CountBuf).persistent) this.add(GROUP.gather, { weightReads: idx.length * cols });
  }
  /** The new keys or values are written to the cache (state). */
  appendRows(_c: Buf, _x: Buf, seqs: Seqs, _s: Int32Array, _cap: number, cols: number): void {
    this.add(GROUP.attention, { stateWrites: seqs.rows * cols });
  }
  /**
   * Per row seeing n cached rows: q scaled (d muls); q·k over n keys (d MACs each);
   * softmax per head over n (n exps, n divs, n compares); Σ p·v (d MACs per key); the
   * cache's n keys and n values are read.
   */
  attention(
    _o: Buf,
    _q: Buf,
    _k: Buf,
    _v: Buf,
    seqs: Seqs,
    starts: Int32Array,
    _cap: number,
    heads: number,
    headDim: number,
  ): void {
    const d = heads * headDim;
    for (let b = 0; b < seqs.count; b++) {
      for (let t = 0; t < seqs.length(b); t++) {
        const n = starts[b] + t + 1;
        this.add(GROUP.attention, {
          mul: 2 * d * n + d,
          add: 2 * d * n,
          exp: heads * n,
          div: heads * n,
          cmp: heads * n,
          stateReads: 2 * d * n,
        });
      }
    }
  }

  // ---------------------------------------------------------------- sites and reductions

  /** Thresholds and events are costed from the site densities (hardware/ops.ts), not here. */
  threshold(): void {}
  tally(size: number): Tally {
    return { size };
  }
  tallyZeros(): void {}
  tallySum(): void {}
  tallyQuantiles(): void {}
  readTally(t: Tally): Promise<Float64Array> {
    return Promise.resolve(new Float64Array(t.size));
  }
  tallyNll(): void {}

  // ---------------------------------------------------------------- architectures

  run<A>(family: KernelFamily<A>, args: A): void {
    this.add(`ops: ${family.name}`, family.cost(args));
  }
}
