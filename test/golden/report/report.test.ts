/**
 * `actsparse report` on run folders made here (two real calibrations of a tiny random
 * model, a real hw estimate, hand-written eval and bench results): the page is
 * self-contained, has one SVG with data marks per plot, shows the right figures,
 * escapes hostile text, and refuses bad folders with clear errors.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { reportCommand } from '../../../src/cli/commands/report.ts';
import { invoke } from '../../../src/cli/dispatch.ts';
import { UserError } from '../../../src/errors.ts';
import { HwFile } from '../../../src/formats/hw.ts';
import { ACC, HOSTILE, makeReportRuns, quietIo } from '../../helpers/report-runs.ts';
import { tmpDir } from '../../helpers/shared.ts';

const root = tmpDir('actsparse-report-');
const runs = await makeReportRuns(root);

async function report(args: string[]): Promise<string> {
  let err = '';
  await invoke(reportCommand, args, {
    ...quietIo,
    err: (s) => {
      err += s;
    },
  });
  return err;
}

interface Figure {
  id: string;
  svg: string;
}

function figures(html: string): Figure[] {
  const re = /<figure class="plot" id="figure-\d+" data-plot="([^"]+)">([\s\S]*?)<\/figure>/g;
  return [...html.matchAll(re)].map((m) => ({ id: m[1], svg: m[2] }));
}

const count = (s: string, what: string) => s.split(what).length - 1;
const marks = (svg: string, role: string) => count(svg, `aria-roledescription="${role}"`);
/** Text content of the text marks of an SVG (vega escapes it; these are plain numbers). */
const texts = (svg: string) =>
  [...svg.matchAll(/aria-roledescription="text mark"[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);

function assertSelfContained(html: string): void {
  for (const tag of ['<script', '<link', '<img', '<iframe', '<object', '<embed', '<base']) {
    assert.ok(!html.toLowerCase().includes(tag), `page contains ${tag}`);
  }
  assert.ok(!/url\((?!#)|@import/i.test(html), 'CSS or SVG loads something');
  // Ids (gradients, clip paths of several SVGs) are unique, so every url(#…) finds its own.
  const ids = [...html.matchAll(/ id="([^"]+)"/g)].map((m) => m[1]);
  assert.equal(new Set(ids).size, ids.length, 'duplicate ids');
  for (const m of html.matchAll(/url\(#([^)]+)\)/g)) assert.ok(ids.includes(m[1]), m[1]);
  // No tag refers to another resource, and no tag has an event handler.
  assert.ok(!/<[a-z][^>]*\s(src|srcset|xlink:href)\s*=/i.test(html), 'a tag with src');
  assert.ok(!/<[a-z][^>]*\shref\s*=\s*"(?!#)/i.test(html), 'a link out of the page');
  assert.ok(!/<[a-z][^>]*\son[a-z]+\s*=/i.test(html), 'an event-handler attribute');
  const beforeProvenance = html.slice(0, html.indexOf('<section id="provenance">'));
  assert.ok(!/https?:\/\//.test(beforeProvenance), 'a URL outside the provenance');
}

describe('report of one run folder with every file', async () => {
  const out = join(root, 'one', 'report.html');
  const png = join(root, 'png');
  const log = await report([runs.full, '--out', out, '--png', png]);
  const html = readFileSync(out, 'utf8');
  const figs = figures(html);
  const plan = runs.fullPlan;
  const hw = HwFile.parse(JSON.parse(readFileSync(join(runs.full, 'hw.json'), 'utf8')));

  test('self-contained: no script, no external resource, no URL', () => {
    assert.match(html, /^<!doctype html>/);
    assertSelfContained(html);
    assert.match(log, /1 run\(s\), 7 plot\(s\)/);
  });

  test('one SVG per plot, in order, each with its data marks', () => {
    assert.deepEqual(
      figs.map((f) => f.id),
      [
        'sparsity-by-site',
        'sparsity-by-block',
        'k-heatmap',
        'calibration-trajectory',
        'hardware',
        'kernels',
        'decode',
      ],
    );
    assert.equal(count(html, '<svg'), figs.length);
    for (const f of figs) assert.equal(count(f.svg, '<svg'), 1, f.id);
    const by = Object.fromEntries(figs.map((f) => [f.id, f.svg]));
    const sites = plan.model.sitesPerBlock.length;
    // Two bars (natural, with thresholds) per site id and per block.
    assert.equal(marks(by['sparsity-by-site'], 'bar'), 2 * sites);
    assert.equal(marks(by['sparsity-by-block'], 'bar'), 2 * plan.model.nLayer);
    // Each block's bar is the MAC-weighted mean of its sites (rows × cols of the layer fed).
    const macs = new Map((plan.model.siteShapes ?? []).map((x) => [x.id, x.rows * x.cols]));
    for (let b = 0; b < plan.model.nLayer; b++) {
      const rows = plan.sites.filter((x) => x.block === b);
      const den = rows.reduce((a, x) => a + macs.get(x.site)!, 0);
      const z = rows.reduce((a, x) => a + macs.get(x.site)! * x.sparsity, 0) / den;
      const label = `block: ${b}; MAC-weighted zeros (%): ${Math.round(1000 * z) / 10}; kind: with thresholds`;
      assert.ok(by['sparsity-by-block'].includes(label), label);
    }
    // One cell per block × site, labelled with its K.
    assert.equal(marks(by['k-heatmap'], 'rect mark'), plan.sites.length);
    assert.deepEqual(
      texts(by['k-heatmap']).sort(),
      plan.sites.map((s) => String(Number(s.k.toFixed(2)))).sort(),
    );
    // Every candidate of calibration.csv, plus a point per site on the loss line.
    const csvRows = readFileSync(join(runs.full, 'calibration.csv'), 'utf8').trim().split('\n');
    assert.equal(
      marks(by['calibration-trajectory'], 'point'),
      csvRows.length - 1 + plan.sites.length,
    );
    assert.equal(marks(by['calibration-trajectory'], 'line mark'), 1);
    // A bar segment per non-zero category, energy and latency, each scenario.
    const segments = hw.scenarios.reduce(
      (a, s) =>
        a +
        Object.values(s.energy!.byCategory).filter((b) => b.value > 0).length +
        Object.values(s.latency!.byCategory).filter((b) => b.value > 0).length,
      0,
    );
    assert.ok(segments >= 6);
    assert.equal(marks(by.hardware, 'bar'), segments);
    assert.equal(marks(by.kernels, 'bar'), 2); // GEMM and GEMV of one kernel
    assert.equal(marks(by.kernels, 'line mark'), 2); // measured and ideal speedup
    assert.equal(marks(by.decode, 'bar'), 2);
    assert.ok(texts(by.decode).includes('150'), 'the sparse decode speed is labelled');
  });

  test('summary and tables show the numbers of the files', () => {
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    const s = plan.results.sparsity;
    assert.ok(html.includes(`natural ${pct(s.naturalMacWeighted)} in the dense model`));
    assert.ok(html.includes(`>${pct(s.macWeighted)}<`));
    const mean = (i: 0 | 1) => (ACC.piqa[i] + ACC.hellaswag[i]) / 2;
    assert.ok(html.includes(`${pct(mean(0))} → ${pct(mean(1))}`), 'mean accuracy dense → sparse');
    // piqa: acc; hellaswag: acc_norm (lm-eval's main metric), Δ in points.
    assert.match(
      html,
      /<td>piqa<\/td><td>acc<\/td><td class="n">60\.0%<\/td><td class="n">58\.0%<\/td>/,
    );
    assert.match(
      html,
      /<td>hellaswag<\/td><td>acc_norm<\/td><td class="n">30\.0%<\/td><td class="n">31\.0%<\/td><td class="n"><span class="pos">\+1\.0<\/span>/,
    );
    const energy = hw.ratios['energy.natural/sparse']!;
    assert.ok(html.includes(`${energy.toFixed(2)}× less`), 'energy ratio card');
    assert.ok(html.includes(`×${(5.6 / 5.5).toFixed(4)}`), 'held-out loss ratio of eval');
    // Provenance: hashes and method parameters.
    assert.ok(html.includes(plan.model.fileSha256));
    assert.ok(html.includes(plan.model.fingerprint));
    assert.ok(html.includes(plan.data.sha256));
    assert.ok(html.includes('lossInc 1.01'));
  });

  test('text from files is escaped everywhere (a hostile model file name)', () => {
    assert.ok(html.includes('&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;'));
    assert.ok(!html.includes('<img'), 'raw <img');
    assert.ok(!html.includes('alert(2)</script>'), 'raw </script>');
    assert.ok(!html.includes('<b>text</b>'), 'raw markup from the held-out text name');
    assert.ok(html.includes('Test CPU &lt;i&gt;'), 'bench CPU name escaped');
    assert.ok(!html.includes(HOSTILE));
  });

  test('--png writes one PNG per plot', () => {
    const files = readdirSync(png).sort();
    assert.equal(files.length, figs.length);
    assert.match(files[0], /^01-li-1\.01-sparsity-by-site\.png$/);
    for (const f of files) {
      const b = readFileSync(join(png, f));
      assert.deepEqual([...b.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], f);
      assert.ok(b.length > 2000, `${f}: ${b.length} bytes`);
    }
  });
});

describe('several run folders', async () => {
  const out = join(root, 'two.html');
  await report([runs.full, runs.second, '--out', out]);
  const html = readFileSync(out, 'utf8');

  test('two runs give the trade-off plot, one point per run labelled with loss_inc', () => {
    assertSelfContained(html);
    const figs = figures(html);
    assert.equal(figs[0].id, 'tradeoff');
    const t = texts(figs[0].svg);
    assert.ok(t.includes('dense'));
    // Each point labelled with loss_inc and its held-out loss growth.
    for (const [label, plan] of [
      ['1.01', runs.fullPlan],
      ['1.05', runs.secondPlan],
    ] as const) {
      const h = plan.results.heldOut!;
      const text = `${label}: ×${(h.sparseLoss / h.denseLoss).toFixed(4)}`;
      assert.ok(t.includes(text), `${text} in ${t.join(' | ')}`);
    }
    // Accuracy panel: the run with eval, labelled with its mean accuracy.
    assert.ok(t.includes(`1.01: ${(50 * (ACC.piqa[1] + ACC.hellaswag[1])).toFixed(1)}%`));
    // Loss panel: 2 runs + the dense model; accuracy panel: the run with eval + dense.
    assert.equal(marks(figs[0].svg, 'point'), 3 + 2);
    // Every run has its own section; the second has no eval, hw or bench plots.
    assert.equal(figs.filter((f) => f.id === 'k-heatmap').length, 2);
    assert.equal(figs.length, 1 + 7 + 4);
    assert.match(html, /<a href="#run-2">li-1\.05<\/a>/);
  });

  test('a single run has no trade-off plot', async () => {
    const one = join(root, 'second-only.html');
    await report([runs.second, '--out', one]);
    const figs = figures(readFileSync(one, 'utf8'));
    assert.deepEqual(
      figs.map((f) => f.id),
      ['sparsity-by-site', 'sparsity-by-block', 'k-heatmap', 'calibration-trajectory'],
    );
  });

  test('a folder with only eval results: zeros from the evaluation, the task table', async () => {
    const dir = join(root, 'eval-only');
    mkdirSync(dir);
    copyFileSync(join(runs.full, 'eval', 'results.json'), join(dir, 'results.json'));
    const one = join(root, 'eval-only.html');
    await report([dir, '--out', one]);
    const html = readFileSync(one, 'utf8');
    assert.deepEqual(
      figures(html).map((f) => f.id),
      ['sparsity-by-site', 'sparsity-by-block'],
    );
    assert.ok(html.includes('measured on the evaluation inputs'));
    assert.ok(html.includes('<td>piqa</td>'));
  });
});

describe('bad input', () => {
  const rejects = (args: string[], re: RegExp) =>
    assert.rejects(report(args), (e: Error) => {
      assert.ok(e instanceof UserError, `${e.name}: ${e.message}`);
      assert.match(e.message, re);
      return true;
    });
  const out = join(root, 'bad.html');

  test('missing folder, a file, an empty folder, no folder, no --out', async () => {
    await rejects([join(root, 'nope'), '--out', out], /nope: no such directory/);
    await rejects([join(runs.full, 'hw.json'), '--out', out], /not a directory/);
    const empty = join(root, 'empty');
    mkdirSync(empty);
    await rejects([empty, '--out', out], /holds none of the files a report reads/);
    await rejects(['--out', out], /missing RUN_DIR/);
    await rejects([runs.full], /--out FILE\.html\|- is required/);
  });

  test('broken files are named with what is wrong', async () => {
    const dir = (name: string, file: string, content: string) => {
      const d = join(root, name);
      mkdirSync(join(d, 'eval'), { recursive: true });
      writeFileSync(join(d, file), content);
      return d;
    };
    await rejects(
      [dir('b1', 'thresholds.json', '{"formatVersion": 2}'), '--out', out],
      /b1.thresholds\.json: not a thresholds file/,
    );
    await rejects(
      [
        dir(
          'b2',
          'calibration.csv',
          'block,site,k,lambda,loss,ratio,accepted\n0,a,0.5,1,2,1,true\n0,a,zz,1,2,1,true\n',
        ),
        '--out',
        out,
      ],
      /calibration\.csv: line 3: k "zz"/,
    );
    await rejects(
      [dir('b3', 'hw.json', '{"formatVersion": 1, "kind": "actsparse.eval"}'), '--out', out],
      /hw\.json: not a hardware estimate/,
    );
    await rejects(
      [dir('b4', 'eval/results.json', '{"formatVersion": 1,'), '--out', out],
      /results\.json: not valid JSON/,
    );
    await rejects(
      [dir('b5', 'bench.json', '{"formatVersion": 1, "machine": {}}'), '--out', out],
      /bench\.json: not a bench result.*machine/,
    );
  });
});
