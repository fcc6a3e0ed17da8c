/**
 * RWKV-4 for training: the forward of src/models/rwkv4.ts (sequence mode, no threshold
 * sites) over B windows of T tokens at once, keeping the activations the backward needs,
 * and the backward of every op, each under the formula of its forward.
 *
 * Rows are n = b·T + t of [N = B·T, width] arrays; every window starts from the zero
 * state (token shift sees 0 before t = 0, WKV starts with a = b = 0). The loss is the
 * mean cross-entropy over all N positions: window b's token t+1 is the target of t.
 *
 * Arrays are float32 for training, float64 for the finite-difference gradient check
 * (same code; `alloc` and the Matmul choose). WKV state and all sums are float64.
 */
import type { Rwkv4Config } from '../models/rwkv4.ts';
import type { Matmul, Vec } from './matmul.ts';
import type { ParamSet } from './params.ts';
import { type WkvMode, WkvSaved, WkvScratch, wkv4Backward, wkv4Forward } from './wkv4-grad.ts';

const LN_EPS = 1e-5;

// ---------------------------------------------------------------- elementwise pieces

/**
 * out = xhat·γ + β with xhat = (x − mean)/√(var + eps) per row of n; keeps xhat and
 * rstd = 1/√(var + eps) for the backward.
 */
export function layerNormForward(
  out: Vec,
  xhat: Vec,
  rstd: Vec,
  x: Vec,
  gamma: Vec,
  beta: Vec,
  rows: number,
  n: number,
): void {
  for (let t = 0; t < rows; t++) {
    const o = t * n;
    let mean = 0;
    for (let i = 0; i < n; i++) mean += x[o + i];
    mean /= n;
    let v = 0;
    for (let i = 0; i < n; i++) {
      const c = x[o + i] - mean;
      v += c * c;
    }
    const inv = 1 / Math.sqrt(v / n + LN_EPS);
    rstd[t] = inv;
    for (let i = 0; i < n; i++) {
      const h = (x[o + i] - mean) * inv;
      xhat[o + i] = h;
      out[o + i] = h * gamma[i] + beta[i];
    }
  }
}

/**
 * dγ += Σ dy·xhat; dβ += Σ dy;
 * dx = rstd·(dxhat − mean(dxhat) − xhat·mean(dxhat·xhat)) with dxhat = dy·γ.
 * `accumulate` adds dx into `dx` (the residual stream) instead of overwriting it.
 */
export function layerNormBackward(
  dx: Vec,
  dgamma: Float64Array,
  dbeta: Float64Array,
  dy: Vec,
  xhat: Vec,
  rstd: Vec,
  gamma: Vec,
  rows: number,
  n: number,
  accumulate: boolean,
): void {
  for (let t = 0; t < rows; t++) {
    const o = t * n;
    let m1 = 0;
    let m2 = 0;
    for (let i = 0; i < n; i++) {
      const g = dy[o + i];
      const h = xhat[o + i];
      dgamma[i] += g * h;
      dbeta[i] += g;
      const dh = g * gamma[i];
      m1 += dh;
      m2 += dh * h;
    }
    m1 /= n;
    m2 /= n;
    const r = rstd[t];
    for (let i = 0; i < n; i++) {
      const dh = dy[o + i] * gamma[i];
      const g = r * (dh - m1 - xhat[o + i] * m2);
      dx[o + i] = accumulate ? dx[o + i] + g : g;
    }
  }
}

/** Token shift: out_t = x_t·mix + x_{t−1}·(1 − mix), x_{−1} = 0 in every window. */
export function mixForward(out: Vec, x: Vec, mix: Vec, B: number, T: number, d: number): void {
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const o = (b * T + t) * d;
      if (t === 0) for (let i = 0; i < d; i++) out[o + i] = x[o + i] * mix[i];
      else for (let i = 0; i < d; i++) out[o + i] = x[o + i] * mix[i] + x[o - d + i] * (1 - mix[i]);
    }
  }
}

/**
 * Backward of the token shift, added into dx:
 *   dmix += Σ_t dout_t·(x_t − x_{t−1})
 *   dx_t += dout_t·mix + dout_{t+1}·(1 − mix)   (no t+1 after a window's last token)
 * Gathered per t rather than scattered to t − 1; the first and last token of a window get
 * their own loops so that the inner loop has no branch.
 */
