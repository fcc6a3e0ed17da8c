// WebAssembly SIMD128 kernels (AssemblyScript). Pointers are byte offsets into this
// module's linear memory, which the JS loader (../index.ts) owns and allocates; nothing
// here allocates. Shapes and conventions follow ../../reference.ts.
//
// Packed layout P of W [rows, cols]: blocks of 16 output rows, each [cols][16], rows padded
// with zeros to a multiple of 16 — gemv then streams the weights once, front to back.

/** First free byte after this module's static data; the loader's heap starts here. */
export function heapBase(): usize {
  return __heap_base;
}

// ---- dense GEMV: y[blocks·16] = P · x[cols] ---------------------------------------------

export function gemv(y: usize, w: usize, x: usize, blocks: i32, cols: i32): void {
  const blockBytes = <usize>cols << 6;
  for (let b = 0; b < blocks; b++) {
    const p0 = w + <usize>b * blockBytes;
    // Two accumulator sets (even/odd input) halve the add dependency chains.
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let a2 = f32x4.splat(0);
    let a3 = f32x4.splat(0);
    let b0 = f32x4.splat(0);
    let b1 = f32x4.splat(0);
    let b2 = f32x4.splat(0);
    let b3 = f32x4.splat(0);
    let p = p0;
    let xp = x;
    const xEnd2 = x + (<usize>(cols & ~1) << 2);
    for (; xp < xEnd2; xp += 8, p += 128) {
      // 16 rows of input c (64 bytes), then of input c+1
      const u = v128.load32_splat(xp);
      a0 = f32x4.add(a0, f32x4.mul(v128.load(p, 0), u));
      a1 = f32x4.add(a1, f32x4.mul(v128.load(p, 16), u));
      a2 = f32x4.add(a2, f32x4.mul(v128.load(p, 32), u));
      a3 = f32x4.add(a3, f32x4.mul(v128.load(p, 48), u));
      const v = v128.load32_splat(xp, 4);
      b0 = f32x4.add(b0, f32x4.mul(v128.load(p, 64), v));
      b1 = f32x4.add(b1, f32x4.mul(v128.load(p, 80), v));
      b2 = f32x4.add(b2, f32x4.mul(v128.load(p, 96), v));
      b3 = f32x4.add(b3, f32x4.mul(v128.load(p, 112), v));
    }
    if (cols & 1) {
      const u = v128.load32_splat(xp);
      a0 = f32x4.add(a0, f32x4.mul(v128.load(p, 0), u));
      a1 = f32x4.add(a1, f32x4.mul(v128.load(p, 16), u));
      a2 = f32x4.add(a2, f32x4.mul(v128.load(p, 32), u));
      a3 = f32x4.add(a3, f32x4.mul(v128.load(p, 48), u));
    }
    const yp = y + (<usize>b << 6);
    v128.store(yp, f32x4.add(a0, b0), 0);
    v128.store(yp, f32x4.add(a1, b1), 16);
    v128.store(yp, f32x4.add(a2, b2), 32);
    v128.store(yp, f32x4.add(a3, b3), 48);
  }
}

// ---- GEMM: Y[T, ldy] = X[T, cols] · Pᵀ, ldy = blocks·16 --------------------------------

// One 4-token × 8-row tile: 8 accumulators + 2 weight vectors + 1 splat stay in the 16
// SIMD registers V8 has on x64. `w` points at the tile's first 8 rows inside a block.
@inline
function tile4x8(y: usize, ldy: usize, w: usize, x: usize, cols: i32): void {
  const ldx = <usize>cols << 2;
  let c00 = f32x4.splat(0);
  let c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0);
  let c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0);
  let c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0);
  let c31 = f32x4.splat(0);
  let p = w;
  const x1 = x + ldx;
  const x2 = x1 + ldx;
  const x3 = x2 + ldx;
  for (let c: usize = 0, end = ldx; c < end; c += 4, p += 64) {
    const w0 = v128.load(p, 0);
    const w1 = v128.load(p, 16);
    let u = v128.load32_splat(x + c);
    c00 = f32x4.add(c00, f32x4.mul(w0, u));
    c01 = f32x4.add(c01, f32x4.mul(w1, u));
    u = v128.load32_splat(x1 + c);
    c10 = f32x4.add(c10, f32x4.mul(w0, u));
    c11 = f32x4.add(c11, f32x4.mul(w1, u));
    u = v128.load32_splat(x2 + c);
    c20 = f32x4.add(c20, f32x4.mul(w0, u));
    c21 = f32x4.add(c21, f32x4.mul(w1, u));
    u = v128.load32_splat(x3 + c);
    c30 = f32x4.add(c30, f32x4.mul(w0, u));
    c31 = f32x4.add(c31, f32x4.mul(w1, u));
  }
  v128.store(y, c00, 0);
  v128.store(y, c01, 16);
  y += ldy;
  v128.store(y, c10, 0);
  v128.store(y, c11, 16);
  y += ldy;
  v128.store(y, c20, 0);
  v128.store(y, c21, 16);
  y += ldy;
  v128.store(y, c30, 0);
  v128.store(y, c31, 16);
}

