/** The hardware cost model: formulas against hand-computed values, inputs, profiles, refusals. */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { UserError } from '../../../src/errors.ts';
import type { BenchResult } from '../../../src/formats/bench.ts';
import { benchCheck } from '../../../src/hardware/check.ts';
import {
  type Category,
  conventionalEnergy,
  conventionalLatency,
  eventDrivenEnergy,
  eventDrivenLatency,
  Ledger,
  type LinearLayer,
  Reader,
  resolveMapping,
  sparseSpeedup,
} from '../../../src/hardware/cost.ts';
import { type Estimate, estimate } from '../../../src/hardware/estimate.ts';
import {
  type CostInput,
  inputFromResults,
  inputFromThresholds,
  parseShape,
  parseSiteValues,
  readRun,
  whatIf,
} from '../../../src/hardware/inputs.ts';
import { opTable, shapeFromFacts } from '../../../src/hardware/ops.ts';
import { RWKV4_SITES, rwkv4SiteTable } from '../../../src/models/rwkv4.ts';

/** The RWKV-4 site layers of width d (ffn f), as the model defines them. */
const rwkv4Sites = (d: number, f = 4 * d) =>
  rwkv4SiteTable({ nLayer: 1, nEmbd: d, nVocab: 1, nFfn: f }).perBlock.map((x) => ({ ...x }));

import {
  applySets,
  BUILTIN_PROFILES,
  type CostModel,
  constantSpecs,
  type Evidence,
  loadMapping,
  loadProfile,
  type Mapping,
  type Profile,
  parseMapping,
  parseProfile,
  profileWithBench,
  type Quantity,
} from '../../../src/hardware/profile.ts';
import { runCommand } from '../../helpers/cli.ts';
import { tmpDir } from '../../helpers/shared.ts';

/** A profile with every constant null except `values` (value or [value, unit, evidence]). */
function testProfile(
  costModel: CostModel,
  values: Record<string, number | [number, string?, Evidence?]>,
  estimates: Quantity[] = ['energy', 'latency'],
): Profile {
  const specs = constantSpecs(costModel);
  const constants: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const v = values[name];
    const [value, unit, evidence] = v === undefined ? [null] : Array.isArray(v) ? v : [v];
    constants[name] = {
      value,
      unit: unit ?? spec.units[0],
      evidence: value === null ? null : (evidence ?? 'post-synthesis'),
      source: 'test',
    };
  }
  return parseProfile(
    {
      formatVersion: 1,
      kind: 'actsparse.hardware-profile',
      name: 'test',
      title: 'test chip',
      description: '',
      costModel,
      estimates,
      constants,
    },
    'test.json',
  );
}

function mapping(over: Partial<Mapping> = {}): Mapping {
  const { file, ...base } = loadMapping();
  return parseMapping({ ...base, ...over }, file);
}

/** Sum of a ledger's terms in one category (or all). */
function sum(l: Ledger, category?: Category): number {
  return l.terms
    .filter((t) => !category || t.category === category)
    .reduce((a, t) => a + t.value, 0);
}

const close = (a: number, b: number, what: string, rtol = 1e-12) =>
  assert.ok(Math.abs(a - b) <= rtol * Math.abs(b) + 1e-30, `${what}: ${a} ≠ ${b}`);

// The two-layer example: A is 8 → 4 at d = 0.5 on 2 cores, its outputs go to the
// element-wise stage; B is 4 → 8 at d = 0.25 on 1 core, its outputs are a site's
// input with d_out = 0.5.
const A: LinearLayer = {
  group: 'A',
  nIn: 8,
  nOut: 4,
  density: 0.5,
  outDensity: 1,
  outputToSite: false,
  cores: 2,
  sparseKernel: true,
};
const B: LinearLayer = {
  group: 'B',
  nIn: 4,
  nOut: 8,
  density: 0.25,
  outDensity: 0.5,
  outputToSite: true,
  cores: 1,
  sparseKernel: false,
};

const EVENT_VALUES = {
  clock: 100, // MHz: 1 cycle = 10 ns
  lanesPerCore: 2,
  memoryWordBits: 16,
  weightRead: 4,
  stateRead: 2,
  stateWrite: 3,
  'mul.fp16': 1,
  'add.fp16': 1,
  'mul.int8': 0.25,
  'add.int8': 0.25,
  eventIn: 10,
  eventOut: 0.5,
  neuron: 5,
  networkHop: 1,
  staticPowerPerCore: 1,
  externalAccess: 50,
  externalBandwidth: 1,
  timeEvent: 4,
  timeSynapse: 3,
  timeState: 2,
  timeNeuron: 1,
  timeOp: 1,
  hopTime: [10, 'ns'],
  syncTime: [100, 'ns'],
  cmp: 1,
  exp: 8,
  div: 6,
  rsqrt: 10,
} satisfies Record<string, number | [number, string]>;

