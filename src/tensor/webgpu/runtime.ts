/**
 * The machinery under the WebGPU backend: device memory (stores, a size-bucketed pool,
 * views), kernels (WGSL generated around each kernel's code, one pipeline per way its
 * operands share buffers), and batched submission.
 *
 * - Every op only records: dispatches go into one compute pass of one command encoder;
 *   the batch is submitted when a read needs it or after `SUBMIT_EVERY` dispatches
 *   (so the GPU starts while the CPU still records). Small uploads are staged on the
 *   host and copied inside the encoder, so they keep their place among the dispatches.
 * - Each dispatch's parameters (element offsets, sizes, scalars) go into a uniform ring
 *   (one host buffer written once per batch, bound with a dynamic offset), so bind
 *   groups do not depend on the parameters and are cached.
 * - An operand is bound as a window of its buffer (the whole buffer when it fits the
 *   binding limit): the window starts at an offset aligned as the adapter requires, and
 *   the element offset inside the window is a parameter. Operands that share a buffer
 *   (views, in-place ops) share one binding, since WebGPU forbids a writable binding
 *   that overlaps another.
 */
import { UserError } from '../../errors.ts';
import type { Buf, IdBuf } from '../backend.ts';
import type { AdapterFacts } from './device.ts';

// WebGPU's constants (fixed by the specification).
const BUFFER = { MAP_READ: 1, COPY_SRC: 4, COPY_DST: 8, UNIFORM: 64, STORAGE: 128 } as const;
const SHADER_COMPUTE = 4;
const MAP_READ = 1;

/** Dispatches recorded before the batch is submitted. */
const SUBMIT_EVERY = 256;
/** Bytes of the uniform ring and of the upload ring (one batch each). */
const RING_BYTES = 1 << 20;
/** Uploads above this size get a buffer of their own, filled at creation. */
const DIRECT_UPLOAD = 256 << 10;

/** Device memory: one GPUBuffer, recycled through the pool. */
export interface Store {
  readonly id: number;
  readonly buffer: GPUBuffer;
  readonly bytes: number;
  /** Set while it waits in the pool. */
  pooled: boolean;
}

/** A float32 buffer (or a view) of the WebGPU backend. */
export class GpuBuf implements Buf {
  constructor(
    readonly store: Store,
    /** First element in the store. */
    readonly offset: number,
    readonly length: number,
    /** Whether freeing it gives the store back (views do not own their store). */
    readonly owner: boolean,
  ) {}
}

/** int32 indices on the device, with the host copy they were made from. */
export class GpuIds implements IdBuf {
  constructor(
    readonly store: Store,
    readonly host: Int32Array,
  ) {}
  get length(): number {
    return this.host.length;
  }
}

/** A range of elements of a store that a kernel reads or writes. */
export interface Operand {
  store: Store;
  /** First element, in units of the operand's declared type. */
  offset: number;
  /** Elements the kernel may touch (from `offset`). */
  count: number;
}

/** An operand slot of a kernel: its WGSL element type and whether the kernel writes it. */
export interface BufferSpec {
  name: string;
  /** WGSL type of an element: f32, i32, u32, vec2<f32>, vec4<f32>, vec4<u32>. */
  type: string;
  write?: boolean;
}

/**
 * A compute kernel: operands, scalar parameters and WGSL code that defines `main`. For
 * each operand `x` the code can call `x_ld(i)` (and `x_st(i, v)` when written) with i
 * counted from the operand's first element; `{{x}}` names its storage array and
 * `{{x.o}}` its element offset, for code that needs a pointer (subgroup matrices).
 * Parameters are fields of the uniform `P`.
 */
export interface Kernel {
  readonly name: string;
  readonly buffers: readonly BufferSpec[];
  /** Uniform fields after the operand offsets: [name, 'u32' | 'i32' | 'f32']. */
  readonly params: readonly (readonly [string, 'u32' | 'i32' | 'f32'])[];
  readonly code: string;
  /** WGSL `enable` directives (f16, subgroups, …). */
  readonly enables?: readonly string[];
  /** Diagnostic rules turned off, e.g. `chromium_experimental.subgroup_matrix_uniformity`. */
  readonly diagnosticsOff?: readonly string[];
}

const UNIT_BYTES: Record<string, number> = {
  f32: 4,
  i32: 4,
  u32: 4,
  'vec2<f32>': 8,
  'vec4<f32>': 16,
  'vec4<u32>': 16,
  'vec2<u32>': 8,
};

