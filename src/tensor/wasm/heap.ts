/**
 * The JS side owns the kernels' linear memory: a first-fit free-list allocator over a
 * WebAssembly.Memory that grows on demand, up to a cap (4 GiB, the wasm32 limit).
 * Growing detaches every old view of the buffer, so `f32`/`i32` are re-created after it.
 */
import { UserError } from '../../errors.ts';

/** The part of WebAssembly.Memory used here (the project's type libs lack WebAssembly). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}

export const PAGE_BYTES = 65536;
export const MAX_WASM_BYTES = 4 * 1024 ** 3;
/**
 * Block alignment: a 4 KiB page. Rows of Wᵀ then start on page boundaries (the hardware
 * prefetchers stop at pages; unaligned 16 KiB rows spanned 5 pages and read ~10% slower).
 */
const ALIGN = 4096;

interface Block {
  start: number;
  size: number;
}

export function formatBytes(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  return `${(n / 1024 ** 2).toFixed(1)} MiB`;
}

export class Heap {
  f32: Float32Array;
  /** End of the highest block handed out; memory above it is unused. */
  private top: number;
  /** Free blocks below `top`, sorted by start, never adjacent (merged on release). */
  private readonly free: Block[] = [];
  private used = 0;

  constructor(
    private readonly memory: WasmMemory,
    base: number,
    private readonly maxBytes: number,
  ) {
    this.top = Math.ceil(base / ALIGN) * ALIGN;
    this.f32 = new Float32Array(memory.buffer);
  }

  /** Bytes of linear memory reserved so far (it never shrinks). */
  get memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** Bytes in live blocks. */
  get usedBytes(): number {
    return this.used;
  }

  /** A page-aligned block of `bytes` (contents undefined); `what` names it in errors. */
  alloc(bytes: number, what: string): number {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    for (let i = 0; i < this.free.length; i++) {
      const b = this.free[i];
      if (b.size < size) continue;
      const start = b.start;
      if (b.size === size) this.free.splice(i, 1);
      else {
        b.start += size;
        b.size -= size;
      }
      this.used += size;
      return start;
    }
    const start = this.top;
    this.ensure(start + size, size, what);
    this.top = start + size;
    this.used += size;
    return start;
  }

  /** Returns a block from `alloc` (same `bytes`) to the free list. */
  release(start: number, bytes: number): void {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    this.used -= size;
    // Insert in order, then merge with the neighbours it touches.
    let i = 0;
    while (i < this.free.length && this.free[i].start < start) i++;
    this.free.splice(i, 0, { start, size });
    const next = this.free[i + 1];
    if (next && start + size === next.start) {
      this.free[i].size += next.size;
      this.free.splice(i + 1, 1);
    }
    const prev = this.free[i - 1];
    if (prev && prev.start + prev.size === start) {
      prev.size += this.free[i].size;
      this.free.splice(i, 1);
      i--;
    }
    // A free block that ends at the top just lowers the top.
    const last = this.free[this.free.length - 1];
    if (last && last.start + last.size === this.top) {
      this.top = last.start;
      this.free.pop();
    }
  }

  /** Grows memory so that [0, end) is addressable, or says clearly why it cannot. */
  private ensure(end: number, size: number, what: string): void {
    const have = this.memory.buffer.byteLength;
    if (end <= have) return;
    const tooBig = () =>
      new UserError(
        `the wasm backend cannot hold ${what} (${formatBytes(size)}): WebAssembly memory is limited to ${formatBytes(this.maxBytes)} and ${formatBytes(this.used)} is already in use`,
        'Use --backend native (or --backend js) for a model this large.',
      );
    if (end > this.maxBytes) throw tooBig();
    try {
      this.memory.grow(Math.ceil((end - have) / PAGE_BYTES));
    } catch {
      // The engine or the OS refused the pages (RangeError): the same advice applies.
      throw tooBig();
    }
    this.f32 = new Float32Array(this.memory.buffer);
  }
}
