/**
 * Matrix products y[n, N] = x[n, K] · Wᵀ (+ bias) for W [N, K] in PyTorch order.
 *
 * Weights are stored row by row with the row length padded to `ld` (a multiple of 4),
 * as float32 (`vec4<f32>`, 4 weights) or as float16 / bfloat16 packed two to a u32
 * (`vec2<u32>`, 4 weights), unpacked to float32 in the shader; every product
 * accumulates in float32. `w4(row, k4)` reads weights 4·k4 … 4·k4 + 3 of a row.
 *
 * - GEMM (several input rows): workgroup tiles of BM×BN outputs, BK inputs at a time
 *   through workgroup memory, TM×TN outputs per invocation in registers; the next
 *   tile is fetched into registers while the current one is multiplied.
 * - GEMV (a few input rows): TPR invocations per weight row, vec4 loads, a tree sum.
 * - Zero-skipping GEMV: reads the input-major copy Wᵀ [K, ldt]; workgroup (tile, g)
 *   compacts the non-zero inputs of its slice g of K (a prefix sum keeps their order)
 *   and adds x_c·Wᵀ[c, tile] for those c only; the slices' partial outputs are summed
 *   by a second kernel.
 *
 * A bias is a runtime flag with a placeholder operand, not a kernel variant: each
 * variant is one more pipeline to compile (seconds each on a software adapter).
 */
import type { Kernel } from '../runtime.ts';

export type WeightFormat = 'f32' | 'f16' | 'bf16';

/** The WGSL type of a weight element (4 weights) for each format. */
export const WEIGHT_TYPE: Record<WeightFormat, string> = {
  f32: 'vec4<f32>',
  f16: 'vec2<u32>',
  bf16: 'vec2<u32>',
};

/** `fn w4(i)`: element i of operand `name` (4 weights) as vec4<f32>. */
function unpack(name: string, f: WeightFormat): string {
  if (f === 'f32') return `fn ${name}4(i: u32) -> vec4<f32> { return ${name}_ld(i); }`;
  if (f === 'f16')
    return `fn ${name}4(i: u32) -> vec4<f32> { let u = ${name}_ld(i); return vec4<f32>(unpack2x16float(u.x), unpack2x16float(u.y)); }`;
  // bfloat16 is the upper half of a float32: shift the low one up, mask the high one.
  return `fn ${name}4(i: u32) -> vec4<f32> {
  let u = ${name}_ld(i);
  return vec4<f32>(bitcast<f32>(u.x << 16u), bitcast<f32>(u.x & 0xffff0000u),
                   bitcast<f32>(u.y << 16u), bitcast<f32>(u.y & 0xffff0000u));
}`;
}

/** Parameters shared by the products (the weight part's shape and where y goes). */
const MATMUL_PARAMS = [
  ['M', 'u32'], // input rows
  ['N', 'u32'], // output columns in this weight part
  ['K', 'u32'], // inputs
  ['ld4', 'u32'], // padded row length of W, in vec4 units
  ['ldy', 'u32'], // row stride of y (all of W's rows)
  ['ycol', 'u32'], // first output column of this part
  ['bcol', 'u32'], // first bias element of this part
  ['hasBias', 'u32'], // 1: add bias[bcol + n] (else the bias operand is a placeholder)
] as const;

const cache = new Map<string, Kernel>();
function memo(key: string, make: () => Kernel): Kernel {
  let k = cache.get(key);
  if (!k) {
    k = make();
    cache.set(key, k);
  }
  return k;
}

function buffers(f: WeightFormat) {
  return [
    { name: 'y', type: 'f32', write: true },
    { name: 'x', type: 'f32' },
    { name: 'w', type: WEIGHT_TYPE[f] },
    { name: 'bias', type: 'f32' },
  ];
}

/** y element n of this part plus its bias, when there is one. */
const BIASED = `fn biased(v: f32, n: u32) -> f32 {
  if (P.hasBias != 0u) { return v + bias_ld(P.bcol + n); }
  return v;
}`;

/** GEMM tile shape: BM×BN outputs per workgroup, BK inputs per step, TM×TN per invocation. */
export interface GemmTiles {
  BM: number;
  BN: number;
  BK: number;
  TM: number;
  TN: number;
}

