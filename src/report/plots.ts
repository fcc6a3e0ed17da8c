/**
 * The report's plots as vega-lite specs with their data inline, rendered to SVG in
 * Node (vega's headless View, no canvas, no network) and to PNG with resvg on request.
 * Text from files only ever enters as data values, never into expressions.
 */
import { parse, View } from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { UserError } from '../errors.ts';
import type { BenchResult as BenchFile } from '../formats/bench.ts';
import type { HwFile } from '../formats/hw.ts';
import type { Run, RunFacts, SiteZeros } from './load.ts';

export interface Plot {
  /** File-name stem for --png (letters, digits, dashes). */
  id: string;
  title: string;
  /** One or two sentences under the figure. */
  caption: string;
  spec: TopLevelSpec;
}

const DENSE = '#a9b4c2';
const SPARSE = '#2f6db5';
const ACCEPT = '#2e9e5b';
const REJECT = '#d9534f';
const PALETTE = ['#4c78a8', '#f58518', '#e45756', '#72b7b2', '#54a24b', '#eeca3b', '#b279a2'];

const CONFIG = {
  font: 'sans-serif',
  view: { stroke: null },
  axis: { labelFontSize: 11, titleFontSize: 12, titleFontWeight: 'normal', gridColor: '#ececec' },
  legend: { labelFontSize: 11, titleFontSize: 11, titleFontWeight: 'normal', labelLimit: 0 },
  title: { fontSize: 13, anchor: 'start', fontWeight: 'bold', offset: 10 },
  header: { labelFontSize: 12 },
} as const;

const pct = (x: number) => Math.round(1000 * x) / 10;

/** MAC weight of each site id (rows × cols of the layer it feeds); 1 when unknown. */
function weights(shapes: { id: string; rows: number; cols: number }[] | null) {
  const w = new Map((shapes ?? []).map((s) => [s.id, s.rows * s.cols]));
  return (site: string) => w.get(site) ?? 1;
}

/** 1a: zeros per site id (mean over blocks), natural vs with thresholds. */
export function sitesPlot(sites: SiteZeros[], source: string): Plot {
  const ids = [...new Set(sites.map((s) => s.site))];
  const kinds = ['natural (dense model)', 'with thresholds'];
  const values = ids.flatMap((site) => {
    const rows = sites.filter((s) => s.site === site);
    const avg = (f: (s: SiteZeros) => number) => rows.reduce((a, s) => a + f(s), 0) / rows.length;
    return [
      { site, kind: kinds[0], zeros: pct(avg((s) => s.naturalSparsity)) },
      { site, kind: kinds[1], zeros: pct(avg((s) => s.sparsity)) },
    ];
  });
  return {
    id: 'sparsity-by-site',
    title: 'Zeros per site',
    caption: `Fraction of zeros in the input of each linear layer (site), averaged over blocks, measured on ${source}: grey is what the dense model has by itself, blue what the thresholds give.`,
    spec: {
      data: { values },
      width: Math.max(320, 64 * ids.length),
      height: 220,
      encoding: {
        x: { field: 'site', type: 'nominal', sort: ids, title: null, axis: { labelAngle: -30 } },
        xOffset: { field: 'kind', sort: kinds },
        y: {
          field: 'zeros',
          type: 'quantitative',
          title: 'zeros in the input (%)',
          scale: { domain: [0, 100] },
        },
        color: {
          field: 'kind',
          scale: { domain: kinds, range: [DENSE, SPARSE] },
          legend: { orient: 'top', title: null },
        },
      },
      layer: [
        { mark: 'bar' },
        {
          mark: { type: 'text', dy: -5, fontSize: 9, color: '#333' },
          encoding: { text: { field: 'zeros', format: '.0f' }, color: { value: '#333' } },
        },
      ],
    },
  };
}

