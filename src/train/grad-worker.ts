/**
 * The second thread of `dataParallel` (parallel.ts): forward and backward of its share of
 * the windows, on the shared weights, into shared gradients. Waits for commands on the
 * shared control words; every job, failed or not, ends with `completions + 1`.
 */
import { workerData } from 'node:worker_threads';
import { bestMatmul } from './matmul.ts';
import { COMMAND, type WorkerSetup } from './parallel.ts';
import { ParamSet } from './params.ts';
import { Rwkv4Grad } from './rwkv4-grad.ts';

const setup = workerData as WorkerSetup;
const ctl = new Int32Array(setup.control);
const [CMD, WINDOWS, DONE, ERROR] = [0, 1, 2, 3];

function finish(error: unknown): void {
  if (error !== null) {
    const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
    const bytes = new Uint8Array(setup.message);
    const n = Math.min(bytes.length - 1, Buffer.byteLength(text));
    bytes.set(Buffer.from(text).subarray(0, n));
    bytes[n] = 0;
    Atomics.store(ctl, ERROR, 1);
  }
  Atomics.store(ctl, CMD, COMMAND.idle);
  Atomics.add(ctl, DONE, 1);
  Atomics.notify(ctl, DONE);
}

let model: Rwkv4Grad<Float32Array> | null = null;
let grads: ParamSet | null = null;
const matmul = bestMatmul();
try {
  const params = ParamSet.wrap(
    setup.config,
    setup.params.map((b) => new Float32Array(b)),
  );
  grads = ParamSet.wrap(
    setup.config,
    setup.grads.map((b) => new Float32Array(b)),
  );
  model = new Rwkv4Grad(params, { matmul, alloc: (n) => new Float32Array(n) });
  finish(null);
} catch (e) {
  finish(e);
}

const tokens = new Int32Array(setup.tokens);
const result = new Float64Array(setup.result);
while (model && grads) {
  Atomics.wait(ctl, CMD, COMMAND.idle);
  const cmd = Atomics.load(ctl, CMD);
  if (cmd === COMMAND.exit) break;
  try {
    const B = Atomics.load(ctl, WINDOWS);
    // The weights may have changed since the last job (prepared copies are stale).
    matmul.weightsChanged();
    const toks = tokens.subarray(0, B * (setup.T + 1));
    result[0] = model.lossAndGrad(toks, B, setup.T, cmd === COMMAND.grad ? grads : undefined);
    finish(null);
  } catch (e) {
    finish(e);
  }
}