/** Parses "BMxBNxBK/TMxTN", e.g. "128x128x16/8x8". */
export function parseTiles(s: string): GemmTiles {
  const m = /^(\d+)x(\d+)x(\d+)\/(\d+)x(\d+)$/.exec(s.trim());
  if (!m) throw new Error(`GEMM tiles "${s}": expected BMxBNxBK/TMxTN, e.g. 128x128x16/8x8`);
  const [BM, BN, BK, TM, TN] = m.slice(1).map(Number);
  const t = { BM, BN, BK, TM, TN };
  checkTiles(t);
  return t;
}

export function checkTiles(t: GemmTiles): void {
  const threads = (t.BM / t.TM) * (t.BN / t.TN);
  const ok =
    t.BM % t.TM === 0 &&
    t.BN % t.TN === 0 &&
    t.BK % 4 === 0 &&
    threads >= 32 &&
    threads <= 256 &&
    ((t.BM * t.BK) / 4) % threads === 0 &&
    ((t.BN * t.BK) / 4) % threads === 0;
  if (!ok)
    throw new Error(
      `GEMM tiles ${t.BM}x${t.BN}x${t.BK}/${t.TM}x${t.TN}: need BK a multiple of 4, 32–256 invocations, and tiles of vec4s that the invocations load evenly`,
    );
}

/**
 * The tiled GEMM. Workgroup (i, j) computes output rows j·BM … and columns i·BN …;
 * invocation (ty, tx) owns a TM×TN block in registers. Both tiles stay as the inputs
 * are laid out, inputs contiguous (As[m][k], Bs[n][k], in vec4s along k, rows padded
 * by one vec4 against bank conflicts), and each vec4 of k adds TM·TN dot products: no
 * transposes and no vector lanes picked at run time (both cost dearly to compile on
 * a software adapter, and the loads are as wide either way).
 */
export function gemmKernel(f: WeightFormat, t: GemmTiles): Kernel {
  const { BM, BN, BK, TM, TN } = t;
  const threads = (BM / TM) * (BN / TN);
  const K4 = BK / 4; // vec4s per tile row
  const XL = (BM * K4) / threads; // x vec4s each invocation loads per tile
  const WL = (BN * K4) / threads; // weight vec4s each invocation loads per tile
  const RS = K4 + 1; // padded tile row, in vec4s
  return memo(`gemm:${f}:${BM}x${BN}x${BK}/${TM}x${TN}`, () => ({
    name: `gemm_${f}_${BM}x${BN}x${BK}_${TM}x${TN}`,
    buffers: buffers(f),
    params: MATMUL_PARAMS,
    code: `${unpack('w', f)}
${BIASED}
const BM = ${BM}u; const BN = ${BN}u; const K4 = ${K4}u; const TM = ${TM}u; const TN = ${TN}u;
const TX = ${BN / TN}u;
const RS = ${RS}u;
var<workgroup> As: array<vec4<f32>, ${BM * RS}>;
var<workgroup> Bs: array<vec4<f32>, ${BN * RS}>;

fn xs(m: u32, k: u32) -> f32 {
  if (k < P.K) { return x_ld(m * P.K + k); }
  return 0.0;
}
/** x[m, 4·k4 … 4·k4 + 3] (zeros beyond the matrix). */
fn xval(m: u32, k4: u32) -> vec4<f32> {
  if (m >= P.M) { return vec4<f32>(0.0); }
  let k = 4u * k4;
  return vec4<f32>(xs(m, k), xs(m, k + 1u), xs(m, k + 2u), xs(m, k + 3u));
}
fn wval(n: u32, k4: u32) -> vec4<f32> {
  if (n < P.N && k4 < P.ld4) { return w4(n * P.ld4 + k4); }
  return vec4<f32>(0.0);
}

@compute @workgroup_size(${threads})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let tx = lid % TX;
  let ty = lid / TX;
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  var acc: array<array<f32, ${TN}>, ${TM}>;
  var xr: array<vec4<f32>, ${XL}>;
  var wr: array<vec4<f32>, ${WL}>;
  // Tile 0 into registers; invocation e takes row e / K4, vec4 e % K4 of each tile.
  for (var i = 0u; i < ${XL}u; i++) {
    let e = lid + i * ${threads}u;
    xr[i] = xval(m0 + e / K4, e % K4);
  }
  for (var i = 0u; i < ${WL}u; i++) {
    let e = lid + i * ${threads}u;
    wr[i] = wval(n0 + e / K4, e % K4);
  }
  for (var k0 = 0u; k0 < P.ld4; k0 += K4) {
    for (var i = 0u; i < ${XL}u; i++) {
      let e = lid + i * ${threads}u;
      As[(e / K4) * RS + e % K4] = xr[i];
    }
    for (var i = 0u; i < ${WL}u; i++) {
      let e = lid + i * ${threads}u;
      Bs[(e / K4) * RS + e % K4] = wr[i];
    }
    workgroupBarrier();
    // The next tile is fetched while this one is multiplied.
    let k1 = k0 + K4;
    if (k1 < P.ld4) {
      for (var i = 0u; i < ${XL}u; i++) {
        let e = lid + i * ${threads}u;
        xr[i] = xval(m0 + e / K4, k1 + e % K4);
      }
      for (var i = 0u; i < ${WL}u; i++) {
        let e = lid + i * ${threads}u;
        wr[i] = wval(n0 + e / K4, k1 + e % K4);
      }
    }
    for (var k = 0u; k < K4; k++) {
      var a: array<vec4<f32>, ${TM}>;
      var b: array<vec4<f32>, ${TN}>;
      for (var i = 0u; i < TM; i++) { a[i] = As[(ty * TM + i) * RS + k]; }
      for (var j = 0u; j < TN; j++) { b[j] = Bs[(tx * TN + j) * RS + k]; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) { acc[i][j] += dot(a[i], b[j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    let m = m0 + ty * TM + i;
    if (m < P.M) {
      for (var j = 0u; j < TN; j++) {
        let n = n0 + tx * TN + j;
        if (n < P.N) { y_st(m * P.ldy + P.ycol + n, biased(acc[i][j], n)); }
      }
    }
  }
}`,
  }));
}