export function gemm(y: usize, w: usize, x: usize, tokens: i32, blocks: i32, cols: i32): void {
  const ldy = <usize>blocks << 6;
  const ldx = <usize>cols << 2;
  const blockBytes = <usize>cols << 6;
  const t4 = tokens & ~3;
  // Row block outermost: its 64·cols bytes stay in L2 while all token tiles reuse them.
  for (let b = 0; b < blocks; b++) {
    const wb = w + <usize>b * blockBytes;
    const yb = y + (<usize>b << 6);
    for (let t = 0; t < t4; t += 4) {
      const xt = x + <usize>t * ldx;
      const yt = yb + <usize>t * ldy;
      tile4x8(yt, ldy, wb, xt, cols);
      tile4x8(yt + 32, ldy, wb + 32, xt, cols);
    }
    // Leftover tokens (T mod 4) one at a time, as a one-block gemv.
    for (let t = t4; t < tokens; t++) {
      gemv(yb + <usize>t * ldy, wb, x + <usize>t * ldx, 1, cols);
    }
  }
}

// ---- sparse GEMV over the input-major copy Wᵀ [cols + 1, ld] -------------------------
// ld ≥ rows is a multiple of 16 floats (one cache line), chosen odd in lines by the loader.
// Row `cols` of Wᵀ is all zeros and x[cols] is set to 0: the active-input list is padded
// with it to a multiple of GROUP, so every group is full and the padding adds nothing.

/**
 * Active inputs summed per pass over y: sixteen 64-byte row streams in flight hide DRAM
 * latency best here (measured: 8 rows ~0.7×, 16 rows ~0.8× of the ideal speedup, 32 worse).
 */
const GROUP: usize = 16;

@inline
function add4(a: v128, b: v128, c: v128, d: v128): v128 {
  return f32x4.add(f32x4.add(a, b), f32x4.add(c, d));
}

/** w0·s0 + w1·s1 + w2·s2 + w3·s3, lane-wise. */
@inline
function dot4(w0: v128, w1: v128, w2: v128, w3: v128, s0: v128, s1: v128, s2: v128, s3: v128): v128 {
  return add4(f32x4.mul(w0, s0), f32x4.mul(w1, s1), f32x4.mul(w2, s2), f32x4.mul(w3, s3));
}

/** Address of the Wᵀ row of the r-th listed input, relative to y (so p + d walks it). */
@inline
function rowAt(q: usize, r: usize, wt: usize, rowBytes: usize, y: usize): usize {
  return wt + <usize>load<i32>(q + (r << 2)) * rowBytes - y;
}

/** The r-th listed input value in all four lanes. */
@inline
function inputAt(q: usize, r: usize, x: usize): v128 {
  return v128.load32_splat(x + (<usize>load<i32>(q + (r << 2)) << 2));
}

/**
 * y[ld] = Σ over non-zero x[c] of x[c]·Wᵀ[c, :]. `idx` is scratch for cols + GROUP i32s;
 * x must have room for cols + 1 floats. Returns the number of non-zero inputs.
 */
