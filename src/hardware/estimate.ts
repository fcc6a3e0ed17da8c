/**
 * The whole model per token: every linear layer of every block, the head and the op
 * table, in three scenarios (dense d = 1 on the same chip, the dense model's natural
 * zeros, the thresholded model), summed by layer type and by cost category.
 */
import { UserError } from '../errors.ts';
import {
  CATEGORIES,
  type Category,
  conventionalEnergy,
  conventionalLatency,
  coresFor,
  eventDrivenEnergy,
  eventDrivenLatency,
  Ledger,
  type LinearLayer,
  MissingConstant,
  type NotCosted,
  opsEnergy,
  opsLatency,
  type Resolved,
  resolveMapping,
  type Term,
} from './cost.ts';
import type { CostInput } from './inputs.ts';
import { countModel, type ModelShape, opTable } from './ops.ts';
import {
  constantSpecs,
  type Evidence,
  type Mapping,
  type Profile,
  type Quantity,
  weaker,
} from './profile.ts';

export type Scenario = 'dense' | 'natural' | 'sparse';

export interface Breakdown {
  value: number;
  /** Weakest evidence of the terms summed (null when nothing was costed). */
  evidence: Evidence | null;
  /** Some terms of this row are not costed: the value is a lower bound. */
  partial: boolean;
}

export interface QuantityResult {
  /** pJ or seconds per token. */
  total: Breakdown;
  byGroup: Record<string, Breakdown>;
  byCategory: Record<Category, Breakdown>;
  /** Layer type × category (costed terms only), for plots. */
  matrix: Record<string, Partial<Record<Category, number>>>;
}

export interface ScenarioResult {
  scenario: Scenario;
  /** MAC-weighted fraction of zeros over the block sites (METHOD.md §4). */
  macWeightedZeros: number;
  energy: QuantityResult | null;
  latency: QuantityResult | null;
}

export interface NotModelled {
  quantity: Quantity;
  constants: string[];
  what: string;
}

export interface Estimate {
  profile: Profile;
  resolved: Resolved;
  input: CostInput;
  /** Cores per layer type, and in total (event-driven). */
  cores: { perGroup: Record<string, number>; total: number; opCores: number } | null;
  scenarios: ScenarioResult[];
  /** Row order for the breakdown. */
  groups: string[];
  notCosted: (NotCosted & { scenarios: Scenario[] })[];
  notModelled: NotModelled[];
  notes: string[];
}

interface ScenarioLedgers {
  energy: Ledger | null;
  latency: Ledger | null;
}

function linearLayers(
  shape: ModelShape,
  m: Resolved,
  zeros: (g: number) => number,
  sparseKernel: boolean,
): LinearLayer[][] {
  const c = countModel(shape);
  const k = c.sites.length;
  const layer = (id: string, rows: number, cols: number): LinearLayer => ({
    group: id,
    nIn: cols,
    nOut: rows,
    density: 1,
    outDensity: 1,
    outputToSite: false,
    cores: coresFor(m, id, cols, rows),
    sparseKernel: false,
  });
  const blocks: LinearLayer[][] = [];
  for (let b = 0; b < shape.nLayer; b++) {
    blocks.push(
      c.sites.map((s, i) => {
        // The site whose input this layer's neurons make (after their activation).
        const j = c.sites.findIndex((x) => x.fedBy === s.id);
        return {
          ...layer(s.id, s.rows, s.cols),
          density: 1 - zeros(b * k + i),
          outDensity: j >= 0 ? 1 - zeros(b * k + j) : 1,
          outputToSite: j >= 0,
          sparseKernel,
        };
      }),
    );
    // Layers that are never thresholded (OPT's out_proj) run dense in every block.
    for (const l of c.denseLinears[b]) blocks[b].push(layer(l.id, l.rows, l.cols));
  }
  // The projections outside the blocks and the head read dense vectors.
  blocks.push([...c.embedLinears, ...c.headLinears].map((l) => layer('head', l.rows, l.cols)));
  return blocks;
}