describe('event-driven formulas on the two-layer example', () => {
  const profile = testProfile('event-driven', EVENT_VALUES);
  const m = resolveMapping(profile, mapping({ stateGroup: 4 }));

  test('energy, term by term', () => {
    const E = new Ledger('energy', profile.constants);
    eventDrivenEnergy(E, m, A);
    // A: n = d·N_in = 0.5·8 = 4 events, n·N_out = 16 synaptic ops.
    // compute: 16·(E_mul + E_add) = 16·2 = 32, plus N_out·E_neuron = 4·5 = 20 → 52
    close(sum(E, 'compute'), 52, 'A compute');
    // weight memory: 16·E_weight_read/p, p = 16/16 = 1 → 16·4 = 64
    close(sum(E, 'weightMemory'), 64, 'A weight memory');
    // state: ceil(n/G)·N_out·(E_sr + E_sw) = ceil(4/4)·4·(2+3) = 20
    close(sum(E, 'stateMemory'), 20, 'A state');
    // events: n·C·E_in + d_out·N_out·E_out = 4·2·10 + 1·4·0.5 = 80 + 2 = 82
    close(sum(E, 'eventsControl'), 82, 'A events');
    // network: hops·E_hop·(n·C + d_out·N_out) = 1·1·(8 + 4) = 12
    close(sum(E, 'network'), 12, 'A network');

    const F = new Ledger('energy', profile.constants);
    eventDrivenEnergy(F, m, B);
    // B: n = 0.25·4 = 1 event, 8 synaptic ops.
    close(sum(F, 'compute'), 8 * 2 + 8 * 5, 'B compute'); // 16 + 40 = 56
    close(sum(F, 'weightMemory'), 8 * 4, 'B weight memory'); // 32
    close(sum(F, 'stateMemory'), 1 * 8 * 5, 'B state'); // ceil(1/4) = 1 → 40
    close(sum(F, 'eventsControl'), 1 * 1 * 10 + 0.5 * 8 * 0.5, 'B events'); // 10 + 2 = 12
    // outputs feed a site: only the input events cross the network here, 1·1·1
    close(sum(F, 'network'), 1, 'B network');
    assert.equal(E.notCosted.length + F.notCosted.length, 0);
  });

  test('INT8 weights: two weights per 16-bit word, INT8 arithmetic', () => {
    const mi = resolveMapping(
      profile,
      mapping({ stateGroup: 4, weightPrecision: 'int8', activationPrecision: 'int8' }),
    );
    const E = new Ledger('energy', profile.constants);
    eventDrivenEnergy(E, mi, A);
    close(sum(E, 'weightMemory'), 16 * 4 * (8 / 16), 'weights at p = 2'); // 32
    close(sum(E, 'compute'), 16 * 0.5 + 20, 'INT8 MACs + neurons'); // 28
    close(sum(E, 'stateMemory'), 20, 'an INT8 state still takes one word');
  });

  test('SENECA per-synapse energy: 6.5 pJ at FP16, 3.05 pJ with 2×INT8 (HARDWARE.md)', () => {
    const seneca = loadProfile('seneca');
    const one: LinearLayer = { ...A, nIn: 1, nOut: 1, density: 1 };
    for (const [w, expected] of [
      ['fp16', 6.5],
      ['int8', 3.05],
    ] as const) {
      const ms = resolveMapping(seneca, mapping({ weightPrecision: w, activationPrecision: w }));
      const E = new Ledger('energy', seneca.constants);
      eventDrivenEnergy(E, ms, one);
      // weight read/p + mul + add; compute also holds the neuron update (8.1 pJ)
      const synapse = sum(E, 'weightMemory') + sum(E, 'compute') - 8.1;
      close(synapse, expected, `${w} synapse`, 1e-9);
    }
  });

  test('latency, term by term', () => {
    const T = new Ledger('latency', profile.constants);
    // A: lanes per core L = 2, ceil(N_out/(C·L)) = ceil(4/4) = 1.
    // cycles: synapses n·1·3 = 12, events n·4 = 16, state ceil(4/4)·1·2 = 2, neuron 1·1 = 1
    // → 31 cycles = 310 ns at 100 MHz, + 1 hop·10 ns + sync 100 ns = 420 ns.
    close(eventDrivenLatency(T, m, A), 420e-9, 'A latency');
    const U = new Ledger('latency', profile.constants);
    // B: ceil(8/(1·2)) = 4: synapses 1·4·3 = 12, events 4, state ceil(1/4)·4·2 = 8,
    // neuron 4·1 = 4 → 28 cycles = 280 ns, + 10 + 100 = 390 ns.
    close(eventDrivenLatency(U, m, B), 390e-9, 'B latency');
    close(sum(U, 'stateMemory'), 80e-9, 'B state time');
  });

  test('external weights: on-chip share, traffic, and the bandwidth bound', () => {
    const me = resolveMapping(profile, mapping({ stateGroup: 4, externalWeightShare: 0.25 }));
    const E = new Ledger('energy', profile.constants);
    eventDrivenEnergy(E, me, A);
    // 16·0.75·4 on chip + 16·0.25 weights·2 B·50 pJ/B external = 48 + 400
    close(sum(E, 'weightMemory'), 448, 'weight memory with a 25% external share');
    // 0.25·16·2 B = 8 B at 1 GB/s = 8 ns: below the 420 ns of compute, no change
    close(eventDrivenLatency(new Ledger('latency', profile.constants), me, A), 420e-9, 'unbound');
    const slow = applySets(profile, me.mapping, ['externalBandwidth=0.01']).profile;
    const T = new Ledger('latency', slow.constants);
    // 8 B at 0.01 GB/s = 800 ns > 420 ns: the memory bound sets the time
    close(eventDrivenLatency(T, me, A), 800e-9, 'bound by external bandwidth');
    close(sum(T), 800e-9, 'terms add up to the bound');
  });
});

