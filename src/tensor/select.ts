/**
 * Picks the backend: an explicit name (`--backend`, ACTSPARSE_BACKEND) or the fastest
 * one that loads here (native, then wasm, then js).
 */
import { UserError } from '../errors.ts';
import type { Backend } from './backend.ts';
import { CpuBackend, type CpuKernels, jsKernels } from './cpu.ts';
import { loadNativeKernels, nativeUnavailableReason } from './native/index.ts';
import { loadWasmKernels, wasmUnavailableReason } from './wasm/index.ts';

type CpuName = CpuKernels['name'];

const loaders: Record<CpuName, () => CpuKernels | null> = {
  native: () => {
    const k = loadNativeKernels();
    if (!k) backendNotices.push(`native kernels unavailable: ${nativeUnavailableReason()}`);
    return k;
  },
  wasm: () => {
    const k = loadWasmKernels();
    if (!k) backendNotices.push(`WebAssembly kernels unavailable: ${wasmUnavailableReason()}`);
    return k;
  },
  js: () => jsKernels,
};

const cache = new Map<CpuName, CpuBackend | null>();
function tryLoad(name: CpuName): CpuBackend | null {
  if (!cache.has(name)) {
    const k = loaders[name]();
    cache.set(name, k ? new CpuBackend(k) : null);
  }
  return cache.get(name) ?? null;
}

/** Why a faster tier could not be used, for the CLI to print once. */
export const backendNotices: string[] = [];

/** The reference backend (plain TypeScript), always available. */
export const jsBackend: Backend = new CpuBackend(jsKernels);

export function selectBackend(requested?: string): Backend {
  const name = requested ?? process.env.ACTSPARSE_BACKEND;
  if (name && name !== 'auto') {
    if (name !== 'js' && name !== 'wasm' && name !== 'native') {
      throw new UserError(`unknown backend "${name}"`, 'Use one of: js, wasm, native, auto.');
    }
    const b = tryLoad(name);
    if (!b) {
      throw new UserError(
        `backend "${name}" is not available on this machine`,
        backendNotices.join(' ') || 'Use --backend auto.',
      );
    }
    return b;
  }
  for (const n of ['native', 'wasm', 'js'] as const) {
    const b = tryLoad(n);
    if (b) return b;
  }
  return jsBackend;
}
