/**
 * Kernels over rows: layer norm (and GroupNorm), RMS norm and L2 normalisation, one
 * workgroup per group of values; the packed-batch ops (token shift with and without
 * mix, last rows, gather, appending to caches) as elementwise loops that find each
 * row's source through a small index array made on the host from `Seqs`; and OPT's
 * causal attention over a KV cache.
 */
import { GRID, type Kernel } from '../runtime.ts';
import { WG64 } from './reduce.ts';

/** One workgroup of 64 per row (group); rows beyond 65535 go to a second grid dimension. */
const ROW_MAIN = `@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = wid.y * nwg.x + wid.x;`;

/**
 * Layer norm of each group of n values: (x − mean)/√(var + eps)·w + b, two passes
 * (mean, then the centred variance). Group r uses weights from w0 = (r mod (wl/n))·n,
 * which is reference.ts's (r·n) mod wl when wl is a multiple of n.
 */
export const LAYER_NORM: Kernel = {
  name: 'layer_norm',
  buffers: [
    { name: 'out', type: 'f32', write: true },
    { name: 'x', type: 'f32' },
    { name: 'w', type: 'f32' },
    { name: 'b', type: 'f32' },
  ],
  params: [
    ['rows', 'u32'],
    ['n', 'u32'],
    ['eps', 'f32'],
    ['wgroups', 'u32'],
    ['row0', 'u32'],
  ],
  code: `${WG64}
${ROW_MAIN}
  if (r >= P.rows) { return; }
  let o = r * P.n;
  var v = 0.0;
  for (var i = lid; i < P.n; i += 64u) { v += x_ld(o + i); }
  let mean = wg_sum(v, lid) / f32(P.n);
  v = 0.0;
  for (var i = lid; i < P.n; i += 64u) { let d = x_ld(o + i) - mean; v += d * d; }
  let inv = 1.0 / sqrt(wg_sum(v, lid) / f32(P.n) + P.eps);
  let w0 = ((P.row0 + r) % P.wgroups) * P.n;
  for (var i = lid; i < P.n; i += 64u) {
    out_st(o + i, (x_ld(o + i) - mean) * inv * w_ld(w0 + i) + b_ld(w0 + i));
  }
}`,
};

/** x / √(mean(x²) + eps) · w (rms) or x / max(‖x‖, eps) (l2), per group of n. */
export function normKernel(kind: 'rms' | 'l2'): Kernel {
  const scale = kind === 'rms' ? '1.0 / sqrt(ss / f32(P.n) + P.eps)' : '1.0 / max(sqrt(ss), P.eps)';
  const w = kind === 'rms' ? ' * w_ld(((P.row0 + r) % P.wgroups) * P.n + i)' : '';
  return {
    name: `${kind}_norm`,
    buffers: [
      { name: 'out', type: 'f32', write: true },
      { name: 'x', type: 'f32' },
      ...(kind === 'rms' ? [{ name: 'w', type: 'f32' }] : []),
    ],
    params: [
      ['rows', 'u32'],
      ['n', 'u32'],
      ['eps', 'f32'],
      ['wgroups', 'u32'],
      ['row0', 'u32'],
    ],
    code: `${WG64}
${ROW_MAIN}
  if (r >= P.rows) { return; }
  let o = r * P.n;
  var v = 0.0;
  for (var i = lid; i < P.n; i += 64u) { let a = x_ld(o + i); v += a * a; }
  let ss = wg_sum(v, lid);
  let inv = ${scale};
  for (var i = lid; i < P.n; i += 64u) { out_st(o + i, x_ld(o + i) * inv${w}); }
}`,
  };
}

export const RMS_NORM = normKernel('rms');
export const L2_NORM = normKernel('l2');

/**
 * Token shift, with mix or without: out[r, c] = x[r, c]·mix[c] + s·(1 − mix[c]) (mixed)
 * or s (plain), where s = x[prevRow[r], c], or prev[b, c] when prevRow[r] = −(b + 1)
 * (row r starts sequence b).
 */
export function shiftKernel(mixed: boolean): Kernel {
  return {
    name: mixed ? 'time_shift_mix' : 'token_shift',
    buffers: [
      { name: 'out', type: 'f32', write: true },
      { name: 'x', type: 'f32' },
      { name: 'prev', type: 'f32' },
      { name: 'rowPrev', type: 'i32' },
      ...(mixed ? [{ name: 'mix', type: 'f32' }] : []),
    ],
    params: [
      ['n', 'u32'],
      ['cols', 'u32'],
    ],
    code: `${GRID}
  for (var i = gid.x; i < P.n; i += stride) {
    let r = i / P.cols;
    let c = i - r * P.cols;
    let p = rowPrev_ld(r);
    var s: f32;
    if (p >= 0) { s = x_ld(u32(p) * P.cols + c); } else { s = prev_ld(u32(-p - 1) * P.cols + c); }
    ${mixed ? 'let m = mix_ld(c); out_st(i, x_ld(i) * m + s * (1.0 - m));' : 'out_st(i, s);'}
  }
}`,
  };
}

export const TIME_SHIFT_MIX = shiftKernel(true);
export const TOKEN_SHIFT = shiftKernel(false);