export function sparseGemv(y: usize, wt: usize, x: usize, idx: usize, ld: i32, cols: i32): i32 {
  // 1. List the non-zero inputs, branch-free (NaN counts as non-zero, like the reference).
  let n: usize = 0;
  for (let c = 0; c < cols; c++) {
    store<i32>(idx + (n << 2), c);
    n += <usize>(load<f32>(x + (<usize>c << 2)) != 0);
  }
  store<f32>(x + (<usize>cols << 2), 0);
  const padded = (n + GROUP - 1) & ~(GROUP - 1);
  for (let k = n; k < padded; k++) store<i32>(idx + (k << 2), cols);

  // 2. y = 0, then per group of 16 inputs: y += Σ_r x[i_r] · Wᵀ[i_r, :], a cache line at a time.
  const rowBytes = <usize>ld << 2;
  const yEnd = y + rowBytes;
  for (let p = y; p < yEnd; p += 16) v128.store(p, f32x4.splat(0));
  for (let k: usize = 0; k < padded; k += GROUP) {
    const q = idx + (k << 2);
    const d0 = rowAt(q, 0, wt, rowBytes, y);
    const d1 = rowAt(q, 1, wt, rowBytes, y);
    const d2 = rowAt(q, 2, wt, rowBytes, y);
    const d3 = rowAt(q, 3, wt, rowBytes, y);
    const d4 = rowAt(q, 4, wt, rowBytes, y);
    const d5 = rowAt(q, 5, wt, rowBytes, y);
    const d6 = rowAt(q, 6, wt, rowBytes, y);
    const d7 = rowAt(q, 7, wt, rowBytes, y);
    const d8 = rowAt(q, 8, wt, rowBytes, y);
    const d9 = rowAt(q, 9, wt, rowBytes, y);
    const d10 = rowAt(q, 10, wt, rowBytes, y);
    const d11 = rowAt(q, 11, wt, rowBytes, y);
    const d12 = rowAt(q, 12, wt, rowBytes, y);
    const d13 = rowAt(q, 13, wt, rowBytes, y);
    const d14 = rowAt(q, 14, wt, rowBytes, y);
    const d15 = rowAt(q, 15, wt, rowBytes, y);
    const s0 = inputAt(q, 0, x);
    const s1 = inputAt(q, 1, x);
    const s2 = inputAt(q, 2, x);
    const s3 = inputAt(q, 3, x);
    const s4 = inputAt(q, 4, x);
    const s5 = inputAt(q, 5, x);
    const s6 = inputAt(q, 6, x);
    const s7 = inputAt(q, 7, x);
    const s8 = inputAt(q, 8, x);
    const s9 = inputAt(q, 9, x);
    const s10 = inputAt(q, 10, x);
    const s11 = inputAt(q, 11, x);
    const s12 = inputAt(q, 12, x);
    const s13 = inputAt(q, 13, x);
    const s14 = inputAt(q, 14, x);
    const s15 = inputAt(q, 15, x);
    // One cache line of y per iteration, from one line of each of the 16 rows.
    for (let p = y; p < yEnd; p += 64) {
      v128.store(p, f32x4.add(v128.load(p, 0), add4(
        dot4(v128.load(p + d0, 0), v128.load(p + d1, 0), v128.load(p + d2, 0), v128.load(p + d3, 0),
          s0, s1, s2, s3),
        dot4(v128.load(p + d4, 0), v128.load(p + d5, 0), v128.load(p + d6, 0), v128.load(p + d7, 0),
          s4, s5, s6, s7),
        dot4(v128.load(p + d8, 0), v128.load(p + d9, 0), v128.load(p + d10, 0), v128.load(p + d11, 0),
          s8, s9, s10, s11),
        dot4(v128.load(p + d12, 0), v128.load(p + d13, 0), v128.load(p + d14, 0), v128.load(p + d15, 0),
          s12, s13, s14, s15),
      )), 0);
      v128.store(p, f32x4.add(v128.load(p, 16), add4(
        dot4(v128.load(p + d0, 16), v128.load(p + d1, 16), v128.load(p + d2, 16), v128.load(p + d3, 16),
          s0, s1, s2, s3),
        dot4(v128.load(p + d4, 16), v128.load(p + d5, 16), v128.load(p + d6, 16), v128.load(p + d7, 16),
          s4, s5, s6, s7),
        dot4(v128.load(p + d8, 16), v128.load(p + d9, 16), v128.load(p + d10, 16), v128.load(p + d11, 16),
          s8, s9, s10, s11),
        dot4(v128.load(p + d12, 16), v128.load(p + d13, 16), v128.load(p + d14, 16), v128.load(p + d15, 16),
          s12, s13, s14, s15),
      )), 16);
      v128.store(p, f32x4.add(v128.load(p, 32), add4(
        dot4(v128.load(p + d0, 32), v128.load(p + d1, 32), v128.load(p + d2, 32), v128.load(p + d3, 32),
          s0, s1, s2, s3),
        dot4(v128.load(p + d4, 32), v128.load(p + d5, 32), v128.load(p + d6, 32), v128.load(p + d7, 32),
          s4, s5, s6, s7),
        dot4(v128.load(p + d8, 32), v128.load(p + d9, 32), v128.load(p + d10, 32), v128.load(p + d11, 32),
          s8, s9, s10, s11),
        dot4(v128.load(p + d12, 32), v128.load(p + d13, 32), v128.load(p + d14, 32), v128.load(p + d15, 32),
          s12, s13, s14, s15),
      )), 32);
      v128.store(p, f32x4.add(v128.load(p, 48), add4(
        dot4(v128.load(p + d0, 48), v128.load(p + d1, 48), v128.load(p + d2, 48), v128.load(p + d3, 48),
          s0, s1, s2, s3),
        dot4(v128.load(p + d4, 48), v128.load(p + d5, 48), v128.load(p + d6, 48), v128.load(p + d7, 48),
          s4, s5, s6, s7),
        dot4(v128.load(p + d8, 48), v128.load(p + d9, 48), v128.load(p + d10, 48), v128.load(p + d11, 48),
          s8, s9, s10, s11),
        dot4(v128.load(p + d12, 48), v128.load(p + d13, 48), v128.load(p + d14, 48), v128.load(p + d15, 48),
          s12, s13, s14, s15),
      )), 48);
    }
  }
  return <i32>n;
}