/**
 * GEMV for up to 8 input rows (M): `tpr` invocations per weight row (a power of two,
 * 32 … 256; 256/tpr rows per workgroup), each reading vec4s of the row and the matching
 * x values, then a tree sum over the tpr partial sums.
 */
export function gemvKernel(f: WeightFormat): Kernel {
  return memo(`gemv:${f}`, () => ({
    name: `gemv_${f}`,
    buffers: buffers(f),
    params: [...MATMUL_PARAMS, ['tpr', 'u32']],
    code: `${unpack('w', f)}
${BIASED}
const NR = 8u;
var<workgroup> red: array<array<f32, NR>, 256>;

fn xs(r: u32, k: u32) -> f32 {
  if (k < P.K) { return x_ld(r * P.K + k); }
  return 0.0;
}
fn x4(r: u32, k4: u32) -> vec4<f32> {
  let k = 4u * k4;
  return vec4<f32>(xs(r, k), xs(r, k + 1u), xs(r, k + 2u), xs(r, k + 3u));
}

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
  let lane = lid % P.tpr;
  let n = (wid.y * nwg.x + wid.x) * (256u / P.tpr) + lid / P.tpr;
  var acc: array<f32, NR>;
  if (n < P.N) {
    let k4n = (P.K + 3u) / 4u;
    for (var k4 = lane; k4 < k4n; k4 += P.tpr) {
      let w = w4(n * P.ld4 + k4);
      for (var r = 0u; r < NR; r++) { if (r < P.M) { acc[r] += dot(w, x4(r, k4)); } }
    }
  }
  red[lid] = acc;
  workgroupBarrier();
  for (var s = P.tpr / 2u; s > 0u; s >>= 1u) {
    if (lane < s) {
      for (var r = 0u; r < NR; r++) { red[lid][r] += red[lid + s][r]; }
    }
    workgroupBarrier();
  }
  if (lane == 0u && n < P.N) {
    for (var r = 0u; r < NR; r++) {
      if (r < P.M) { y_st(r * P.ldy + P.ycol + n, biased(red[lid][r], n)); }
    }
  }
}`,
  }));
}

/**
 * The zero-skipping GEMV over the input-major copy Wᵀ [K, ld] of one weight part:
 * workgroup (tile, g) takes inputs g·sl … of x (sl ≤ 256), keeps the non-zero ones in
 * order (prefix sum over flags), then each invocation adds x_c·Wᵀ[c, 4j … 4j+3] for its
 * vec4 j of the tile into part[g, ·]; `sliceSumKernel` adds the slices.
 */
