/**
 * Reductions into tallies. A tally slot holds a double-float (hi, lo): two float32
 * whose sum carries about 44 bits, so that sums over millions of values keep the
 * float64 precision the CPU backends have, and counts stay exact integers (up to 2^44).
 *
 * Each tally op runs in two dispatches: a kernel writes per-workgroup (or per-row)
 * partials as double-floats into scratch, then `accumulate` adds groups of partials
 * into their slots, one workgroup per slot, so no two workgroups write one slot.
 */
import { GRID, type Kernel } from '../runtime.ts';

/**
 * Error-free sums in WGSL (Knuth's two-sum): a + b = s.x + s.y exactly. Each step goes
 * through \`exact\`, an integer XOR with the uniform \`P.zero\` (0, unknown to the
 * compiler): compilers that simplify float algebra (Mesa's NIR does, seen on lavapipe)
 * would otherwise reduce (s − a) to b and the error term to 0. There are no products,
 * so no contraction into FMA can change them.
 */
export const DF = `
fn exact(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) ^ P.zero); }
fn two_sum(a: f32, b: f32) -> vec2<f32> {
  let s = exact(a + b);
  let bp = exact(s - a);
  return vec2<f32>(s, (a - exact(s - bp)) + (b - bp));
}
fn df_add(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
  let s = two_sum(x.x, y.x);
  let t = two_sum(x.y, y.y);
  let u = two_sum(s.x, s.y + t.x);
  return two_sum(u.x, u.y + t.y);
}`;

/**
 * Sums and maxima over a workgroup of 64 with two barriers: 8 invocations add 8 values
 * each, then every invocation adds the 8 partial sums (in the same order, so all get
 * the same result). Call in uniform control flow.
 */
export const WG64 = `
var<workgroup> wg1: array<f32, 64>;
var<workgroup> wg2: array<f32, 8>;
fn wg_sum(v: f32, lid: u32) -> f32 {
  wg1[lid] = v;
  workgroupBarrier();
  if (lid < 8u) {
    var s = 0.0;
    for (var i = 0u; i < 8u; i++) { s += wg1[8u * lid + i]; }
    wg2[lid] = s;
  }
  workgroupBarrier();
  var t = 0.0;
  for (var i = 0u; i < 8u; i++) { t += wg2[i]; }
  return t;
}
fn wg_max(v: f32, lid: u32) -> f32 {
  wg1[lid] = v;
  workgroupBarrier();
  if (lid < 8u) {
    var s = wg1[8u * lid];
    for (var i = 1u; i < 8u; i++) { s = max(s, wg1[8u * lid + i]); }
    wg2[lid] = s;
  }
  workgroupBarrier();
  var t = wg2[0];
  for (var i = 1u; i < 8u; i++) { t = max(t, wg2[i]); }
  return t;
}`;

/** The same for double-floats (after DF). */
export const WG64_DF = `
var<workgroup> df1: array<vec2<f32>, 64>;
var<workgroup> df2: array<vec2<f32>, 8>;
fn wg_df_sum(v: vec2<f32>, lid: u32) -> vec2<f32> {
  df1[lid] = v;
  workgroupBarrier();
  if (lid < 8u) {
    var s = df1[8u * lid];
    for (var i = 1u; i < 8u; i++) { s = df_add(s, df1[8u * lid + i]); }
    df2[lid] = s;
  }
  workgroupBarrier();
  var t = df2[0];
  for (var i = 1u; i < 8u; i++) { t = df_add(t, df2[i]); }
  return t;
}`;

/** Tree reduction of double-floats over the 256 invocations of a workgroup into red[0]. */
const TREE = `
  red[lid] = acc;
  workgroupBarrier();
  for (var w = 128u; w > 0u; w >>= 1u) {
    if (lid < w) { red[lid] = df_add(red[lid], red[lid + w]); }
    workgroupBarrier();
  }`;

/** Partial zero counts: part[w] = (exact zeros among this workgroup's elements, 0). */
export const ZEROS_PARTIAL: Kernel = {
  name: 'zeros_partial',
  buffers: [
    { name: 'x', type: 'f32' },
    { name: 'part', type: 'vec2<f32>', write: true },
  ],
  params: [['n', 'u32']],
  code: `
var<workgroup> count: atomic<u32>;
${GRID}
  let lid = gid.x % 256u;
  if (lid == 0u) { atomicStore(&count, 0u); }
  workgroupBarrier();
  var c = 0u;
  for (var i = gid.x; i < P.n; i += stride) {
    c += select(0u, 1u, (bitcast<u32>(x_ld(i)) & 0x7fffffffu) == 0u);
  }
  atomicAdd(&count, c);
  workgroupBarrier();
  if (lid == 0u) { part_st(gid.x / 256u, vec2<f32>(f32(atomicLoad(&count)), 0.0)); }
}`,
};