/** 1b: MAC-weighted zeros per block, natural vs with thresholds. */
export function blocksPlot(
  sites: SiteZeros[],
  shapes: { id: string; rows: number; cols: number }[] | null,
  source: string,
): Plot {
  const w = weights(shapes);
  const blocks = [...new Set(sites.map((s) => s.block))].sort((a, b) => a - b);
  const kinds = ['natural (dense model)', 'with thresholds'];
  const values = blocks.flatMap((block) => {
    const rows = sites.filter((s) => s.block === block);
    const den = rows.reduce((a, s) => a + w(s.site), 0);
    const avg = (f: (s: SiteZeros) => number) =>
      rows.reduce((a, s) => a + w(s.site) * f(s), 0) / den;
    return [
      { block, kind: kinds[0], zeros: pct(avg((s) => s.naturalSparsity)) },
      { block, kind: kinds[1], zeros: pct(avg((s) => s.sparsity)) },
    ];
  });
  return {
    id: 'sparsity-by-block',
    title: 'Zeros per block',
    caption: `Zeros over all sites of each block, weighted by the multiply-accumulates each site's layer does (MAC-weighted), on ${source}.`,
    spec: {
      data: { values },
      width: Math.max(280, Math.min(900, 40 * blocks.length)),
      height: 200,
      encoding: {
        x: { field: 'block', type: 'ordinal', title: 'block', axis: { labelAngle: 0 } },
        xOffset: { field: 'kind', sort: kinds },
        y: {
          field: 'zeros',
          type: 'quantitative',
          title: 'MAC-weighted zeros (%)',
          scale: { domain: [0, 100] },
        },
        color: {
          field: 'kind',
          scale: { domain: kinds, range: [DENSE, SPARSE] },
          legend: { orient: 'top', title: null },
        },
      },
      layer: [{ mark: 'bar' }],
    },
  };
}

/** 2: chosen K per block × site, labelled. */
export function kHeatmap(sites: { block: number; site: string; k: number }[]): Plot {
  const ids = [...new Set(sites.map((s) => s.site))];
  const values = sites.map((s) => ({ block: s.block, site: s.site, k: s.k }));
  return {
    id: 'k-heatmap',
    title: 'Chosen K (fraction of each input kept)',
    caption:
      'The keep-fraction K chosen for every site of every block: 1 means the site stays dense, 0.3 that only the largest 30% of its inputs pass the threshold. Darker is sparser.',
    spec: {
      data: { values },
      width: { step: 62 },
      height: { step: 22 },
      encoding: {
        x: {
          field: 'site',
          type: 'nominal',
          sort: ids,
          title: null,
          axis: { orient: 'top', labelAngle: -30 },
        },
        y: { field: 'block', type: 'ordinal', title: 'block' },
      },
      layer: [
        {
          mark: { type: 'rect', stroke: 'white', strokeWidth: 1 },
          encoding: {
            color: {
              field: 'k',
              type: 'quantitative',
              title: 'K',
              scale: { domain: [0, 1], scheme: 'blues', reverse: true },
            },
          },
        },
        {
          mark: { type: 'text', fontSize: 11 },
          encoding: {
            text: { field: 'k', type: 'quantitative', format: '.2~f' },
            color: { condition: { test: 'datum.k < 0.45', value: 'white' }, value: '#111' },
          },
        },
      ],
    },
  };
}

