/**
 * The architectures actsparse runs, one entry each (as transformers.js's
 * MODEL_TYPE_MAPPING): how to recognise a checkpoint from its tensor names (as
 * web-rwkv's Loader::info does), load it, and make random weights of a shape (for
 * `bench`, tests and `hw`'s op counts). Adding an architecture adds its model file, its
 * kernel family and one entry here.
 */
import { UserError } from '../errors.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import { memoryCheckpoint, zeroCheckpoint } from '../io/memory.ts';
import type { Backend } from '../tensor/backend.ts';
import { conv1d } from '../tensor/families/conv1d.ts';
import { selectiveScan } from '../tensor/families/selective-scan.ts';
import { ssd } from '../tensor/families/ssd.ts';
import { wkv4 } from '../tensor/families/wkv4.ts';
import { wkv5 } from '../tensor/families/wkv5.ts';
import { wkv6 } from '../tensor/families/wkv6.ts';
import { wkv7 } from '../tensor/families/wkv7.ts';
import { Mamba } from './mamba.ts';
import { Mamba2 } from './mamba2.ts';
import type { LanguageModel } from './model.ts';
import { Opt } from './opt.ts';
import {
  mamba2Specs,
  mambaSpecs,
  materialize,
  optSpecs,
  randomOpt,
  randomRwkv4,
  randomRwkv7,
  rwkv4Specs,
  rwkv5Specs,
  rwkv6Specs,
  rwkv7Specs,
} from './random.ts';
import { Rwkv4 } from './rwkv4.ts';
import { Rwkv5 } from './rwkv5.ts';
import { Rwkv6 } from './rwkv6.ts';
import { Rwkv7 } from './rwkv7.ts';

/**
 * Dimensions for random weights: the three every architecture has, plus any of its
 * own config fields (a model's `config`, as thresholds files record it, rebuilds the
 * same shapes); missing ones take the architecture's defaults (e.g. nFfn = 4·nEmbd).
 */
export interface ArchShape {
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  [field: string]: unknown;
}

export interface Architecture {
  /** Id recorded in thresholds and results files, e.g. `rwkv4`. */
  readonly name: string;
  /** For people, e.g. `RWKV-4`. */
  readonly label: string;
  /**
   * The kernel families its model runs (`backend.run`), by name: a backend without one
   * of them cannot run it (`openBackend` passes over WebGPU then).
   */
  readonly families: readonly string[];
  /** Whether the checkpoint's tensor names are this architecture's. */
  detect(ckpt: Checkpoint): boolean;
  load(ckpt: Checkpoint, backend: Backend, opts?: { sparse?: boolean }): LanguageModel;
  /** Random weights of this shape (a model's `config`, or dims and defaults), with a trained model's magnitudes. */
  random(shape: ArchShape, seed?: number): Checkpoint;
  /** The same tensors as zeros made on demand: to run the model's code without its weights (`hw`). */
  skeleton(shape: ArchShape): Checkpoint;
}

const has = (ckpt: Checkpoint, n: string) => ckpt.tensors.has(n);
/** A numeric config field, or undefined for the default. */
const num = (v: unknown): number | undefined => (typeof v === 'number' ? v : undefined);
const rwkv4Shape = (s: ArchShape) => ({
  nLayer: s.nLayer,
  nEmbd: s.nEmbd,
  nVocab: s.nVocab,
  nFfn: num(s.nFfn),
});
const rwkv7Shape = (s: ArchShape) => ({
  nLayer: s.nLayer,
  nEmbd: s.nEmbd,
  nVocab: s.nVocab,
  headSize: num(s.headSize),
  nFfn: num(s.nFfn),
  wLora: num(s.wLora),
  aLora: num(s.aLora),
  vLora: num(s.vLora),
  gLora: num(s.gLora),
});
const bool = (v: unknown): boolean | undefined => (typeof v === 'boolean' ? v : undefined);
const rwkv5Shape = (s: ArchShape) => ({
  ...rwkv4Shape(s),
  dimAtt: num(s.dimAtt),
  headSize: num(s.headSize),
  gate: bool(s.gate),
  perChannel: bool(s.perChannel),
});
const rwkv6Shape = (s: ArchShape) => ({
  ...rwkv4Shape(s),
  dimAtt: num(s.dimAtt),
  headSize: num(s.headSize),
  maaLora: num(s.maaLora),
  decayLora: num(s.decayLora),
});
const optShape = (s: ArchShape) => ({
  nLayer: s.nLayer,
  nEmbd: s.nEmbd,
  nVocab: s.nVocab,
  nHead: num(s.nHead),
  nFfn: num(s.nFfn),
  nPositions: num(s.nPositions),
  nProj: num(s.nProj),
  preLN: bool(s.preLN),
  lnAffine: bool(s.lnAffine),
  bias: bool(s.bias),
  tied: bool(s.tied),
});
// Mamba and Mamba-2: a model's own `config` (MambaConfig, Mamba2Config) rebuilds its shape.
const mambaShape = (s: ArchShape) => ({
  nLayer: s.nLayer,
  nEmbd: s.nEmbd,
  nVocab: s.nVocab,
  nInner: num(s.nInner),
  nState: num(s.nState),
  dtRank: num(s.dtRank),
  convKernel: num(s.convKernel),
  bias: bool(s.bias),
  convBias: bool(s.convBias),
  eps: num(s.eps),
  tied: bool(s.tied),
});
const mamba2Shape = (s: ArchShape) => ({
  nLayer: s.nLayer,
  nEmbd: s.nEmbd,
  nVocab: s.nVocab,
  nInner: num(s.nInner),
  nHead: num(s.nHead),
  headDim: num(s.headDim),
  nGroups: num(s.nGroups),
  nState: num(s.nState),
  convKernel: num(s.convKernel),
  bias: bool(s.bias),
  convBias: bool(s.convBias),
  eps: num(s.eps),
  dtMin: num(s.dtMin),
  dtMax: num(s.dtMax),
  tied: bool(s.tied),
});
const mambaA0 = 'backbone.layers.0.mixer.A_log';
const mamba2Marks = ['backbone.layers.0.mixer.dt_bias', 'backbone.layers.0.mixer.norm.weight'];