describe('conventional formulas on the two-layer example', () => {
  const profile = testProfile('conventional', {
    'mul.fp16': 1.1,
    'add.fp16': 0.4,
    weightAccess: 10,
    externalAccess: 100,
    weightBandwidth: 4,
    memoryBandwidth: 20,
    peakMacs: 4,
  });
  const m = resolveMapping(profile, mapping({ externalWeightShare: 0.25 }));

  test('energy: MACs·E_mac + weight bytes·e_mem, active columns only with the sparse kernel', () => {
    const E = new Ledger('energy', profile.constants);
    conventionalEnergy(E, m, A);
    // A, sparse kernel at d = 0.5: 16 MACs·1.5 = 24; 32 B·(0.75·10 + 0.25·100) = 1040
    close(sum(E, 'compute'), 24, 'A compute');
    close(sum(E, 'weightMemory'), 1040, 'A weight memory');
    const F = new Ledger('energy', profile.constants);
    conventionalEnergy(F, m, B);
    // B, dense kernel: all 32 MACs (48 pJ) and 64 B (2080 pJ) despite d = 0.25
    close(sum(F, 'compute'), 48, 'B compute');
    close(sum(F, 'weightMemory'), 2080, 'B weight memory');
  });

  test('latency: max(MACs/peak, bytes/bandwidth)', () => {
    // A: W = 64 B, ideal skipping at 50% zeros → speedup 2: 64/(4 GB/s·2) = 8 ns;
    // MACs 16/4 G = 4 ns; bytes 32/20 GB/s = 1.6 ns → 8 ns.
    close(conventionalLatency(new Ledger('latency', profile.constants), m, A), 8e-9, 'A');
    // B: dense 64/4 G = 16 ns; 32 MACs / 4 G = 8 ns → 16 ns.
    close(conventionalLatency(new Ledger('latency', profile.constants), m, B), 16e-9, 'B');
    // With a peak of 1 GMAC/s, A is compute-bound: 16 MACs → 16 ns.
    const slow = applySets(profile, m.mapping, ['peakMacs=1']).profile;
    const T = new Ledger('latency', slow.constants);
    close(conventionalLatency(T, m, A), 16e-9, 'A compute-bound');
    close(sum(T, 'compute'), 8e-9, 'compute share beyond the stream');
  });

  test('measured sparse-kernel speedups, interpolated on efficiency', () => {
    const p = applySets(profile, m.mapping, [
      'sparseSpeedup0=0.9',
      'sparseSpeedup50=1.8',
      'sparseSpeedup70=2.7',
      'sparseSpeedup90=6',
    ]).profile;
    const k = new Reader(p.constants);
    // e(z) = speedup·(1−z): 0.9, 0.9, 0.81, 0.6
    close(sparseSpeedup(k, 0), 0.9, 'z = 0');
    close(sparseSpeedup(k, 0.25), 0.9 / 0.75, 'z = 0.25');
    close(sparseSpeedup(k, 0.6), (0.9 + (0.81 - 0.9) * 0.5) / 0.4, 'z = 0.6'); // 2.1375
    close(sparseSpeedup(k, 0.95), 0.6 / 0.05, 'z = 0.95, held efficiency'); // 12
    close(sparseSpeedup(new Reader(profile.constants), 0.75), 4, 'ideal without measurements');
    // A at 50% zeros: 64 B/(4 GB/s·1.8) = 8.89 ns
    close(conventionalLatency(new Ledger('latency', p.constants), m, A), 64 / (4e9 * 1.8), 'A');
    const partial = applySets(profile, m.mapping, ['sparseSpeedup0=0.9']).profile;
    assert.throws(
      () => sparseSpeedup(new Reader(partial.constants), 0.5),
      /all be set or all be null/,
    );
  });
});