function runScenario(
  input: CostInput,
  profile: Profile,
  m: Resolved,
  scenario: Scenario,
  want: { energy: boolean; latency: boolean },
): ScenarioLedgers {
  const eventDriven = profile.costModel === 'event-driven';
  const zeros = (g: number) =>
    scenario === 'dense' ? 0 : scenario === 'natural' ? input.natural![g] : input.sparse[g];
  const layers = linearLayers(input.shape, m, zeros, scenario === 'sparse').flat();
  const k = input.shape.sites.length;
  // Events exist only on event-driven chips; drop groups left with nothing to cost.
  const ops = opTable(input.shape, (b, i) => 1 - zeros(b * k + i), scenario !== 'dense')
    .map((o) => (eventDriven ? o : { ...o, counts: { ...o.counts, events: 0 } }))
    .filter((o) => Object.values(o.counts).some((c) => c > 0));
  const totalCores = layers.reduce((a, l) => a + l.cores, 0);
  const s0 = input.shape.sites[0];
  const opCores =
    m.mapping.opCores === 'fit' ? coresFor(m, s0.id, s0.cols, s0.rows) : m.mapping.opCores;

  // Latency first: static energy needs the time each layer takes.
  const T = want.latency ? new Ledger('latency', profile.constants) : null;
  const seconds = new Map<LinearLayer, number>();
  let opSeconds: Map<string, number | null> | null = null;
  if (T) {
    for (const l of layers) {
      seconds.set(l, eventDriven ? eventDrivenLatency(T, m, l) : conventionalLatency(T, m, l));
    }
    opSeconds = opsLatency(T, m, ops, eventDriven, opCores);
  }

  const E = want.energy ? new Ledger('energy', profile.constants) : null;
  if (E) {
    const staticName = eventDriven ? 'staticPowerPerCore' : 'staticPower';
    // P_static·T: all cores leak while any layer runs (mW → W, J → pJ).
    const staticTerm = (group: string, t: number | undefined | null) => {
      if (t === undefined || t === null) {
        E.miss(
          group,
          'static',
          'static energy P·T: the latency of the row is not costed',
          staticName,
        );
        return;
      }
      E.add(
        group,
        'static',
        'static energy P·T',
        (r) => r.get(staticName) * 1e-3 * (eventDriven ? totalCores : 1) * t * 1e12,
      );
    };
    for (const l of layers) {
      if (eventDriven) eventDrivenEnergy(E, m, l);
      else conventionalEnergy(E, m, l);
      staticTerm(l.group, T ? seconds.get(l) : null);
    }
    opsEnergy(E, m, ops, eventDriven);
    for (const o of ops) {
      if (!opSeconds) staticTerm(o.id, null);
      else if (opSeconds.has(o.id)) staticTerm(o.id, opSeconds.get(o.id));
    }
  }
  return { energy: E, latency: T };
}

function breakdown(ledger: Ledger, groups: string[]): QuantityResult {
  const empty = (): Breakdown => ({ value: 0, evidence: null, partial: false });
  const total = empty();
  const byGroup: Record<string, Breakdown> = Object.fromEntries(groups.map((g) => [g, empty()]));
  const byCategory = Object.fromEntries(CATEGORIES.map((c) => [c, empty()])) as Record<
    Category,
    Breakdown
  >;
  const put = (b: Breakdown, t: Term) => {
    b.value += t.value;
    b.evidence = b.evidence ? weaker(b.evidence, t.evidence) : t.evidence;
  };
  const matrix: Record<string, Partial<Record<Category, number>>> = {};
  for (const t of ledger.terms) {
    matrix[t.group] ??= {};
    matrix[t.group][t.category] = (matrix[t.group][t.category] ?? 0) + t.value;
    byGroup[t.group] ??= empty();
    put(total, t);
    put(byGroup[t.group], t);
    put(byCategory[t.category], t);
  }
  for (const n of ledger.notCosted) {
    total.partial = true;
    byGroup[n.group] ??= empty();
    byGroup[n.group].partial = true;
    byCategory[n.category].partial = true;
  }
  return { total, byGroup, byCategory, matrix };
}

/** MAC-weighted zeros over the block sites. */
export function macWeighted(shape: ModelShape, zeros: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let g = 0; g < zeros.length; g++) {
    const s = shape.sites[g % shape.sites.length];
    num += zeros[g] * s.rows * s.cols;
    den += s.rows * s.cols;
  }
  return den ? num / den : 0;
}

