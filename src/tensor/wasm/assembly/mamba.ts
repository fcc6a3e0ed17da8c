// Mamba's kernel families in WebAssembly SIMD128 (the algorithms of ../../native/mamba_simd.h
// with 4 lanes): the causal depthwise convolution, the selective scan and the SSD scan over
// a packed batch. Pointers are byte offsets into linear memory set up by ../index.ts;
// `offsets` holds batch + 1 i32 row offsets; `scratch` is free space the loader sized.
// Definitions: ../../families/conv1d.ts, selective-scan.ts, ssd.ts.

/** Tokens per block of the scans (Δ of a block is computed before its recurrence). */
const BLOCK: i32 = 64;

@inline
function splat(v: f32): v128 {
  return f32x4.splat(v);
}

/** e^x for 4 floats, ~1 ulp (Cephes expf), x clamped to [−87.3, 88.3]. */
@inline
function vexp(x: v128): v128 {
  x = f32x4.min(splat(88.3), f32x4.max(splat(-87.3), x));
  const magic = splat(12582912.0); // 1.5·2²³: round(x·log2e) in the low mantissa bits
  const t = f32x4.add(f32x4.mul(x, splat(1.44269504088896341)), magic);
  const n = f32x4.sub(t, magic);
  let r = f32x4.sub(x, f32x4.mul(n, splat(0.693359375)));
  r = f32x4.sub(r, f32x4.mul(n, splat(-2.1219444e-4)));
  let p = splat(1.98756915e-4);
  p = f32x4.add(f32x4.mul(p, r), splat(1.3981999507e-3));
  p = f32x4.add(f32x4.mul(p, r), splat(8.3334519073e-3));
  p = f32x4.add(f32x4.mul(p, r), splat(4.1665795894e-2));
  p = f32x4.add(f32x4.mul(p, r), splat(1.6666665459e-1));
  p = f32x4.add(f32x4.mul(p, r), splat(5.0000001201e-1));
  p = f32x4.add(f32x4.mul(p, f32x4.mul(r, r)), f32x4.add(r, splat(1.0)));
  const e = i32x4.shl(i32x4.add(t, i32x4.splat(127)), 23);
  return f32x4.mul(p, e);
}

/** ln(u) for u in [1, 2] (Cephes logf without its range reduction). */
@inline
function vlog12(u: v128): v128 {
  const big = f32x4.gt(u, splat(1.41421356)); // then ln u = ln(u/2) + ln 2
  const f = f32x4.sub(v128.bitselect(f32x4.mul(u, splat(0.5)), u, big), splat(1.0));
  const e = v128.and(big, splat(1.0));
  const z = f32x4.mul(f, f);
  let y = splat(7.0376836292e-2);
  y = f32x4.add(f32x4.mul(y, f), splat(-1.151461031e-1));
  y = f32x4.add(f32x4.mul(y, f), splat(1.167699874e-1));
  y = f32x4.add(f32x4.mul(y, f), splat(-1.2420140846e-1));
  y = f32x4.add(f32x4.mul(y, f), splat(1.4249322787e-1));
  y = f32x4.add(f32x4.mul(y, f), splat(-1.6668057665e-1));
  y = f32x4.add(f32x4.mul(y, f), splat(2.0000714765e-1));
  y = f32x4.add(f32x4.mul(y, f), splat(-2.4999993993e-1));
  y = f32x4.add(f32x4.mul(y, f), splat(3.3333331174e-1));
  y = f32x4.mul(f32x4.mul(y, f), z);
  y = f32x4.sub(f32x4.add(y, f32x4.mul(e, splat(-2.1219444e-4))), f32x4.mul(z, splat(0.5)));
  return f32x4.add(f32x4.add(f, y), f32x4.mul(e, splat(0.693359375)));
}

/** torch's softplus: max(x, 0) + log1p(e^−|x|), x itself above 20. */
@inline
function vsoftplus(x: v128): v128 {
  const v = vexp(f32x4.neg(f32x4.abs(x)));
  const u = f32x4.add(v, splat(1.0));
  const d = f32x4.sub(u, splat(1.0));
  const exact = f32x4.eq(d, splat(0));
  // log1p(v) = ln(1 + v)·v/((1 + v) − 1), and v itself where 1 + v rounds to 1
  const l1p = v128.bitselect(
    v,
    f32x4.mul(vlog12(u), f32x4.div(v, v128.bitselect(splat(1.0), d, exact))),
    exact,
  );
  const s = f32x4.add(f32x4.max(x, splat(0)), l1p);
  return v128.bitselect(x, s, f32x4.gt(x, splat(20.0)));
}

@inline
function softplus1(x: f64): f64 {
  return x > 20 ? x : Math.log1p(Math.exp(x));
}

