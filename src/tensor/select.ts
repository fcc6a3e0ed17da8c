/**
 * Picks the backend: an explicit name (`--backend`, ACTSPARSE_BACKEND) or the fastest
 * one that loads here (native, then wasm, then js).
 */
import { UserError } from '../errors.ts';
import { type Backend, type BackendName, jsBackend } from './backend.ts';
import { loadNativeBackend, nativeUnavailableReason } from './native/index.ts';
import { loadWasmBackend, wasmUnavailableReason } from './wasm/index.ts';

const loaders: Record<BackendName, () => Backend | null> = {
  native: () => {
    const b = loadNativeBackend();
    if (!b) backendNotices.push(`native kernels unavailable: ${nativeUnavailableReason()}`);
    return b;
  },
  wasm: () => {
    const b = loadWasmBackend();
    if (!b) backendNotices.push(`WebAssembly kernels unavailable: ${wasmUnavailableReason()}`);
    return b;
  },
  js: () => jsBackend,
};

const cache = new Map<BackendName, Backend | null>();
function tryLoad(name: BackendName): Backend | null {
  if (!cache.has(name)) cache.set(name, loaders[name]());
  return cache.get(name) ?? null;
}

/** Why a faster tier could not be used, for the CLI to print once. */
export const backendNotices: string[] = [];

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