/** 3: the loss after each site and every candidate tried, in calibration order. */
export function trajectoryPlot(run: Run): Plot | null {
  const t = run.thresholds;
  const csv = run.calibration;
  // Calibration order: thresholds.json's site list (block-major), else the CSV's.
  const order = new Map<string, number>();
  const key = (b: number, s: string) => `${b}/${s}`;
  for (const s of t?.sites ?? csv ?? []) {
    if (!order.has(key(s.block, s.site))) order.set(key(s.block, s.site), order.size + 1);
  }
  const kinds = ['loss after the site', 'accepted candidate', 'rejected candidate'];
  const after = (t?.sites ?? []).flatMap((s) =>
    s.loss === null
      ? []
      : [{ order: order.get(key(s.block, s.site)), loss: s.loss, kind: kinds[0], site: s.site }],
  );
  const candidates = (csv ?? []).map((c) => ({
    order: order.get(key(c.block, c.site)),
    loss: c.loss,
    kind: c.accepted ? kinds[1] : kinds[2],
    k: c.k,
    site: c.site,
  }));
  if (after.length === 0 && candidates.length === 0) return null;
  // A rule where each block begins.
  const starts: { order: number; label: string }[] = [];
  let prev = -1;
  for (const [k, o] of order) {
    const b = Number(k.slice(0, k.indexOf('/')));
    if (b !== prev) starts.push({ order: o - 0.5, label: `block ${b}` });
    prev = b;
  }
  const dense = t ? [{ loss: t.results.denseLoss, label: 'dense' }] : [];
  const x = {
    field: 'order',
    type: 'quantitative' as const,
    title: 'site, in calibration order (block by block)',
    scale: { domain: [0.5, order.size + 0.5], nice: false },
    axis: { tickMinStep: 1, format: 'd' },
  };
  const y = {
    field: 'loss',
    type: 'quantitative' as const,
    title: 'calibration loss (nats/token)',
    scale: { zero: false },
  };
  const color = {
    field: 'kind',
    type: 'nominal' as const,
    scale: { domain: kinds, range: ['#222', ACCEPT, REJECT] },
    legend: { orient: 'top' as const, title: null },
  };
  return {
    id: 'calibration-trajectory',
    title: 'Calibration trajectory',
    caption:
      'Each site in turn tries smaller K; a candidate is accepted while the loss grows by less than loss_inc over the previous site. Dots are the candidates of calibration.csv (green accepted, red rejected); the line is the loss after each site’s choice.',
    spec: {
      width: 760,
      height: 280,
      layer: [
        {
          data: { values: starts },
          mark: { type: 'rule', color: '#ddd', strokeDash: [3, 3] },
          encoding: { x: { ...x, field: 'order' } },
        },
        {
          data: { values: starts },
          mark: { type: 'text', align: 'left', baseline: 'top', dx: 3, y: 2, fontSize: 9 },
          encoding: {
            x: { ...x, field: 'order' },
            text: { field: 'label' },
            color: { value: '#888' },
          },
        },
        ...(dense.length
          ? [
              {
                data: { values: dense },
                mark: { type: 'rule' as const, color: '#888', strokeDash: [6, 3] },
                encoding: { y },
              },
              {
                data: { values: dense },
                mark: {
                  type: 'text' as const,
                  align: 'right' as const,
                  dy: -6,
                  x: 'width' as const,
                  fontSize: 10,
                },
                encoding: { y, text: { field: 'label' }, color: { value: '#666' } },
              },
            ]
          : []),
        {
          data: { values: candidates },
          mark: { type: 'point', filled: true, size: 28, opacity: 0.8 },
          encoding: { x, y, color },
        },
        {
          data: { values: after },
          mark: { type: 'line', point: { size: 18, filled: true }, strokeWidth: 1.5 },
          encoding: { x, y, color },
        },
      ],
    },
  };
}