/** One binding of a dispatch: a window of a store, shared by one or more operands. */
interface Slot {
  store: Store;
  /** Byte offset and size of the window. */
  start: number;
  size: number;
  write: boolean;
}

interface Pipeline {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  paramBytes: number;
  types: Uint8Array; // 0 u32, 1 i32, 2 f32 per uniform field
}

/** Options that shape how memory is bound (tests force small limits to test splitting). */
export interface RuntimeOptions {
  /** Bytes one binding may span, at most the adapter's maxStorageBufferBindingSize. */
  maxBindingBytes?: number;
  /** Alignment of window starts, at least the adapter's minStorageBufferOffsetAlignment. */
  offsetAlignment?: number;
}

const alignUp = (n: number, a: number) => Math.ceil(n / a) * a;

/** Workgroups of 256 for a grid-stride loop over n elements. */
export function groupsFor(n: number): number {
  return Math.max(1, Math.min(Math.ceil(n / 256), 8192));
}

/**
 * The head of a grid-stride loop over `n` elements with 256 invocations per workgroup:
 * `for (var i = …; i < n; i += stride)`.
 */
export const GRID = `@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let stride = nwg.x * 256u;`;

/** out[i] = value for i < n. */
const FILL: Kernel = {
  name: 'fill',
  buffers: [{ name: 'out', type: 'f32', write: true }],
  params: [
    ['n', 'u32'],
    ['value', 'f32'],
  ],
  code: `${GRID}
  for (var i = gid.x; i < P.n; i += stride) { out_st(i, P.value); }
}`,
};

/** Size classes with four steps per octave (at most 25% slack), 256 bytes at least. */
function bucketBytes(bytes: number): number {
  if (bytes <= 256) return 256;
  const p = 2 ** Math.floor(Math.log2(bytes));
  for (const m of [1, 1.25, 1.5, 1.75, 2]) if (p * m >= bytes) return alignUp(p * m, 256);
  return alignUp(bytes, 256);
}

export class Runtime {
  /** Largest binding, in bytes (a multiple of 16). */
  readonly maxBinding: number;
  /** Alignment of a binding's start, in bytes. */
  readonly align: number;
  private readonly uniformAlign: number;

  private nextId = 1;
  private readonly pool = new Map<number, Store[]>();
  private pooledBytes = 0;
  /** Bytes in stores that exist (held or pooled). */
  allocatedBytes = 0;
  /** The most bytes ever allocated at once. */
  peakBytes = 0;

  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private dispatches = 0;
  private readonly uniformRing: GPUBuffer;
  private readonly uniformHost = new ArrayBuffer(RING_BYTES);
  private readonly u32 = new Uint32Array(this.uniformHost);
  private readonly i32 = new Int32Array(this.uniformHost);
  private readonly f32 = new Float32Array(this.uniformHost);
  private uniformUsed = 0;
  private readonly uploadRing: GPUBuffer;
  private readonly uploadHost = new Uint8Array(RING_BYTES);
  private uploadUsed = 0;

  private readonly pipelines = new WeakMap<Kernel, Map<string, Pipeline>>();
  private bindGroups = new Map<string, GPUBindGroup>();
  private readonly errors: string[] = [];
  /** Temporary buffers to destroy once the batch that uses them is submitted. */
  private readonly afterSubmit: GPUBuffer[] = [];
  /** Total dispatches recorded (for benchmarks and tests). */
  dispatchCount = 0;
  /** Set once the device is destroyed. */
  closed = false;

  constructor(
    readonly device: GPUDevice,
    readonly facts: AdapterFacts,
    opts: RuntimeOptions = {},
    /** Objects that must live as long as the device (Dawn's instance and adapter). */
    readonly keep: readonly unknown[] = [],
  ) {
    const l = facts.limits;
    this.maxBinding =
      Math.floor(
        Math.min(l.maxStorageBufferBindingSize, opts.maxBindingBytes ?? Number.POSITIVE_INFINITY) /
          16,
      ) * 16;
    this.align = Math.max(l.minStorageBufferOffsetAlignment, opts.offsetAlignment ?? 0);
    this.uniformAlign = l.minUniformBufferOffsetAlignment;
    this.uniformRing = device.createBuffer({
      size: RING_BYTES,
      usage: BUFFER.UNIFORM | BUFFER.COPY_DST,
    });
    this.uploadRing = device.createBuffer({
      size: RING_BYTES,
      usage: BUFFER.COPY_SRC | BUFFER.COPY_DST,
    });
    device.onuncapturederror = (e) => {
      this.errors.push(e.error.message);
    };
  }