/** The refusal for a null constant a promised quantity cannot do without. */
export function refusal(profile: Profile, e: MissingConstant): UserError {
  const specs = constantSpecs(profile.costModel);
  const about = e.constants.map((name) => {
    const c = profile.constants[name];
    return `${name} (${specs[name]?.meaning}; the profile says: ${c?.source ?? 'not listed'})`;
  });
  const sets = e.constants.map((n) => `--set ${n}=<${profile.constants[n]?.unit}>`).join(' ');
  const bench = e.constants.some((n) => profile.constants[n]?.source.includes('--bench'));
  return new UserError(
    `${profile.name}: ${e.quantity} needs constant ${about.join(' and ')} for ${e.what}, and it is null`,
    `Set it: ${sets} (append :EVIDENCE to label it; the default label is assumed)${bench ? ', or give --bench FILE from `actsparse bench --json FILE`' : ''}, or give a profile file where it is known.`,
  );
}

/**
 * Energy and latency per token, dense (d = 1 on the same chip), natural (the dense
 * model's own zeros, event-driven chips only) and sparse. A quantity the profile
 * promises (`estimates`) refuses a null constant its linear-layer terms need; one it does
 * not promise is reported as not modelled instead.
 */
export function estimate(input: CostInput, profile: Profile, mapping: Mapping): Estimate {
  const m = resolveMapping(profile, mapping);
  const eventDriven = profile.costModel === 'event-driven';
  const notes = [...input.notes];
  if (m.weightBitsNote) notes.push(m.weightBitsNote);
  const scenarios: Scenario[] = ['dense'];
  if (input.natural && eventDriven) scenarios.push('natural');
  else if (input.natural) {
    notes.push(
      'natural zeros not shown: a conventional engine runs the dense kernel where nothing is thresholded',
    );
  }
  scenarios.push('sparse');

  const want = { energy: true, latency: true };
  const notModelled: NotModelled[] = [];
  let runs: ScenarioLedgers[];
  for (;;) {
    try {
      runs = scenarios.map((s) => runScenario(input, profile, m, s, want));
      break;
    } catch (e) {
      if (!(e instanceof MissingConstant)) throw e;
      if (profile.estimates.includes(e.quantity)) throw refusal(profile, e);
      want[e.quantity] = false;
      notModelled.push({ quantity: e.quantity, constants: e.constants, what: e.what });
      if (!want.energy && !want.latency) throw refusal(profile, e);
    }
  }

  // Rows: the site layers in order, the head, then the op groups.
  const groups = [
    ...input.shape.sites.map((s) => s.id),
    ...countModel(input.shape)
      .denseLinears.flat()
      .map((s) => s.id),
    'head',
  ].filter((g, i, all) => all.indexOf(g) === i);
  for (const r of runs) {
    for (const l of [r.energy, r.latency]) {
      for (const t of l?.terms ?? []) if (!groups.includes(t.group)) groups.push(t.group);
      for (const t of l?.notCosted ?? []) if (!groups.includes(t.group)) groups.push(t.group);
    }
  }

  const notCosted = new Map<string, NotCosted & { scenarios: Scenario[] }>();
  runs.forEach((r, i) => {
    for (const n of [...(r.latency?.notCosted ?? []), ...(r.energy?.notCosted ?? [])]) {
      const key = `${n.quantity}|${n.group}|${n.constant}|${n.what}`;
      const seen = notCosted.get(key);
      if (!seen) notCosted.set(key, { ...n, scenarios: [scenarios[i]] });
      else if (!seen.scenarios.includes(scenarios[i])) seen.scenarios.push(scenarios[i]);
    }
  });

  let cores: Estimate['cores'] = null;
  if (eventDriven) {
    const layers = linearLayers(input.shape, m, () => 0, false).flat();
    const perGroup: Record<string, number> = {};
    for (const l of layers) perGroup[l.group] ??= l.cores;
    const s0 = input.shape.sites[0];
    cores = {
      perGroup,
      total: layers.reduce((a, l) => a + l.cores, 0),
      opCores:
        m.mapping.opCores === 'fit' ? coresFor(m, s0.id, s0.cols, s0.rows) : m.mapping.opCores,
    };
  }

  return {
    profile,
    resolved: m,
    input,
    cores,
    scenarios: runs.map((r, i) => ({
      scenario: scenarios[i],
      macWeightedZeros:
        scenarios[i] === 'dense'
          ? 0
          : macWeighted(input.shape, scenarios[i] === 'natural' ? input.natural! : input.sparse),
      energy: r.energy ? breakdown(r.energy, groups) : null,
      latency: r.latency ? breakdown(r.latency, groups) : null,
    })),
    groups,
    notCosted: [...notCosted.values()],
    notModelled,
    notes,
  };
}
