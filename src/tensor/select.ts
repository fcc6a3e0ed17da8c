/**
 * Picks the backend: an explicit name (`--backend`, ACTSPARSE_BACKEND) or `auto`.
 *
 * `openBackend` (asynchronous: a GPU device is opened by promise) is the way in: `auto`
 * takes WebGPU when a GPU adapter exists (never a CPU software adapter such as Mesa's
 * lavapipe, which is slower than the CPU tiers), else the fastest CPU tier that loads
 * here (native, then wasm, then js). `selectBackend` is the synchronous choice among the
 * CPU tiers alone.
 *
 * A WebGPU device keeps the Node process alive until it is closed: library users call
 * `closeBackends()` (or `backend.close()`) when done; the CLI does after each command.
 * ACTSPARSE_WEBGPU_MATRIX=f16 runs large products on the GPU's matrix units in float16
 * (faster, about 1e-3 relative error; checked against float32 when the device opens).
 */
import { UserError } from '../errors.ts';
import type { Backend } from './backend.ts';
import { CpuBackend, type CpuKernels, jsKernels } from './cpu.ts';
import { loadNativeKernels, nativeUnavailableReason } from './native/index.ts';
import { loadWasmKernels, wasmUnavailableReason } from './wasm/index.ts';
import { WebGpuBackend } from './webgpu/backend.ts';
import { mayHaveGpu } from './webgpu/device.ts';

type CpuName = CpuKernels['name'];
const NAMES = 'js, wasm, native, webgpu, auto';

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

/** The fastest CPU tier here, or the one named (js, wasm, native). */
export function selectBackend(requested?: string): Backend {
  const name = requested ?? process.env.ACTSPARSE_BACKEND;
  if (name && name !== 'auto') {
    if (name === 'webgpu') {
      throw new UserError(
        'the webgpu backend opens asynchronously: use openBackend("webgpu")',
        'Library users: await openBackend(name) instead of selectBackend(name).',
      );
    }
    if (name !== 'js' && name !== 'wasm' && name !== 'native') {
      throw new UserError(`unknown backend "${name}"`, `Use one of: ${NAMES}.`);
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

/** The WebGPU backend once opened (one device per process), and how it was asked for. */
let gpu: { software: boolean; result: Promise<WebGpuBackend | string> } | null = null;

function openGpu(software: boolean): Promise<WebGpuBackend | string> {
  // A device opened for `auto` (hardware) also serves an explicit request.
  if (gpu && (gpu.software || !software)) return gpu.result;
  const prior = gpu?.result;
  const result = (async () => {
    const old = await prior;
    if (old instanceof WebGpuBackend) return old;
    // For `auto`, the Vulkan loader skips lavapipe: it would never be chosen, and Dawn
    // prints warnings while it looks at it.
    const env = process.env;
    const hide = !software && env.VK_LOADER_DRIVERS_DISABLE === undefined;
    if (hide) env.VK_LOADER_DRIVERS_DISABLE = '*lvp_icd*';
    let b: WebGpuBackend | string;
    try {
      b = await WebGpuBackend.open({ software });
    } finally {
      if (hide) delete env.VK_LOADER_DRIVERS_DISABLE;
    }
    // Products on the GPU's matrix units in float16, when asked for (after a self-check).
    if (typeof b !== 'string' && env.ACTSPARSE_WEBGPU_MATRIX === 'f16')
      backendNotices.push(await b.enableMatrixGemm());
    return b;
  })();
  gpu = { software, result };
  return result;
}

export interface OpenBackendOptions {
  /**
   * The kernel families the model will run (`Architecture.families`): `auto` passes over
   * WebGPU, with one notice, when it lacks one of them; an explicit `webgpu` refuses.
   */
  families?: readonly string[];
  /** What needs the families, for messages (e.g. "RWKV-7"). */
  what?: string;
}

/**
 * The backend named (js, wasm, native, webgpu) or, for `auto` (the default): WebGPU on
 * a GPU adapter, else the fastest CPU tier. An explicit `webgpu` may run on a CPU
 * software adapter (how the tests run without a GPU). When the model needs a kernel
 * family the WebGPU backend lacks (`opts.families`), `auto` takes the CPU with one notice
 * and `webgpu` is refused, naming the family.
 */
export async function openBackend(
  requested?: string,
  opts: OpenBackendOptions = {},
): Promise<Backend> {
  const name = requested ?? process.env.ACTSPARSE_BACKEND;
  const what = opts.what ?? 'this model';
  const lacking = (opts.families ?? []).find((f) => !WebGpuBackend.hasFamily(f));
  if (name === 'webgpu') {
    if (lacking) {
      throw new UserError(
        `backend "webgpu" has no kernel for the "${lacking}" family that ${what} needs`,
        'Use --backend auto (or native, wasm, js) to run it on the CPU.',
      );
    }
    const b = await openGpu(true);
    if (typeof b === 'string') {
      throw new UserError(
        `backend "webgpu" is not available on this machine: ${b}`,
        'Install a Vulkan driver (Linux: mesa-vulkan-drivers or the GPU vendor’s), or use --backend auto.',
      );
    }
    return b;
  }
  if (name && name !== 'auto') return selectBackend(name);
  if (mayHaveGpu() && lacking) {
    backendNotices.push(
      `not on WebGPU: it has no kernel for the "${lacking}" family that ${what} needs (running on the CPU)`,
    );
  } else if (mayHaveGpu()) {
    const b = await openGpu(false);
    // (A software adapter opened by an explicit request is not taken for auto.)
    if (typeof b !== 'string' && !b.rt.facts.software) return b;
    if (typeof b === 'string') backendNotices.push(`no WebGPU: ${b}`);
  }
  return selectBackend('auto');
}

/** Closes the WebGPU device if one was opened (so that the process can exit). */
export async function closeBackends(): Promise<void> {
  const b = await gpu?.result;
  if (b instanceof WebGpuBackend) b.close();
  gpu = null;
}
