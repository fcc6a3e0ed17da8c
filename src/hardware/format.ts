/** The estimate as a readable report and as versioned JSON. */
import { HW_KIND, type HwFile } from '../formats/hw.ts';
import type { BenchCheck } from './check.ts';
import { CATEGORIES, type Category } from './cost.ts';
import type { Breakdown, Estimate, QuantityResult, Scenario } from './estimate.ts';
import { EVIDENCE } from './profile.ts';

const CATEGORY_LABEL: Record<Category, string> = {
  compute: 'compute',
  weightMemory: 'weight memory',
  stateMemory: 'state memory',
  eventsControl: 'events/control',
  network: 'network',
  static: 'static',
};

const SCENARIO_LABEL: Record<Scenario, string> = {
  dense: 'dense (d=1)',
  natural: 'natural',
  sparse: 'sparse',
};

/** Three significant figures without exponents. */
function num(x: number): string {
  const a = Math.abs(x);
  if (a === 0) return '0';
  if (a < 1e-3) return x.toExponential(2);
  if (a >= 1000) return x.toFixed(0);
  if (a >= 100) return x.toFixed(1);
  if (a >= 10) return x.toFixed(2);
  return x.toFixed(3);
}

/** A scale for pJ or seconds chosen from a reference value. */
function scale(kind: 'energy' | 'latency', ref: number): { unit: string; div: number } {
  if (kind === 'energy') {
    if (ref >= 1e9) return { unit: 'mJ', div: 1e9 };
    if (ref >= 1e6) return { unit: 'µJ', div: 1e6 };
    if (ref >= 1e3) return { unit: 'nJ', div: 1e3 };
    return { unit: 'pJ', div: 1 };
  }
  if (ref >= 1) return { unit: 's', div: 1 };
  if (ref >= 1e-3) return { unit: 'ms', div: 1e-3 };
  if (ref >= 1e-6) return { unit: 'µs', div: 1e-6 };
  return { unit: 'ns', div: 1e-9 };
}

function table(rows: string[][], leftCols = 1): string[] {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) =>
    r
      .map((c, i) => (i < leftCols || i === r.length - 1 ? c.padEnd(w[i]) : c.padStart(w[i])))
      .join('  ')
      .trimEnd(),
  );
}

const ratio = (a: Breakdown | undefined, b: Breakdown | undefined) =>
  a && b && b.value > 0 && a.evidence && b.evidence ? `${(a.value / b.value).toFixed(2)}×` : '-';

function cell(b: Breakdown | undefined, div: number): string {
  if (!b || b.evidence === null) return b?.partial ? 'n/c' : '-';
  return `${num(b.value / div)}${b.partial ? '*' : ''}`;
}

function weakest(bs: (Breakdown | undefined)[]): string {
  let worst = -1;
  for (const b of bs) if (b?.evidence) worst = Math.max(worst, EVIDENCE.indexOf(b.evidence));
  return worst < 0 ? '-' : EVIDENCE[worst];
}

/** A breakdown table (by layer type or by category) for one quantity across scenarios. */
function breakdownTable(
  e: Estimate,
  q: 'energy' | 'latency',
  rowsOf: (r: QuantityResult) => Record<string, Breakdown>,
  keys: string[],
  label: (k: string) => string,
  title: string,
): string[] {
  const res = e.scenarios.map((s) => s[q]);
  if (res.some((r) => !r)) return [];
  const { unit, div } = scale(q, res[0]!.total.value);
  const hasNatural = e.scenarios.some((s) => s.scenario === 'natural');
  const head = [
    title,
    ...e.scenarios.map((s) => `${SCENARIO_LABEL[s.scenario]} ${unit}`),
    'dense/sparse',
    ...(hasNatural ? ['natural/sparse'] : []),
    'evidence',
  ];
  const rows = [head];
  for (const key of [...keys, 'total']) {
    const bs = res.map((r) => (key === 'total' ? r!.total : rowsOf(r!)[key]));
    if (bs.every((b) => !b || (b.value === 0 && !b.partial && b.evidence === null))) continue;
    const last = bs[bs.length - 1];
    rows.push([
      key === 'total' ? 'total' : label(key),
      ...bs.map((b) => cell(b, div)),
      ratio(bs[0], last),
      ...(hasNatural ? [ratio(bs[1], last)] : []),
      weakest(bs),
    ]);
  }
  return table(rows).map((l) => `  ${l}`);
}