export function mixBackward(
  dx: Vec,
  dmix: Float64Array,
  dout: Vec,
  x: Vec,
  mix: Vec,
  B: number,
  T: number,
  d: number,
): void {
  for (let b = 0; b < B; b++) {
    const o0 = b * T * d;
    for (let t = 0; t < T; t++) {
      const o = o0 + t * d;
      if (t === 0 || t === T - 1) {
        for (let i = 0; i < d; i++) {
          const g = dout[o + i];
          const m = mix[i];
          dmix[i] += g * (x[o + i] - (t === 0 ? 0 : x[o - d + i]));
          dx[o + i] += g * m + (t === T - 1 ? 0 : dout[o + d + i] * (1 - m));
        }
        continue;
      }
      for (let i = 0; i < d; i++) {
        const g = dout[o + i];
        const m = mix[i];
        dmix[i] += g * (x[o + i] - x[o - d + i]);
        dx[o + i] += g * m + dout[o + d + i] * (1 - m);
      }
    }
  }
}

// ---------------------------------------------------------------- activations kept

/** What one block keeps from the forward for its backward ([N, d] unless noted). */
class BlockActs {
  xhat1: Vec;
  rstd1: Vec; // [N]
  xx1: Vec; // LN1(x)
  xk: Vec; // mixes of xx1: the inputs of key, value, receptance
  xv: Vec;
  xr: Vec;
  k: Vec;
  v: Vec;
  sr: Vec; // σ(r)
  wkv: Vec;
  wkvState: WkvSaved; // the recurrence's state per token (float64)
  y: Vec; // σ(r)·wkv, the input of att.output
  xhat2: Vec;
  rstd2: Vec; // [N]
  xx2: Vec; // LN2(x)
  xk2: Vec;
  xr2: Vec;
  rr: Vec; // σ(Wr·xr2)
  h: Vec; // [N, f] relu(Wk·xk2)²
  vv: Vec; // Wv·h
  constructor(B: number, T: number, d: number, f: number, alloc: (n: number) => Vec) {
    const N = B * T;
    const nd = () => alloc(N * d);
    this.xhat1 = nd();
    this.rstd1 = alloc(N);
    this.xx1 = nd();
    this.xk = nd();
    this.xv = nd();
    this.xr = nd();
    this.k = nd();
    this.v = nd();
    this.sr = nd();
    this.wkv = nd();
    this.wkvState = new WkvSaved(B, T, d);
    this.y = nd();
    this.xhat2 = nd();
    this.rstd2 = alloc(N);
    this.xx2 = nd();
    this.xk2 = nd();
    this.xr2 = nd();
    this.rr = nd();
    this.h = alloc(N * f);
    this.vv = nd();
  }
}

/** All buffers of one batch shape, allocated once and reused every step. */
class Workspace {
  readonly inputs: Int32Array; // [N]
  readonly targets: Int32Array; // [N]
  readonly x: Vec; // the residual stream [N, d]
  readonly xhat0: Vec;
  readonly rstd0: Vec;
  readonly blocks: BlockActs[];
  readonly xhatOut: Vec;
  readonly rstdOut: Vec;
  readonly xo: Vec; // LN_out(x)
  readonly logits: Vec; // [N, V], becomes ∂L/∂logits
  // backward scratch
  readonly dx: Vec;
  readonly g: Vec[]; // 6 × [N, d]
  readonly dh: Vec; // [N, f]
  readonly wkv: WkvScratch;
  constructor(
    readonly B: number,
    readonly T: number,
    cfg: Rwkv4Config,
    alloc: (n: number) => Vec,
  ) {
    const { nEmbd: d, nFfn: f, nVocab: V, nLayer } = cfg;
    const N = B * T;
    this.inputs = new Int32Array(N);
    this.targets = new Int32Array(N);
    this.x = alloc(N * d);
    this.xhat0 = alloc(N * d);
    this.rstd0 = alloc(N);
    this.blocks = Array.from({ length: nLayer }, () => new BlockActs(B, T, d, f, alloc));
    this.xhatOut = alloc(N * d);
    this.rstdOut = alloc(N);
    this.xo = alloc(N * d);
    this.logits = alloc(N * V);
    this.dx = alloc(N * d);
    this.g = Array.from({ length: 6 }, () => alloc(N * d));
    this.dh = alloc(N * f);
    this.wkv = new WkvScratch(T, d);
  }
}

