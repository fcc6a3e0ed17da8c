/**
 * Cost formulas (HARDWARE.md "Formulas"): energy and latency per token of every linear
 * layer, event-driven or on a conventional dense engine, plus the element-wise work of
 * the op table. Pure functions of (profile, mapping, densities); nothing here reads
 * files or prints.
 *
 * Honesty rules: a term whose constant is null is either refused (the synaptic work
 * sparsity acts on: without it there is nothing to compare) or left out and listed as
 * "not costed" — never counted as zero. Every figure carries the weakest evidence label
 * of the constants behind it.
 */
import { UserError } from '../errors.ts';
import { ARITH_OPS, type ArithOp, type OpGroup } from './ops.ts';
import {
  type Constant,
  type Evidence,
  type Mapping,
  PRECISION_BITS,
  type Precision,
  type Profile,
  type Quantity,
  weaker,
} from './profile.ts';

export const CATEGORIES = [
  'compute',
  'weightMemory',
  'stateMemory',
  'eventsControl',
  'network',
  'static',
] as const;
export type Category = (typeof CATEGORIES)[number];

/** Null constants met by a term that cannot be left out. */
export class MissingConstant extends Error {
  constructor(
    readonly constants: string[],
    readonly what: string,
    readonly quantity: Quantity,
  ) {
    super(`constant ${constants.join(', ')} is null`);
  }
}

/**
 * Reads profile constants, remembering the weakest evidence among those read and every
 * null one met (read as NaN, so that one evaluation names all of a term's gaps).
 */
export class Reader {
  evidence: Evidence = 'measured';
  readonly missing: string[] = [];
  constructor(private readonly constants: Record<string, Constant>) {}

  has(name: string): boolean {
    return this.constants[name]?.value != null;
  }

  get(name: string): number {
    const c = this.constants[name];
    if (!c) throw new Error(`cost model bug: no constant ${name}`);
    if (c.value === null) {
      if (!this.missing.includes(name)) this.missing.push(name);
      return Number.NaN;
    }
    this.evidence = weaker(this.evidence, c.evidence ?? 'assumed');
    return c.value;
  }

  /** A time constant in seconds: cycles ÷ clock, or nanoseconds. */
  seconds(name: string): number {
    const v = this.get(name);
    const unit = this.constants[name].unit;
    if (unit === 'cycle') return v / (this.get('clock') * 1e6);
    if (unit === 'ns') return v * 1e-9;
    throw new Error(`cost model bug: ${name} in ${unit} is not a time`);
  }
}

export interface Term {
  group: string;
  category: Category;
  /** pJ for energy, seconds for latency. */
  value: number;
  evidence: Evidence;
}

export interface NotCosted {
  quantity: Quantity;
  group: string;
  category: Category;
  what: string;
  constant: string;
}

/** The terms of one quantity (energy or latency) for one scenario. */
export class Ledger {
  readonly terms: Term[] = [];
  readonly notCosted: NotCosted[] = [];
  constructor(
    readonly quantity: Quantity,
    readonly constants: Record<string, Constant>,
  ) {}

  /**
   * Adds one term and returns its value. A `required` term lets a null constant
   * propagate (the caller refuses); an optional one is left out and listed.
   */
  add(
    group: string,
    category: Category,
    what: string,
    fn: (k: Reader) => number,
    required = false,
  ): number {
    const r = this.peek(group, category, what, fn, required);
    if (!r) return 0;
    this.terms.push({ group, category, value: r.value, evidence: r.evidence });
    return r.value;
  }

  /** Evaluates a term without adding it (for bounds); null when not costed. */
  peek(
    group: string,
    category: Category,
    what: string,
    fn: (k: Reader) => number,
    required = false,
  ): { value: number; evidence: Evidence } | null {
    const k = new Reader(this.constants);
    const value = fn(k);
    if (k.missing.length === 0) return { value, evidence: k.evidence };
    if (required) throw new MissingConstant(k.missing, what, this.quantity);
    for (const c of k.missing) this.miss(group, category, what, c);
    return null;
  }

  miss(group: string, category: Category, what: string, constant: string): void {
    this.notCosted.push({ quantity: this.quantity, group, category, what, constant });
  }
}

// ------------------------------------------------------------------ mapping

const WIDTH: Precision[] = ['int8', 'fp16', 'fp32'];