/** 4: loss growth and accuracy against sparsity, one point per run, labelled with loss_inc. */
export function tradeoffPlot(runs: { run: Run; facts: RunFacts }[]): Plot | null {
  const pts = runs.filter((r) => r.facts.sparsity);
  if (pts.length < 2) return null;
  const model = (f: RunFacts) => (f.modelFile ? f.modelFile.split(/[\\/]/).pop()! : 'model');
  const growthOf = (f: RunFacts) => f.heldOutGrowth?.value ?? f.calibrationGrowth;
  const sources = new Set(pts.map((r) => (r.facts.heldOutGrowth ? 'held-out' : 'calibration')));
  const growthTitle =
    sources.size === 1
      ? `${[...sources][0]} loss growth (×)`
      : 'loss growth (×; held-out where measured, else calibration)';
  const values = pts.map(({ facts: f }) => ({
    model: model(f),
    label: f.sweepLabel,
    kind: 'with thresholds',
    zeros: pct(f.sparsity!.value),
    growth: growthOf(f),
    acc: f.accuracy?.sparse === null || !f.accuracy ? null : pct(f.accuracy.sparse),
  }));
  // The dense model of each model file, once: natural zeros, growth 1, dense accuracy.
  const denseSeen = new Set<string>();
  for (const { facts: f } of pts) {
    if (denseSeen.has(model(f))) continue;
    denseSeen.add(model(f));
    values.push({
      model: model(f),
      label: 'dense',
      kind: 'dense model',
      zeros: pct(f.sparsity!.natural),
      growth: 1,
      acc: f.accuracy?.dense == null ? null : pct(f.accuracy.dense),
    });
  }
  values.sort((a, b) => a.zeros - b.zeros);
  // Labels alternate above and below the points of a model, so neighbours do not collide.
  const rows = values.map((v) => ({
    ...v,
    growthText: v.label === 'dense' ? 'dense' : `${v.label}: ×${v.growth?.toFixed(4)}`,
    accText: v.acc === null ? null : `${v.label}: ${v.acc.toFixed(1)}%`,
    growthUp: true,
    accUp: true,
  }));
  for (const field of ['growth', 'acc'] as const) {
    const seen = new Map<string, number>();
    for (const r of rows) {
      if (r[field] === null) continue;
      const i = seen.get(r.model) ?? 0;
      seen.set(r.model, i + 1);
      r[`${field}Up`] = i % 2 === 0;
    }
  }
  const x = {
    field: 'zeros',
    type: 'quantitative' as const,
    title: 'MAC-weighted zeros (%)',
    scale: { zero: false, padding: 20 },
  };
  const label = (field: 'growth' | 'acc', up: boolean) => ({
    transform: [{ filter: `${up ? '' : '!'}datum.${field}Up` }],
    mark: {
      type: 'text' as const,
      dy: up ? -9 : 9,
      baseline: up ? ('bottom' as const) : ('top' as const),
      fontSize: 10,
    },
    encoding: { text: { field: `${field}Text` }, color: { value: '#333' } },
  });
  const panel = (field: 'growth' | 'acc', title: string) => ({
    width: 380,
    height: 260,
    transform: [{ filter: `isValid(datum.${field})` }],
    encoding: {
      x,
      y: { field, type: 'quantitative' as const, title, scale: { zero: false, padding: 16 } },
      color: {
        field: 'model',
        type: 'nominal' as const,
        title: 'model',
        legend: { orient: 'top' as const },
      },
    },
    layer: [
      {
        mark: { type: 'line' as const, strokeWidth: 1.2 },
        encoding: { detail: { field: 'model' } },
      },
      {
        mark: { type: 'point' as const, size: 70, filled: true, opacity: 1 },
        encoding: {
          shape: {
            field: 'kind',
            type: 'nominal' as const,
            title: null,
            scale: { domain: ['dense model', 'with thresholds'], range: ['square', 'circle'] },
            legend: { orient: 'top' as const },
          },
        },
      },
      label(field, true),
      label(field, false),
    ],
  });
  const hasAcc = values.some((v) => v.acc !== null);
  return {
    id: 'tradeoff',
    title: 'Sparsity against loss and accuracy',
    caption: `One point per run, labelled with its loss_inc (or method), against the MAC-weighted zeros it reaches (${pts.every((r) => r.facts.sparsity?.source === 'calibration') ? 'on the calibration tokens' : 'calibration or evaluation'}); squares are the dense model's natural zeros.${hasAcc ? ' Right: mean zero-shot accuracy over the evaluated tasks (lm-eval main metric per task).' : ''}`,
    spec: {
      data: { values: rows },
      hconcat: [
        panel('growth', growthTitle),
        ...(hasAcc ? [panel('acc', 'mean zero-shot accuracy (%)')] : []),
      ],
      resolve: { scale: { color: 'shared', shape: 'shared' } },
    },
  };
}

const CATEGORY_LABEL: Record<string, string> = {
  compute: 'compute',
  weightMemory: 'weight memory',
  stateMemory: 'state memory',
  eventsControl: 'events/control',
  network: 'network',
  static: 'static',
};
const SCENARIO_LABEL = { dense: 'dense (all inputs)', natural: 'natural zeros', sparse: 'sparse' };

/** A unit for a column of pJ or seconds. */
function unitFor(q: 'energy' | 'latency', ref: number): { unit: string; div: number } {
  const steps =
    q === 'energy'
      ? [
          [1e9, 'mJ'],
          [1e6, 'µJ'],
          [1e3, 'nJ'],
          [1, 'pJ'],
        ]
      : [
          [1, 's'],
          [1e-3, 'ms'],
          [1e-6, 'µs'],
          [1e-9, 'ns'],
        ];
  for (const [div, unit] of steps as [number, string][]) if (ref >= div) return { unit, div };
  const [div, unit] = steps[steps.length - 1] as [number, string];
  return { unit, div };
}