// ---------------------------------------------------------------- the model

interface BlockParams {
  ln1w: Vec;
  ln1b: Vec;
  ln2w: Vec;
  ln2b: Vec;
  timeDecay: Vec;
  timeFirst: Vec;
  mixK: Vec;
  mixV: Vec;
  mixR: Vec;
  key: Vec; // [d, d]
  value: Vec;
  receptance: Vec;
  output: Vec;
  fMixK: Vec;
  fMixR: Vec;
  fKey: Vec; // [f, d]
  fReceptance: Vec; // [d, d]
  fValue: Vec; // [d, f]
}

function blockParams<A extends Vec>(p: ParamSet<A>, b: number): BlockParams {
  const g = (s: string) => p.get(`blocks.${b}.${s}`);
  return {
    ln1w: g('ln1.weight'),
    ln1b: g('ln1.bias'),
    ln2w: g('ln2.weight'),
    ln2b: g('ln2.bias'),
    timeDecay: g('att.time_decay'),
    timeFirst: g('att.time_first'),
    mixK: g('att.time_mix_k'),
    mixV: g('att.time_mix_v'),
    mixR: g('att.time_mix_r'),
    key: g('att.key.weight'),
    value: g('att.value.weight'),
    receptance: g('att.receptance.weight'),
    output: g('att.output.weight'),
    fMixK: g('ffn.time_mix_k'),
    fMixR: g('ffn.time_mix_r'),
    fKey: g('ffn.key.weight'),
    fReceptance: g('ffn.receptance.weight'),
    fValue: g('ffn.value.weight'),
  };
}

export interface Rwkv4GradOptions<A extends Vec> {
  matmul: Matmul<A>;
  alloc: (n: number) => A;
  /** 'stabilized' forces the max-exponent WKV everywhere (tests). */
  wkvMode?: WkvMode;
}

/** Forward and backward of an RWKV-4 over batches of token windows. */
export class Rwkv4Grad<A extends Vec> {
  readonly config: Rwkv4Config;
  private readonly mm: Matmul<A>;
  private readonly alloc: (n: number) => A;
  private readonly wkvMode: WkvMode;
  private ws: Workspace | null = null;
  private readonly blocks: BlockParams[];
  /** w = −exp(time_decay) per block, refreshed at each forward. */
  private readonly decay: Float64Array[];

  constructor(
    readonly params: ParamSet<A>,
    opts: Rwkv4GradOptions<A>,
  ) {
    this.config = params.config;
    this.mm = opts.matmul;
    this.alloc = opts.alloc;
    this.wkvMode = opts.wkvMode ?? 'auto';
    this.blocks = Array.from({ length: this.config.nLayer }, (_, b) => blockParams(params, b));
    this.decay = this.blocks.map(() => new Float64Array(this.config.nEmbd));
  }

  /** Buffers for B windows of T: a batch of fewer windows uses a prefix of them. */
  private workspace(B: number, T: number): Workspace {
    if (!this.ws || this.ws.B < B || this.ws.T !== T)
      this.ws = new Workspace(B, T, this.config, this.alloc as (n: number) => Vec);
    return this.ws;
  }

  /**
   * Mean cross-entropy (nats/token) of B windows of T+1 tokens each (`tokens` [B, T+1]);
   * with `grads`, also writes ∂loss/∂θ for every parameter into it.
   */
  lossAndGrad(tokens: ArrayLike<number>, B: number, T: number, grads?: ParamSet<A>): number {
    const ws = this.workspace(B, T);
    const loss = this.forward(ws, tokens, B, T, !!grads);
    if (grads) this.backward(ws, B, T, grads);
    return loss;
  }

  /** Logits [B·T, V] of B windows of T+1 tokens (a forward only; the last token unused). */
  logits(tokens: ArrayLike<number>, B: number, T: number): A {
    const ws = this.workspace(B, T);
    this.forward(ws, tokens, B, T, false);
    return ws.logits.slice(0, B * T * this.config.nVocab) as A;
  }

