/**
 * Gradient engines: one thread, or data parallelism over two threads. In the latter the
 * main thread and one worker (grad-worker.ts) each run forward and backward on their half
 * of the batch's windows with their own Rwkv4Grad, on the same weights (shared memory),
 * and the gradients are combined weighted by window count:
 *
 *   g = (B₁·g₁ + B₂·g₂) / B,  loss = (B₁·L₁ + B₂·L₂) / B
 *
 * Both halves run their matrix products single-threaded (native `setThreads(1)`), side
 * by side. The split is fixed, so a run is as deterministic as with one thread (the sums
 * differ from one thread's only in rounding order).
 *
 * The worker is driven synchronously through a shared Int32Array: [command, windows,
 * completions, error], with Atomics.wait/notify; so `train` stays a plain function.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { Rwkv4Config } from '../models/rwkv4.ts';
import * as native from '../tensor/native/index.ts';
import { bestMatmul, type Matmul } from './matmul.ts';
import { ParamSet } from './params.ts';
import { Rwkv4Grad } from './rwkv4-grad.ts';

export interface GradEngine {
  readonly description: string;
  readonly threads: number;
  /** Mean loss of B windows of T+1 tokens ([B, T+1]); writes ∂loss/∂θ into grads. */
  lossAndGrad(tokens: Int32Array, B: number, T: number, grads: ParamSet): number;
  /** Mean loss only. */
  loss(tokens: Int32Array, B: number, T: number): number;
  /** The optimizer changed the weights. */
  weightsChanged(): void;
  close(): void;
}

/**
 * 2 when there are two cores. Measured at 6×192, batch 16×128 (forward + backward, idle
 * 2-core Zen 4): 4.7k → 6.0k tokens/s through the backend's GEMM; 4.6k → 7.2k with the
 * addon's sgemm, whose calls from the two threads run side by side.
 */
export function defaultThreads(): 1 | 2 {
  return availableParallelism() >= 2 ? 2 : 1;
}

/** Float32 arrays in shared memory: parameters the worker reads, gradients it writes. */
export const sharedF32 = (n: number) => new Float32Array(new SharedArrayBuffer(4 * n));

export function singleThread(params: ParamSet, matmul: Matmul = bestMatmul()): GradEngine {
  const model = new Rwkv4Grad(params, { matmul, alloc: (n) => new Float32Array(n) });
  return {
    description: matmul.description,
    threads: 1,
    lossAndGrad: (tokens, B, T, grads) => model.lossAndGrad(tokens, B, T, grads),
    loss: (tokens, B, T) => model.lossAndGrad(tokens, B, T),
    weightsChanged: () => matmul.weightsChanged(),
    close() {},
  };
}

// Control words.
const CMD = 0;
const WINDOWS = 1;
const DONE = 2;
const ERROR = 3;
export const COMMAND = { idle: 0, grad: 1, loss: 2, exit: 3 } as const;

/** What grad-worker.ts receives. */
export interface WorkerSetup {
  config: Rwkv4Config;
  params: SharedArrayBuffer[];
  grads: SharedArrayBuffer[];
  /** Int32Array [maxWindows·(T+1)]: the worker's windows. */
  tokens: SharedArrayBuffer;
  T: number;
  control: SharedArrayBuffer;
  /** Float64Array [1]: the worker's loss. */
  result: SharedArrayBuffer;
  /** Uint8Array: the worker's error message (UTF-8, 0-terminated). */
  message: SharedArrayBuffer;
}

const START_TIMEOUT_MS = 120_000;

/**
 * Two threads on the same `params` (which must live in shared memory, `sharedF32`).
 * `maxB` and `T` size the worker's token buffer.
 */