describe('op table', () => {
  test('RWKV-4 counts for one block of d = 2, f = 8, by hand', () => {
    const shape = shapeFromFacts(
      { architecture: 'rwkv4', nLayer: 1, nEmbd: 2, nVocab: 3, config: { nFfn: 8 } },
      'test',
      [],
    );
    const ops = Object.fromEntries(opTable(shape, () => 0.5, true).map((g) => [g.id, g.counts]));
    // 3 layer norms (ln1, ln2, ln_out): add 4d+1 = 9, mul 3d+2 = 8, rsqrt 1 each
    assert.deepEqual([ops['ops: layer norms'].add, ops['ops: layer norms'].mul], [27, 24]);
    assert.equal(ops['ops: layer norms'].rsqrt, 3);
    // 5 mixes: 2 mul + 1 add per channel; shift state read once and written once per token
    // for att and ffn, however many mixes read it
    const t = ops['ops: token shift'];
    assert.deepEqual([t.mul, t.add, t.stateReads, t.stateWrites], [20, 10, 4, 4]);
    const w = ops['ops: wkv4'];
    assert.deepEqual(
      [w.add, w.mul, w.exp, w.div, w.cmp, w.stateReads, w.stateWrites],
      [20, 14, 8, 2, 4, 6, 6],
    );
    // σ(r) in time-mix and channel-mix: exp, add, div per channel
    const s = ops['ops: sigmoid'];
    assert.deepEqual([s.exp, s.add, s.div, s.mul], [4, 4, 4, 0]);
    assert.deepEqual([ops['ops: relu²'].cmp, ops['ops: relu²'].mul], [8, 8]);
    // x += att out (2 adds); x += r·v (2 muls, 2 adds)
    const e = ops['ops: elementwise (residual, gates)'];
    assert.deepEqual([e.add, e.mul], [4, 2]);
    // site events: half of the 6 inputs of width 2 (ffn.value's come from ffn.key) = 6
    assert.equal(ops['ops: site events'].events, 6);
    // a compare per site-input value: 6·2 + 8 = 20
    assert.equal(ops['ops: thresholds'].cmp, 20);
    assert.equal(ops['ops: embedding'].weightReads, 2);
    // the d = 1 reference compares nothing
    assert.ok(!opTable(shape, () => 1, false).some((g) => g.id === 'ops: thresholds'));
  });

  test('OPT counts for one layer of d = 64, f = 256, context 4, by hand', () => {
    const sites = [
      { id: 'qkv', rows: 192, cols: 64 },
      { id: 'fc1', rows: 256, cols: 64 },
      { id: 'fc2', rows: 64, cols: 256 },
    ];
    const shape = shapeFromFacts(
      {
        architecture: 'opt',
        nLayer: 1,
        nEmbd: 64,
        nVocab: 3,
        siteShapes: sites,
        config: { nHead: 1, nFfn: 256, nPositions: 16 },
      },
      'test',
      [],
    );
    shape.context = 4;
    const ops = Object.fromEntries(opTable(shape, () => 0.5, true).map((g) => [g.id, g.counts]));
    const a = ops['ops: attention'];
    // q·k over 4 keys and Σ p·v over 4 values: 2·64·4 + 64 muls, 2·64·4 adds; one head of 64:
    // 4 exps, divs and compares; the cache read (k and v of 4 tokens) and the new k, v written.
    assert.deepEqual(
      [a.mul, a.add, a.exp, a.div, a.cmp, a.stateReads, a.stateWrites],
      [576, 512, 4, 4, 4, 512, 128],
    );
    assert.equal(ops['ops: relu'].cmp, 256);
    // biases of q, k, v, out_proj (64 each), fc1 (256), fc2 (64)
    assert.equal(ops['ops: biases'].add, 4 * 64 + 256 + 64);
    // qkv and fc1 inputs come from layer norms (events: half of 64 each); fc2's from fc1's neurons
    assert.equal(ops['ops: site events'].events, 64);
    assert.equal(ops['ops: thresholds'].cmp, 64 + 64 + 256);
  });

  test('an unknown architecture is refused, not costed as zero', () => {
    assert.throws(
      () =>
        shapeFromFacts(
          { architecture: 'gpt9', nLayer: 1, nEmbd: 2, nVocab: 3, config: {} },
          'f',
          [],
        ),
      /unknown architecture "gpt9"/,
    );
  });

  test('recorded sites that are not the model’s are refused', () => {
    assert.throws(
      () =>
        shapeFromFacts(
          {
            architecture: 'rwkv4',
            nLayer: 1,
            nEmbd: 2,
            nVocab: 3,
            siteShapes: [{ id: 'att.key', rows: 3, cols: 2 }],
          },
          'f',
          [],
        ),
      /recorded sites/,
    );
  });
});

/** A small what-if input. */
function tiny(zeros: number, nLayer = 2, nEmbd = 8, nVocab = 1): CostInput {
  return whatIf(parseShape(`${nLayer}x${nEmbd}`, nVocab), String(zeros), undefined);
}

