/**
 * Stopping long work when asked. The CLI turns SIGINT/SIGTERM into an aborted
 * AbortSignal; long library loops call `stopPoint` between units of work (a task, a
 * site, a training step, a measurement). A point first lets pending events run, since
 * a signal handler runs only when the event loop turns and CPU backends resolve their
 * reads without turning it.
 */

/** Thrown by `stopPoint`; the function that owns the loop turns it into an `Interrupted`. */
export class Stopped extends Error {
  override name = 'Stopped';
  constructor() {
    super('stopped on request');
  }
}

/** Yields to the event loop, then throws `Stopped` if `signal` was aborted. */
export async function stopPoint(signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return;
  await new Promise<void>((resolve) => setImmediate(resolve));
  if (signal.aborted) throw new Stopped();
}
