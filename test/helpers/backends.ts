/** The CPU backends to run a test on; under CI all three must load (CI builds them). */
import type { Backend } from '../../src/tensor/backend.ts';
import { backendNotices, selectBackend } from '../../src/tensor/select.ts';

export function cpuBackends(): [string, Backend | null][] {
  return (['js', 'wasm', 'native'] as const).map((n) => {
    try {
      return [n, selectBackend(n)];
    } catch {
      if (process.env.CI === 'true')
        throw new Error(`backend ${n} must load in CI: ${backendNotices.join(' ')}`);
      return [n, null];
    }
  });
}
