/**
 * Every op of the WebGPU backend against the reference backend (js): the same inputs
 * on both, outputs read back and compared. Views at offsets that are not 16-byte
 * aligned, repeated (broadcast) operands, in-place and overlapping operands, packed
 * batches with sequences of length 0 and 1, and the special values (NaN, ±0, ±∞).
 * A second device binds at most 16 KiB with 256-byte alignment (as NVIDIA requires), so
 * that every split path (weights in row blocks, ops in pieces, tables in windows) runs.
 * On lavapipe (CI) this file takes about 20 s.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { bf16ToFloat, floatToBf16, floatToHalf, halfToFloat } from '../../../src/io/dtype.ts';
import { type Backend, type Buf, Seqs, type Tally } from '../../../src/tensor/backend.ts';
import { wkv4 } from '../../../src/tensor/families/wkv4.ts';
import type { UnaryOp } from '../../../src/tensor/reference.ts';
import { jsBackend } from '../../../src/tensor/select.ts';
import { rng } from '../../../src/util/random.ts';
import { testGpu } from '../../helpers/webgpu.ts';

const gpu = await testGpu();
const small = await testGpu({ maxBindingBytes: 16 << 10, offsetAlignment: 256 });

const rand = (n: number, seed: number, scale = 1) => {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => (r() * 2 - 1) * scale);
};

/** Equal within atol + rtol·|expected|; NaN only where NaN is expected. */
function close(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  label: string,
  atol = 1e-6,
  rtol = 1e-6,
) {
  assert.equal(got.length, want.length, `${label}: length`);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const a = got[i];
    const b = want[i];
    if (Number.isNaN(b) || Number.isNaN(a)) {
      assert.ok(Number.isNaN(a) && Number.isNaN(b), `${label}[${i}]: ${a} vs ${b}`);
      continue;
    }
    if (a === b) continue;
    const d = Math.abs(a - b) / (atol + rtol * Math.abs(b));
    if (!(d <= worst)) {
      worst = d;
      at = i;
    }
  }
  assert.ok(
    worst <= 1,
    `${label}: [${at}] ${got[at]} vs ${want[at]} (${worst.toFixed(2)}× the tolerance)`,
  );
}

/**
 * Runs `make` on the GPU backend and on js with the same inputs and compares the buffer
 * (or tally) it returns.
 */
async function same(
  be: Backend,
  label: string,
  make: (b: Backend) => Buf | Tally,
  atol = 1e-6,
  rtol = 1e-6,
): Promise<void> {
  const read = async (b: Backend) => {
    const r = make(b);
    return 'size' in r ? Float64Array.from(await b.readTally(r)) : await b.read(r);
  };
  close(await read(be), await read(jsBackend), label, atol, rtol);
}

// Special values every elementwise op meets.
const SPECIAL = [Number.NaN, -0, 0, Infinity, -Infinity, 1e-30, -1e-30, 100, -100, 25, -25, 0.5];
const withSpecial = (n: number, seed: number) => {
  const x = rand(n, seed, 4);
  x.set(SPECIAL, 5);
  return x;
};