/** The mapping with its choices resolved against the profile. */
export interface Resolved {
  mapping: Mapping;
  weightBits: number;
  activationBits: number;
  /** Arithmetic runs at the wider of the weight and activation precisions. */
  arithmetic: Precision;
  /** Set when the profile fixes the weight width (this CPU keeps float32). */
  weightBitsNote: string | null;
}

export function resolveMapping(profile: Profile, mapping: Mapping): Resolved {
  const fixed = profile.constants.weightBits?.value ?? null;
  const weightBits = fixed ?? PRECISION_BITS[mapping.weightPrecision];
  // A fixed width names its precision: 32 → fp32, 16 → fp16, 8 → int8.
  const weightPrecision =
    fixed === null
      ? mapping.weightPrecision
      : (WIDTH.find((w) => PRECISION_BITS[w] >= fixed) ?? 'fp32');
  const widest = Math.max(
    WIDTH.indexOf(weightPrecision),
    WIDTH.indexOf(mapping.activationPrecision),
  );
  const arithmetic = WIDTH[widest];
  return {
    mapping,
    weightBits,
    activationBits: PRECISION_BITS[mapping.activationPrecision],
    arithmetic,
    weightBitsNote:
      fixed !== null && fixed !== PRECISION_BITS[mapping.weightPrecision]
        ? `weights ${fixed}-bit as the profile fixes them (weightBits), not the mapping's ${mapping.weightPrecision}`
        : null,
  };
}

/** C for a layer: per-site override, a fixed count, or as many cores as its weights fill. */
export function coresFor(m: Resolved, id: string, nIn: number, nOut: number): number {
  const over = m.mapping.coresPerSite[id];
  if (over !== undefined) return over;
  if (m.mapping.cores !== 'fit') return m.mapping.cores;
  return Math.max(1, Math.ceil((nIn * nOut * m.weightBits) / 8 / m.mapping.coreWeightBytes));
}

// ------------------------------------------------------------------ linear layers

/** One linear layer for one token. */
export interface LinearLayer {
  /** Breakdown row: the site id, or `head`. */
  group: string;
  nIn: number;
  nOut: number;
  /** d: fraction of non-zero inputs (events = d·N_in). */
  density: number;
  /** d_out: fraction of outputs that become events. */
  outDensity: number;
  /** The outputs are a site's input events; their transport is charged at that site. */
  outputToSite: boolean;
  /** C: cores holding the layer (event-driven). */
  cores: number;
  /** A conventional engine runs its zero-skipping kernel here (thresholded sites). */
  sparseKernel: boolean;
}

/** Words of memory per neuron state value. */
function stateWords(k: Reader, m: Resolved): number {
  return Math.ceil(m.activationBits / k.get('memoryWordBits'));
}

/**
 * Event-driven energy (pJ), HARDWARE.md:
 *   E = n·C·E_event_in + n·N_out·(E_weight_read/p + E_mul + E_add)
 *     + ceil(n/G)·N_out·(E_state_read + E_state_write) + N_out·E_neuron
 *     + d_out·N_out·E_event_out + network + external traffic   (+ static, added by the caller)
 * with p = memory word bits / weight bits. Simplifications: n is the expected event count
 * (ceil applied to it); an event reaching C cores costs C dispatches and C·hops network
 * crossings; the external share of weight reads replaces the on-chip read (as in SENSIM's
 * miss rate); a combined per-synapse energy (Loihi) includes the weight read.
 */