@inline
function hsum(v: v128): f32 {
  return (
    f32x4.extract_lane(v, 0) +
    f32x4.extract_lane(v, 1) +
    f32x4.extract_lane(v, 2) +
    f32x4.extract_lane(v, 3)
  );
}

@inline
function f(p: usize, i: usize): f32 {
  return load<f32>(p + (i << 2));
}

@inline
function setf(p: usize, i: usize, v: f32): void {
  store<f32>(p + (i << 2), v);
}

@inline
function row(offsets: usize, s: i32): usize {
  return <usize>load<i32>(offsets + (<usize>s << 2));
}

/** Row j of [state; x] for a sequence (state rows first). */
@inline
function rowOf(st: usize, xs: usize, j: usize, S: usize, c: usize): usize {
  return j < S ? st + ((j * c) << 2) : xs + (((j - S) * c) << 2);
}

/**
 * out[t, c] = bias[c] + Σ_k w[c, k]·[state; x][t + k, c] per sequence; the state becomes
 * the last K − 1 rows of [state; x]. bias = 0 means none. scratch: K·C floats.
 */
export function conv1d(
  out: usize,
  x: usize,
  w: usize,
  bias: usize,
  state: usize,
  offsets: usize,
  batch: i32,
  C: i32,
  K: i32,
  scratch: usize,
): void {
  const c = <usize>C;
  const S = <usize>(K - 1);
  const k4 = c & ~3;
  // Taps transposed to [K, C]: channels contiguous.
  for (let ch: usize = 0; ch < c; ch++)
    for (let k: usize = 0; k < <usize>K; k++) setf(scratch, k * c + ch, f(w, ch * <usize>K + k));
  for (let s = 0; s < batch; s++) {
    const r0 = row(offsets, s);
    const T = row(offsets, s + 1) - r0;
    if (T == 0) continue;
    const xs = x + ((r0 * c) << 2);
    const os = out + ((r0 * c) << 2);
    const st = state + ((<usize>s * S * c) << 2);
    for (let t: usize = 0; t < T; t++) {
      const o = os + ((t * c) << 2);
      // Channels four at a time, then the tail one at a time.
      for (let ch: usize = 0; ch < k4; ch += 4) {
        let acc = bias ? v128.load(bias + (ch << 2)) : f32x4.splat(0);
        for (let k: usize = 0; k < <usize>K; k++) {
          const src = rowOf(st, xs, t + k, S, c);
          acc = f32x4.add(acc, f32x4.mul(v128.load(scratch + ((k * c + ch) << 2)), v128.load(src + (ch << 2))));
        }
        v128.store(o + (ch << 2), acc);
      }
      for (let ch = k4; ch < c; ch++) {
        let acc: f32 = bias ? f(bias, ch) : 0;
        for (let k: usize = 0; k < <usize>K; k++) acc += f(scratch, k * c + ch) * f(rowOf(st, xs, t + k, S, c), ch);
        setf(o, ch, acc);
      }
    }
    // state ← the last S rows of [state; x] (ascending rows read rows ≥ their own)
    for (let j: usize = 0; j < S; j++) memory.copy(st + ((j * c) << 2), rowOf(st, xs, T + j, S, c), c << 2);
  }
}

/**
 * The selective scan per sequence (selective-scan.ts): Δ = softplus(δ + δ_bias),
 * h = exp(Δ·A)·h + (Δ·B)·u, y = Σ_n h·C + D·u. scratch: BLOCK·E floats.
 */
export function selectiveScan(
  y: usize,
  u: usize,
  delta: usize,
  deltaBias: usize,
  A: usize,
  B: usize,
  C: usize,
  D: usize,
  state: usize,
  offsets: usize,
  batch: i32,
  E: i32,
  N: i32,
  scratch: usize,
): void {
  const e = <usize>E;
  const n = <usize>N;
  const n4 = n & ~3;
  const e4 = e & ~3;
  for (let s = 0; s < batch; s++) {
    const r0 = row(offsets, s);
    const T = row(offsets, s + 1) - r0;
    const h = state + ((<usize>s * e * n) << 2);
    for (let t0: usize = 0; t0 < T; t0 += <usize>BLOCK) {
      const nt = min<usize>(<usize>BLOCK, T - t0);
      // Δ[t, ch] for the block, channels in vectors
      for (let t: usize = 0; t < nt; t++) {
        const d = delta + (((r0 + t0 + t) * e) << 2);
        const o = scratch + ((t * e) << 2);
        for (let ch: usize = 0; ch < e4; ch += 4) {
          v128.store(o + (ch << 2), vsoftplus(f32x4.add(v128.load(d + (ch << 2)), v128.load(deltaBias + (ch << 2)))));
        }
        for (let ch = e4; ch < e; ch++) {
          setf(o, ch, <f32>softplus1(<f64>f(d, ch) + <f64>f(deltaBias, ch)));
        }
      }
      for (let ch: usize = 0; ch < e; ch++) {
        const he = h + ((ch * n) << 2);
        const Ae = A + ((ch * n) << 2);
        for (let t: usize = 0; t < nt; t++) {
          const rw = r0 + t0 + t;
          const dt = f(scratch, t * e + ch);
          const x = f(u, rw * e + ch);
          const Bt = B + ((rw * n) << 2);
          const Ct = C + ((rw * n) << 2);
          const dtv = splat(dt);
          const xv = splat(x);
          let acc = f32x4.splat(0);
          // h = exp(Δ·A)·h + (Δ·B)·u; y += h·C
          for (let k: usize = 0; k < n4; k += 4) {
            const a = vexp(f32x4.mul(v128.load(Ae + (k << 2)), dtv));
            const hv = f32x4.add(
              f32x4.mul(a, v128.load(he + (k << 2))),
              f32x4.mul(f32x4.mul(v128.load(Bt + (k << 2)), dtv), xv),
            );
            v128.store(he + (k << 2), hv);
            acc = f32x4.add(acc, f32x4.mul(hv, v128.load(Ct + (k << 2))));
          }
          let sum = hsum(acc);
          for (let k = n4; k < n; k++) {
            const hv = Mathf.exp(dt * f(Ae, k)) * f(he, k) + dt * f(Bt, k) * x;
            setf(he, k, hv);
            sum += hv * f(Ct, k);
          }
          setf(y, rw * e + ch, sum + f(D, ch) * x);
        }
      }
    }
  }
}