/** out[b, c] = x[lastRow[b], c] for sequences with a last row (lastRow[b] ≥ 0). */
export const LAST_ROWS: Kernel = {
  name: 'last_rows',
  buffers: [
    { name: 'out', type: 'f32', write: true },
    { name: 'x', type: 'f32' },
    { name: 'lastRow', type: 'i32' },
  ],
  params: [
    ['n', 'u32'],
    ['cols', 'u32'],
  ],
  code: `${GRID}
  for (var i = gid.x; i < P.n; i += stride) {
    let b = i / P.cols;
    let src = lastRow_ld(b);
    if (src >= 0) { out_st(i, x_ld(u32(src) * P.cols + i - b * P.cols)); }
  }
}`,
};

/**
 * out[r, c] = table[ids[r] − t0, c] for the rows whose id falls in the table window
 * [t0, t1) bound now (a table larger than one binding is gathered window by window).
 */
export const GATHER: Kernel = {
  name: 'gather',
  buffers: [
    { name: 'out', type: 'f32', write: true },
    { name: 'table', type: 'f32' },
    { name: 'ids', type: 'i32' },
  ],
  params: [
    ['n', 'u32'],
    ['cols', 'u32'],
    ['t0', 'i32'],
    ['t1', 'i32'],
  ],
  code: `${GRID}
  for (var i = gid.x; i < P.n; i += stride) {
    let r = i / P.cols;
    let t = ids_ld(r);
    if (t >= P.t0 && t < P.t1) { out_st(i, table_ld(u32(t - P.t0) * P.cols + i - r * P.cols)); }
  }
}`,
};

/** cache[dst[r], c] = x[r, c]: rows appended to per-sequence caches. */
export const SCATTER_ROWS: Kernel = {
  name: 'scatter_rows',
  buffers: [
    { name: 'cache', type: 'f32', write: true },
    { name: 'x', type: 'f32' },
    { name: 'dst', type: 'i32' },
  ],
  params: [
    ['n', 'u32'],
    ['cols', 'u32'],
  ],
  code: `${GRID}
  for (var i = gid.x; i < P.n; i += stride) {
    let r = i / P.cols;
    cache_st(u32(dst_ld(r)) * P.cols + i - r * P.cols, x_ld(i));
  }
}`,
};

/**
 * Causal attention, one workgroup of 64 per (row, head): with qs = scale·q (float32, as
 * Hugging Face scales), the row's sequence b = rowInfo[2r] and n = rowInfo[2r + 1] keys,
 * out = Σ_j softmax(qs·k_j)·v_j over cached rows j < n, keys taken 64 at a time with the
 * running max and sum of the online softmax (flash attention's recurrence).
 */
export const ATTENTION: Kernel = {
  name: 'attention',
  buffers: [
    { name: 'out', type: 'f32', write: true },
    { name: 'q', type: 'f32' },
    { name: 'keys', type: 'f32' },
    { name: 'values', type: 'f32' },
    { name: 'rowInfo', type: 'i32' },
  ],
  params: [
    ['rows', 'u32'],
    ['heads', 'u32'],
    ['hd', 'u32'],
    ['capacity', 'u32'],
    ['scale', 'f32'],
  ],
  code: `
const MAXHD: u32 = 256u;
var<workgroup> qs: array<f32, MAXHD>;
var<workgroup> acc: array<f32, MAXHD>;
var<workgroup> p: array<f32, 64>;
${WG64}
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let id = wid.y * nwg.x + wid.x;
  let row = id / P.heads;
  let h = id - row * P.heads;
  if (row >= P.rows) { return; }
  let d = P.heads * P.hd;
  let b = u32(rowInfo_ld(2u * row));
  let n = u32(rowInfo_ld(2u * row + 1u));
  let cache = b * P.capacity * d + h * P.hd;
  for (var i = lid; i < P.hd; i += 64u) { qs[i] = q_ld(row * d + h * P.hd + i) * P.scale; acc[i] = 0.0; }
  workgroupBarrier();
  var m = bitcast<f32>(0xff7fffffu);
  var l = 0.0;
  for (var j0 = 0u; j0 < n; j0 += 64u) {
    // s_j = qs · k_j for this chunk's keys, one per invocation
    let j = j0 + lid;
    var s = bitcast<f32>(0xff7fffffu);
    if (j < n) {
      s = 0.0;
      for (var i = 0u; i < P.hd; i++) { s += qs[i] * keys_ld(cache + j * d + i); }
    }
    let mNew = max(m, wg_max(s, lid));
    let alpha = exp(m - mNew);
    let e = select(0.0, exp(s - mNew), j < n);
    p[lid] = e;
    l = l * alpha + wg_sum(e, lid);
    m = mNew;
    // acc_i ← acc_i·α + Σ_j p_j v_j,i (each invocation owns dims i ≡ lid mod 64)
    let cnt = min(64u, n - j0);
    for (var i = lid; i < P.hd; i += 64u) {
      var a = acc[i] * alpha;
      for (var t = 0u; t < cnt; t++) { a += p[t] * values_ld(cache + (j0 + t) * d + i); }
      acc[i] = a;
    }
    workgroupBarrier();
  }
  for (var i = lid; i < P.hd; i += 64u) { out_st(row * d + h * P.hd + i, acc[i] / l); }
}`,
};
