/**
 * WGSL kernels of the architectures' own recurrences, by family name (the name of a
 * `KernelFamily` in src/tensor/families/). An architecture adds its kernel in a file of
 * its own under webgpu/families/ that calls `registerWebGpuFamily`, imported by
 * webgpu/families/index.ts; `WebGpuBackend.run` finds it here.
 */
import type { WebGpuBackend } from './backend.ts';

/** Runs one call of a family on the WebGPU backend (args as the family defines them). */
export type WebGpuFamily = (backend: WebGpuBackend, args: unknown) => void;

const families = new Map<string, WebGpuFamily>();

export function registerWebGpuFamily(name: string, run: WebGpuFamily): void {
  if (families.has(name)) throw new Error(`WebGPU kernel family "${name}" registered twice`);
  families.set(name, run);
}

export function webGpuFamily(name: string): WebGpuFamily | undefined {
  return families.get(name);
}

/** Whether the WebGPU backend has a kernel for the family of this name. */
export function hasWebGpuFamily(name: string): boolean {
  return families.has(name);
}