describe('whole-model estimates', () => {
  test('with synapse costs only, the dense/sparse ratio is 1/d per layer and tends to 1/d', () => {
    // One combined per-synapse energy and nothing else: the op table's adds and muls,
    // the embedding read and every overhead stay uncosted.
    const p = testProfile('event-driven', { synapse: 6.5 }, ['energy']);
    const d = 0.4;
    const ratio = (e: Estimate, g?: string) => {
      const [dense, sparse] = [e.scenarios[0], e.scenarios[e.scenarios.length - 1]];
      const pick = (s: typeof dense) => (g ? s.energy!.byGroup[g].value : s.energy!.total.value);
      return pick(dense) / pick(sparse);
    };
    const small = estimate(tiny(1 - d, 2), p, mapping());
    for (const site of ['att.key', 'ffn.key', 'ffn.value']) close(ratio(small, site), 1 / d, site);
    // The head (d = 1) keeps the total below 1/d: (B + H)/(d·B + H) with B the block
    // synapses (2 blocks · 13·8²) and H = 8 head synapses.
    const Bs = 2 * 13 * 64;
    close(ratio(small), (Bs + 8) / (d * Bs + 8), 'total');
    const deep = estimate(tiny(1 - d, 64), p, mapping());
    assert.ok(ratio(deep) > ratio(small) && ratio(deep) < 1 / d);
    assert.ok(1 / d - ratio(deep) < 0.002, `64 blocks: ${ratio(deep)} vs ${1 / d}`);
    // Latency is not promised by this profile: reported as not modelled.
    assert.equal(deep.scenarios[0].latency, null);
    assert.deepEqual(
      deep.notModelled.map((n) => n.quantity),
      ['latency'],
    );
    // Everything else is listed as not costed, never as zero.
    const missing = new Set(deep.notCosted.map((n) => n.constant));
    for (const c of ['exp', 'div', 'rsqrt', 'eventIn', 'stateRead', 'staticPowerPerCore']) {
      assert.ok(missing.has(c), `${c} listed as not costed`);
    }
    assert.equal(deep.scenarios[0].energy!.total.partial, true);
  });

  test('totals add up, static = P·cores·T, and evidence is the weakest used', () => {
    const values = {
      ...EVENT_VALUES,
      eventIn: [10, undefined, 'assumed'] as [number, undefined, Evidence],
    };
    const p = testProfile('event-driven', values);
    const e = estimate(tiny(0.5), p, mapping({ stateGroup: 4 }));
    assert.equal(e.notCosted.length, 0, JSON.stringify(e.notCosted));
    for (const s of e.scenarios) {
      const en = s.energy!;
      const byGroup = Object.values(en.byGroup).reduce((a, b) => a + b.value, 0);
      const byCat = Object.values(en.byCategory).reduce((a, b) => a + b.value, 0);
      close(byGroup, en.total.value, `${s.scenario} groups`, 1e-9);
      close(byCat, en.total.value, `${s.scenario} categories`, 1e-9);
      // 1 mW per core · all cores · the token's latency, in pJ
      close(
        en.byCategory.static.value,
        1e-3 * e.cores!.total * s.latency!.total.value * 1e12,
        `${s.scenario} static`,
        1e-9,
      );
      assert.equal(en.total.evidence, 'assumed');
      assert.equal(en.byCategory.compute.evidence, 'post-synthesis');
      assert.equal(en.byCategory.eventsControl.evidence, 'assumed');
    }
    const [dense, sparse] = e.scenarios;
    assert.ok(dense.energy!.total.value > sparse.energy!.total.value);
    assert.ok(dense.latency!.total.value > sparse.latency!.total.value);
    close(sparse.macWeightedZeros, 0.5, 'MAC-weighted zeros');
  });

  test('SENECA out of the box: missing costs listed with their --set path', () => {
    const seneca = loadProfile('seneca');
    const e = estimate(tiny(0.6, 2, 16, 32), seneca, mapping());
    assert.ok(e.scenarios.every((s) => s.energy && s.latency));
    const listed = e.notCosted.filter((n) => n.quantity === 'energy').map((n) => n.constant);
    for (const c of ['exp', 'div', 'rsqrt', 'staticPowerPerCore']) assert.ok(listed.includes(c), c);
    assert.equal(e.scenarios[1].energy!.byGroup['ops: wkv4'].partial, true);
    assert.equal(e.scenarios[1].energy!.total.evidence, 'assumed');
  });

  test('--set costs a missing op: WKV grows by exactly 4·d·L·E_exp', () => {
    const seneca = loadProfile('seneca');
    const input = tiny(0.6, 2, 16, 32);
    const before = estimate(input, seneca, mapping());
    const set = applySets(seneca, mapping(), ['exp=20']);
    const after = estimate(input, set.profile, set.mapping);
    assert.ok(!after.notCosted.some((n) => n.constant === 'exp'));
    const wkv = (e: Estimate) => e.scenarios[1].energy!.byGroup['ops: wkv4'];
    close(wkv(after).value - wkv(before).value, 4 * 16 * 2 * 20, 'exp energy in WKV');
    assert.equal(wkv(after).evidence, 'assumed'); // a value set on the command line
    const measured = applySets(seneca, mapping(), ['exp=20:measured']).profile;
    assert.equal(
      estimate(input, measured, mapping()).scenarios[1].energy!.byGroup['ops: wkv4'].evidence,
      'post-synthesis',
    );
  });

  test('a null constant a promised quantity needs is refused, naming it and the --set path', () => {
    const broken = applySets(loadProfile('seneca'), mapping(), ['mul.fp16=null']).profile;
    assert.throws(
      () => estimate(tiny(0.5), broken, mapping()),
      (e: unknown) =>
        e instanceof UserError &&
        /energy needs constant mul\.fp16/.test(e.message) &&
        /--set mul\.fp16=<pJ\/op>/.test(e.hint ?? ''),
    );
    assert.throws(
      () => estimate(tiny(0.5), loadProfile('cpu'), mapping()),
      (e: unknown) =>
        e instanceof UserError &&
        /latency needs constant weightBandwidth/.test(e.message) &&
        /--bench FILE/.test(e.hint ?? ''),
    );
    // A mapping that fetches weights externally makes the external costs required.
    const ext = mapping({ externalWeightShare: 0.5 });
    assert.throws(() => estimate(tiny(0.5), loadProfile('seneca'), ext), /externalBandwidth/);
    const bw = applySets(loadProfile('seneca'), ext, ['externalBandwidth=10']).profile;
    assert.throws(() => estimate(tiny(0.5), bw, ext), /energy needs constant externalAccess/);
  });
});

