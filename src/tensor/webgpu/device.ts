/**
 * Finding a WebGPU device: Dawn's Node bindings (npm `webgpu`, loaded on demand, so that
 * a machine without the package or without Vulkan runs as before), one adapter, and a
 * device with the adapter's own limits (WebGPU's defaults are far smaller: 128 MiB per
 * binding, 8 storage buffers per stage).
 *
 * A CPU software adapter (Mesa's lavapipe, SwiftShader, WARP) is never chosen
 * automatically: it is slower than the CPU backends. It is taken only when asked for
 * (`--backend webgpu` on a machine without a GPU, and the tests in CI).
 */
import { existsSync, readdirSync } from 'node:fs';
import type * as DawnModule from 'webgpu';

/** Dawn instance toggles: the experimental features (f16 on NVIDIA, subgroup matrices). */
const DAWN_FEATURES = ['allow_unsafe_apis', 'vulkan_enable_f16_on_nvidia'];

/** Adapter features used when present. */
const WANTED_FEATURES: readonly string[] = [
  'shader-f16',
  'subgroups',
  'timestamp-query',
  'chromium-experimental-subgroup-matrix',
];

/** Limits raised from WebGPU's defaults to what the adapter allows. */
const RAISED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupsPerDimension',
  // Alignments: lower is better, and the device keeps WebGPU's 256 unless asked.
  'minStorageBufferOffsetAlignment',
  'minUniformBufferOffsetAlignment',
] as const;

export interface AdapterFacts {
  /** e.g. "NVIDIA H200 (nvidia, hopper)" or "llvmpipe: Mesa 25.0.7 (mesa, software)". */
  name: string;
  vendor: string;
  architecture: string;
  /** A CPU software rasteriser (never picked by `auto`). */
  software: boolean;
  /** The features this backend uses, of those the adapter offers. */
  features: string[];
  /** Subgroup-matrix shapes the adapter offers (empty without the feature). */
  subgroupMatrix: { component: string; result: string; M: number; N: number; K: number }[];
  limits: {
    maxStorageBufferBindingSize: number;
    maxBufferSize: number;
    maxComputeWorkgroupStorageSize: number;
    minStorageBufferOffsetAlignment: number;
    minUniformBufferOffsetAlignment: number;
    maxComputeWorkgroupsPerDimension: number;
    subgroupMinSize: number;
    subgroupMaxSize: number;
  };
}

export interface OpenedDevice {
  device: GPUDevice;
  facts: AdapterFacts;
  /** Dawn's instance and adapter: held for the device's lifetime (Dawn crashes if they are collected first). */
  keep: readonly unknown[];
}

type Dawn = typeof DawnModule;
let dawn: Dawn | null | undefined;
let dawnError = '';

/** Dawn's bindings, or null (with the reason in `dawnError`) when they do not load. */
async function loadDawn(): Promise<Dawn | null> {
  if (dawn !== undefined) return dawn;
  try {
    dawn = (await import('webgpu')) as Dawn;
  } catch (e) {
    dawn = null;
    dawnError = `the webgpu package (Dawn) did not load: ${(e as Error).message.split('\n')[0]}`;
  }
  return dawn;
}

/** Whether the adapter is a CPU software rasteriser rather than a GPU. */
export function isSoftwareAdapter(info: {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}): boolean {
  if (info.isFallbackAdapter) return true;
  const text = [info.vendor, info.architecture, info.device, info.description].join(' ');
  return /llvmpipe|lavapipe|swiftshader|software|microsoft basic render|\bwarp\b|\bcpu\b/i.test(
    text,
  );
}

/**
 * Whether this machine can have a GPU adapter at all, without loading Dawn: on Linux a
 * GPU shows as /dev/nvidia* or a DRM render node; elsewhere (macOS Metal, Windows D3D)
 * we cannot tell cheaply and look.
 */
export function mayHaveGpu(): boolean {
  if (process.platform !== 'linux') return true;
  try {
    if (readdirSync('/dev').some((n) => /^nvidia\d+$/.test(n))) return true;
    return existsSync('/dev/dri') && readdirSync('/dev/dri').some((n) => n.startsWith('render'));
  } catch {
    return false;
  }
}

function factsOf(adapter: GPUAdapter, l: GPUSupportedLimits = adapter.limits): AdapterFacts {
  const info = adapter.info as GPUAdapterInfo & {
    subgroupMinSize?: number;
    subgroupMaxSize?: number;
    isFallbackAdapter?: boolean;
    subgroupMatrixConfigs?: {
      componentType: string;
      resultComponentType: string;
      M: number;
      N: number;
      K: number;
    }[];
  };
  const software = isSoftwareAdapter(info);
  const label = info.description || info.device || 'unknown adapter';
  const features = WANTED_FEATURES.filter((f) => adapter.features.has(f));
  return {
    name: `${label} (${info.vendor || '?'}, ${info.architecture || '?'})`,
    vendor: info.vendor,
    architecture: info.architecture,
    software,
    features,
    subgroupMatrix: features.includes('chromium-experimental-subgroup-matrix')
      ? (info.subgroupMatrixConfigs ?? []).map((c) => ({
          component: c.componentType,
          result: c.resultComponentType,
          M: c.M,
          N: c.N,
          K: c.K,
        }))
      : [],
    limits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      minStorageBufferOffsetAlignment: l.minStorageBufferOffsetAlignment,
      minUniformBufferOffsetAlignment: l.minUniformBufferOffsetAlignment,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      subgroupMinSize: info.subgroupMinSize ?? 0,
      subgroupMaxSize: info.subgroupMaxSize ?? 0,
    },
  };
}

/**
 * A device on the best adapter, or a one-line reason why there is none. `software`
 * says whether a CPU software adapter is acceptable.
 */
export async function openDevice(software: boolean): Promise<OpenedDevice | string> {
  const mod = await loadDawn();
  if (!mod) return dawnError;
  const extra = (process.env.ACTSPARSE_WEBGPU_DAWN_FEATURES ?? '').split(',').filter(Boolean);
  let gpu: GPU;
  try {
    gpu = mod.create([`enable-dawn-features=${[...DAWN_FEATURES, ...extra].join(',')}`]);
  } catch (e) {
    return `Dawn could not start: ${(e as Error).message}`;
  }
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) return 'no WebGPU adapter (no Vulkan driver found)';
  const facts = factsOf(adapter);
  if (facts.software && !software)
    return `only a CPU software adapter (${facts.name}), slower than the CPU backends`;
  const requiredLimits: Record<string, number> = {};
  for (const k of RAISED_LIMITS) requiredLimits[k] = adapter.limits[k];
  try {
    const device = await adapter.requestDevice({
      requiredFeatures: facts.features as GPUFeatureName[],
      requiredLimits,
    });
    // The limits the device really has.
    return { device, facts: factsOf(adapter, device.limits), keep: [gpu, adapter] };
  } catch (e) {
    return `the WebGPU device could not be created on ${facts.name}: ${(e as Error).message}`;
  }
}