export function skipKernel(f: WeightFormat): Kernel {
  return memo(`skip:${f}`, () => ({
    name: `skip_gemv_${f}`,
    buffers: [
      { name: 'part', type: 'vec4<f32>', write: true },
      { name: 'x', type: 'f32' },
      { name: 'wt', type: WEIGHT_TYPE[f] },
    ],
    params: [
      ['N', 'u32'],
      ['K', 'u32'],
      ['ld4', 'u32'],
      ['sl', 'u32'],
    ],
    code: `${unpack('wt', f)}
var<workgroup> flag: array<u32, 256>;
var<workgroup> idx: array<u32, 256>;
var<workgroup> val: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>) {
  let g = wid.y;
  let c0 = g * P.sl;
  // Flags of the non-zero inputs of this slice, then their order by an inclusive scan.
  var v = 0.0;
  var nz = 0u;
  if (lid < P.sl && c0 + lid < P.K) {
    v = x_ld(c0 + lid);
    nz = select(0u, 1u, (bitcast<u32>(v) & 0x7fffffffu) != 0u);
  }
  flag[lid] = nz;
  workgroupBarrier();
  for (var off = 1u; off < 256u; off <<= 1u) {
    var s = flag[lid];
    if (lid >= off) { s += flag[lid - off]; }
    workgroupBarrier();
    flag[lid] = s;
    workgroupBarrier();
  }
  if (nz == 1u) {
    idx[flag[lid] - 1u] = c0 + lid;
    val[flag[lid] - 1u] = v;
  }
  let count = workgroupUniformLoad(&flag[255]);
  // part[g, 4j … 4j+3] = Σ over the kept inputs c of x_c·Wᵀ[c, 4j …]
  let j = wid.x * 256u + lid;
  if (4u * j < P.N) {
    var acc = vec4<f32>(0.0);
    for (var t = 0u; t < count; t++) { acc = fma(vec4<f32>(val[t]), wt4(idx[t] * P.ld4 + j), acc); }
    part_st(g * P.ld4 + j, acc);
  }
}`,
  }));
}

/** y[n] = Σ_g part[g, n] (+ bias): the sum of the zero-skipping slices. */
export const SLICE_SUM: Kernel = {
  name: 'slice_sum',
  buffers: [
    { name: 'y', type: 'f32', write: true },
    { name: 'part', type: 'f32' },
    { name: 'bias', type: 'f32' },
  ],
  params: [
    ['N', 'u32'],
    ['ld', 'u32'],
    ['slices', 'u32'],
    ['ycol', 'u32'],
    ['bcol', 'u32'],
    ['hasBias', 'u32'],
  ],
  code: `
${BIASED}
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let n = gid.x;
  if (n >= P.N) { return; }
  var s = 0.0;
  for (var g = 0u; g < P.slices; g++) { s += part_ld(g * P.ld + n); }
  y_st(P.ycol + n, biased(s, n));
}`,
};

/** A subgroup-matrix shape the adapter offers (GPUSubgroupMatrixConfig). */
export interface MatrixShape {
  M: number;
  N: number;
  K: number;
}

/**
 * GEMM on the GPU's matrix units (chromium-experimental-subgroup-matrix: tensor cores
 * through Vulkan's cooperative matrices): x and W tiles are rounded to float16 in
 * workgroup memory, products accumulate in float32. Four subgroups of `sg` invocations
 * each compute 2×2 result matrices of M×N, so a workgroup covers (4M)×(4N) outputs,
 * 2K inputs per step. Float16 inputs cost precision (about 1e-3 relative): this kernel
 * runs only when asked for (bench; ACTSPARSE_WEBGPU_MATRIX=f16), after a self-check.
 */