/** Partial sums as double-floats: part[w] = Σ of this workgroup's elements. */
export const SUM_PARTIAL: Kernel = {
  name: 'sum_partial',
  buffers: [
    { name: 'x', type: 'f32' },
    { name: 'part', type: 'vec2<f32>', write: true },
  ],
  params: [['n', 'u32']],
  code: `${DF}
var<workgroup> red: array<vec2<f32>, 256>;
${GRID}
  let lid = gid.x % 256u;
  var acc = vec2<f32>(0.0, 0.0);
  for (var i = gid.x; i < P.n; i += stride) { acc = df_add(acc, vec2<f32>(x_ld(i), 0.0)); }
  ${TREE}
  if (lid == 0u) { part_st(gid.x / 256u, red[0]); }
}`,
};

/**
 * Groups of partials into slots: workgroup g adds part[g·gstride + j·estride] for
 * j < count to tally[slot + g].
 */
export const ACCUMULATE: Kernel = {
  name: 'accumulate',
  buffers: [
    { name: 'part', type: 'vec2<f32>' },
    { name: 'tally', type: 'vec2<f32>', write: true },
  ],
  params: [
    ['count', 'u32'],
    ['gstride', 'u32'],
    ['estride', 'u32'],
    ['slot', 'u32'],
  ],
  code: `${DF}
var<workgroup> red: array<vec2<f32>, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let g = wid.x;
  var acc = vec2<f32>(0.0, 0.0);
  for (var j = lid; j < P.count; j += 256u) { acc = df_add(acc, part_ld(g * P.gstride + j * P.estride)); }
  ${TREE}
  if (lid == 0u) { tally_st(P.slot + g, df_add(tally_ld(P.slot + g), red[0])); }
}`,
};

/**
 * Partials gathered by a list into slots: with `list` = [starts (groups + 1), slots
 * (groups), rows], workgroup g adds part[rows[j]] for starts[g] ≤ j < starts[g + 1]
 * to tally[base + slots[g]].
 */
export const ACCUMULATE_LISTED: Kernel = {
  name: 'accumulate_listed',
  buffers: [
    { name: 'part', type: 'vec2<f32>' },
    { name: 'list', type: 'u32' },
    { name: 'tally', type: 'vec2<f32>', write: true },
  ],
  params: [
    ['groups', 'u32'],
    ['base', 'u32'],
  ],
  code: `${DF}
var<workgroup> red: array<vec2<f32>, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let g = wid.x;
  let rows = 2u * P.groups + 1u;
  var acc = vec2<f32>(0.0, 0.0);
  for (var j = list_ld(g) + lid; j < list_ld(g + 1u); j += 256u) {
    acc = df_add(acc, part_ld(list_ld(rows + j)));
  }
  ${TREE}
  if (lid == 0u) {
    let s = P.base + list_ld(P.groups + 1u + g);
    tally_st(s, df_add(tally_ld(s), red[0]));
  }
}`,
};

/**
 * The fused loss, one workgroup per row of logits [rows, vocab]:
 * nll = (max − logit[target]) + log Σ exp(logit − max), written as a double-float into
 * part[row]; part[rows + row] = 1 when some logit exceeds the target's (a miss).
 */
export const NLL_ROWS: Kernel = {
  name: 'nll_rows',
  buffers: [
    { name: 'logits', type: 'f32' },
    { name: 'targets', type: 'i32' },
    { name: 'part', type: 'vec2<f32>', write: true },
  ],
  params: [
    ['rows', 'u32'],
    ['vocab', 'u32'],
  ],
  code: `${DF}
${WG64}
${WG64_DF}
@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = wid.y * nwg.x + wid.x;
  if (r >= P.rows) { return; }
  let row = r * P.vocab;
  let t = logits_ld(row + u32(targets_ld(r)));
  // max, and how many logits beat the target's
  var m = bitcast<f32>(0xff7fffffu);
  var beats = 0.0;
  for (var j = lid; j < P.vocab; j += 64u) {
    let v = logits_ld(row + j);
    m = max(m, v);
    beats += select(0.0, 1.0, v > t);
  }
  let rowMax = wg_max(m, lid);
  let above = wg_sum(beats, lid);
  // Σ exp(v − max), compensated per invocation
  var acc = vec2<f32>(0.0, 0.0);
  for (var j = lid; j < P.vocab; j += 64u) {
    acc = df_add(acc, vec2<f32>(exp(logits_ld(row + j) - rowMax), 0.0));
  }
  let sum = wg_df_sum(acc, lid);
  if (lid == 0u) {
    part_st(r, two_sum(rowMax - t, log(sum.x + sum.y)));
    part_st(P.rows + r, vec2<f32>(select(0.0, 1.0, above > 0.0), 0.0));
  }
}`,
};