export function dataParallel(params: ParamSet, maxB: number, T: number): GradEngine {
  for (const t of params.tensors) {
    if (!(t.buffer instanceof SharedArrayBuffer))
      throw new Error('dataParallel: parameters must be in shared memory (sharedF32)');
  }
  const cfg = params.config;
  const backend = native.loadNativeKernels();
  const threadsBefore = backend ? native.info().threads : 0;
  if (backend) native.setThreads(1);
  const matmul = bestMatmul();
  const model = new Rwkv4Grad(params, { matmul, alloc: (n) => new Float32Array(n) });
  const workerGrads = new ParamSet(cfg, sharedF32);
  const setup: WorkerSetup = {
    config: cfg,
    params: params.tensors.map((t) => t.buffer as SharedArrayBuffer),
    grads: workerGrads.tensors.map((t) => t.buffer as SharedArrayBuffer),
    tokens: new SharedArrayBuffer(4 * Math.ceil(maxB / 2) * (T + 1)),
    T,
    control: new SharedArrayBuffer(16),
    result: new SharedArrayBuffer(8),
    message: new SharedArrayBuffer(4096),
  };
  const ctl = new Int32Array(setup.control);
  const tokens = new Int32Array(setup.tokens);
  const result = new Float64Array(setup.result);
  const worker = startWorker(setup);
  worker.unref();
  let closed = false;

  /** Waits until the worker has completed `count` jobs (its start is job 1). */
  const waitFor = (count: number, timeoutMs: number) => {
    const t0 = performance.now();
    for (;;) {
      const done = Atomics.load(ctl, DONE);
      if (done >= count) break;
      if (performance.now() - t0 > timeoutMs) throw new Error('training worker does not answer');
      Atomics.wait(ctl, DONE, done, 1000);
    }
    if (Atomics.load(ctl, ERROR)) {
      const bytes = new Uint8Array(setup.message);
      const end = bytes.indexOf(0);
      throw new Error(`training worker: ${Buffer.from(bytes.subarray(0, end)).toString('utf8')}`);
    }
  };
  let jobs = 1;
  waitFor(jobs, START_TIMEOUT_MS);

  /** Main takes the first ⌈B/2⌉ windows, the worker the rest. */
  const run = (toks: Int32Array, B: number, grads: ParamSet | null): number => {
    const B1 = Math.ceil(B / 2);
    const B2 = B - B1;
    const size = T + 1;
    if (B2 > 0) {
      tokens.set(toks.subarray(B1 * size, B * size));
      Atomics.store(ctl, WINDOWS, B2);
      Atomics.store(ctl, CMD, grads ? COMMAND.grad : COMMAND.loss);
      Atomics.notify(ctl, CMD);
      jobs++;
    }
    const l1 = model.lossAndGrad(toks.subarray(0, B1 * size), B1, T, grads ?? undefined);
    if (B2 === 0) return l1;
    waitFor(jobs, Number.POSITIVE_INFINITY);
    if (grads) {
      // g = (B₁·g₁ + B₂·g₂) / B
      const a = B1 / B;
      const b = B2 / B;
      for (let i = 0; i < grads.tensors.length; i++) {
        const g = grads.tensors[i];
        const h = workerGrads.tensors[i];
        for (let j = 0; j < g.length; j++) g[j] = a * g[j] + b * h[j];
      }
    }
    return (B1 * l1 + B2 * result[0]) / B;
  };

  return {
    description: `${matmul.description}; 2 threads (data parallel, 1 thread per product)`,
    threads: 2,
    lossAndGrad: (toks, B, T2, grads) => {
      if (T2 !== T) throw new Error(`dataParallel: built for T = ${T}, got ${T2}`);
      return run(toks, B, grads);
    },
    loss: (toks, B, T2) => {
      if (T2 !== T) throw new Error(`dataParallel: built for T = ${T}, got ${T2}`);
      return run(toks, B, null);
    },
    weightsChanged: () => matmul.weightsChanged(),
    close() {
      if (closed) return;
      closed = true;
      Atomics.store(ctl, CMD, COMMAND.exit);
      Atomics.notify(ctl, CMD);
      void worker.terminate();
      if (backend) native.setThreads(threadsBefore);
    },
  };
}

/**
 * The worker module beside this one: grad-worker.js when built, grad-worker.ts under tsx
 * (whose loader a worker does not inherit on Node 20: registered first).
 */
function startWorker(setup: WorkerSetup): Worker {
  const self = import.meta.url;
  if (!self.endsWith('.ts'))
    return new Worker(new URL('./grad-worker.js', self), { workerData: setup });
  const url = new URL('./grad-worker.ts', self).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(url)}); });`;
  return new Worker(code, { eval: true, workerData: setup });
}