export function eventDrivenEnergy(E: Ledger, m: Resolved, l: LinearLayer): void {
  const g = l.group;
  const n = l.density * l.nIn;
  const syn = n * l.nOut;
  const s = m.mapping.externalWeightShare;
  const a = m.arithmetic;
  if (E.constants.synapse?.value != null) {
    E.add(g, 'compute', 'synaptic ops n·N_out·E_synapse', (k) => syn * k.get('synapse'), true);
  } else {
    E.add(
      g,
      'compute',
      `synaptic MACs n·N_out·(E_mul + E_add) at ${a}`,
      (k) => syn * (k.get(`mul.${a}`) + k.get(`add.${a}`)),
      true,
    );
    if (s < 1) {
      E.add(
        g,
        'weightMemory',
        'weight reads n·N_out·E_weight_read/p',
        (k) => syn * (1 - s) * k.get('weightRead') * (m.weightBits / k.get('memoryWordBits')),
        true,
      );
    }
  }
  if (s > 0) {
    E.add(
      g,
      'weightMemory',
      'external weight traffic',
      (k) => syn * s * (m.weightBits / 8) * k.get('externalAccess'),
      true,
    );
  }
  const G = m.mapping.stateGroup;
  E.add(
    g,
    'stateMemory',
    'state ceil(n/G)·N_out·(E_state_read + E_state_write)',
    (k) =>
      Math.ceil(n / G) * l.nOut * stateWords(k, m) * (k.get('stateRead') + k.get('stateWrite')),
  );
  E.add(g, 'compute', 'neuron updates N_out·E_neuron', (k) => l.nOut * k.get('neuron'));
  E.add(g, 'eventsControl', 'event dispatch n·C·E_event_in', (k) => n * l.cores * k.get('eventIn'));
  E.add(
    g,
    'eventsControl',
    'output events d_out·N_out·E_event_out',
    (k) => l.outDensity * l.nOut * k.get('eventOut'),
  );
  const hops = m.mapping.hopsPerEvent;
  if (hops > 0) {
    const crossings = n * l.cores + (l.outputToSite ? 0 : l.outDensity * l.nOut);
    E.add(
      g,
      'network',
      'network hops·E_hop per event',
      (k) => crossings * hops * k.get('networkHop'),
    );
  }
}

/**
 * Event-driven latency (s), HARDWARE.md:
 *   T = [n·(c_event + ceil(N_out/(C·L))·c_syn) + ceil(N_out/(C·L))·c_neuron] / f
 *       + network + synchronisation,  bounded below by external bytes ÷ bandwidth.
 * Added here: the state reloads, ceil(n/G)·ceil(N_out/(C·L))·c_state, matching the energy
 * formula. Simplifications: the C cores work in parallel on disjoint outputs and every
 * core sees every event; one hop of latency per layer; layers run one after the other
 * (independent layers such as att.key/value/receptance are not overlapped).
 */
export function eventDrivenLatency(T: Ledger, m: Resolved, l: LinearLayer): number {
  const g = l.group;
  const n = l.density * l.nIn;
  const lanesOut = (k: Reader) => Math.ceil(l.nOut / (l.cores * k.get('lanesPerCore')));
  const start = T.terms.length;
  T.add(
    g,
    'compute',
    'synapse time n·ceil(N_out/(C·L))·c_syn',
    (k) => n * lanesOut(k) * k.seconds('timeSynapse'),
    true,
  );
  T.add(g, 'eventsControl', 'event handling n·c_event', (k) => n * k.seconds('timeEvent'));
  T.add(
    g,
    'stateMemory',
    'state reloads ceil(n/G)·ceil(N_out/(C·L))·c_state',
    (k) => Math.ceil(n / m.mapping.stateGroup) * lanesOut(k) * k.seconds('timeState'),
  );
  T.add(
    g,
    'compute',
    'neuron evaluation ceil(N_out/(C·L))·c_neuron',
    (k) => lanesOut(k) * k.seconds('timeNeuron'),
  );
  if (m.mapping.hopsPerEvent > 0) {
    T.add(
      g,
      'network',
      'network latency hops·t_hop',
      (k) => m.mapping.hopsPerEvent * k.seconds('hopTime'),
    );
  }
  T.add(g, 'eventsControl', 'synchronisation after the layer', (k) => k.seconds('syncTime'));
  let sum = 0;
  let evidence: Evidence = 'measured';
  for (const t of T.terms.slice(start)) {
    sum += t.value;
    evidence = weaker(evidence, t.evidence);
  }
  const s = m.mapping.externalWeightShare;
  if (s > 0) {
    // Lower bound: the external share of the weights read must cross the memory interface.
    const bytes = s * n * l.nOut * (m.weightBits / 8);
    const bound = T.peek(
      g,
      'weightMemory',
      'external bytes ÷ bandwidth',
      (k) => bytes / (k.get('externalBandwidth') * 1e9),
      true,
    )!;
    if (bound.value > sum) {
      T.terms.push({
        group: g,
        category: 'weightMemory',
        value: bound.value - sum,
        evidence: weaker(evidence, bound.evidence),
      });
      sum = bound.value;
    }
  }
  return sum;
}