/**
 * Per-row quantiles of |x| by radix selection on the bit patterns (non-negative floats
 * order as their bits; NaN sorts last, as Float32Array.sort puts it): for each target
 * rank, four passes of an 8-bit histogram in workgroup memory narrow the key down to
 * the element of that rank; one more pass finds the next larger element for the
 * interpolation. Rows of up to `cache` values are first copied into workgroup memory.
 * The bin holding the rank is found by 16 invocations summing 16 bins each and one
 * walking those sums (3 barriers a pass, where a parallel scan takes 16).
 * `qinfo[k]` = (lo, bits of frac) with h = (cols − 1)·q_k, lo = ⌊h⌋, frac = h − lo
 * (computed on the host in float64, as numpy does); part[row·nq + k] = the quantile.
 */
export function quantileKernel(cache: number): Kernel {
  return {
    name: `quantile_rows_${cache}`,
    buffers: [
      { name: 'x', type: 'f32' },
      { name: 'qinfo', type: 'u32' },
      { name: 'part', type: 'vec2<f32>', write: true },
    ],
    params: [
      ['rows', 'u32'],
      ['cols', 'u32'],
      ['nq', 'u32'],
    ],
    code: `${DF}
const CACHE: u32 = ${cache}u;
var<workgroup> row: array<u32, CACHE>;
var<workgroup> hist: array<atomic<u32>, 256>;
var<workgroup> chunk: array<u32, 16>;
var<workgroup> pick: vec2<u32>;
var<workgroup> le: atomic<u32>;
var<workgroup> nextKey: atomic<u32>;

fn key(base: u32, i: u32, cached: bool) -> u32 {
  if (cached) { return row[i]; }
  return bitcast<u32>(x_ld(base + i)) & 0x7fffffffu;
}

/** The key of 0-based rank \`rank\` among the row's keys. */
fn select_rank(base: u32, rank: u32, cached: bool, lid: u32) -> u32 {
  var prefix = 0u;
  var mask = 0u;
  var rem = rank;
  for (var p = 0u; p < 4u; p++) {
    let shift = 24u - 8u * p;
    for (var b = lid; b < 256u; b += 64u) { atomicStore(&hist[b], 0u); }
    workgroupBarrier();
    for (var i = lid; i < P.cols; i += 64u) {
      let k = key(base, i, cached);
      if ((k & mask) == prefix) { atomicAdd(&hist[(k >> shift) & 255u], 1u); }
    }
    workgroupBarrier();
    if (lid < 16u) {
      var s = 0u;
      for (var b = 0u; b < 16u; b++) { s += atomicLoad(&hist[16u * lid + b]); }
      chunk[lid] = s;
    }
    workgroupBarrier();
    // The bin d with (keys in bins below d) ≤ rem < (keys in bins up to d).
    if (lid == 0u) {
      var below = 0u;
      var c = 0u;
      while (c < 15u && below + chunk[c] <= rem) { below += chunk[c]; c++; }
      var d = 16u * c;
      while (d < 16u * c + 15u && below + atomicLoad(&hist[d]) <= rem) { below += atomicLoad(&hist[d]); d++; }
      pick = vec2<u32>(d, below);
    }
    let sel = workgroupUniformLoad(&pick);
    prefix |= sel.x << shift;
    mask |= 255u << shift;
    rem -= sel.y;
  }
  return prefix;
}

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let r = wid.y * nwg.x + wid.x;
  if (r >= P.rows) { return; }
  let base = r * P.cols;
  let cached = P.cols <= CACHE;
  if (cached) {
    for (var i = lid; i < P.cols; i += 64u) { row[i] = bitcast<u32>(x_ld(base + i)) & 0x7fffffffu; }
  }
  workgroupBarrier();
  for (var q = 0u; q < P.nq; q++) {
    let lo = qinfo_ld(2u * q);
    let frac = bitcast<f32>(qinfo_ld(2u * q + 1u));
    let k = select_rank(base, lo, cached, lid);
    // keys ≤ k, and the smallest key > k (the element of rank lo + 1 if it differs)
    if (lid == 0u) { atomicStore(&le, 0u); atomicStore(&nextKey, 0xffffffffu); }
    workgroupBarrier();
    var c = 0u;
    var m = 0xffffffffu;
    for (var i = lid; i < P.cols; i += 64u) {
      let v = key(base, i, cached);
      c += select(0u, 1u, v <= k);
      if (v > k) { m = min(m, v); }
    }
    atomicAdd(&le, c);
    atomicMin(&nextKey, m);
    workgroupBarrier();
    if (lid == 0u) {
      let vlo = bitcast<f32>(k);
      var vhi = vlo;
      if (lo + 1u < P.cols && lo + 1u >= atomicLoad(&le)) { vhi = bitcast<f32>(atomicLoad(&nextKey)); }
      part_st(r * P.nq + q, two_sum(vlo, frac * (vhi - vlo)));
    }
    workgroupBarrier();
  }
}`,
  };
}