  // ---------------------------------------------------------------- memory

  private createStore(bytes: number, mapped = false): Store {
    if (bytes > this.facts.limits.maxBufferSize) {
      throw new UserError(
        `a tensor of ${(bytes / 2 ** 20).toFixed(0)} MiB exceeds the WebGPU adapter's largest buffer (${(this.facts.limits.maxBufferSize / 2 ** 20).toFixed(0)} MiB on ${this.facts.name})`,
        'Use a smaller batch or model, or another backend (--backend native).',
      );
    }
    const buffer = this.device.createBuffer({
      size: bytes,
      usage: BUFFER.STORAGE | BUFFER.COPY_SRC | BUFFER.COPY_DST,
      mappedAtCreation: mapped,
    });
    this.allocatedBytes += bytes;
    this.peakBytes = Math.max(this.peakBytes, this.allocatedBytes);
    return { id: this.nextId++, buffer, bytes, pooled: false };
  }

  /** A store of at least `bytes`, from the pool when one is free; its contents are stale. */
  private take(bytes: number): { store: Store; fresh: boolean } {
    const size = bucketBytes(Math.max(bytes, 16));
    const free = this.pool.get(size);
    const s = free?.pop();
    if (s) {
      s.pooled = false;
      this.pooledBytes -= s.bytes;
      return { store: s, fresh: false };
    }
    return { store: this.createStore(size), fresh: true };
  }

  /** n float32 zeros. */
  alloc(n: number): GpuBuf {
    const { store, fresh } = this.take(4 * n);
    // A new GPUBuffer is zero; a recycled one is cleared in the stream of commands.
    if (!fresh && n > 0) this.fill(store, 0, n, 0);
    return new GpuBuf(store, 0, n, true);
  }

  /** n float32 of scratch: contents undefined (the kernel writing it first). */
  scratch(n: number): GpuBuf {
    return new GpuBuf(this.take(4 * n).store, 0, n, true);
  }

  /** Elements [offset, offset + n) of a store set to `value` (a kernel: no pass break). */
  fill(store: Store, offset: number, n: number, value: number): void {
    for (let p = 0; p < n; p += this.pieceElems) {
      const m = Math.min(this.pieceElems, n - p);
      this.dispatch(FILL, [{ store, offset: offset + p, count: m }], [m, value], [groupsFor(m)]);
    }
  }

  /** Elements of float32 operands one dispatch may cover when buffers are bound in windows. */
  get pieceElems(): number {
    return Math.floor((this.maxBinding - this.align) / 1024) * 256;
  }

  /** A store holding `data` (float32 or int32 bytes). */
  storeOf(data: Float32Array | Int32Array): Store {
    const bytes = data.byteLength;
    if (bytes > DIRECT_UPLOAD) {
      const store = this.createStore(bucketBytes(bytes), true);
      new Uint8Array(store.buffer.getMappedRange(0, alignUp(bytes, 4))).set(
        new Uint8Array(data.buffer, data.byteOffset, bytes),
      );
      store.buffer.unmap();
      return store;
    }
    const { store } = this.take(bytes);
    this.write(store, 0, data);
    return store;
  }

  /** Writes host data into a store at `byteOffset`, in order with the recorded commands. */
  write(store: Store, byteOffset: number, data: Float32Array | Int32Array | Uint32Array): void {
    const bytes = data.byteLength;
    if (bytes === 0) return;
    if (bytes > RING_BYTES / 4) {
      // Large: a buffer of its own, copied inside the encoder.
      const src = this.device.createBuffer({
        size: alignUp(bytes, 4),
        usage: BUFFER.COPY_SRC,
        mappedAtCreation: true,
      });
      new Uint8Array(src.getMappedRange()).set(new Uint8Array(data.buffer, data.byteOffset, bytes));
      src.unmap();
      this.commands().copyBufferToBuffer(src, 0, store.buffer, byteOffset, bytes);
      this.afterSubmit.push(src);
      return;
    }
    if (this.uploadUsed + bytes > RING_BYTES) this.flush();
    const at = this.uploadUsed;
    this.uploadHost.set(new Uint8Array(data.buffer, data.byteOffset, bytes), at);
    this.uploadUsed = alignUp(at + bytes, 16);
    this.commands().copyBufferToBuffer(this.uploadRing, at, store.buffer, byteOffset, bytes);
  }

