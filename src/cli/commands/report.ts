import { join, resolve } from 'node:path';
import { loadRuns } from '../../report/load.ts';
import { toolVersion } from '../../version.ts';
import { forceOption } from '../common.ts';
import type { Command } from '../io.ts';
import { checkOutputFile, prepareRunFolder, STDOUT, writeOutput } from '../output.ts';

export const reportCommand: Command = {
  name: 'report',
  summary: 'one self-contained HTML page (inline SVG plots) from calibrate/eval/hw/bench runs',
  description:
    'Reads whatever each run folder holds (thresholds.json, calibration.csv, eval/results.json, hw*.json, bench*.json) and writes one HTML page with inline SVG plots that needs no script and no network; --png also writes every plot as a PNG with its caption.',
  positionals: [
    {
      name: 'RUN_DIR',
      variadic: true,
      help: 'Run folders: the --out of calibrate, eval, or a folder holding hw and bench results.',
    },
  ],
  options: [
    {
      name: 'out',
      type: 'string',
      value: 'FILE.html|-',
      required: true,
      help: 'The HTML page; - is standard output.',
    },
    {
      name: 'png',
      type: 'string',
      value: 'DIR',
      help: 'Also write each plot as DIR/<plot>.png, its caption below it.',
    },
    {
      name: 'title',
      type: 'string',
      value: 'TEXT',
      help: 'The page title.',
      defaultText: 'from the runs',
    },
    forceOption,
  ],
  examples: [
    'actsparse report runs/cal --out report.html',
    'actsparse report runs/1.0002 runs/1.0005 runs/1.001 --out sweep.html --png plots/',
  ],
  async run(a, io) {
    const out = a.str('out')!;
    const pngDir = a.str('png');
    const force = a.flag('force');
    for (const line of [
      checkOutputFile(out, '--out', force),
      pngDir
        ? prepareRunFolder(pngDir, {
            option: '--png',
            what: 'PNG plots',
            files: [],
            pattern: /\.png$/,
            force,
          })
        : null,
    ])
      if (line) io.err(`${line}\n`);
    const runs = loadRuns(a.positionals);
    for (const r of runs) for (const n of r.notes) io.err(`note: ${r.label}: ${n}\n`);
    // vega and vega-lite load only here, so other commands start as fast as before.
    const { buildReport } = await import('../../report/html.ts');
    const { html, plots } = await buildReport(runs, { title: a.str('title'), tool: toolVersion() });
    writeOutput(io, out, html);
    io.err(
      `wrote ${out === STDOUT ? 'the report to standard output' : resolve(out)} (${runs.length} run(s), ${plots.length} plot(s))\n`,
    );
    if (pngDir) {
      const { plotPng } = await import('../../report/plots.ts');
      for (const plot of plots)
        writeOutput(io, join(pngDir, `${plot.name}.png`), await plotPng(plot));
      io.err(`wrote ${plots.length} PNG file(s) to ${resolve(pngDir)}\n`);
    }
  },
};
