/**
 * The WebGPU backend for tests: on Mesa's lavapipe (a Vulkan device on the CPU) when
 * there is no GPU. Under CI=true it must open (CI installs lavapipe); elsewhere tests
 * are skipped with the reason when no adapter is found. The device is closed after the
 * file's tests, so that the test process can exit.
 */
import { after } from 'node:test';
import { WebGpuBackend, type WebGpuOptions } from '../../src/tensor/webgpu/backend.ts';

export interface TestGpu {
  backend: WebGpuBackend | null;
  /** node:test's `skip` option: false when the backend opened. */
  skip: string | false;
}

export async function testGpu(opts: WebGpuOptions = {}): Promise<TestGpu> {
  const b = await WebGpuBackend.open({ software: true, ...opts });
  if (typeof b !== 'string') {
    after(() => b.close());
    return { backend: b, skip: false };
  }
  if (process.env.CI === 'true') throw new Error(`the webgpu backend must open in CI: ${b}`);
  return { backend: null, skip: `no WebGPU adapter here: ${b}` };
}
