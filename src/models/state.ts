/**
 * The recurrent state of a batch of sequences as named parts, one backend buffer
 * [batch, width] per part and layer (RWKV's token-shift vectors and WKV numerators,
 * Mamba's conv and SSM states, …). Models read `part('aa', layer)`, never indices.
 */
import type { Backend, Buf } from '../tensor/backend.ts';
import type { ModelState } from './model.ts';

/** Per part: values per sequence and layer, and the value a fresh state holds. */
export type StateSpec<K extends string> = Readonly<Record<K, { width: number; init: number }>>;

export class RecurrentState<K extends string> implements ModelState {
  private constructor(
    private readonly backend: Backend,
    readonly batch: number,
    readonly nLayer: number,
    private readonly spec: StateSpec<K>,
    private readonly bufs: Record<K, Buf[]>,
  ) {}

  /** A fresh state: every part filled with its initial value. */
  static fresh<K extends string>(
    backend: Backend,
    batch: number,
    nLayer: number,
    spec: StateSpec<K>,
  ): RecurrentState<K> {
    const bufs = {} as Record<K, Buf[]>;
    for (const k of Object.keys(spec) as K[]) {
      bufs[k] = Array.from({ length: nLayer }, () => {
        const b = backend.alloc(batch * spec[k].width);
        if (spec[k].init !== 0) backend.fill(b, spec[k].init);
        return b;
      });
    }
    return new RecurrentState(backend, batch, nLayer, spec, bufs);
  }

  /** Part `k` of layer `layer`: [batch, width]. */
  part(k: K, layer: number): Buf {
    return this.bufs[k][layer];
  }

  private map(f: (b: Buf, width: number) => Buf, batch: number): this {
    const bufs = {} as Record<K, Buf[]>;
    for (const k of Object.keys(this.spec) as K[])
      bufs[k] = this.bufs[k].map((b) => f(b, this.spec[k].width));
    return new RecurrentState(this.backend, batch, this.nLayer, this.spec, bufs) as this;
  }

  clone(): this {
    return this.map((b) => {
      const c = this.backend.alloc(b.length);
      this.backend.copy(c, b);
      return c;
    }, this.batch);
  }

  select(idx: readonly number[]): this {
    for (const i of idx) {
      if (!(Number.isInteger(i) && i >= 0 && i < this.batch))
        throw new RangeError(`select: sequence ${i} of a state of ${this.batch}`);
    }
    const ids = this.backend.uploadIds(Int32Array.from(idx));
    const out = this.map((b, width) => {
      const c = this.backend.alloc(idx.length * width);
      this.backend.gather(c, b, ids, width);
      return c;
    }, idx.length);
    this.backend.free(ids);
    return out;
  }

  free(): void {
    for (const k of Object.keys(this.spec) as K[])
      for (const b of this.bufs[k]) this.backend.free(b);
  }
}