  /** Gives a store back to the pool (or destroys it when the pool holds enough). */
  release(store: Store): void {
    if (store.pooled || this.closed) return;
    // Keep at most half of what is allocated (and at least 256 MiB) waiting in the pool.
    if (this.pooledBytes + store.bytes > Math.max(256 << 20, this.allocatedBytes / 2)) {
      this.destroy(store);
      return;
    }
    store.pooled = true;
    this.pooledBytes += store.bytes;
    let list = this.pool.get(store.bytes);
    if (!list) {
      list = [];
      this.pool.set(store.bytes, list);
    }
    list.push(store);
  }

  /** Destroys a store once its recorded uses are submitted. */
  destroy(store: Store): void {
    if (this.encoder) this.afterSubmit.push(store.buffer);
    else store.buffer.destroy();
    this.allocatedBytes -= store.bytes;
    // Cached bind groups may name it.
    this.bindGroups.clear();
  }

  /** Copies bytes between stores, in order with the dispatches. */
  copyBytes(dst: Store, dstOffset: number, src: Store, srcOffset: number, bytes: number): void {
    if (bytes > 0)
      this.commands().copyBufferToBuffer(src.buffer, srcOffset, dst.buffer, dstOffset, bytes);
  }

  // ---------------------------------------------------------------- recording

  /** The encoder outside a compute pass (for copies and clears). */
  private commands(): GPUCommandEncoder {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    this.encoder ??= this.device.createCommandEncoder();
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    if (!this.pass) {
      this.encoder ??= this.device.createCommandEncoder();
      this.pass = this.encoder.beginComputePass();
    }
    return this.pass;
  }

  /** Submits everything recorded so far. */
  flush(): void {
    if (!this.encoder) return;
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    const q = this.device.queue;
    // The rings' contents for this batch, written ahead of the batch in queue order.
    if (this.uniformUsed) q.writeBuffer(this.uniformRing, 0, this.uniformHost, 0, this.uniformUsed);
    if (this.uploadUsed) q.writeBuffer(this.uploadRing, 0, this.uploadHost, 0, this.uploadUsed);
    q.submit([this.encoder.finish()]);
    // Destroying after the submit is safe: Dawn frees them once the GPU is done.
    for (const b of this.afterSubmit) b.destroy();
    this.afterSubmit.length = 0;
    this.encoder = null;
    this.dispatches = 0;
    this.uniformUsed = 0;
    this.uploadUsed = 0;
  }

  // ---------------------------------------------------------------- kernels

  /** The WGSL module of a kernel for one way of sharing bindings. */
  private source(k: Kernel, slotOf: number[], slots: { write: boolean; type: string }[]): string {
    const lines: string[] = [];
    for (const e of k.enables ?? []) lines.push(`enable ${e};`);
    for (const d of k.diagnosticsOff ?? []) lines.push(`diagnostic(off, ${d});`);
    // `zero` = 0, a value the compiler cannot know: error-free sums pass their steps
    // through an integer XOR with it, so that no algebraic simplification of float
    // expressions ((a + b) − a → b) removes their rounding terms.
    const fields = [
      ...k.buffers.map((b) => `${b.name}_o: u32`),
      ...k.params.map(([n, t]) => `${n}: ${t}`),
      'zero: u32',
    ];
    lines.push(`struct Params { ${fields.join(', ')} }`);
    lines.push(`@group(0) @binding(${slots.length}) var<uniform> P: Params;`);
    slots.forEach((s, i) => {
      const mode = s.write ? 'read_write' : 'read';
      lines.push(`@group(0) @binding(${i}) var<storage, ${mode}> S${i}: array<${s.type}>;`);
    });
    let code = k.code;
    k.buffers.forEach((b, j) => {
      const v = `S${slotOf[j]}`;
      lines.push(`fn ${b.name}_ld(i: u32) -> ${b.type} { return ${v}[P.${b.name}_o + i]; }`);
      if (b.write)
        lines.push(`fn ${b.name}_st(i: u32, x: ${b.type}) { ${v}[P.${b.name}_o + i] = x; }`);
      code = code.replaceAll(`{{${b.name}.o}}`, `P.${b.name}_o`).replaceAll(`{{${b.name}}}`, v);
    });
    lines.push(code);
    return lines.join('\n');
  }