// ---- RWKV-5/6 state update (../../families/wkv5.ts) --------------------------------------

// One sequence of T tokens, all H heads of N channels: r, k, v, out [T, H·N]; w [H·N]
// (wStride 0) or [T, H·N] (wStride H·N); u [H·N]; s [H, N, N], S[i, j] with i the key and
// j the value channel; acc has room for N floats. Per token and head:
//   out_j = Σ_i r_i·S_ij + (Σ_i r_i·u_i·k_i)·v_j;   S_ij ← w_i·S_ij + k_i·v_j
// in float32, four value channels j per step (a scalar tail when N is not a multiple of 4).
export function wkvHeads(
  out: usize,
  r: usize,
  k: usize,
  v: usize,
  w: usize,
  wStride: i32,
  u: usize,
  s: usize,
  acc: usize,
  T: i32,
  H: i32,
  N: i32,
): void {
  const A = <usize>(H * N) << 2; // bytes per token row
  const rowBytes = <usize>N << 2;
  const n4 = <usize>(N & ~3) << 2; // bytes covered by whole vectors
  for (let h = 0; h < H; h++) {
    const head = <usize>(h * N) << 2;
    const sh = s + <usize>h * <usize>N * rowBytes;
    for (let t = 0; t < T; t++) {
      const x0 = <usize>t * A + head;
      const rt = r + x0;
      const kt = k + x0;
      const vt = v + x0;
      const wt = w + ((<usize>t * <usize>wStride) << 2) + head;
      // b = Σ_i r_i·u_i·k_i; out_j starts as b·v_j
      let bonus: f32 = 0;
      for (let i: usize = 0; i < rowBytes; i += 4) {
        bonus += load<f32>(rt + i) * load<f32>(u + head + i) * load<f32>(kt + i);
      }
      const b4 = f32x4.splat(bonus);
      let j: usize = 0;
      for (; j < n4; j += 16) v128.store(acc + j, f32x4.mul(b4, v128.load(vt + j)));
      for (; j < rowBytes; j += 4) store<f32>(acc + j, bonus * load<f32>(vt + j));
      for (let i: usize = 0; i < rowBytes; i += 4) {
        const ri = load<f32>(rt + i);
        const ki = load<f32>(kt + i);
        const wi = load<f32>(wt + i);
        const r4 = f32x4.splat(ri);
        const k4 = f32x4.splat(ki);
        const w4 = f32x4.splat(wi);
        const row = sh + i * <usize>N;
        // out_j += r_i·S_ij (the state before this token); S_ij ← w_i·S_ij + k_i·v_j
        j = 0;
        for (; j < n4; j += 16) {
          const sv = v128.load(row + j);
          v128.store(acc + j, f32x4.add(v128.load(acc + j), f32x4.mul(r4, sv)));
          v128.store(row + j, f32x4.add(f32x4.mul(w4, sv), f32x4.mul(k4, v128.load(vt + j))));
        }
        for (; j < rowBytes; j += 4) {
          const sv = load<f32>(row + j);
          store<f32>(acc + j, load<f32>(acc + j) + ri * sv);
          store<f32>(row + j, wi * sv + ki * load<f32>(vt + j));
        }
      }
      memory.copy(out + x0, acc, rowBytes);
    }
  }
}

