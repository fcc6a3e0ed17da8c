/**
 * Checking the cost model against reality: the `cpu` profile's predicted step-mode
 * latency for the model `actsparse bench` timed, beside the decode speed it measured.
 */
import { UserError } from '../errors.ts';
import type { BenchResult } from '../formats/bench.ts';
import { estimate } from './estimate.ts';
import type { CostInput } from './inputs.ts';
import { type ModelShape, shapeFromFacts } from './ops.ts';
import type { Evidence, Mapping, Profile } from './profile.ts';

export interface BenchCheck {
  /** The model the bench decoded. */
  model: string;
  shape: string;
  /** Fraction of zeros the bench's thresholds gave, applied at every site. */
  zeros: number;
  /** Evidence labels: the sparse prediction is at best derived (hardware/cost.ts sparseSpeedup). */
  predicted: {
    dense: number;
    sparse: number;
    evidence: Evidence | null;
    sparseEvidence: Evidence | null;
  };
  /** Seconds per token, from the measured tokens/s (median). */
  measured: { dense: number; sparse: number };
  /** Weight bytes per token: this model's count and the bench's. */
  weightBytes: { model: number; bench: number };
}

/** Predicts the bench's own decode (its shape, its measured zeros at every site). */
export function benchCheck(
  profile: Profile,
  mapping: Mapping,
  bench: BenchResult,
): BenchCheck | null {
  const mb = bench.model;
  if (!mb) return null;
  let shape: ModelShape;
  if (mb.facts) {
    shape = shapeFromFacts(mb.facts, 'bench model', []);
  } else {
    // Older bench files: "LxD (ffn F, vocab V)", RWKV-4.
    const s = /^(\d+)x(\d+) \(ffn (\d+), vocab (\d+)\)/.exec(mb.shape);
    if (!s) throw new UserError(`bench model shape "${mb.shape}": expected "LxD (ffn F, vocab V)"`);
    const [nLayer, nEmbd, nFfn, nVocab] = s.slice(1).map(Number);
    shape = shapeFromFacts(
      { architecture: 'rwkv4', nLayer, nEmbd, nVocab, config: { nFfn } },
      'bench model',
      [],
    );
  }
  const { nLayer, nEmbd, nVocab } = shape;
  const input: CostInput = {
    source: `bench model: ${mb.source}`,
    shape,
    sparse: new Float64Array(nLayer * shape.sites.length).fill(mb.measuredZeros),
    natural: null,
    notes: [],
  };
  const e = estimate(input, profile, mapping);
  const lat = (i: number) => e.scenarios[i].latency?.total;
  const dense = lat(0);
  const sparse = lat(e.scenarios.length - 1);
  if (!dense || !sparse) return null;
  const perBlock = shape.sites.reduce((a, x) => a + x.rows * x.cols, 0);
  return {
    model: mb.source,
    shape: mb.shape,
    zeros: mb.measuredZeros,
    predicted: {
      dense: dense.value,
      sparse: sparse.value,
      evidence: dense.evidence,
      sparseEvidence: sparse.evidence,
    },
    measured: { dense: 1 / mb.decodeDense.median, sparse: 1 / mb.decodeSparse.median },
    weightBytes: {
      model: ((nLayer * perBlock + nVocab * nEmbd) * e.resolved.weightBits) / 8,
      bench: mb.weightBytesPerToken,
    },
  };
}