/**
 * The SSD scan per sequence (ssd.ts): Δ = clamp(softplus(dt + dt_bias)), decay = exp(Δ·A)
 * per head, h = h·decay + (Δ·B)·x, y = Σ_n h·C + D·x. scratch: 2·BLOCK·H floats.
 */
export function ssd(
  y: usize,
  x: usize,
  dt: usize,
  dtBias: usize,
  A: usize,
  B: usize,
  C: usize,
  D: usize,
  state: usize,
  offsets: usize,
  batch: i32,
  H: i32,
  P: i32,
  G: i32,
  N: i32,
  dtMin: f64,
  dtMax: f64,
  scratch: usize,
): void {
  const nh = <usize>H;
  const np = <usize>P;
  const n = <usize>N;
  const n4 = n & ~3;
  const perGroup = nh / <usize>G;
  const steps = scratch;
  const decays = scratch + ((<usize>BLOCK * nh) << 2);
  for (let s = 0; s < batch; s++) {
    const r0 = row(offsets, s);
    const T = row(offsets, s + 1) - r0;
    const hs = state + ((<usize>s * nh * np * n) << 2);
    for (let t0: usize = 0; t0 < T; t0 += <usize>BLOCK) {
      const nt = min<usize>(<usize>BLOCK, T - t0);
      for (let t: usize = 0; t < nt; t++) {
        for (let hd: usize = 0; hd < nh; hd++) {
          let st = softplus1(<f64>f(dt, (r0 + t0 + t) * nh + hd) + <f64>f(dtBias, hd));
          st = st < dtMin ? dtMin : st > dtMax ? dtMax : st;
          setf(steps, t * nh + hd, <f32>st);
          setf(decays, t * nh + hd, <f32>Math.exp(st * <f64>f(A, hd)));
        }
      }
      for (let hd: usize = 0; hd < nh; hd++) {
        const g = hd / perGroup;
        for (let p: usize = 0; p < np; p++) {
          const hp = hs + (((hd * np + p) * n) << 2);
          for (let t: usize = 0; t < nt; t++) {
            const rw = r0 + t0 + t;
            const st = f(steps, t * nh + hd);
            const dec = f(decays, t * nh + hd);
            const i = (rw * nh + hd) * np + p;
            const xv = f(x, i);
            const Bt = B + (((rw * <usize>G + g) * n) << 2);
            const Ct = C + (((rw * <usize>G + g) * n) << 2);
            const stv = splat(st);
            const xvv = splat(xv);
            const decv = splat(dec);
            let acc = f32x4.splat(0);
            // h = h·exp(Δ·A) + (Δ·B)·x; y += h·C
            for (let k: usize = 0; k < n4; k += 4) {
              const hv = f32x4.add(
                f32x4.mul(v128.load(hp + (k << 2)), decv),
                f32x4.mul(f32x4.mul(v128.load(Bt + (k << 2)), stv), xvv),
              );
              v128.store(hp + (k << 2), hv);
              acc = f32x4.add(acc, f32x4.mul(hv, v128.load(Ct + (k << 2))));
            }
            let sum = hsum(acc);
            for (let k = n4; k < n; k++) {
              const hv = f(hp, k) * dec + st * f(Bt, k) * xv;
              setf(hp, k, hv);
              sum += hv * f(Ct, k);
            }
            setf(y, i, sum + f(D, hd) * xv);
          }
        }
      }
    }
  }
}