/** In detection order: later RWKV versions share names with earlier ones. */
export const ARCHITECTURES: readonly Architecture[] = [
  {
    name: 'opt',
    label: 'OPT',
    families: [],
    // OPTForCausalLM names; OPTModel checkpoints drop the `model.` prefix.
    detect: (c) =>
      has(c, 'model.decoder.embed_tokens.weight') || has(c, 'decoder.embed_tokens.weight'),
    load: (c, be, o) => Opt.load(c, be, o),
    random: (s, seed = 1) => {
      const { tensors, config } = randomOpt({ ...optShape(s), seed });
      return memoryCheckpoint(tensors, `<random opt ${s.nLayer}x${s.nEmbd}>`, { config });
    },
    skeleton: (s) => {
      const { specs, config } = optSpecs(optShape(s));
      return zeroCheckpoint(specs, `<opt ${s.nLayer}x${s.nEmbd}>`, { config });
    },
  },
  {
    name: 'rwkv4',
    label: 'RWKV-4',
    families: [wkv4.name],
    detect: (c) =>
      has(c, 'blocks.0.att.time_first') &&
      has(c, 'blocks.0.att.key.weight') &&
      !has(c, 'blocks.0.att.ln_x.weight'),
    load: (c, be, o) => Rwkv4.load(c, be, o),
    random: (s, seed = 1) =>
      memoryCheckpoint(
        randomRwkv4({ ...rwkv4Shape(s), seed }),
        `<random rwkv4 ${s.nLayer}x${s.nEmbd}>`,
      ),
    skeleton: (s) => zeroCheckpoint(rwkv4Specs(rwkv4Shape(s)), `<rwkv4 ${s.nLayer}x${s.nEmbd}>`),
  },
  {
    name: 'rwkv5',
    label: 'RWKV-5',
    families: [wkv5.name],
    // GroupNorm ln_x and a time_decay (RWKV-7 has w0), without RWKV-6's time_maa.
    detect: (c) =>
      has(c, 'blocks.0.att.ln_x.weight') &&
      has(c, 'blocks.0.att.time_decay') &&
      !has(c, 'blocks.0.att.time_maa_x'),
    load: (c, be, o) => Rwkv5.load(c, be, o),
    random: (s, seed = 1) =>
      memoryCheckpoint(
        materialize(rwkv5Specs({ ...rwkv5Shape(s), seed })),
        `<random rwkv5 ${s.nLayer}x${s.nEmbd}>`,
      ),
    skeleton: (s) => zeroCheckpoint(rwkv5Specs(rwkv5Shape(s)), `<rwkv5 ${s.nLayer}x${s.nEmbd}>`),
  },
  {
    name: 'rwkv6',
    label: 'RWKV-6',
    families: [wkv6.name],
    detect: (c) => has(c, 'blocks.0.att.time_maa_x') && has(c, 'blocks.0.att.time_faaaa'),
    load: (c, be, o) => Rwkv6.load(c, be, o),
    random: (s, seed = 1) =>
      memoryCheckpoint(
        materialize(rwkv6Specs({ ...rwkv6Shape(s), seed })),
        `<random rwkv6 ${s.nLayer}x${s.nEmbd}>`,
      ),
    skeleton: (s) => zeroCheckpoint(rwkv6Specs(rwkv6Shape(s)), `<rwkv6 ${s.nLayer}x${s.nEmbd}>`),
  },
  {
    name: 'rwkv7',
    label: 'RWKV-7',
    families: [wkv7.name],
    // x070 names (rwkv.cpp files: x_rwkvag, split by the reader); DeepEmbed is another model.
    detect: (c) =>
      has(c, 'emb.weight') &&
      (has(c, 'blocks.0.att.x_r') ||
        has(c, 'blocks.0.att.a0') ||
        has(c, 'blocks.0.att.x_rwkvag')) &&
      !has(c, 'blocks.0.ffn.s_emb.weight'),
    load: (c, be, o) => Rwkv7.load(c, be, o),
    random: (s, seed = 1) =>
      memoryCheckpoint(
        randomRwkv7({ ...rwkv7Shape(s), seed }),
        `<random rwkv7 ${s.nLayer}x${s.nEmbd}>`,
      ),
    skeleton: (s) => zeroCheckpoint(rwkv7Specs(rwkv7Shape(s)), `<rwkv7 ${s.nLayer}x${s.nEmbd}>`),
  },
  {
    name: 'mamba',
    label: 'Mamba',
    // MambaForCausalLM names; Mamba-2 adds dt_bias and the gated norm.
    detect: (c) => has(c, mambaA0) && !mamba2Marks.some((n) => has(c, n)),
    load: (c, be, o) => Mamba.load(c, be, o),
    families: [conv1d.name, selectiveScan.name],
    random: (s, seed = 1) => {
      const { specs, config } = mambaSpecs({ ...mambaShape(s), seed });
      return memoryCheckpoint(materialize(specs), `<random mamba ${s.nLayer}x${s.nEmbd}>`, {
        config,
      });
    },
    skeleton: (s) => {
      const { specs, config } = mambaSpecs(mambaShape(s));
      return zeroCheckpoint(specs, `<mamba ${s.nLayer}x${s.nEmbd}>`, { config });
    },
  },
  {
    name: 'mamba2',
    label: 'Mamba-2',
    detect: (c) => has(c, mambaA0) && mamba2Marks.some((n) => has(c, n)),
    load: (c, be, o) => Mamba2.load(c, be, o),
    families: [conv1d.name, ssd.name],
    random: (s, seed = 1) => {
      const { specs, config } = mamba2Specs({ ...mamba2Shape(s), seed });
      return memoryCheckpoint(materialize(specs), `<random mamba2 ${s.nLayer}x${s.nEmbd}>`, {
        config,
      });
    },
    skeleton: (s) => {
      const { specs, config } = mamba2Specs(mamba2Shape(s));
      return zeroCheckpoint(specs, `<mamba2 ${s.nLayer}x${s.nEmbd}>`, { config });
    },
  },
];