describe('profiles and mappings', () => {
  test('the built-in profiles validate, and each says which quantities it promises', () => {
    for (const name of BUILTIN_PROFILES) {
      const p = loadProfile(name);
      assert.equal(p.name, name);
      for (const [k, c] of Object.entries(p.constants)) {
        assert.ok(c.source.length > 10, `${name}.${k} has a source`);
      }
    }
    assert.deepEqual(loadProfile('generic45').estimates, ['energy']);
    assert.deepEqual(loadProfile('cpu').estimates, ['latency']);
    assert.equal(loadProfile('seneca').constants.exp.value, null);
    assert.equal(loadProfile('loihi').constants.synapse.evidence, 'proxy');
  });

  const seneca = (): ProfileJson =>
    JSON.parse(
      readFileSync(new URL('../../../src/hardware/profiles/seneca.json', import.meta.url), 'utf8'),
    );
  interface ProfileJson {
    costModel: string;
    constants: Record<string, { value: number | null; unit: string; evidence: string | null }>;
  }
  const rejects = (edit: (o: ProfileJson) => void, pattern: RegExp) => {
    const o = seneca();
    edit(o);
    assert.throws(
      () => parseProfile(o, 'bad.json'),
      (e: unknown) =>
        e instanceof UserError && /^bad\.json: /.test(e.message) && pattern.test(e.message),
    );
  };

  test('profile errors name the file, the JSON path and what was expected', () => {
    rejects((o) => {
      o.constants.weightRead.unit = 'nJ/word';
    }, /constants\.weightRead\.unit: .*"pJ\/word"/);
    rejects((o) => {
      delete o.constants.exp;
    }, /constants\.exp: missing.*value null when unknown/);
    rejects((o) => {
      o.constants.foo = o.constants.exp;
    }, /constants\.foo: not a constant of a event-driven profile/);
    rejects((o) => {
      o.constants.clock.evidence = null;
    }, /constants\.clock\.evidence: a constant with a value needs an evidence label/);
    rejects((o) => {
      o.constants.weightRead.value = -1;
    }, /constants\.weightRead\.value/);
    rejects((o) => {
      o.constants.weightRead.evidence = 'rumour';
    }, /constants\.weightRead\.evidence/);
    rejects((o) => {
      o.costModel = 'analog';
    }, /costModel/);
    rejects((o) => {
      o.constants.timeSynapse.unit = 'ms';
    }, /constants\.timeSynapse\.unit: .*"cycle"\|"ns"/);
  });

  test('profile and mapping files: unreadable, not JSON, unknown names', () => {
    const dir = tmpDir();
    const bad = join(dir, 'p.json');
    writeFileSync(bad, '{"formatVersion": 1,');
    assert.throws(() => loadProfile(bad), /p\.json: not valid JSON/);
    assert.throws(() => loadProfile('tpu'), /neither a built-in profile nor a file/);
    writeFileSync(bad, JSON.stringify({ ...loadMapping(), file: undefined, stateGroup: 0 }));
    assert.throws(() => loadMapping(bad), /p\.json: not a hardware mapping: stateGroup/);
  });

  test('--set: constants with evidence, mapping fields, and clear refusals', () => {
    const p = loadProfile('seneca');
    const { profile, mapping: m } = applySets(p, mapping(), [
      'staticPowerPerCore=0.5:datasheet',
      'mapping.stateGroup=16',
      'mapping.weightPrecision=int8',
    ]);
    assert.deepEqual(
      [profile.constants.staticPowerPerCore.value, profile.constants.staticPowerPerCore.evidence],
      [0.5, 'datasheet'],
    );
    assert.deepEqual([m.stateGroup, m.weightPrecision], [16, 'int8']);
    assert.equal(p.constants.staticPowerPerCore.value, null, 'the loaded profile is not changed');
    assert.throws(() => applySets(p, mapping(), ['nope=1']), /has no constant nope/);
    assert.throws(() => applySets(p, mapping(), ['exp=-1']), /exp must be a number ≥ 0/);
    assert.throws(() => applySets(p, mapping(), ['exp=abc']), /exp must be/);
    assert.throws(() => applySets(p, mapping(), ['clock=0']), /clock must be a number > 0/);
    assert.throws(() => applySets(p, mapping(), ['exp=1:guess']), /evidence must be one of/);
    assert.throws(() => applySets(p, mapping(), ['mapping.cores=0']), /mapping.*cores/);
    assert.throws(() => applySets(p, mapping(), ['mapping.nope=1']), /no field nope/);
    assert.throws(() => applySets(p, mapping(), ['exp']), /expected NAME=VALUE/);
  });
});