  private pipelineFor(k: Kernel, key: string, slotOf: number[], slots: Slot[]): Pipeline {
    let byKey = this.pipelines.get(k);
    if (!byKey) {
      byKey = new Map();
      this.pipelines.set(k, byKey);
    }
    const hit = byKey.get(key);
    if (hit) return hit;
    const types = slots.map((_, i) => k.buffers[slotOf.indexOf(i)].type);
    const code = this.source(
      k,
      slotOf,
      slots.map((s, i) => ({ write: s.write, type: types[i] })),
    );
    const nFields = k.buffers.length + k.params.length + 1;
    const paramBytes = alignUp(4 * nFields, 16);
    const layout = this.device.createBindGroupLayout({
      entries: [
        ...slots.map((s, i) => ({
          binding: i,
          visibility: SHADER_COMPUTE,
          buffer: { type: (s.write ? 'storage' : 'read-only-storage') as GPUBufferBindingType },
        })),
        {
          binding: slots.length,
          visibility: SHADER_COMPUTE,
          buffer: { type: 'uniform' as const, hasDynamicOffset: true, minBindingSize: paramBytes },
        },
      ],
    });
    const t0 = performance.now();
    const module = this.device.createShaderModule({ code, label: k.name });
    const pipeline = this.device.createComputePipeline({
      label: k.name,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: 'main' },
    });
    if (process.env.WGSL_DEBUG)
      console.error(`compiled ${k.name} ${key} in ${(performance.now() - t0).toFixed(0)} ms`);
    const t = new Uint8Array(nFields);
    k.params.forEach(([, ty], i) => {
      t[k.buffers.length + i] = ty === 'i32' ? 1 : ty === 'f32' ? 2 : 0;
    });
    const p = { pipeline, layout, paramBytes, types: t };
    byKey.set(key, p);
    return p;
  }

  /**
   * Records one dispatch of `k` over `groups` workgroups: `ops` in the order of
   * k.buffers, `params` in the order of k.params.
   */
  dispatch(
    k: Kernel,
    ops: readonly Operand[],
    params: readonly number[],
    groups: readonly [number, number?, number?],
  ): void {
    const [gx, gy = 1, gz = 1] = groups;
    if (gx === 0 || gy === 0 || gz === 0) return;
    const max = this.facts.limits.maxComputeWorkgroupsPerDimension;
    if (gx > max || gy > max || gz > max)
      throw new Error(`${k.name}: ${gx}×${gy}×${gz} workgroups exceed ${max} per dimension`);
    // Windows: one slot per store, or per disjoint window of a store too large to bind whole.
    const slots: Slot[] = [];
    const slotOf: number[] = [];
    const offsets: number[] = [];
    for (let j = 0; j < ops.length; j++) {
      const o = ops[j];
      const spec = k.buffers[j];
      const unit = UNIT_BYTES[spec.type];
      const lo = o.offset * unit;
      const hi = (o.offset + Math.max(o.count, 1)) * unit;
      let start: number;
      let end: number;
      if (o.store.bytes <= this.maxBinding) {
        start = 0;
        end = o.store.bytes;
      } else {
        start = Math.floor(lo / this.align) * this.align;
        end = Math.min(o.store.bytes, alignUp(hi, 4));
      }
      let s = slots.findIndex(
        (x) => x.store === o.store && x.start < end && start < x.start + x.size,
      );
      if (s >= 0) {
        // Merge overlapping windows of one store into one binding.
        const sl = slots[s];
        const ns = Math.min(sl.start, start);
        const ne = Math.max(sl.start + sl.size, end);
        if (ne - ns > this.maxBinding)
          throw new Error(`${k.name}: operands of one buffer span more than one binding`);
        sl.start = ns;
        sl.size = ne - ns;
        sl.write ||= !!spec.write;
      } else {
        s = slots.length;
        slots.push({ store: o.store, start, size: end - start, write: !!spec.write });
      }
      if (end - start > this.maxBinding) {
        throw new UserError(
          `${k.name}: a tensor of ${(end - start) / 2 ** 20} MiB exceeds what one WebGPU binding may hold on ${this.facts.name} (${this.maxBinding / 2 ** 20} MiB)`,
          'Use smaller batches (fewer windows or a shorter context) or another backend (--backend native).',
        );
      }
      slotOf.push(s);
    }
    // A buffer bound twice (disjoint windows) must be bound writable both times: WebGPU
    // refuses read-only and writable uses of one buffer in one dispatch.
    for (const s of slots)
      if (s.write) for (const t of slots) if (t.store === s.store) t.write = true;
    for (let j = 0; j < ops.length; j++) {
      if (k.buffers[j].type !== k.buffers[slotOf.indexOf(slotOf[j])].type)
        throw new Error(`${k.name}: operands of different types share a buffer`);
      const unit = UNIT_BYTES[k.buffers[j].type];
      const rel = ops[j].offset * unit - slots[slotOf[j]].start;
      if (rel % unit) throw new Error(`${k.name}: ${k.buffers[j].name} misaligned in its window`);
      offsets.push(rel / unit);
    }
    const key = `${slotOf.join(',')}|${slots.map((s) => (s.write ? 'w' : 'r')).join('')}`;
    const p = this.pipelineFor(k, key, slotOf, slots);

    // Parameters into the uniform ring.
    if (this.uniformUsed + p.paramBytes > RING_BYTES) this.flush();
    const at = this.uniformUsed;
    const base = at >> 2;
    for (let j = 0; j < offsets.length; j++) this.u32[base + j] = offsets[j];
    if (params.length !== k.params.length)
      throw new Error(`${k.name}: ${params.length} parameters for ${k.params.length}`);
    for (let j = 0; j < params.length; j++) {
      const f = base + offsets.length + j;
      const t = p.types[offsets.length + j];
      if (t === 2) this.f32[f] = params[j];
      else if (t === 1) this.i32[f] = params[j];
      else this.u32[f] = params[j];
    }
    this.u32[base + offsets.length + params.length] = 0;
    this.uniformUsed = alignUp(at + p.paramBytes, this.uniformAlign);

    // Bind group, cached by layout and windows.
    let bgKey = `${k.name}#${key}`;
    for (const s of slots) bgKey += `:${s.store.id}@${s.start}+${s.size}`;
    let bg = this.bindGroups.get(bgKey);
    if (!bg) {
      if (this.bindGroups.size > 8192) this.bindGroups.clear();
      bg = this.device.createBindGroup({
        layout: p.layout,
        entries: [
          ...slots.map((s, i) => ({
            binding: i,
            resource: { buffer: s.store.buffer, offset: s.start, size: s.size },
          })),
          {
            binding: slots.length,
            resource: { buffer: this.uniformRing, offset: 0, size: p.paramBytes },
          },
        ],
      });
      this.bindGroups.set(bgKey, bg);
    }
    const pass = this.computePass();
    pass.setPipeline(p.pipeline);
    pass.setBindGroup(0, bg, [at]);
    pass.dispatchWorkgroups(gx, gy, gz);
    this.dispatchCount++;
    if (++this.dispatches >= SUBMIT_EVERY) this.flush();
  }

  // ---------------------------------------------------------------- reading back

  /** Bytes [offset, offset + bytes) of a store, after everything recorded before. */
  async readBytes(store: Store, offset: number, bytes: number): Promise<ArrayBuffer> {
    const out = new ArrayBuffer(bytes);
    if (bytes === 0) {
      this.check();
      return out;
    }
    const staging = this.device.createBuffer({
      size: alignUp(bytes, 4),
      usage: BUFFER.MAP_READ | BUFFER.COPY_DST,
    });
    this.commands().copyBufferToBuffer(store.buffer, offset, staging, 0, alignUp(bytes, 4));
    this.flush();
    try {
      await staging.mapAsync(MAP_READ);
      new Uint8Array(out).set(new Uint8Array(staging.getMappedRange(), 0, bytes));
      staging.unmap();
    } catch (e) {
      this.check();
      throw e;
    } finally {
      staging.destroy();
    }
    this.check();
    return out;
  }

  /** Throws the first error the device reported (out of memory: a UserError). */
  check(): void {
    if (!this.errors.length) return;
    const msg = this.errors[0];
    this.errors.length = 0;
    if (/out of memory|OutOfMemory|allocation failed/i.test(msg)) {
      throw new UserError(
        `the GPU ran out of memory (${(this.allocatedBytes / 2 ** 30).toFixed(2)} GiB held by actsparse): ${msg.split('\n')[0]}`,
        'Use fewer calibration windows or a smaller model, or another backend (--backend native).',
      );
    }
    throw new Error(`WebGPU error: ${msg}`);
  }

  /** Waits for the device to finish everything submitted. */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
    this.check();
  }

  /** Destroys the device: Dawn keeps the process alive while one exists. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.device.destroy();
  }
}