/** Recognised from tensor names but not runnable: its name, and what it is (for the error). */
function knownUnsupported(ckpt: Checkpoint): { name: string; what: string } | null {
  const h = (n: string) => has(ckpt, n);
  const notYet = (name: string) => ({
    name,
    what: `${name.toUpperCase()}, which actsparse cannot run yet (${ARCHITECTURES.map((a) => a.label).join(', ')} are supported)`,
  });
  // RWKV-LM's RWKV-v8 toys (260123_reverse_L2*.pth): e.weight, rwkvN.*, rosaN.*, ffnN.*.
  if (h('e.weight') && [...ckpt.tensors.keys()].some((n) => /^rwkv\d+\.r_k$/.test(n))) {
    return {
      name: 'rwkv7-rosa-toy',
      what:
        'an RWKV-7 + ROSA toy from RWKV-LM’s RWKV-v8 experiments (digit reversal), not an RWKV-7 language model: ' +
        'its own tensor names (e.weight, rwkvN.*, rosaN.*, ffnN.*, lno, o), three layer norms per layer and a ' +
        'ROSA suffix-automaton branch, which actsparse has no model for',
    };
  }
  if (!h('emb.weight') && !h('blocks.0.ln1.weight')) return null;
  if (h('blocks.0.ffn.s_emb.weight')) return notYet('rwkv7-deepembed');
  return null;
}

/** The architecture's entry by name (`rwkv4`, `opt`, …), or a clear error. */
export function architecture(name: string): Architecture {
  const a = ARCHITECTURES.find((x) => x.name === name);
  if (!a) {
    throw new UserError(
      `unknown architecture "${name}"`,
      `Known: ${ARCHITECTURES.map((x) => x.name).join(', ')}.`,
    );
  }
  return a;
}

/** The architecture name from tensor names and shapes, or 'unknown'. */
export function detectArchitecture(ckpt: Checkpoint): string {
  return (
    ARCHITECTURES.find((a) => a.detect(ckpt))?.name ?? knownUnsupported(ckpt)?.name ?? 'unknown'
  );
}

/** The architecture whose tensor names the checkpoint has, or null. */
export function detectEntry(ckpt: Checkpoint): Architecture | null {
  return ARCHITECTURES.find((a) => a.detect(ckpt)) ?? null;
}

export function loadModel(
  ckpt: Checkpoint,
  backend: Backend,
  opts: { sparse?: boolean } = {},
): LanguageModel {
  const entry = ARCHITECTURES.find((a) => a.detect(ckpt));
  if (entry) return entry.load(ckpt, backend, opts);
  const other = knownUnsupported(ckpt);
  if (other) {
    throw new UserError(
      `${ckpt.path} is ${other.what}`,
      '`actsparse info` and `convert` still work on it.',
    );
  }
  throw new UserError(
    `${ckpt.path}: cannot tell the architecture from its ${ckpt.tensors.size} tensors`,
    'Expected RWKV (emb.weight, blocks.N.…), OPT (model.decoder.…) or Mamba (backbone.layers.N.mixer.…) names; `actsparse info` lists them.',
  );
}
