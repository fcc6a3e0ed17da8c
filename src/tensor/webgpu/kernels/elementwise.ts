/**
 * Elementwise kernels: unary functions, binary ops and addMul with repeated (broadcast)
 * operands, affine, copy, and the sites' threshold and zero count. All are grid-stride
 * loops over the n elements of one piece (runtime.ts `pieceElems`); an operand shorter
 * than n is bound whole and indexed (base + i) mod its length, as reference.ts repeats it.
 */
import type { UnaryOp } from '../../reference.ts';
import { GRID, type Kernel } from '../runtime.ts';

/** y = f(x) in WGSL, as reference.ts defines f (NaN handling included). */
const UNARY: Record<UnaryOp, string> = {
  sigmoid: 'y = 1.0 / (1.0 + exp(-x));',
  silu: 'y = x / (1.0 + exp(-x));',
  // NaN and −0 become +0, as the reference's `x > 0 ? x : 0`.
  relu: 'y = select(0.0, x, x > 0.0);',
  // (x + |x|)/2 squared: NaN stays NaN, as in the reference.
  reluSquare: 'let v = (x + abs(x)) * 0.5; y = v * v;',
  // tanh from exp(−2|x|), finite for every |x| (no overflow of e^2x).
  tanh: 'let e = exp(-2.0 * abs(x)); let t = (1.0 - e) / (1.0 + e); y = select(-t, t, x >= 0.0);',
  exp: 'y = exp(x);',
  // log(1 + e^x), linear above 20 (torch's threshold); e − e²/2 where 1 + e rounds to 1.
  softplus:
    'let e = exp(x); y = select(select(log(1.0 + e), e * (1.0 - 0.5 * e), e < 1e-4), x, x > 20.0);',
  abs: 'y = abs(x);',
  neg: 'y = -x;',
};

/** How an input is indexed: `f` full length (index i), `r` repeated ((base + i) mod len). */
export type Reach = 'f' | 'r';

const cache = new Map<string, Kernel>();
function memo(key: string, make: () => Kernel): Kernel {
  let k = cache.get(key);
  if (!k) {
    k = make();
    cache.set(key, k);
  }
  return k;
}

/** WGSL reading input `name` at element i of the piece. */
function at(name: string, reach: Reach): string {
  return reach === 'f' ? `${name}_ld(i)` : `${name}_ld((P.base + i) % P.${name}_n)`;
}

export function unaryKernel(op: UnaryOp): Kernel {
  return memo(`unary:${op}`, () => ({
    name: `unary_${op}`,
    buffers: [
      { name: 'out', type: 'f32', write: true },
      { name: 'x', type: 'f32' },
    ],
    params: [['n', 'u32']],
    code: `${GRID}
  for (var i = gid.x; i < P.n; i += stride) {
    let x = x_ld(i);
    var y: f32;
    ${UNARY[op]}
    out_st(i, y);
  }
}`,
  }));
}

/** out = a ∘ b (add, sub, mul); `reach` says how a and b are indexed. */
export function binaryKernel(op: 'add' | 'sub' | 'mul', reach: `${Reach}${Reach}`): Kernel {
  const sym = op === 'add' ? '+' : op === 'sub' ? '-' : '*';
  return memo(`binary:${op}:${reach}`, () => ({
    name: `binary_${op}_${reach}`,
    buffers: [
      { name: 'out', type: 'f32', write: true },
      { name: 'a', type: 'f32' },
      { name: 'b', type: 'f32' },
    ],
    params: [
      ['n', 'u32'],
      ['base', 'u32'],
      ['a_n', 'u32'],
      ['b_n', 'u32'],
    ],
    code: `${GRID}
  for (var i = gid.x; i < P.n; i += stride) {
    out_st(i, ${at('a', reach[0] as Reach)} ${sym} ${at('b', reach[1] as Reach)});
  }
}`,
  }));
}

/** out = a + b·c (a gated residual). */
export function addMulKernel(reach: `${Reach}${Reach}${Reach}`): Kernel {
  const [ra, rb, rc] = reach.split('') as Reach[];
  return memo(`addMul:${reach}`, () => ({
    name: `addMul_${reach}`,
    buffers: [
      { name: 'out', type: 'f32', write: true },
      { name: 'a', type: 'f32' },
      { name: 'b', type: 'f32' },
      { name: 'c', type: 'f32' },
    ],
    params: [
      ['n', 'u32'],
      ['base', 'u32'],
      ['a_n', 'u32'],
      ['b_n', 'u32'],
      ['c_n', 'u32'],
    ],
    code: `${GRID}
  for (var i = gid.x; i < P.n; i += stride) {
    out_st(i, ${at('a', ra)} + ${at('b', rb)} * ${at('c', rc)});
  }
}`,
  }));
}

/** out = x·scale + shift */
export const AFFINE: Kernel = {
  name: 'affine',
  buffers: [
    { name: 'out', type: 'f32', write: true },
    { name: 'x', type: 'f32' },
  ],
  params: [
    ['n', 'u32'],
    ['scale', 'f32'],
    ['shift', 'f32'],
  ],
  code: `${GRID}
  for (var i = gid.x; i < P.n; i += stride) { out_st(i, x_ld(i) * P.scale + P.shift); }
}`,
};

/** out = x (ranges that do not overlap). */
export const COPY: Kernel = {
  name: 'copy',
  buffers: [
    { name: 'out', type: 'f32', write: true },
    { name: 'x', type: 'f32' },
  ],
  params: [['n', 'u32']],
  code: `${GRID}
  for (var i = gid.x; i < P.n; i += stride) { out_st(i, x_ld(i)); }
}`,
};

/**
 * The site threshold in place, on the bit patterns so that it is exact whatever the
 * compiler assumes about NaN: with a = bits(|x|) and l = bits(λ) (λ > 0), `gt` keeps
 * a > l, `ge` keeps a ≥ l, and a NaN (a > bits(∞)) is zeroed. For non-negative floats the
 * order of bit patterns is the order of values.
 */
export function thresholdKernel(comparison: 'gt' | 'ge'): Kernel {
  const keep = comparison === 'gt' ? 'a > P.lambda' : 'a >= P.lambda';
  return memo(`threshold:${comparison}`, () => ({
    name: `threshold_${comparison}`,
    buffers: [{ name: 'x', type: 'f32', write: true }],
    params: [
      ['n', 'u32'],
      ['lambda', 'u32'],
    ],
    code: `${GRID}
  for (var i = gid.x; i < P.n; i += stride) {
    let a = bitcast<u32>(x_ld(i)) & 0x7fffffffu;
    if (!(${keep} && a <= 0x7f800000u)) { x_st(i, 0.0); }
  }
}`,
  }));
}