/** 5: energy and latency per token by cost category, per scenario. */
export function hwPlot(hw: HwFile): Plot | null {
  const panels = (['energy', 'latency'] as const).flatMap((q) => {
    const res = hw.scenarios.map((s) => ({ s: s.scenario, r: s[q] }));
    if (res.some((x) => !x.r)) return [];
    const { unit, div } = unitFor(q, Math.max(...res.map((x) => x.r!.total.value)));
    const values = res.flatMap(({ s, r }) =>
      Object.entries(r!.byCategory)
        .filter(([, b]) => b.value > 0)
        .map(([c, b]) => ({
          scenario: SCENARIO_LABEL[s],
          category: CATEGORY_LABEL[c] ?? c,
          value: b.value / div,
        })),
    );
    const totals = res.map(({ s, r }) => ({
      scenario: SCENARIO_LABEL[s],
      total: r!.total.value / div,
      label: `${(r!.total.value / div).toPrecision(3)}${r!.total.partial ? '*' : ''}`,
    }));
    const xEnc = {
      field: 'scenario',
      type: 'nominal' as const,
      sort: res.map((x) => SCENARIO_LABEL[x.s]),
      title: null,
      axis: { labelAngle: 0 },
    };
    return [
      {
        width: { step: 90 },
        height: 240,
        title: { text: `${q} per token (${unit})`, fontSize: 12, fontWeight: 'normal' as const },
        layer: [
          {
            data: { values },
            mark: { type: 'bar' as const },
            encoding: {
              x: xEnc,
              y: {
                field: 'value',
                type: 'quantitative' as const,
                title: unit,
                stack: 'zero' as const,
                // Room above the tallest bar for its label.
                scale: { domain: [0, 1.12 * Math.max(...totals.map((x) => x.total))] },
              },
              color: {
                field: 'category',
                type: 'nominal' as const,
                title: 'cost category',
                sort: Object.values(CATEGORY_LABEL),
                scale: { scheme: 'tableau10' },
              },
              order: { field: 'category' },
            },
          },
          {
            data: { values: totals },
            mark: { type: 'text' as const, dy: -6, fontSize: 10 },
            encoding: {
              x: xEnc,
              y: { field: 'total', type: 'quantitative' as const },
              text: { field: 'label' },
              color: { value: '#333' },
            },
          },
        ],
      },
    ];
  });
  if (panels.length === 0) return null;
  const partial = hw.scenarios.some((s) => s.energy?.total.partial || s.latency?.total.partial);
  return {
    id: 'hardware',
    title: `Energy and latency per token: ${hw.profile.title}`,
    caption: `An analytical estimate from per-operation constants of the ${hw.profile.name} profile (${hw.profile.costModel} cost model), not a measurement: the dense model with every input, with its natural zeros, and with the thresholds.${partial ? ' * marks a lower bound: some terms have no constant in the profile and are left out.' : ''}`,
    spec: { hconcat: panels, resolve: { scale: { color: 'shared' } } },
  };
}