export function matrixGemmKernel(f: WeightFormat, shape: MatrixShape, sg: number): Kernel {
  const { M, N, K } = shape;
  const BM = 4 * M;
  const BN = 4 * N;
  const BK = 2 * K;
  const T = 4 * sg;
  return memo(`sgmat:${f}:${M}x${N}x${K}:${sg}`, () => ({
    name: `gemm_matrix_${f}_${M}x${N}x${K}`,
    enables: ['f16', 'chromium_experimental_subgroup_matrix'],
    // Offsets derive from subgroup_id: uniform per subgroup, which WGSL cannot prove.
    diagnosticsOff: ['chromium_experimental.subgroup_matrix_uniformity'],
    buffers: buffers(f),
    params: MATMUL_PARAMS,
    code: `${unpack('w', f)}
${BIASED}
const M = ${M}u; const N = ${N}u; const K = ${K}u;
const BM = ${BM}u; const BN = ${BN}u; const BK = ${BK}u;
const T = ${T}u;
var<workgroup> Xs: array<f16, ${BM * BK}>;
var<workgroup> Ws: array<f16, ${BN * BK}>;
var<workgroup> Cs: array<f32, ${BM * BN}>;

fn xs(m: u32, k: u32) -> f32 {
  if (m < P.M && k < P.K) { return x_ld(m * P.K + k); }
  return 0.0;
}
fn wval(n: u32, k4: u32) -> vec4<f32> {
  if (n < P.N && k4 < P.ld4) { return w4(n * P.ld4 + k4); }
  return vec4<f32>(0.0);
}

@compute @workgroup_size(${T})
fn main(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(subgroup_id) sg: u32) {
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
  // This subgroup's 2×2 result matrices start at row rm, column rn of the tile.
  let rm = (sg / 2u) * 2u * M;
  let rn = (sg % 2u) * 2u * N;
  var acc: array<subgroup_matrix_result<f32, N, M>, 4>;
  for (var k0 = 0u; k0 < P.K; k0 += BK) {
    // Tiles into workgroup memory as float16: Xs[m][k], Ws[n][k].
    for (var i = lid; i < BM * BK; i += T) { Xs[i] = f16(xs(m0 + i / BK, k0 + i % BK)); }
    for (var i = lid; i < BN * BK / 4u; i += T) {
      let n = i / (BK / 4u);
      let k = (i % (BK / 4u)) * 4u;
      let v = wval(n0 + n, (k0 + k) / 4u);
      let o = n * BK + k;
      Ws[o] = f16(v.x);
      Ws[o + 1u] = f16(v.y);
      Ws[o + 2u] = f16(v.z);
      Ws[o + 3u] = f16(v.w);
    }
    workgroupBarrier();
    // (Subgroups beyond 4, should the device run smaller ones, have nothing to do.)
    for (var kk = 0u; kk < BK && sg < 4u; kk += K) {
      // x rows are row-major in Xs; W rows are the columns of Wᵀ (column-major, stride BK).
      let l0 = subgroupMatrixLoad<subgroup_matrix_left<f16, K, M>>(&Xs, rm * BK + kk, false, BK);
      let l1 = subgroupMatrixLoad<subgroup_matrix_left<f16, K, M>>(&Xs, (rm + M) * BK + kk, false, BK);
      let r0 = subgroupMatrixLoad<subgroup_matrix_right<f16, N, K>>(&Ws, rn * BK + kk, true, BK);
      let r1 = subgroupMatrixLoad<subgroup_matrix_right<f16, N, K>>(&Ws, (rn + N) * BK + kk, true, BK);
      acc[0] = subgroupMatrixMultiplyAccumulate(l0, r0, acc[0]);
      acc[1] = subgroupMatrixMultiplyAccumulate(l0, r1, acc[1]);
      acc[2] = subgroupMatrixMultiplyAccumulate(l1, r0, acc[2]);
      acc[3] = subgroupMatrixMultiplyAccumulate(l1, r1, acc[3]);
    }
    workgroupBarrier();
  }
  if (sg < 4u) {
    subgroupMatrixStore(&Cs, rm * BN + rn, acc[0], false, BN);
    subgroupMatrixStore(&Cs, rm * BN + rn + N, acc[1], false, BN);
    subgroupMatrixStore(&Cs, (rm + M) * BN + rn, acc[2], false, BN);
    subgroupMatrixStore(&Cs, (rm + M) * BN + rn + N, acc[3], false, BN);
  }
  workgroupBarrier();
  for (var i = lid; i < BM * BN; i += T) {
    let m = m0 + i / BN;
    let n = n0 + i % BN;
    if (m < P.M && n < P.N) { y_st(m * P.ldy + P.ycol + n, biased(Cs[i], n)); }
  }
}`,
  }));
}
