/**
 * The report page: one self-contained HTML file (inline CSS, plots as inline SVG, no
 * script, nothing fetched). Every string that comes from a file is escaped.
 */
import { basename } from 'node:path';
import { type Run, type RunFacts, runFacts, siteZeros, type TaskRow, taskRows } from './load.ts';
import {
  blocksPlot,
  decodePlot,
  hwPlot,
  kernelsPlot,
  kHeatmap,
  type Plot,
  renderSvg,
  sitesPlot,
  tradeoffPlot,
  trajectoryPlot,
} from './plots.ts';

/** Text for HTML content and attribute values. */
export function esc(s: string | number): string {
  return String(s)
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
    .replace(/'/g, '&#39;');
}

/** Escaped text with `code` spans (the backticks of captions). */
const prose = (s: string) => esc(s).replace(/`([^`]+)`/g, '<code>$1</code>');

export interface RenderedPlot {
  /** File-name stem, e.g. "03-brown-1.0005-k-heatmap". */
  name: string;
  title: string;
  /** The caption under the figure (plain text), kept with the PNG export. */
  caption: string;
  svg: string;
}

export interface ReportOptions {
  title?: string;
  tool: { name: string; version: string };
  now?: Date;
}

const pct = (x: number | null | undefined, d = 1) =>
  x === null || x === undefined ? '–' : `${(100 * x).toFixed(d)}%`;
const times = (x: number | null | undefined, d = 4) =>
  x === null || x === undefined ? '–' : `×${x.toFixed(d)}`;
const slug = (s: string) => s.replace(/[^A-Za-z0-9._-]+/g, '_').replace(/^[._]+/, '') || 'run';
const fileName = (p: string | null) => (p ? basename(p) : 'unknown model');

const CSS = `
:root{--ink:#1d232b;--muted:#5d6875;--line:#dde2e8;--soft:#f5f7f9;--accent:#2f6db5}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);background:#fff}
main{max-width:1120px;margin:0 auto;padding:28px 28px 60px}
header h1{font-size:26px;margin:0 0 4px}
.lede{color:var(--muted);margin:0 0 18px}
nav{font-size:13px;margin:0 0 24px;padding:8px 12px;background:var(--soft);border-radius:6px}
nav a{color:var(--accent);text-decoration:none;margin-right:14px}
h2{font-size:20px;margin:36px 0 8px;padding-bottom:4px;border-bottom:2px solid var(--line)}
h3{font-size:16px;margin:24px 0 6px}
p{margin:6px 0 10px}
.path{color:var(--muted);font-size:13px;overflow-wrap:anywhere}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px;margin:14px 0}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 14px;background:var(--soft)}
.card .k{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:24px;font-weight:600;margin:2px 0}
.card .s{font-size:12.5px;color:var(--muted)}
figure.plot{margin:16px 0 22px;padding:12px;border:1px solid var(--line);border-radius:8px;overflow-x:auto}
figure.plot svg{display:block;max-width:100%;height:auto}
figcaption{font-size:13.5px;color:var(--muted);margin-top:8px;max-width:860px}
figcaption b{color:var(--ink)}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13.5px}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600}
td:first-child{white-space:nowrap}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
tr.mean td{font-weight:600;border-top:2px solid var(--line)}
table.kv th{width:210px;background:none;color:var(--muted);font-weight:500}
table.kv td{overflow-wrap:anywhere}
code{font:12.5px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:var(--soft);padding:1px 4px;border-radius:3px}
.note{border-left:3px solid #e0a800;background:#fff8e1;padding:6px 10px;margin:8px 0;font-size:13.5px}
.pos{color:#1e7b45}.neg{color:#b3261e}
footer{margin-top:40px;color:var(--muted);font-size:12.5px}
@media print{figure.plot{break-inside:avoid}nav{display:none}}
`;

/** The figure element around an SVG (xmlns dropped: HTML puts <svg> in its namespace). */
function figure(n: number, plot: Plot, svg: string): string {
  const inline = svg
    .replace(
      /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" xmlns:xlink="http:\/\/www\.w3\.org\/1999\/xlink"/,
      `<svg role="img" aria-label="${esc(plot.title)}"`,
    )
    // Vega numbers its gradients and clip paths from 0 in every SVG: one page needs unique ids.
    .replace(/ id="([^"]+)"/g, ` id="f${n}-$1"`)
    .replace(/url\(#([^)]+)\)/g, `url(#f${n}-$1)`);
  return `<figure class="plot" id="figure-${n}" data-plot="${esc(plot.id)}">${inline}<figcaption><b>Figure ${n}. ${esc(plot.title)}.</b> ${prose(plot.caption)}</figcaption></figure>`;
}

function card(k: string, v: string, s: string): string {
  return `<div class="card"><div class="k">${esc(k)}</div><div class="v">${esc(v)}</div><div class="s">${esc(s)}</div></div>`;
}

function cards(f: RunFacts): string {
  const out: string[] = [];
  if (f.sparsity) {
    out.push(
      card(
        'MAC-weighted zeros',
        pct(f.sparsity.value),
        `natural ${pct(f.sparsity.natural)} in the dense model (${f.sparsity.source})`,
      ),
    );
  }
  if (f.calibrationGrowth !== null || f.heldOutGrowth) {
    const main = f.heldOutGrowth ?? { value: f.calibrationGrowth!, source: 'calibration' };
    out.push(
      card(
        'Loss growth',
        times(main.value),
        f.heldOutGrowth
          ? `on held-out text (${f.heldOutGrowth.source === 'calibration' ? 'documents calibrate set aside' : 'eval --text'}); on the calibration tokens ${times(f.calibrationGrowth)}`
          : 'on the calibration tokens',
      ),
    );
  }
  if (f.accuracy) {
    const a = f.accuracy;
    out.push(
      card(
        'Zero-shot accuracy',
        a.sparse === null ? pct(a.dense) : `${pct(a.dense)} → ${pct(a.sparse)}`,
        `mean over ${a.tasks} task${a.tasks === 1 ? '' : 's'}${a.sparse === null ? ' (dense only)' : ', dense → sparse'}`,
      ),
    );
  }
  if (f.hw) {
    const h = f.hw;
    if (h.energy !== null)
      out.push(
        card(
          'Energy per token',
          `${h.energy.toFixed(2)}× less`,
          `vs ${h.vs}, ${h.profile} (estimate)`,
        ),
      );
    if (h.latency !== null)
      out.push(
        card(
          'Latency per token',
          `${h.latency.toFixed(2)}× less`,
          `vs ${h.vs}, ${h.profile} (estimate)`,
        ),
      );
  }
  if (f.decodeSpeedup) {
    out.push(
      card(
        'Decode speed (measured)',
        `${f.decodeSpeedup.value.toFixed(2)}×`,
        `sparse/dense at ${pct(f.decodeSpeedup.zeros)} zeros, bench model`,
      ),
    );
  }
  return out.length ? `<div class="cards">${out.join('')}</div>` : '';
}

/** One sentence on what was done: model, method, data. */
function sentence(run: Run, f: RunFacts): string {
  const t = run.thresholds;
  const parts: string[] = [];
  const model = `<b>${esc(fileName(f.modelFile))}</b>${f.shape ? ` (${esc(f.shape)})` : ''}`;
  if (t) {
    const p = t.method.params;
    const knobs = Object.entries(p)
      .map(([k, v]) => `${k} ${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(', ');
    parts.push(
      `${model}, thresholds chosen by the <b>${esc(t.method.name)}</b> method (${esc(knobs)}) on ${esc(t.data.tokens)} tokens of ${esc(t.data.description)}.`,
    );
  } else parts.push(`${model}.`);
  if (f.sparsity) {
    parts.push(
      `With the thresholds, ${pct(f.sparsity.value)} of the inputs of the block layers are zero, MAC-weighted (the dense model has ${pct(f.sparsity.natural)} by itself).`,
    );
  }
  if (f.heldOutGrowth || f.calibrationGrowth !== null) {
    parts.push(
      `The loss grows ${f.heldOutGrowth ? `${times(f.heldOutGrowth.value)} on held-out text` : ''}${f.heldOutGrowth && f.calibrationGrowth !== null ? ' and ' : ''}${f.calibrationGrowth !== null ? `${times(f.calibrationGrowth)} on the calibration tokens` : ''}.`,
    );
  }
  if (f.hw && f.hw.energy !== null) {
    parts.push(
      `${esc(f.hw.profile)} would spend ${f.hw.energy.toFixed(2)}× less energy per token than with natural zeros alone (an analytical estimate).`,
    );
  }
  return `<p>${parts.join(' ')}</p>`;
}

function summaryTable(items: { run: Run; facts: RunFacts }[]): string {
  const head = [
    'run',
    'model',
    'method',
    'zeros (natural)',
    'loss growth calib.',
    'held-out',
    'mean acc. dense → sparse',
    'energy ×',
    'latency ×',
    'decode ×',
  ];
  const rows = items.map(({ run, facts: f }, i) => {
    const acc = f.accuracy
      ? f.accuracy.sparse === null
        ? pct(f.accuracy.dense)
        : `${pct(f.accuracy.dense)} → ${pct(f.accuracy.sparse)}`
      : '–';
    const cells = [
      `<a href="#run-${i + 1}">${esc(run.label)}</a>`,
      esc(f.modelFile ? fileName(f.modelFile) : (f.shape ?? '–')),
      esc(f.method ? `${f.method}${f.lossInc !== null ? ` ${f.lossInc}` : ''}` : '–'),
      f.sparsity ? `${pct(f.sparsity.value)} (${pct(f.sparsity.natural)})` : '–',
      times(f.calibrationGrowth),
      times(f.heldOutGrowth?.value),
      acc,
      f.hw?.energy != null ? `${f.hw.energy.toFixed(2)}×` : '–',
      f.hw?.latency != null ? `${f.hw.latency.toFixed(2)}×` : '–',
      f.decodeSpeedup ? `${f.decodeSpeedup.value.toFixed(2)}×` : '–',
    ];
    return `<tr>${cells.map((c, j) => `<td${j >= 3 ? ' class="n"' : ''}>${c}</td>`).join('')}</tr>`;
  });
  return `<table><thead><tr>${head.map((h, j) => `<th${j >= 3 ? ' class="n"' : ''}>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>
<p class="path">Energy and latency: the hardware estimate's ratio of the natural-zeros (or dense) scenario to the sparse one. Decode: measured sparse/dense tokens per second of the bench model.</p>`;
}

function taskTable(run: Run): string {
  const e = run.evalResults;
  if (!e) return '';
  const rows: TaskRow[] = taskRows(e);
  const items = (e.config.items ?? {}) as Record<string, unknown>;
  const chance = (e.config.chance ?? {}) as Record<string, unknown>;
  const hasSparse = e.dense !== null;
  const head = hasSparse
    ? ['task', 'metric', 'dense', 'sparse', 'Δ', '± (sparse)', 'chance', 'items']
    : ['task', 'metric', 'value', '±', 'chance', 'items'];
  const body = rows.map((r) => {
    const d = r.sparse !== null && r.dense !== null ? r.sparse - r.dense : null;
    const delta =
      d === null
        ? '–'
        : `<span class="${d >= 0 ? 'pos' : 'neg'}">${d >= 0 ? '+' : ''}${(100 * d).toFixed(1)}</span>`;
    const n = typeof items[r.task] === 'number' ? String(items[r.task]) : '';
    const c = typeof chance[r.task] === 'number' ? pct(chance[r.task] as number) : '–';
    const cells = hasSparse
      ? [esc(r.task), esc(r.metric), pct(r.dense), pct(r.sparse), delta, pct(r.stderr), c, esc(n)]
      : [esc(r.task), esc(r.metric), pct(r.dense), pct(r.stderr), c, esc(n)];
    return `<tr>${cells.map((c, j) => `<td${j >= 2 ? ' class="n"' : ''}>${c}</td>`).join('')}</tr>`;
  });
  const mean = (xs: (number | null)[]) => {
    const v = xs.filter((x): x is number => x !== null);
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : null;
  };
  if (rows.length > 1) {
    const md = mean(rows.map((r) => r.dense));
    const ms = mean(rows.map((r) => r.sparse));
    const cells = hasSparse
      ? [
          'mean',
          '',
          pct(md),
          pct(ms),
          ms !== null && md !== null
            ? `${ms >= md ? '+' : ''}${(100 * (ms - md)).toFixed(1)}`
            : '–',
          '',
          '',
          '',
        ]
      : ['mean', '', pct(md), '', '', ''];
    body.push(
      `<tr class="mean">${cells.map((c, j) => `<td${j >= 2 ? ' class="n"' : ''}>${c}</td>`).join('')}</tr>`,
    );
  }
  const texts = Object.entries(e.heldOut).map(([name, s]) => {
    const d = e.dense?.heldOut[name];
    return hasSparse && d
      ? `<tr><td>${esc(name)}</td><td>loss (nats)</td><td class="n">${d.meanNll.toFixed(4)}</td><td class="n">${s.meanNll.toFixed(4)}</td><td class="n">${times(s.meanNll / d.meanNll)}</td><td></td><td></td><td class="n">${esc(s.tokens)}</td></tr>`
      : `<tr><td>${esc(name)}</td><td>loss (nats)</td><td class="n">${s.meanNll.toFixed(4)}</td><td></td><td></td><td class="n">${esc(s.tokens)}</td></tr>`;
  });
  return `<h3>Zero-shot accuracy</h3>
<table><thead><tr>${head.map((h, j) => `<th${j >= 2 ? ' class="n"' : ''}>${esc(h)}</th>`).join('')}</tr></thead><tbody>${body.join('')}${texts.join('')}</tbody></table>
<p class="path">Accuracy in % with lm-eval's main metric per task (acc_norm where lm-eval reports it first); Δ in points; ± is the standard error (sample sd / √n); chance: guessing uniformly among the choices.</p>`;
}

function kv(rows: [string, string | number | null | undefined][]): string {
  return `<table class="kv"><tbody>${rows
    .filter(([, v]) => v !== null && v !== undefined && v !== '')
    .map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v!)}</td></tr>`)
    .join('')}</tbody></table>`;
}

/** A value from a JSON file as text: arrays joined, objects as `key value` pairs. */
function json(v: unknown): string {
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) return v.map(json).join(', ');
  if (v && typeof v === 'object') {
    return Object.entries(v)
      .map(([k, x]) => `${k} ${json(x)}`)
      .join(', ');
  }
  return String(v);
}

function provenance(run: Run): string {
  const rows: [string, string | number | null | undefined][] = [
    ['run directory', run.dir],
    ['files read', run.files.join(', ')],
  ];
  const t = run.thresholds;
  if (t) {
    const m = t.model;
    rows.push(
      ['model file', m.file],
      ['model SHA-256', m.fileSha256],
      ['weights fingerprint', m.fingerprint],
      ['architecture', `${m.architecture} ${m.nLayer}x${m.nEmbd}, vocab ${m.nVocab}`],
      ['sites per block', m.sitesPerBlock.join(', ')],
      ['calibration data', t.data.description],
      ['data SHA-256', t.data.sha256],
      [
        'data used',
        `${t.data.documents.length} documents, ${t.data.windows} windows × ${t.data.ctx} tokens (${t.data.tokens} tokens), seed ${t.data.seed}, tokenizer ${t.data.tokenizer}`,
      ],
      ['method', t.method.name],
      ['method parameters', json(t.method.params)],
      [
        'calibration work',
        `${t.results.work.lossEvaluations} loss evaluations, ${t.results.work.statisticsPasses} statistics passes, ${(t.results.work.blockTokens / 1e6).toFixed(2)} M block-token forwards`,
      ],
      ['thresholds written by', `${t.tool.name} ${t.tool.version}`],
    );
  }
  if (run.config) rows.push(['calibrate config.json', json(run.config)]);
  const e = run.evalResults;
  if (e) {
    const c = e.config;
    rows.push(
      ['eval: model file', e.model?.file ?? 'not recorded'],
      ['eval: weights fingerprint', e.model?.fingerprint ?? 'not recorded'],
      ['eval: thresholds', c.thresholds === null ? 'none (dense)' : json(c.thresholds ?? '')],
      ['eval: tasks', json(c.tasks ?? '')],
      ['eval: task folder', c.taskDir == null ? '' : json(c.taskDir)],
      ['eval: limit', c.limit == null ? 'none' : json(c.limit)],
      ['eval: texts', json(c.texts ?? '')],
      ['eval: ctx, windows', `${json(c.ctx ?? '?')}, ${json(c.windows ?? '?')}`],
      ['eval: tokenizer', c.tokenizer == null ? '' : json(c.tokenizer)],
      ['eval: backend', c.backend == null ? '' : json(c.backend)],
      ['eval written by', `${e.tool.name} ${e.tool.version}`],
    );
  }
  for (const [file, h] of [
    ...(run.hw ? [['hw.json', run.hw] as const] : []),
    ...run.moreHw.map((x) => [x.file, x.hw] as const),
  ]) {
    const p = file === 'hw.json' ? 'hw' : file;
    rows.push(
      [`${p}: profile`, `${h.profile.title} (${h.profile.name}, ${h.profile.costModel})`],
      [`${p}: profile file`, h.profile.file],
      [`${p}: input`, h.input.source],
      [`${p}: mapping`, json(h.mapping.file ?? h.mapping.description ?? '')],
      [`${p}: caveat`, h.caveat],
      [`${p} written by`, `${h.tool.name} ${h.tool.version}`],
    );
  }
  for (const [file, b] of [
    ...(run.bench ? [['bench.json', run.bench] as const] : []),
    ...run.moreBench.map((x) => [x.file, x.bench] as const),
  ]) {
    const p = file === 'bench.json' ? 'bench' : file;
    rows.push(
      [`${p}: machine`, `${b.machine.cpu}, ${b.machine.cores} cores, Node ${b.machine.node}`],
      [`${p}: backends`, b.backends.join('; ')],
      [`${p}: model`, b.model ? `${b.model.shape}: ${b.model.source}` : ''],
    );
  }
  return kv(rows);
}

/** Builds the page and renders its plots. */
export async function buildReport(
  runs: Run[],
  opts: ReportOptions,
): Promise<{ html: string; plots: RenderedPlot[] }> {
  const items = runs.map((run) => ({ run, facts: runFacts(run) }));
  const rendered: RenderedPlot[] = [];
  let n = 0;
  const fig = async (plot: Plot | null, run: Run | null): Promise<string> => {
    if (!plot) return '';
    const svg = await renderSvg(plot.spec);
    n++;
    const name = `${String(n).padStart(2, '0')}-${run ? `${slug(run.label)}-` : ''}${plot.id}`;
    rendered.push({
      name,
      title: plot.title,
      caption: `Figure ${n}. ${plot.title}. ${plot.caption.replaceAll('`', '')}`,
      svg,
    });
    return figure(n, plot, svg);
  };

  const models = [
    ...new Set(items.flatMap((i) => (i.facts.modelFile ? [fileName(i.facts.modelFile)] : []))),
  ];
  const title =
    opts.title ?? `Activation sparsity report${models.length ? `: ${models.join(', ')}` : ''}`;
  const body: string[] = [];
  const nav: string[] = ['<a href="#summary">Summary</a>'];

  body.push('<section id="summary"><h2>Summary</h2>');
  if (items.length === 1) body.push(sentence(items[0].run, items[0].facts), cards(items[0].facts));
  else {
    body.push(`<p>${items.length} runs.</p>`, summaryTable(items));
  }
  body.push('</section>');

  const trade = tradeoffPlot(items);
  if (trade) {
    nav.push('<a href="#tradeoff">Trade-off</a>');
    body.push(
      '<section id="tradeoff"><h2>Sparsity against loss and accuracy</h2>',
      await fig(trade, null),
      '</section>',
    );
  }

  for (const [i, { run, facts }] of items.entries()) {
    const id = `run-${i + 1}`;
    nav.push(`<a href="#${id}">${esc(run.label)}</a>`);
    body.push(`<section class="run" id="${id}"><h2>Run: ${esc(run.label)}</h2>`);
    body.push(`<p class="path">${esc(run.dir)} · ${esc(run.files.join(', '))}</p>`);
    if (items.length > 1) body.push(sentence(run, facts));
    for (const note of run.notes) body.push(`<div class="note">${esc(note)}</div>`);
    const z = siteZeros(run);
    if (z || run.thresholds) {
      body.push('<h3>Where the zeros are</h3>');
      if (z) {
        body.push(await fig(sitesPlot(z.sites, z.source), run));
        body.push(await fig(blocksPlot(z.sites, z.shapes, z.source), run));
      }
      if (run.thresholds) body.push(await fig(kHeatmap(run.thresholds.sites), run));
    }
    if (run.thresholds || run.calibration) {
      const traj = await fig(trajectoryPlot(run), run);
      if (traj) body.push('<h3>Calibration</h3>', traj);
    }
    body.push(taskTable(run));
    for (const [file, h] of [
      ...(run.hw ? [['hw.json', run.hw] as const] : []),
      ...run.moreHw.map((x) => [x.file, x.hw] as const),
    ]) {
      const hw = await fig(hwPlot(h), run);
      if (hw) body.push(`<h3>Hardware estimate: ${esc(h.profile.title)} (${esc(file)})</h3>`, hw);
    }
    for (const [file, b] of [
      ...(run.bench ? [['bench.json', run.bench] as const] : []),
      ...run.moreBench.map((x) => [x.file, x.bench] as const),
    ]) {
      body.push(
        `<h3>Measured speed (${esc(file)})</h3>`,
        await fig(kernelsPlot(b), run),
        await fig(decodePlot(b), run),
      );
    }
    body.push('</section>');
  }

  nav.push('<a href="#provenance">Provenance</a>');
  body.push('<section id="provenance"><h2>Provenance</h2>');
  for (const { run } of items) body.push(`<h3>${esc(run.label)}</h3>`, provenance(run));
  body.push('</section>');

  const when = (opts.now ?? new Date()).toISOString().replace('T', ' ').slice(0, 16);
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<header><h1>${esc(title)}</h1>
<p class="lede">${items.length} run${items.length === 1 ? '' : 's'} · ${n} plot${n === 1 ? '' : 's'} · made ${esc(when)} UTC by ${esc(opts.tool.name)} ${esc(opts.tool.version)}</p></header>
<nav>${nav.join('')}</nav>
${body.filter(Boolean).join('\n')}
<footer>Made by <code>${esc(opts.tool.name)} report</code>. Plots rendered to SVG by Vega-Lite; the page needs no script and no network. Hardware figures are analytical estimates, speeds are measurements of the machine that ran the bench.</footer>
</main>
</body>
</html>
`;
  return { html, plots: rendered };
}