describe('inputs', () => {
  const model = (siteShapes?: { id: string; rows: number; cols: number }[]) => ({
    file: 'm.pth',
    fileSha256: '00',
    fingerprint: 'f',
    comparison: 'gt',
    architecture: 'rwkv4',
    nLayer: 2,
    nEmbd: 4,
    nVocab: 10,
    sitesPerBlock: [...RWKV4_SITES],
    ...(siteShapes ? { siteShapes } : {}),
  });
  /** A thresholds.json as calibrate writes it, around these model facts and site rows. */
  const thresholdsFile = (m: object, sites: object[]) => ({
    formatVersion: 1,
    kind: 'actsparse.thresholds',
    tool: { name: 'actsparse', version: 'test' },
    model: m,
    data: {
      description: 'd',
      sha256: '0',
      documents: [],
      windows: 1,
      ctx: 8,
      tokens: 8,
      seed: 0,
      tokenizer: 'bytes',
    },
    method: { name: 'uniform', params: {} },
    results: {
      denseLoss: 1,
      finalLoss: 1,
      lossGrowth: 1,
      heldOut: null,
      sparsity: { macWeighted: 0.5, naturalMacWeighted: 0.2, headMacShare: 0.1 },
      work: { blockTokens: 1, authorsBlockTokens: 1, lossEvaluations: 0, statisticsPasses: 0 },
    },
    sites: sites.map((s) => ({ k: 0.5, lambda: 0.1, loss: null, ...s })),
  });
  const rows = () =>
    [0, 1].flatMap((block) =>
      RWKV4_SITES.map((site, i) => ({
        block,
        site,
        sparsity: (block * 7 + i) / 20,
        naturalSparsity: i === 6 ? 0.9 : 0,
      })),
    );

  test('thresholds.json: shapes from the file, or derived (ffn = 4·d) with a note', () => {
    const shapes = rwkv4Sites(4, 12);
    const t = thresholdsFile(model(shapes), rows());
    const a = inputFromThresholds(t, 't.json');
    assert.deepEqual(a.shape.sites, shapes);
    assert.equal(a.sparse[7 + 3], 10 / 20);
    assert.equal(a.natural![6], 0.9);
    assert.deepEqual(a.notes, []);
    const b = inputFromThresholds({ ...t, model: model() }, 'old.json');
    assert.equal(b.shape.sites[5].rows, 16);
    assert.match(b.notes[0], /derived from the config \(ffn 16\)/);
    // the ordering of rows does not matter; duplicates and strangers are refused
    const shuffled = inputFromThresholds(thresholdsFile(model(shapes), rows().reverse()), 't.json');
    assert.deepEqual(shuffled.sparse, a.sparse);
    const dup = rows();
    dup[1] = { ...dup[0] };
    const withSites = (sites: object[]) => thresholdsFile(model(shapes), sites);
    assert.throws(() => inputFromThresholds(withSites(dup), 't.json'), /appears twice/);
    assert.throws(
      () => inputFromThresholds(withSites(rows().slice(1)), 't.json'),
      /13 per-site rows for 2 blocks × 7 sites = 14/,
    );
    const far = rows();
    far[0] = { ...far[0], block: 5 };
    assert.throws(() => inputFromThresholds(withSites(far), 't.json'), /not in the model/);
    assert.throws(
      () => inputFromThresholds(withSites([{ ...rows()[0], sparsity: 2 }]), 't.json'),
      /t\.json: .*sites\.0\.sparsity/,
    );
  });

  test('results.json: per-site sparsity of an evaluation, model facts required or --shape', () => {
    const r = {
      formatVersion: 1,
      kind: 'actsparse.eval',
      results: {},
      versions: {},
      heldOut: {},
      dense: null,
      config: {},
      timing: {},
      tool: { name: 'actsparse', version: 'test' },
      model: model(rwkv4Sites(4)),
      sparsity: { macWeighted: 0.5, naturalMacWeighted: 0.2, perSite: rows() },
    };
    const a = inputFromResults(r, 'results.json');
    assert.equal(a.sparse[13], 13 / 20);
    const { model: _m, ...old } = r;
    assert.throws(() => inputFromResults(old, 'results.json'), /no model facts/);
    const b = inputFromResults(old, 'results.json', parseShape('2x4', 10));
    assert.deepEqual(b.sparse, a.sparse);
  });

  test('a run directory is read, a foreign file refused', () => {
    const dir = tmpDir();
    writeFileSync(join(dir, 'thresholds.json'), JSON.stringify(thresholdsFile(model(), rows())));
    assert.equal(readRun(dir).shape.nLayer, 2);
    writeFileSync(join(dir, 'x.json'), '{"kind": "actsparse.bench"}');
    assert.throws(
      () => readRun(join(dir, 'x.json')),
      /neither actsparse.thresholds nor actsparse.eval/,
    );
    assert.throws(() => readRun(tmpDir()), /no thresholds.json or results.json/);
  });

  test('what-ifs: per site id for every block, percentages, uniform, JSON per block', () => {
    const shape = parseShape('2x4', 10);
    const spec =
      'att.key=0.616,att.value=48.7%,att.receptance=0.495,att.output=0.737,ffn.key=0.386,ffn.receptance=0.559,ffn.value=0.937';
    const v = parseSiteValues(spec, shape, '--sparsity');
    for (const [i, x] of [0.616, 0.495, 0.487, 0.737, 0.559, 0.386, 0.937].entries()) {
      close(v[i], x, 'site', 1e-12);
    }
    assert.deepEqual(Array.from(v.slice(7)), Array.from(v.slice(0, 7)));
    assert.ok(parseSiteValues('0.6', shape, 'x').every((x) => x === 0.6));
    assert.throws(
      () => parseSiteValues('att.key=0.5', shape, '--sparsity'),
      /no value for att\.receptance/,
    );
    assert.throws(
      () => parseSiteValues(`${spec},att.query=1`, shape, '--sparsity'),
      /unknown site att\.query/,
    );
    assert.throws(
      () => parseSiteValues(spec.replace('0.616', '1.5'), shape, '--sparsity'),
      /not a fraction/,
    );
    const file = join(tmpDir(), 's.json');
    const table = Object.fromEntries(rwkv4Sites(4).map((s) => [s.id, [0.1, 0.2]]));
    writeFileSync(file, JSON.stringify(table));
    const j = parseSiteValues(file, shape, '--sparsity');
    assert.deepEqual([j[0], j[7]], [0.1, 0.2]);
    writeFileSync(file, JSON.stringify({ ...table, 'att.key': [0.1] }));
    assert.throws(
      () => parseSiteValues(file, shape, '--sparsity'),
      /att\.key has 1 values for 2 blocks/,
    );
    assert.throws(() => parseShape('24by1024', 1), /expected LAYERSxEMBD/);
  });
});