/** 6a: kernel speeds of this machine: GEMM, GEMV, sparse GEMV speedup against ideal. */
export function kernelsPlot(b: BenchFile): Plot | null {
  if (b.gemv.length === 0 && b.gemm.length === 0) return null;
  const name = (x: { backend: string; threads: number }) => `${x.backend} ${x.threads}t`;
  const bars = (
    rows: { kernel: string; median: number; min: number; max: number }[],
    title: string,
  ) => ({
    width: { step: 46 },
    height: 200,
    title: { text: title, fontSize: 12, fontWeight: 'normal' as const },
    data: { values: rows },
    encoding: {
      x: {
        field: 'kernel',
        type: 'nominal' as const,
        sort: rows.map((r) => r.kernel),
        title: null,
        axis: { labelAngle: -30 },
      },
    },
    layer: [
      {
        mark: { type: 'bar' as const, color: SPARSE },
        encoding: { y: { field: 'median', type: 'quantitative' as const, title: null } },
      },
      {
        mark: { type: 'rule' as const, color: '#333' },
        encoding: {
          y: { field: 'min', type: 'quantitative' as const },
          y2: { field: 'max' },
        },
      },
    ],
  });
  const gemm = b.gemm.map((g) => ({ kernel: name(g), ...g.gflops }));
  const gemv = b.gemv.map((g) => ({ kernel: name(g), ...g.gbps }));
  const sparse = b.sparse.map((s) => ({
    kernel: name(s),
    zeros: pct(s.zeros),
    speedup: s.speedup.median,
  }));
  const ideal = [...new Set(b.sparse.map((s) => s.zeros))]
    .sort((a, c) => a - c)
    .map((z) => ({ zeros: pct(z), speedup: 1 / (1 - z), kernel: 'ideal 1/(1−zeros)' }));
  const kernels = [...new Set(sparse.map((s) => s.kernel))];
  // Powers of two across the speedups and the ideal (log axis).
  const all = [...sparse, ...ideal].map((s) => s.speedup).filter((v) => v > 0);
  const ticks = [0.125, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64].filter(
    (v) => v >= Math.min(...all) / 1.5 && v <= Math.max(...all) * 1.5,
  );
  const speed = {
    width: 300,
    height: 200,
    title: { text: 'sparse GEMV speedup over dense', fontSize: 12, fontWeight: 'normal' as const },
    encoding: {
      x: { field: 'zeros', type: 'quantitative' as const, title: 'zeros in the input (%)' },
      y: {
        field: 'speedup',
        type: 'quantitative' as const,
        title: 'speedup (×, log scale)',
        scale: { type: 'log' as const, nice: false, padding: 8 },
        axis: { values: ticks },
      },
      color: {
        field: 'kernel',
        type: 'nominal' as const,
        title: null,
        scale: {
          domain: [...kernels, 'ideal 1/(1−zeros)'],
          range: [...PALETTE.slice(0, kernels.length), '#555'],
        },
        legend: { orient: 'right' as const },
      },
    },
    layer: [
      {
        data: { values: ideal },
        mark: { type: 'line' as const, strokeDash: [4, 3], color: '#555' },
      },
      {
        data: { values: sparse },
        mark: { type: 'line' as const, point: { filled: true, size: 30 } },
      },
    ],
  };
  return {
    id: 'kernels',
    title: `Kernel speeds on this machine (${b.machine.cpu}, ${b.machine.cores} cores)`,
    caption: `Measured by \`actsparse bench\`: median over repeats with min–max bars. GEMV is bound by memory bandwidth, so skipping the weight columns of zero inputs can speed it up by at most 1/(1 − zeros) (dashed); speedups are over the fastest dense path (${[...new Set(b.sparse.map((x) => x.baseline ?? 'dense GEMV'))].join(' or ')}).`,
    spec: {
      hconcat: [
        ...(gemm.length ? [bars(gemm, 'GEMM (GFLOPS)')] : []),
        ...(gemv.length ? [bars(gemv, 'dense GEMV (GB/s)')] : []),
        ...(sparse.length ? [speed] : []),
      ],
      resolve: { scale: { color: 'independent' } },
    },
  };
}

