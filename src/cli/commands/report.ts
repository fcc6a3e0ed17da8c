import { join, resolve } from 'node:path';
import { UserError } from '../../errors.ts';
import { loadRuns } from '../../report/load.ts';
import { writeFileAtomic } from '../../util/files.ts';
import { toolVersion } from '../../version.ts';
import { parse, str } from '../args.ts';
import type { Command } from '../io.ts';

const usage = 'actsparse report <run-dir…> --out FILE.html [--png DIR] [--title TEXT]';

export const reportCommand: Command = {
  name: 'report',
  summary: 'one self-contained HTML page (inline SVG plots) from calibrate/eval/hw/bench runs',
  usage,
  async run(args, io) {
    const p = parse(
      'report',
      args,
      { out: { type: 'string' }, png: { type: 'string' }, title: { type: 'string' } },
      usage,
    );
    const out = str(p, 'out');
    if (!out) throw new UserError('report: --out FILE.html is required', `Usage: ${usage}`);
    if (p.positionals.length === 0) {
      throw new UserError('report: give at least one run directory', `Usage: ${usage}`);
    }
    const runs = loadRuns(p.positionals);
    for (const r of runs) for (const n of r.notes) io.err(`note: ${r.label}: ${n}\n`);
    // vega and vega-lite load only here, so other commands start as fast as before.
    const { buildReport } = await import('../../report/html.ts');
    const { html, plots } = await buildReport(runs, {
      title: str(p, 'title'),
      tool: toolVersion(),
    });
    writeFileAtomic(out, html);
    io.err(`wrote ${resolve(out)} (${runs.length} run(s), ${plots.length} plot(s))\n`);
    const pngDir = str(p, 'png');
    if (pngDir) {
      const { svgToPng } = await import('../../report/plots.ts');
      for (const plot of plots)
        writeFileAtomic(join(pngDir, `${plot.name}.png`), await svgToPng(plot.svg));
      io.err(`wrote ${plots.length} PNG file(s) to ${resolve(pngDir)}\n`);
    }
  },
};