describe('the cpu profile against a bench result', () => {
  // A bench of a 1x8 model (ffn 32, vocab 16) at 50% zeros: 10 GB/s dense GEMV.
  const st = (median: number) => ({ median, min: median, max: median });
  const bench: BenchResult = {
    formatVersion: 1,
    machine: { cpu: 'test cpu', cores: 2, node: '20' },
    backends: ['native'],
    bandwidth: [{ threads: 2, gbps: st(1000) }],
    gemm: [{ backend: 'native', threads: 2, shape: '128x1024->4096', gflops: st(2000) }],
    gemv: [
      { backend: 'native', threads: 1, shape: '4096x4096', gbps: st(5) },
      { backend: 'native', threads: 2, shape: '4096x4096', gbps: st(10) },
    ],
    sparse: [0, 0.5, 0.7, 0.9].map((zeros, i) => ({
      backend: 'native',
      threads: 2,
      zeros,
      speedup: st([0.9, 1.8, 2.7, 6][i]),
      ideal: 1 / (1 - zeros),
    })),
    model: {
      source: 'random RWKV-4 1x8, vocab 16',
      backend: 'native',
      shape: '1x8 (ffn 32, vocab 16)',
      weightBytesPerToken: 3840,
      decodeDense: st(2e6),
      floorTokensPerSec: null,
      decodeSparse: st(3e6),
      targetZeros: 0.5,
      measuredZeros: 0.5,
      sequenceT: 0,
      sequence: null,
    },
  };

  test('constants are filled as measured; the prediction matches the hand count', () => {
    const p = profileWithBench(loadProfile('cpu'), bench, 'bench.json');
    assert.deepEqual(
      [
        p.constants.weightBandwidth.value,
        p.constants.peakMacs.value,
        p.constants.sparseSpeedup50.value,
      ],
      [10, 1000, 1.8],
    );
    assert.equal(p.constants.weightBandwidth.evidence, 'measured');
    const c = benchCheck(p, mapping(), bench)!;
    // fp32 weights: block 5·8² + 2·8·32 = 832 weights, head 16·8 = 128 → 3840 B
    assert.deepEqual(c.weightBytes, { model: 3840, bench: 3840 });
    // dense: 3840 B at 10 GB/s = 384 ns (floors: 960 MACs at 1000 GMAC/s, 1000 GB/s)
    close(c.predicted.dense, 384e-9, 'dense', 1e-9);
    // sparse: blocks 3328 B/(10 GB/s·1.8) + head 512 B/10 GB/s
    close(c.predicted.sparse, 3328 / 18e9 + 512 / 10e9, 'sparse', 1e-9);
    close(c.measured.dense, 5e-7, 'measured dense');
    assert.equal(c.predicted.evidence, 'measured');
    // A predicted sparse speedup is never a measurement: measured kernel points carried
    // to a model are derived (the sparse figure stood as "measured" beside a real one).
    assert.equal(c.predicted.sparseEvidence, 'derived');
    const e = estimate(whatIf(parseShape('1x8', 16), '0.5', undefined), p, mapping());
    const sparse = e.scenarios.find((x) => x.scenario === 'sparse')!;
    assert.equal(sparse.latency?.total.evidence, 'derived');
    assert.equal(e.scenarios[0].latency?.total.evidence, 'measured');
    assert.throws(
      () => profileWithBench(loadProfile('seneca'), bench, 'bench.json'),
      /--bench fills a conventional profile/,
    );
  });
});

describe('actsparse hw', () => {
  const run = (args: string[]) => runCommand(['hw', ...args]);

  test('a what-if on SENECA: table, not-costed lines, and the JSON', async () => {
    const json = join(tmpDir(), 'hw.json');
    const { out } = await run([
      '--sparsity',
      '0.6',
      '--shape',
      '2x16',
      '--vocab',
      '32',
      '--profile',
      'seneca',
      '--json',
      json,
    ]);
    assert.match(out, /^SENECA/);
    assert.match(out, /dense\/sparse/);
    assert.match(out, /not costed:/);
    assert.match(out, /--set exp=<pJ\/op>/);
    const j = JSON.parse(readFileSync(json, 'utf8'));
    assert.equal(j.formatVersion, 1);
    assert.equal(j.kind, 'actsparse.hw');
    assert.deepEqual(
      j.scenarios.map((s: { scenario: string }) => s.scenario),
      ['dense', 'sparse'],
    );
    assert.ok(j.ratios['energy.dense/sparse'] > 1);
    assert.ok(
      j.notCosted.some((n: { constant: string; hint: string }) => n.hint === '--set exp=<pJ/op>'),
    );
    assert.equal(j.scenarios[1].energy.total.evidence, 'assumed');
  });

  test('mistakes are UserErrors', async () => {
    await assert.rejects(run([]), /nothing to estimate/);
    await assert.rejects(run(['--sparsity', '0.5']), /needs the model shape/);
    await assert.rejects(run(['x', '--sparsity', '0.5']), /not both/);
    await assert.rejects(
      run(['--sparsity', '0.5', '--shape', '1x8', '--profile', 'cpu']),
      /weightBandwidth/,
    );
  });
});