/**
 * Conventional energy (pJ), HARDWARE.md's dense baseline E = N_in·N_out·E_mac +
 * weight_bytes·e_mem; with the zero-skipping kernel only the active columns are read
 * and multiplied (d·N_in·N_out MACs, d·weight_bytes).
 */
export function conventionalEnergy(E: Ledger, m: Resolved, l: LinearLayer): void {
  const g = l.group;
  const macs = (l.sparseKernel ? l.density : 1) * l.nIn * l.nOut;
  const bytes = (macs * m.weightBits) / 8;
  const s = m.mapping.externalWeightShare;
  const a = m.arithmetic;
  E.add(
    g,
    'compute',
    `MACs·(E_mul + E_add) at ${a}`,
    (k) => macs * (k.get(`mul.${a}`) + k.get(`add.${a}`)),
    true,
  );
  if (s < 1) {
    E.add(
      g,
      'weightMemory',
      'weight bytes·e_mem',
      (k) => bytes * (1 - s) * k.get('weightAccess'),
      true,
    );
  }
  if (s > 0) {
    E.add(
      g,
      'weightMemory',
      'external weight bytes·e_ext',
      (k) => bytes * s * k.get('externalAccess'),
      true,
    );
  }
}

const SPEEDUP_AT = [0, 0.5, 0.7, 0.9] as const;

/**
 * Speedup of the zero-skipping GEMV over the dense one at a fraction `zeros` of zero
 * inputs. From the measured points (bench): interpolated linearly in the efficiency
 * e(z) = speedup·(1−z) (the active-column rate relative to the dense rate), which is
 * smooth where the speedup itself grows like 1/(1−z); held at e(0.9) above 90%.
 * Without measurements: the ideal 1/(1−z).
 */
export function sparseSpeedup(k: Reader, zeros: number): number {
  const names = SPEEDUP_AT.map((z) => `sparseSpeedup${Math.round(z * 100)}`);
  const known = names.filter((n) => k.has(n)).length;
  // A speedup for this layer's zeros is a prediction, never a measurement: the ideal
  // is an assumption, and measured kernel points interpolated to a model are derived.
  if (known === 0) {
    k.evidence = weaker(k.evidence, 'assumed');
    return 1 / (1 - zeros);
  }
  k.evidence = weaker(k.evidence, 'derived');
  if (known < names.length) {
    throw new UserError(
      `the sparse-kernel speedups ${names.join(', ')} must all be set or all be null`,
      'Fill them with --bench FILE, or --set each one.',
    );
  }
  const e = SPEEDUP_AT.map((z, i) => k.get(names[i]) * (1 - z));
  let eff = e[e.length - 1];
  for (let i = 0; i + 1 < SPEEDUP_AT.length; i++) {
    const [z0, z1] = [SPEEDUP_AT[i], SPEEDUP_AT[i + 1]];
    if (zeros >= z0 && zeros < z1) {
      eff = e[i] + ((e[i + 1] - e[i]) * (zeros - z0)) / (z1 - z0);
      break;
    }
  }
  return eff / (1 - zeros);
}

/**
 * Conventional latency (s), HARDWARE.md's T = max(MACs/peak, weight_bytes/bandwidth),
 * batch 1. The weight stream runs at the dense GEMV's effective rate (this CPU: measured),
 * sped up by the zero-skipping kernel's measured speedup at thresholded sites; the raw
 * memory bandwidth and the MAC peak are floors.
 */
export function conventionalLatency(T: Ledger, m: Resolved, l: LinearLayer): number {
  const g = l.group;
  const denseBytes = (l.nIn * l.nOut * m.weightBits) / 8;
  const active = l.sparseKernel ? l.density : 1;
  const stream = T.add(
    g,
    'weightMemory',
    'weight stream W/(B_gemv·speedup)',
    (k) =>
      denseBytes /
      (k.get('weightBandwidth') * 1e9 * (l.sparseKernel ? sparseSpeedup(k, 1 - l.density) : 1)),
    true,
  );
  let t = stream;
  const floors: [Category, string, (k: Reader) => number][] = [
    ['compute', 'MACs ÷ peak', (k) => (active * l.nIn * l.nOut) / (k.get('peakMacs') * 1e9)],
    [
      'weightMemory',
      'bytes ÷ memory bandwidth',
      (k) => (active * denseBytes) / (k.get('memoryBandwidth') * 1e9),
    ],
  ];
  for (const [cat, what, fn] of floors) {
    const f = T.peek(g, cat, what, fn);
    if (f && f.value > t) {
      T.terms.push({ group: g, category: cat, value: f.value - t, evidence: f.evidence });
      t = f.value;
    }
  }
  return t;
}