/** The report on stdout. */
export function formatEstimate(e: Estimate, check: BenchCheck | null = null): string {
  const p = e.profile;
  const m = e.resolved.mapping;
  const sh = e.input.shape;
  const out: string[] = [];
  out.push(`${p.title} — ${p.costModel} cost model`);
  out.push(
    '  an analytical estimate from per-operation constants (see the evidence column), not a simulation or a measurement',
  );
  out.push(
    `input: ${e.input.source}: ${sh.architecture} ${sh.nLayer}x${sh.nEmbd}, ${sh.sites.map((s) => `${s.id} ${s.cols}→${s.rows}`).join(', ')}, vocab ${sh.nVocab}`,
  );
  for (const n of e.notes) out.push(`  note: ${n}`);
  const wb = e.resolved.weightBits;
  const prec = `weights ${wb}-bit, ${(100 * m.externalWeightShare).toFixed(0)}% from external memory; activations ${m.activationPrecision}; arithmetic ${e.resolved.arithmetic}`;
  if (e.cores) {
    const per = Object.entries(e.cores.perGroup)
      .map(([g, c]) => `${g} ${c}`)
      .join(', ');
    out.push(
      `mapping: ${m.file.replace(/^built-in/, 'built-in default')}; cores ${m.cores === 'fit' ? `fit ${m.coreWeightBytes} B of weights each` : m.cores}: ${per} (${e.cores.total} in all; element-wise ops on ${e.cores.opCores}); state group G = ${m.stateGroup}; ${prec}; ${m.hopsPerEvent} hop(s) per event`,
    );
  } else {
    out.push(`mapping: ${m.file.replace(/^built-in/, 'built-in default')}; ${prec}`);
  }
  out.push(
    `zeros in block-site inputs, MAC-weighted: ${e.scenarios
      .filter((s) => s.scenario !== 'dense')
      .map((s) => `${s.scenario} ${(100 * s.macWeightedZeros).toFixed(1)}%`)
      .join(', ')}`,
  );

  // Headline: per token, each scenario, ratios.
  out.push('');
  const hasNatural = e.scenarios.some((s) => s.scenario === 'natural');
  const rows = [
    [
      'per token',
      ...e.scenarios.map((s) => SCENARIO_LABEL[s.scenario]),
      'dense/sparse',
      ...(hasNatural ? ['natural/sparse'] : []),
      'evidence',
    ],
  ];
  for (const q of ['energy', 'latency'] as const) {
    const bs = e.scenarios.map((s) => s[q]?.total);
    if (bs.some((b) => !b)) {
      const nm = e.notModelled.find((x) => x.quantity === q);
      rows.push([q, `not modelled (${nm?.constants.join(', ') ?? '?'} null)`]);
      continue;
    }
    const { unit, div } = scale(q, bs[0]!.value);
    const last = bs[bs.length - 1];
    rows.push([
      q,
      ...bs.map((b) => `${cell(b, div)} ${unit}`),
      ratio(bs[0], last),
      ...(hasNatural ? [ratio(bs[1], last)] : []),
      weakest(bs),
    ]);
  }
  out.push(...table(rows));

  for (const q of ['energy', 'latency'] as const) {
    const t = breakdownTable(
      e,
      q,
      (r) => r.byGroup,
      e.groups,
      (g) => g,
      `${q} by layer type`,
    );
    if (t.length) out.push('', ...t);
  }
  const c = breakdownTable(
    e,
    'energy',
    (r) => r.byCategory,
    [...CATEGORIES],
    (k) => CATEGORY_LABEL[k as Category],
    'energy by category',
  );
  if (c.length) out.push('', ...c);
  out.push('  * a lower bound: some terms of the row are not costed (below); n/c: nothing costed');

  if (check) {
    const tps = (s: number) => `${(1 / s).toFixed(1)} tok/s (${num(s * 1e3)} ms)`;
    out.push(
      '',
      `check against this machine: ${check.model}, ${check.shape}, ${(100 * check.zeros).toFixed(1)}% zeros at every site`,
    );
    out.push(
      ...table([
        ['step mode', 'predicted', 'evidence', 'measured (bench)', 'measured/predicted time'],
        [
          'dense',
          tps(check.predicted.dense),
          check.predicted.evidence ?? '-',
          tps(check.measured.dense),
          `${(check.measured.dense / check.predicted.dense).toFixed(2)}×`,
        ],
        [
          'sparse',
          tps(check.predicted.sparse),
          check.predicted.sparseEvidence ?? '-',
          tps(check.measured.sparse),
          `${(check.measured.sparse / check.predicted.sparse).toFixed(2)}×`,
        ],
        [
          'dense/sparse',
          `${(check.predicted.dense / check.predicted.sparse).toFixed(2)}×`,
          check.predicted.sparseEvidence ?? '-',
          `${(check.measured.dense / check.measured.sparse).toFixed(2)}×`,
          '',
        ],
      ]).map((l) => `  ${l}`),
    );
    if (Math.abs(check.weightBytes.model / check.weightBytes.bench - 1) > 1e-6) {
      out.push(
        `  note: weight bytes per token differ: ${check.weightBytes.model} here, ${check.weightBytes.bench} in the bench`,
      );
    }
    out.push(
      '  the prediction counts weight streaming only (element-wise ops, per-call overheads and the step loop are not costed)',
    );
  }

  if (e.notCosted.length || e.notModelled.length) {
    out.push(
      '',
      'not costed: constants null in the profile; these terms are left out, never counted as zero',
    );
    // One entry per null constant: which quantities and rows lack it, and what it would cost.
    const byConst = new Map<string, typeof e.notCosted>();
    for (const n of e.notCosted) byConst.set(n.constant, [...(byConst.get(n.constant) ?? []), n]);
    for (const [constant, ns] of byConst) {
      const quantities = [...new Set(ns.map((n) => n.quantity))].join(', ');
      const groups = [...new Set(ns.map((n) => n.group))];
      const rows = groups.length > 3 ? `${groups.length} rows` : groups.join(', ');
      const first = ns.some((n) => n.quantity === 'energy') ? 'energy' : ns[0].quantity;
      const whats = [...new Set(ns.filter((n) => n.quantity === first).map((n) => n.what))];
      const more = whats.length > 2 ? `; … ${whats.length - 2} more` : '';
      out.push(`  ${constant} (${quantities}; ${rows}): ${whats.slice(0, 2).join('; ')}${more}`);
      out.push(`      to cost it: --set ${constant}=<${p.constants[constant]?.unit ?? ''}>`);
    }
    for (const n of e.notModelled) {
      out.push(
        `  ${n.quantity.padEnd(7)} not modelled: ${p.name} gives no ${n.constants.join(', ')} (needed for ${n.what}); ${n.constants.map((c) => `--set ${c}=<${p.constants[c]?.unit ?? ''}>`).join(' ')}`,
      );
    }
  }

  const used = Object.entries(p.constants).filter(([, c]) => c.value !== null);
  out.push('', `constants (from ${p.file}; sources there and in --json):`);
  const line: string[] = [];
  for (const [name, c] of used) {
    line.push(`${name} ${Number(c.value!.toPrecision(4))} ${c.unit} [${c.evidence}]`);
  }
  for (let i = 0; i < line.length; i += 4) out.push(`  ${line.slice(i, i + 4).join('; ')}`);
  out.push(
    `evidence, strongest first: ${EVIDENCE.join(' > ')}; each figure carries the weakest label among the constants it used`,
  );
  return `${out.join('\n')}\n`;
}