// ---- RWKV-7's WKV recurrence (../../families/wkv7.ts) for T tokens of one sequence ------
// r, w, k, v, a, b, out, bonus [T, H·N]; u [H·N]; S [H, N, N] (S[i][j], i the value
// index), updated in place. Per token and head:
//   sa = S·a; S ← S·diag(w) + sa·bᵀ + v·kᵀ; out = S·r; bonus = (Σ r·k·u)·v.

@inline
function lanes(x: v128): f32 {
  return (
    f32x4.extract_lane(x, 0) +
    f32x4.extract_lane(x, 1) +
    (f32x4.extract_lane(x, 2) + f32x4.extract_lane(x, 3))
  );
}

export function wkv7(
  out: usize,
  bonus: usize,
  r: usize,
  w: usize,
  k: usize,
  v: usize,
  a: usize,
  b: usize,
  u: usize,
  S: usize,
  T: i32,
  H: i32,
  N: i32,
): void {
  const rowBytes = <usize>N << 2;
  const tokenBytes = <usize>(H * N) << 2;
  const nv = <usize>(N & ~3) << 2; // bytes of a row in whole vectors
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const o = <usize>t * tokenBytes + <usize>h * rowBytes; // this token's head h
      const s0 = S + <usize>h * rowBytes * <usize>N;
      for (let i = 0; i < N; i++) {
        const row = s0 + <usize>i * rowBytes;
        // sa = Σ_j S_ij·a_j over the state before this token
        let acc = f32x4.splat(0);
        let j: usize = 0;
        for (; j < nv; j += 16) acc = f32x4.add(acc, f32x4.mul(v128.load(row + j), v128.load(a + o + j)));
        let sa = lanes(acc);
        for (; j < rowBytes; j += 4) sa += load<f32>(row + j) * load<f32>(a + o + j);
        // S_ij ← S_ij·w_j + sa·b_j + v_i·k_j; out_i = Σ_j S_ij·r_j
        const vi = load<f32>(v + o + (<usize>i << 2));
        const sav = f32x4.splat(sa);
        const viv = f32x4.splat(vi);
        let yacc = f32x4.splat(0);
        for (j = 0; j < nv; j += 16) {
          const s = f32x4.add(
            f32x4.add(
              f32x4.mul(v128.load(row + j), v128.load(w + o + j)),
              f32x4.mul(sav, v128.load(b + o + j)),
            ),
            f32x4.mul(viv, v128.load(k + o + j)),
          );
          v128.store(row + j, s);
          yacc = f32x4.add(yacc, f32x4.mul(s, v128.load(r + o + j)));
        }
        let y = lanes(yacc);
        for (; j < rowBytes; j += 4) {
          const s =
            load<f32>(row + j) * load<f32>(w + o + j) +
            sa * load<f32>(b + o + j) +
            vi * load<f32>(k + o + j);
          store<f32>(row + j, s);
          y += s * load<f32>(r + o + j);
        }
        store<f32>(out + o + (<usize>i << 2), y);
      }
      // bonus_i = (Σ_j r_j·k_j·u_j)·v_i
      let c: f32 = 0;
      const uh = u + <usize>h * rowBytes;
      for (let jj: usize = 0; jj < rowBytes; jj += 4) {
        c += load<f32>(r + o + jj) * load<f32>(k + o + jj) * load<f32>(uh + jj);
      }
      for (let ii: usize = 0; ii < rowBytes; ii += 4) {
        store<f32>(bonus + o + ii, c * load<f32>(v + o + ii));
      }
    }
  }
}