/** 6b: decode tokens/s, dense and with thresholds. */
export function decodePlot(b: BenchFile): Plot | null {
  const m = b.model;
  if (!m) return null;
  const values = [
    { mode: 'dense', ...m.decodeDense },
    { mode: `sparse (${pct(m.measuredZeros)}% zeros)`, ...m.decodeSparse },
  ];
  const floor = m.floorTokensPerSec
    ? [{ floor: m.floorTokensPerSec, label: 'bandwidth floor' }]
    : [];
  const xEnc = {
    field: 'mode',
    type: 'nominal' as const,
    title: null,
    sort: values.map((v) => v.mode),
    axis: { labelAngle: 0 },
  };
  return {
    id: 'decode',
    title: `Decode speed: ${m.shape}`,
    caption: `Tokens per second generating one token at a time (${m.backend}) with ${m.source}${m.decodeTokens ? `, ${m.decodeTokens} tokens per timed run` : ''}: dense, and with ${m.targetZeros !== null ? `thresholds set for ${pct(m.targetZeros)}% zeros at every site` : (m.zerosSource ?? 'the calibrated thresholds')} (${pct(m.measuredZeros)}% zeros measured); ${m.floorTokensPerSec ? 'the dashed line is the dense speed memory bandwidth allows (weights read once per token)' : 'no bandwidth figure was measured'}.`,
    spec: {
      width: { step: 110 },
      height: 220,
      layer: [
        {
          data: { values },
          mark: { type: 'bar', color: SPARSE },
          encoding: { x: xEnc, y: { field: 'median', type: 'quantitative', title: 'tokens/s' } },
        },
        {
          data: { values },
          mark: { type: 'rule', color: '#333' },
          encoding: { x: xEnc, y: { field: 'min', type: 'quantitative' }, y2: { field: 'max' } },
        },
        {
          data: { values },
          mark: { type: 'text', dy: -8, dx: 18, fontSize: 10 },
          encoding: {
            x: xEnc,
            y: { field: 'median', type: 'quantitative' },
            text: { field: 'median', format: '.0f' },
            color: { value: '#333' },
          },
        },
        ...(floor.length
          ? [
              {
                data: { values: floor },
                mark: { type: 'rule' as const, strokeDash: [6, 3], color: '#888' },
                encoding: { y: { field: 'floor', type: 'quantitative' as const } },
              },
              {
                data: { values: floor },
                mark: {
                  type: 'text' as const,
                  align: 'right' as const,
                  x: 'width' as const,
                  dy: -6,
                  fontSize: 10,
                },
                encoding: {
                  y: { field: 'floor', type: 'quantitative' as const },
                  text: { field: 'label' },
                  color: { value: '#666' },
                },
              },
            ]
          : []),
      ],
    },
  };
}

/** Renders a spec to an SVG string: vega's headless view, no DOM, no canvas, no network. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const { spec: vg } = compile({ ...spec, config: CONFIG } as TopLevelSpec);
  const view = new View(parse(vg), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

const xmlEscape = (t: string) =>
  t
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;');

/**
 * A rendered plot as PNG with its caption set under it, so that what "estimate", "*"
 * and the colours mean travels with the picture.
 */
export async function plotPng(plot: { svg: string; caption: string }): Promise<Uint8Array> {
  const size = /<svg[^>]*\bwidth="([\d.]+)"[^>]*\bheight="([\d.]+)"/.exec(plot.svg);
  const width = Math.max(360, size ? Number(size[1]) : 600);
  const height = size ? Number(size[2]) : 400;
  // About 6.4 px per character at 12 px sans-serif.
  const perLine = Math.floor((width - 16) / 6.4);
  const lines: string[] = [];
  let line = '';
  for (const word of plot.caption.split(/\s+/)) {
    if (line && line.length + 1 + word.length > perLine) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  const lead = 16;
  const total = height + 12 + lead * lines.length + 8;
  const inner = plot.svg.replace(/^<\?xml[^>]*>\s*/, '');
  const text = lines
    .map(
      (l, i) =>
        `<text x="8" y="${height + 12 + lead * (i + 1) - 4}" font-family="DejaVu Sans, sans-serif" font-size="12" fill="#444">${xmlEscape(l)}</text>`,
    )
    .join('');
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="${width}" height="${total}" viewBox="0 0 ${width} ${total}">${inner}${text}</svg>`;
  return svgToPng(svg);
}

/** An SVG as PNG (2× scale) via @resvg/resvg-js, loaded only when asked for. */
export async function svgToPng(svg: string): Promise<Uint8Array> {
  let Resvg: typeof import('@resvg/resvg-js').Resvg;
  try {
    ({ Resvg } = await import('@resvg/resvg-js'));
  } catch (e) {
    throw new UserError(
      `--png: the PNG renderer @resvg/resvg-js cannot be loaded (${(e as Error).message.split('\n')[0]})`,
      'Reinstall actsparse with its optional platform package, or leave out --png (the HTML has every plot).',
    );
  }
  const r = new Resvg(svg, {
    fitTo: { mode: 'zoom', value: 2 },
    background: 'white',
    font: { loadSystemFonts: true, sansSerifFamily: 'DejaVu Sans' },
  });
  return r.render().asPng();
}