/** Everything, as JSON (formatVersion 1). */
export function estimateJson(
  e: Estimate,
  check: BenchCheck | null,
  tool: { name: string; version: string },
): HwFile {
  const quantity = (q: QuantityResult | null, unit: string) =>
    q && {
      unit,
      total: q.total,
      byLayerType: q.byGroup,
      byCategory: q.byCategory,
      byLayerTypeAndCategory: q.matrix,
    };
  const last = e.scenarios[e.scenarios.length - 1];
  const ratios: Record<string, number | null> = {};
  for (const s of e.scenarios.slice(0, -1)) {
    for (const q of ['energy', 'latency'] as const) {
      const a = s[q]?.total.value;
      const b = last[q]?.total.value;
      ratios[`${q}.${s.scenario}/sparse`] = a !== undefined && b ? a / b : null;
    }
  }
  return {
    formatVersion: 1,
    kind: HW_KIND,
    tool,
    caveat:
      'an analytical estimate from per-operation constants (each figure labelled with its weakest evidence); not a simulation or a measurement',
    profile: {
      name: e.profile.name,
      title: e.profile.title,
      file: e.profile.file,
      costModel: e.profile.costModel,
      estimates: e.profile.estimates,
      constants: e.profile.constants,
    },
    mapping: e.resolved.mapping,
    resolved: {
      weightBits: e.resolved.weightBits,
      activationBits: e.resolved.activationBits,
      arithmetic: e.resolved.arithmetic,
      cores: e.cores,
    },
    input: {
      source: e.input.source,
      shape: { ...e.input.shape },
      notes: e.notes,
      sparsity: Array.from(e.input.sparse),
      naturalSparsity: e.input.natural ? Array.from(e.input.natural) : null,
    },
    scenarios: e.scenarios.map((s) => ({
      scenario: s.scenario,
      macWeightedZeros: s.macWeightedZeros,
      energy: quantity(s.energy, 'pJ per token'),
      latency: quantity(s.latency, 'seconds per token'),
    })),
    ratios,
    notCosted: e.notCosted.map((n) => ({
      ...n,
      hint: `--set ${n.constant}=<${e.profile.constants[n.constant]?.unit ?? ''}>`,
    })),
    notModelled: e.notModelled.map((n) => ({ ...n })),
    benchCheck: check,
    evidenceOrder: [...EVIDENCE],
  };
}