  // ---------------------------------------------------------- forward

  private forward(
    ws: Workspace,
    tokens: ArrayLike<number>,
    B: number,
    T: number,
    wantGrad: boolean,
  ): number {
    const { nEmbd: d, nFfn: f, nVocab: V } = this.config;
    const N = B * T;
    const mm = this.mm as unknown as Matmul<Vec>;
    const p = this.params;
    if (tokens.length !== B * (T + 1))
      throw new Error(`lossAndGrad: ${tokens.length} tokens for ${B} windows of ${T + 1}`);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const a = tokens[b * (T + 1) + t];
        const z = tokens[b * (T + 1) + t + 1];
        if (!(a >= 0 && a < V && z >= 0 && z < V && Number.isInteger(a) && Number.isInteger(z)))
          throw new RangeError(`token outside the vocabulary (0..${V - 1}) in window ${b}`);
        ws.inputs[b * T + t] = a;
        ws.targets[b * T + t] = z;
      }
    }

    // x = LN(emb[tok]; ln0): the raw rows go through ln0 into the residual stream.
    const x = ws.x;
    const emb = p.get('emb.weight');
    for (let n = 0; n < N; n++) {
      const src = ws.inputs[n] * d;
      for (let i = 0; i < d; i++) x[n * d + i] = emb[src + i];
    }
    layerNormForward(
      x,
      ws.xhat0,
      ws.rstd0,
      x,
      p.get('blocks.0.ln0.weight'),
      p.get('blocks.0.ln0.bias'),
      N,
      d,
    );

    const tmp = ws.g[0];
    for (let l = 0; l < this.config.nLayer; l++) {
      const P = this.blocks[l];
      const a = ws.blocks[l];
      const w = this.decay[l];
      // w = −exp(time_decay)
      for (let i = 0; i < d; i++) w[i] = -Math.exp(P.timeDecay[i]);

      // ---- time-mix: x += Wo·(σ(Wr·xr) · wkv(Wk·xk, Wv·xv))
      layerNormForward(a.xx1, a.xhat1, a.rstd1, x, P.ln1w, P.ln1b, N, d);
      mixForward(a.xk, a.xx1, P.mixK, B, T, d);
      mixForward(a.xv, a.xx1, P.mixV, B, T, d);
      mixForward(a.xr, a.xx1, P.mixR, B, T, d);
      mm.forward(a.k, a.xk, P.key, N, d, d);
      mm.forward(a.v, a.xv, P.value, N, d, d);
      mm.forward(a.sr, a.xr, P.receptance, N, d, d);
      // sr = σ(r) = 1 / (1 + e^−r)
      for (let j = 0; j < N * d; j++) a.sr[j] = 1 / (1 + Math.exp(-a.sr[j]));
      const keep = wantGrad ? a.wkvState : null;
      wkv4Forward(a.wkv, a.k, a.v, w, P.timeFirst, B, T, d, ws.wkv, keep, this.wkvMode);
      for (let j = 0; j < N * d; j++) a.y[j] = a.sr[j] * a.wkv[j];
      mm.forward(tmp, a.y, P.output, N, d, d);
      for (let j = 0; j < N * d; j++) x[j] += tmp[j];

      // ---- channel-mix: x += σ(Wr·xr) · (Wv·relu(Wk·xk)²)
      layerNormForward(a.xx2, a.xhat2, a.rstd2, x, P.ln2w, P.ln2b, N, d);
      mixForward(a.xk2, a.xx2, P.fMixK, B, T, d);
      mixForward(a.xr2, a.xx2, P.fMixR, B, T, d);
      mm.forward(a.rr, a.xr2, P.fReceptance, N, d, d);
      for (let j = 0; j < N * d; j++) a.rr[j] = 1 / (1 + Math.exp(-a.rr[j]));
      mm.forward(a.h, a.xk2, P.fKey, N, f, d);
      // h = relu(a)² (branch-free max(a, 0) as in reference.ts)
      for (let j = 0; j < N * f; j++) {
        const z = a.h[j];
        const r = (z + Math.abs(z)) * 0.5;
        a.h[j] = r * r;
      }
      mm.forward(a.vv, a.h, P.fValue, N, d, f);
      for (let j = 0; j < N * d; j++) x[j] += a.rr[j] * a.vv[j];
    }

    // logits = head · LN(x; ln_out)
    layerNormForward(
      ws.xo,
      ws.xhatOut,
      ws.rstdOut,
      x,
      p.get('ln_out.weight'),
      p.get('ln_out.bias'),
      N,
      d,
    );
    mm.forward(ws.logits, ws.xo, p.get('head.weight'), N, V, d);

    // loss = mean over rows of logsumexp(z) − z[target]; for the backward the logits
    // become ∂loss/∂z = (softmax(z) − onehot(target)) / N.
    const z = ws.logits;
    let loss = 0;
    for (let n = 0; n < N; n++) {
      const o = n * V;
      let max = Number.NEGATIVE_INFINITY;
      for (let i = 0; i < V; i++) if (z[o + i] > max) max = z[o + i];
      const zt = z[o + ws.targets[n]];
      let sum = 0;
      if (wantGrad) {
        // keep e^(z − max) in place, then scale it to softmax / N
        for (let i = 0; i < V; i++) {
          const e = Math.exp(z[o + i] - max);
          z[o + i] = e;
          sum += e;
        }
        const scale = 1 / (sum * N);
        for (let i = 0; i < V; i++) z[o + i] *= scale;
        z[o + ws.targets[n]] -= 1 / N;
      } else {
        for (let i = 0; i < V; i++) sum += Math.exp(z[o + i] - max);
      }
      loss += max + Math.log(sum) - zt;
    }
    return loss / N;
  }

  // ---------------------------------------------------------- backward

  private backward(ws: Workspace, B: number, T: number, grads: ParamSet<A>): void {
    const { nEmbd: d, nFfn: f, nVocab: V, nLayer } = this.config;
    const N = B * T;
    const mm = this.mm as unknown as Matmul<Vec>;
    const p = this.params;
    const dx = ws.dx;
    const [g0, g1, g2, g3, g4, g5] = ws.g;
    const vecGrad = () => new Float64Array(d);
    const store = (name: string, acc: Float64Array) => grads.get(name).set(acc);

    // logits = head·xo: dHead = dzᵀ·xo; dxo = dz·head
    mm.backwardWeight(grads.get('head.weight'), ws.logits, ws.xo, N, V, d);
    mm.backwardInput(g0, ws.logits, p.get('head.weight'), N, V, d);
    let gw = vecGrad();
    let gb = vecGrad();
    layerNormBackward(dx, gw, gb, g0, ws.xhatOut, ws.rstdOut, p.get('ln_out.weight'), N, d, false);
    store('ln_out.weight', gw);
    store('ln_out.bias', gb);

    for (let l = nLayer - 1; l >= 0; l--) {
      const P = this.blocks[l];
      const a = ws.blocks[l];
      const pre = `blocks.${l}.`;
      const G = (s: string) => grads.get(pre + s);
      const put = (s: string, acc: Float64Array) => G(s).set(acc);

      // ---- channel-mix: x_out = x + rr·vv
      // dvv = dx·rr;  d(Wr·xr2) = dx·vv·rr(1 − rr)
      const dvv = g0;
      const drr = g1;
      for (let j = 0; j < N * d; j++) {
        const r = a.rr[j];
        dvv[j] = dx[j] * r;
        drr[j] = dx[j] * a.vv[j] * r * (1 - r);
      }
      // vv = Wv·h
      mm.backwardWeight(G('ffn.value.weight'), dvv, a.h, N, d, f);
      mm.backwardInput(ws.dh, dvv, P.fValue, N, d, f);
      // h = relu(z)²: dz = dh·2·relu(z) = dh·2·√h
      for (let j = 0; j < N * f; j++) ws.dh[j] *= 2 * Math.sqrt(a.h[j]);
      // z = Wk·xk2; rr = σ(Wr·xr2)
      mm.backwardWeight(G('ffn.key.weight'), ws.dh, a.xk2, N, f, d);
      mm.backwardInput(g2, ws.dh, P.fKey, N, f, d);
      mm.backwardWeight(G('ffn.receptance.weight'), drr, a.xr2, N, d, d);
      mm.backwardInput(g3, drr, P.fReceptance, N, d, d);
      // token shift into dxx2, then LN2 into the residual gradient
      const dxx = g4;
      dxx.fill(0, 0, N * d);
      let gm = vecGrad();
      mixBackward(dxx, gm, g2, a.xx2, P.fMixK, B, T, d);
      put('ffn.time_mix_k', gm);
      gm = vecGrad();
      mixBackward(dxx, gm, g3, a.xx2, P.fMixR, B, T, d);
      put('ffn.time_mix_r', gm);
      gw = vecGrad();
      gb = vecGrad();
      layerNormBackward(dx, gw, gb, dxx, a.xhat2, a.rstd2, P.ln2w, N, d, true);
      put('ln2.weight', gw);
      put('ln2.bias', gb);

      // ---- time-mix: x_out = x + Wo·y, y = sr·wkv
      mm.backwardWeight(G('att.output.weight'), dx, a.y, N, d, d);
      const dy = g0;
      mm.backwardInput(dy, dx, P.output, N, d, d);
      // dwkv = dy·sr;  dr = dy·wkv·sr(1 − sr)
      const dwkv = g1;
      const dr = g2;
      for (let j = 0; j < N * d; j++) {
        const s = a.sr[j];
        dwkv[j] = dy[j] * s;
        dr[j] = dy[j] * a.wkv[j] * s * (1 - s);
      }
      const dk = g3;
      const dv = g5;
      const dw = vecGrad();
      const du = vecGrad();
      const w = this.decay[l];
      const st = a.wkvState;
      wkv4Backward(
        dk,
        dv,
        dw,
        du,
        dwkv,
        a.k,
        a.v,
        w,
        P.timeFirst,
        B,
        T,
        d,
        ws.wkv,
        st,
        this.wkvMode,
      );
      // w = −exp(time_decay): ∂w/∂time_decay = w
      for (let i = 0; i < d; i++) dw[i] *= w[i];
      put('att.time_decay', dw);
      put('att.time_first', du);
      // k = Wk·xk, v = Wv·xv, r = Wr·xr; their input gradients land in g0/g1/g2
      mm.backwardWeight(G('att.key.weight'), dk, a.xk, N, d, d);
      mm.backwardWeight(G('att.value.weight'), dv, a.xv, N, d, d);
      mm.backwardWeight(G('att.receptance.weight'), dr, a.xr, N, d, d);
      mm.backwardInput(g0, dk, P.key, N, d, d);
      mm.backwardInput(g1, dv, P.value, N, d, d);
      mm.backwardInput(g3, dr, P.receptance, N, d, d);
      dxx.fill(0, 0, N * d);
      for (const [gin, mix, name] of [
        [g0, P.mixK, 'att.time_mix_k'],
        [g1, P.mixV, 'att.time_mix_v'],
        [g3, P.mixR, 'att.time_mix_r'],
      ] as const) {
        gm = vecGrad();
        mixBackward(dxx, gm, gin, a.xx1, mix, B, T, d);
        put(name, gm);
      }
      gw = vecGrad();
      gb = vecGrad();
      layerNormBackward(dx, gw, gb, dxx, a.xhat1, a.rstd1, P.ln1w, N, d, true);
      put('ln1.weight', gw);
      put('ln1.bias', gb);
    }

    // x = LN(emb[tok]; ln0): through ln0, then scatter-add into the embedding rows
    gw = vecGrad();
    gb = vecGrad();
    layerNormBackward(
      g0,
      gw,
      gb,
      dx,
      ws.xhat0,
      ws.rstd0,
      p.get('blocks.0.ln0.weight'),
      N,
      d,
      false,
    );
    store('blocks.0.ln0.weight', gw);
    store('blocks.0.ln0.bias', gb);
    const gEmb = new Float64Array(V * d);
    for (let n = 0; n < N; n++) {
      const o = ws.inputs[n] * d;
      for (let i = 0; i < d; i++) gEmb[o + i] += g0[n * d + i];
    }
    store('emb.weight', gEmb);
  }
}
