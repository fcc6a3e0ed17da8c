/** A progress line with ETA on stderr: redrawn in place on a terminal, a line per 10% otherwise. */
import { formatDuration } from './common.ts';
import type { Io } from './io.ts';

export function progress(io: Io, label: string): (done: number, total: number) => void {
  const t0 = performance.now();
  let lastTenth = -1;
  return (done, total) => {
    const elapsed = (performance.now() - t0) / 1000;
    const eta = done > 0 ? (elapsed / done) * (total - done) : Number.NaN;
    const pct = total ? (100 * done) / total : 100;
    const width = 30;
    const filled = Math.round((width * done) / Math.max(1, total));
    const line = `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} ${pct.toFixed(0)}%  ${formatDuration(elapsed)} elapsed, ETA ${formatDuration(eta)}`;
    if (io.tty) io.err(`\r${line}${done === total ? '\n' : ''}`);
    else if (Math.floor(pct / 10) > lastTenth || done === total) {
      lastTenth = Math.floor(pct / 10);
      io.err(`${line}\n`);
    }
  };
}