// ------------------------------------------------------------------ op table

/** The profile constant that costs an element-wise op at the arithmetic precision. */
function opConstant(op: ArithOp, a: Precision): string {
  return op === 'add' || op === 'mul' ? `${op}.${a}` : op;
}

const fmtCount = (x: number) => (x >= 1e4 ? `${(x / 1e3).toFixed(0)}k` : String(Math.round(x)));

/** Energy (pJ) of the element-wise work: each op kind its own term, so a missing cost is named. */
export function opsEnergy(E: Ledger, m: Resolved, groups: OpGroup[], eventDriven: boolean): void {
  const s = m.mapping.externalWeightShare;
  for (const { id, detail, counts: c } of groups) {
    for (const op of ARITH_OPS) {
      if (c[op] === 0) continue;
      const name = opConstant(op, m.arithmetic);
      E.add(
        id,
        'compute',
        `${op}: ${fmtCount(c[op])} per token (${detail})`,
        (k) => c[op] * k.get(name),
      );
    }
    if (c.stateReads + c.stateWrites > 0) {
      E.add(
        id,
        'stateMemory',
        `state: ${fmtCount(c.stateReads + c.stateWrites)} values per token (${detail})`,
        (k) =>
          eventDriven
            ? stateWords(k, m) *
              (c.stateReads * k.get('stateRead') + c.stateWrites * k.get('stateWrite'))
            : (c.stateReads + c.stateWrites) * (m.activationBits / 8) * k.get('stateAccess'),
      );
    }
    if (c.weightReads > 0) {
      const bytes = (c.weightReads * m.weightBits) / 8;
      if (s < 1) {
        E.add(
          id,
          'weightMemory',
          `weights: ${fmtCount(c.weightReads)} values per token (${detail})`,
          (k) =>
            eventDriven
              ? (1 - s) *
                c.weightReads *
                k.get('weightRead') *
                (m.weightBits / k.get('memoryWordBits'))
              : (1 - s) * bytes * k.get('weightAccess'),
        );
      }
      if (s > 0) {
        E.add(
          id,
          'weightMemory',
          `external weights (${detail})`,
          (k) => s * bytes * k.get('externalAccess'),
        );
      }
    }
    if (eventDriven && c.events > 0) {
      E.add(
        id,
        'eventsControl',
        `events: ${fmtCount(c.events)} per token (${detail})`,
        (k) => c.events * k.get('eventOut'),
      );
    }
  }
}

/**
 * Latency (s) of the element-wise work, spread over `lanes` parallel lanes
 * (event-driven: the block's op cores × L). On an event-driven chip an op without a
 * known instruction cost (null energy) has no known time either and is left out;
 * state and weight values count one op time each.
 */
export function opsLatency(
  T: Ledger,
  m: Resolved,
  groups: OpGroup[],
  eventDriven: boolean,
  opCores: number,
): Map<string, number | null> {
  // null: the group's time is not costed; absent: it has no timed work.
  const seconds = new Map<string, number | null>();
  for (const { id, detail, counts: c } of groups) {
    let ops = c.stateReads + c.stateWrites + c.weightReads;
    for (const op of ARITH_OPS) {
      if (c[op] === 0) continue;
      const name = opConstant(op, m.arithmetic);
      if (eventDriven && T.constants[name]?.value == null) {
        T.miss(
          id,
          'compute',
          `${op} time: ${fmtCount(c[op])} per token (${detail}); no known cost`,
          name,
        );
      } else ops += c[op];
    }
    if (ops === 0) continue;
    const before = T.notCosted.length;
    const t = T.add(id, 'compute', `element-wise time (${detail})`, (k) =>
      eventDriven
        ? (ops * k.seconds('timeOp')) / (opCores * k.get('lanesPerCore'))
        : ops * k.seconds('opTime'),
    );
    seconds.set(id, T.notCosted.length === before ? t : null);
  }
  return seconds;
}