for (const [label, dev] of [
  ['webgpu', gpu],
  ['webgpu, bindings of 16 KiB', small],
] as const) {
  describe(label, { skip: dev.skip }, () => {
    const be = dev.backend!;

    test('unary functions, with NaN, ±0, ±∞; views at unaligned offsets; in place', async () => {
      const ops: UnaryOp[] = [
        'sigmoid',
        'silu',
        'relu',
        'reluSquare',
        'tanh',
        'exp',
        'softplus',
        'abs',
        'neg',
      ];
      for (const op of ops) {
        await same(
          be,
          op,
          (b) => {
            const big = b.upload(withSpecial(5003, 1));
            const out = b.alloc(5003);
            b.unary(op, b.view(out, 1, 5000), b.view(big, 3, 5000));
            return out;
          },
          1e-6,
          2e-6,
        );
        await same(
          be,
          `${op} in place`,
          (b) => {
            const x = b.upload(withSpecial(777, 2));
            b.unary(op, x, x, 700);
            return x;
          },
          1e-6,
          2e-6,
        );
      }
      // relu maps −0 and NaN to +0, bit for bit.
      const x = be.upload(Float32Array.from([-0, Number.NaN, -1, 2]));
      const y = be.alloc(4);
      be.unary('relu', y, x);
      assert.deepEqual(
        [...(await be.read(y))].map((v) => Object.is(v, -0)),
        [false, false, false, false],
      );
    });

    test('binary, addMul, affine: repeated operands, views, in place, overlaps', async () => {
      for (const op of ['add', 'sub', 'mul'] as const) {
        await same(be, `${op} full`, (b) => {
          const a = b.upload(rand(6001, 3));
          const out = b.alloc(6000);
          b.binary(op, out, b.view(a, 1, 6000), b.upload(rand(6000, 4)));
          return out;
        });
        // A bias of 60 over rows, on either side; a scalar; n below the output length.
        await same(be, `${op} broadcast`, (b) => {
          const out = b.upload(rand(6000, 5));
          b.binary(op, out, b.upload(rand(6000, 6)), b.upload(rand(60, 7)));
          b.binary(op, b.view(out, 60, 3000), b.upload(rand(30, 8)), b.view(out, 60, 3000));
          b.binary(op, out, out, b.upload(rand(1, 9)), 5000);
          return out;
        });
      }
      await same(be, 'addMul', (b) => {
        const x = b.upload(rand(4800, 10));
        b.addMul(x, x, b.upload(rand(4800, 11)), b.upload(rand(48, 12)));
        b.addMul(x, b.upload(rand(16, 13)), x, b.upload(rand(4800, 14)), 4800);
        b.affine(b.view(x, 7, 100), b.view(x, 7, 100), -2.5, 0.25);
        return x;
      });
      // An output that overlaps its inputs further on (the order a loop reads them in).
      await same(be, 'overlapping views', (b) => {
        const x = b.upload(rand(5000, 15));
        b.binary('add', b.view(x, 0, 4000), b.view(x, 8, 4000), b.view(x, 900, 4000));
        b.unary('neg', b.view(x, 0, 4000), b.view(x, 3, 4000));
        b.copy(b.view(x, 5, 4000), b.view(x, 0, 4000));
        b.copy(b.view(x, 0, 3000), b.view(x, 1000, 3000));
        return x;
      });
      await same(be, 'fill, copy', (b) => {
        const x = b.alloc(5000);
        b.fill(b.view(x, 3, 4000), -1.5);
        b.copy(b.view(x, 4500, 500), b.upload(rand(500, 16)));
        return x;
      });
    });

    test('layer norm, GroupNorm, RMS norm, L2 normalisation; in place', async () => {
      for (const [rows, n] of [
        [7, 300],
        [40, 12],
        [3, 1000],
      ]) {
        await same(
          be,
          `layerNorm ${rows}x${n}`,
          (b) => {
            const x = b.upload(rand(rows * n + 1, 17, 3));
            const out = b.alloc(rows * n);
            const xv = b.view(x, 1, rows * n);
            b.layerNorm(out, xv, b.upload(rand(n, 18)), b.upload(rand(n, 19)), rows, n, 1e-5);
            b.layerNorm(xv, xv, b.upload(rand(n, 20)), b.upload(rand(n, 21)), rows, n, 1e-5);
            b.binary('add', out, out, xv);
            return out;
          },
          1e-5,
          1e-5,
        );
      }
      await same(
        be,
        'GroupNorm',
        (b) => {
          const out = b.alloc(6 * 64);
          // 4 heads of 16 per row: weights of the whole row.
          b.layerNorm(
            out,
            b.upload(rand(6 * 64, 22, 2)),
            b.upload(rand(64, 23)),
            b.upload(rand(64, 24)),
            24,
            16,
            64e-5,
          );
          return out;
        },
        1e-5,
        1e-5,
      );
      await same(
        be,
        'rmsNorm, l2Normalize',
        (b) => {
          const x = b.upload(rand(5 * 500, 25));
          const out = b.alloc(5 * 500);
          b.rmsNorm(out, x, b.upload(rand(500, 26)), 5, 500, 1e-6);
          b.l2Normalize(x, x, 10, 250, 1e-6);
          b.binary('add', out, out, x);
          return out;
        },
        1e-5,
        1e-5,
      );
    });

    test('packed batches: token shift (mixed, plain, in place), last rows, gather, appendRows', async () => {
      // Sequences of 3, 0, 1, 0 and 6 rows.
      const seqs = new Seqs([3, 0, 1, 0, 6]);
      const cols = 70;
      const n = seqs.rows * cols;
      await same(be, 'timeShiftMix', (b) => {
        const out = b.alloc(n);
        b.timeShiftMix(
          out,
          b.upload(rand(n, 27)),
          b.upload(rand(5 * cols, 28)),
          b.upload(rand(cols, 29)),
          seqs,
          cols,
        );
        return out;
      });
      await same(be, 'tokenShift in place, lastRows', (b) => {
        const x = b.upload(rand(n, 30));
        const last = b.upload(rand(5 * cols, 31));
        b.lastRows(last, x, seqs, cols);
        b.tokenShift(x, x, b.upload(rand(5 * cols, 32)), seqs, cols);
        const out = b.alloc(n + 5 * cols);
        b.copy(out, x);
        b.copy(b.view(out, n, 5 * cols), last);
        return out;
      });
      await same(be, 'gather, appendRows', (b) => {
        const table = b.upload(rand(50 * cols, 33));
        const g = b.alloc(6 * cols);
        b.gather(g, table, b.uploadIds(Int32Array.from([49, 0, 7, 7, 49, 3])), cols);
        const cap = 9;
        const cache = b.upload(rand(5 * cap * cols, 34));
        b.appendRows(
          cache,
          b.upload(rand(n, 35)),
          seqs,
          Int32Array.from([2, 9, 8, 0, 3]),
          cap,
          cols,
        );
        const out = b.alloc(6 * cols + 5 * cap * cols);
        b.copy(out, g);
        b.copy(b.view(out, 6 * cols, 5 * cap * cols), cache);
        return out;
      });
      assert.throws(
        () =>
          be.gather(be.alloc(cols), be.alloc(2 * cols), be.uploadIds(Int32Array.from([2])), cols),
        /row 2 of 2/,
      );
    });

    test('attention: causal, continuing caches, chunks of 64 keys', async () => {
      const cases = [
        [3, 8, [2, 4, 0], [5, 1, 7]],
        [2, 64, [100, 0], [1, 90]],
      ] as const;
      // With 16 KiB bindings, one sequence's cache (128 rows) must fit: heads of 8 only.
      for (const [heads, hd, starts, lens] of dev === small ? cases.slice(0, 1) : cases) {
        const d = heads * hd;
        const cap = 128;
        const seqs = new Seqs(lens);
        const rows = seqs.rows;
        const st = Int32Array.from(starts);
        await same(
          be,
          `attention ${heads}x${hd}`,
          (b) => {
            const keys = b.upload(rand(seqs.count * cap * d, 36));
            const values = b.upload(rand(seqs.count * cap * d, 37));
            b.appendRows(keys, b.upload(rand(rows * d, 38)), seqs, st, cap, d);
            b.appendRows(values, b.upload(rand(rows * d, 39)), seqs, st, cap, d);
            const out = b.alloc(rows * d);
            b.attention(
              out,
              b.upload(rand(rows * d, 40, 3)),
              keys,
              values,
              seqs,
              st,
              cap,
              heads,
              hd,
              hd ** -0.5,
            );
            return out;
          },
          1e-5,
          1e-5,
        );
      }
    });

    test('threshold (gt, ge; λ not a float32; NaN, ±0, ∞) and exact zero counts', async () => {
      for (const cmp of ['gt', 'ge'] as const) {
        for (const lambda of [0.5, 0.1, Math.fround(0.3), 1e-30, Infinity]) {
          await same(
            be,
            `threshold ${cmp} ${lambda}`,
            (b) => {
              const x = b.upload(withSpecial(6000, 41));
              b.threshold(b.view(x, 2, 5990), lambda, cmp, 5000);
              return x;
            },
            0,
            0,
          );
        }
      }
      // |x| = λ exactly: kept by ge, zeroed by gt; a zeroed −0 becomes +0.
      const x = be.upload(Float32Array.from([0.25, -0.25, -0, Number.NaN]));
      be.threshold(x, 0.25, 'ge');
      assert.deepEqual(
        [...(await be.read(x))].map((v) => (Object.is(v, -0) ? '-0' : v)),
        [0.25, -0.25, 0, 0],
      );
      await same(
        be,
        'zero counts',
        (b) => {
          const xs = withSpecial(300001, 42);
          for (let i = 0; i < xs.length; i += 3) xs[i] = i % 2 ? 0 : -0;
          const t = b.tally(3);
          const xb = b.upload(xs);
          b.tallyZeros(t, 1, xb);
          b.tallyZeros(t, 1, b.view(xb, 5, 1000));
          b.tallyZeros(t, 2, xb, 7);
          return t;
        },
        0,
        0,
      );
    });

    test('tallies: sums keep float64 precision; per-row quantiles at many widths', async () => {
      await same(
        be,
        'tallySum',
        (b) => {
          const t = b.tally(2);
          const x = b.upload(Float32Array.from(rand(200003, 43), (v, i) => v + (i % 7) * 1e4));
          b.tallySum(t, 0, x);
          b.tallySum(t, 1, b.view(x, 11, 5), 5);
          b.tallySum(t, 1, x, 100000);
          return t;
        },
        0,
        1e-12,
      );
      const qs = [0, 0.1, 0.35, 0.5, 0.9, 0.99, 1];
      // Widths below and above a workgroup, and above the rows kept in workgroup memory
      // (7424 values on lavapipe); with 16 KiB bindings a row must fit in one.
      const widths = [1, 2, 7, 256, 300, 1000, 4096, 7681, 16384];
      for (const cols of widths.filter((c) => dev !== small || c <= 3000)) {
        const rows = cols > 4096 ? 2 : 5;
        await same(
          be,
          `quantiles, rows of ${cols}`,
          (b) => {
            const xs = rand(rows * cols + 3, 44 + cols, 2);
            // Ties and zeros, as thresholded activations have.
            for (let i = 0; i < xs.length; i += 5) xs[i] = 0;
            for (let i = 1; i < xs.length; i += 7) xs[i] = 0.5;
            const t = b.tally(qs.length + 1);
            b.tallyQuantiles(t, 1, b.view(b.upload(xs), 3, rows * cols), rows, cols, qs);
            return t;
          },
          0,
          1e-6,
        );
      }
      await same(
        be,
        'quantiles of a row with NaN and ∞ (NaN sorts last)',
        (b) => {
          const t = b.tally(3);
          b.tallyQuantiles(
            t,
            0,
            b.upload(Float32Array.from([3, Number.NaN, -Infinity, 1, 2])),
            1,
            5,
            [0.5, 0.8, 1],
          );
          return t;
        },
        0,
        1e-7,
      );
    });

    test('fused loss: rows to slots in any order, misses', async () => {
      const V = 1000;
      const rows = 7;
      await same(
        be,
        'tallyNll',
        (b) => {
          const logits = rand(rows * V + 5, 45, 6);
          logits[5 + 2 * V + 17] = 40; // row 2's target is the greedy choice
          const lg = b.view(b.upload(logits), 5, rows * V);
          const targets = b.uploadIds(Int32Array.from([3, 999, 17, 0, 500, 3, 8]));
          const t = b.tally(8);
          b.tallyNll(
            t,
            lg,
            targets,
            b.uploadIds(Int32Array.from([2, 0, 2, 1, 0, 3, 2])),
            rows,
            V,
            4,
          );
          b.tallyNll(t, lg, targets, 1, rows, V);
          return t;
        },
        0,
        1e-7,
      );
      assert.throws(
        () => be.tallyNll(be.tally(1), be.alloc(V), be.uploadIds(Int32Array.from([V])), 0, 1, V),
        /target 1000/,
      );
    });

    test('matmul: GEMM tiles, GEMV of 1–8 rows, bias, f16 and bf16 weights, zero skipping', async () => {
      // (rows n, outputs N, inputs K, weight dtypes): GEMV for 1–8 rows, the small GEMM
      // tiles at their edges, the large tiles (n, N ≥ 256). Each dtype and tile size is
      // one more pipeline to compile (seconds each on lavapipe), so not every combination.
      const shapes = [
        [1, 37, 53, ['f32', 'f16', 'bf16']],
        [2, 300, 64, ['f32']],
        [5, 64, 100, ['f32', 'bf16']],
        [8, 5, 7, ['f32']],
        [9, 130, 70, ['f32', 'f16', 'bf16']],
        [33, 17, 301, ['f32']],
        [300, 260, 33, ['f32']],
      ] as const;
      for (const [n, N, K, dtypes] of shapes) {
        for (const dtype of dtypes) {
          // Weights exact in their dtype, as a checkpoint stores them.
          const round =
            dtype === 'f16'
              ? (v: number) => halfToFloat(floatToHalf(v))
              : dtype === 'bf16'
                ? (v: number) => bf16ToFloat(floatToBf16(v))
                : (v: number) => v;
          const wh = rand(N * K, 46 + n).map(round);
          for (const bias of [false, true]) {
            await same(
              be,
              `matmul ${n}x${K}→${N} ${dtype}${bias ? ' bias' : ''}`,
              (b) => {
                const w = b.prepare(wh, N, K, { dtype });
                const y = b.upload(rand(n * N + 3, 47));
                const x = b.view(b.upload(rand(n * K + 1, 48)), 1, n * K);
                b.matmul(b.view(y, 3, n * N), w, x, n, bias ? { bias: b.upload(rand(N, 49)) } : {});
                return y;
              },
              2e-6 * Math.sqrt(K),
              1e-5,
            );
          }
        }
      }
      // Zero skipping for one row: a few slices of K (K = 1000) and one (K = 40).
      for (const [N, K] of [
        [300, 1000],
        [1100, 40],
      ]) {
        for (const dtype of ['f32', 'bf16'] as const) {
          const wh = rand(N * K, 50).map(
            dtype === 'bf16' ? (v) => bf16ToFloat(floatToBf16(v)) : (v) => v,
          );
          const xs = rand(K, 51);
          for (let i = 0; i < K; i++) if (i % 3) xs[i] = i % 2 ? 0 : -0;
          await same(
            be,
            `zero-skipping GEMV ${K}→${N} ${dtype}`,
            (b) => {
              const w = b.prepare(wh, N, K, { sparse: true, dtype });
              const y = b.alloc(N);
              b.matmul(y, w, b.upload(xs), 1, { skipZeros: true, bias: b.upload(rand(N, 52)) });
              return y;
            },
            1e-5,
            1e-5,
          );
        }
      }
    });

    test('the wkv4 family over a packed batch (lengths 0 and 1)', async () => {
      const d = 70;
      const seqs = new Seqs([5, 0, 1, 9]);
      const n = seqs.rows * d;
      await same(
        be,
        'wkv4',
        (b) => {
          const st = (seed: number, scale: number) => b.upload(rand(4 * d, seed, scale));
          const args = {
            out: b.alloc(n),
            k: b.upload(rand(n, 53, 3)),
            v: b.upload(rand(n, 54)),
            r: b.upload(rand(n, 55)),
            w: b.upload(rand(d, 56).map((v) => -Math.exp(v))),
            u: b.upload(rand(d, 57)),
            aa: st(58, 1),
            bb: b.upload(rand(4 * d, 59).map((v) => Math.abs(v) + 0.1)),
            pp: st(60, 2),
            seqs,
            d,
          };
          b.run(wkv4, args);
          const out = b.alloc(n + 3 * 4 * d);
          b.copy(out, args.out);
          b.copy(b.view(out, n, 4 * d), args.aa);
          b.copy(b.view(out, n + 4 * d, 4 * d), args.bb);
          b.copy(b.view(out, n + 8 * d, 4 * d), args.pp);
          return out;
        },
        1e-5,
        1e-5,
      );
    });
  });
}
