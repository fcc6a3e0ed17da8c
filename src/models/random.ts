/**
 * Random RWKV-4 weights of any shape, with magnitudes like a trained model's (so that
 * channel-mix activations are neither vanishing nor exploding): for tests and for
 * benchmarks of shapes too large to ship (e.g. 24×1024, the 430M layout).
 */
import type { NamedTensor } from '../io/memory.ts';
import { rng } from '../util/random.ts';

export interface RandomRwkv4Shape {
  nLayer: number;
  nEmbd: number;
  nVocab: number;
  nFfn?: number;
  seed?: number;
}

export function randomRwkv4(shape: RandomRwkv4Shape): NamedTensor[] {
  const { nLayer, nEmbd: d, nVocab: V, seed = 1 } = shape;
  const f = shape.nFfn ?? 4 * d;
  const u = rng(seed);
  // Gaussian by Box–Muller.
  const gauss = () => Math.sqrt(-2 * Math.log(u() + 1e-12)) * Math.cos(2 * Math.PI * u());
  const fill = (n: number, g: (i: number) => number) =>
    Float32Array.from({ length: n }, (_, i) => g(i));
  const out: NamedTensor[] = [];
  const add = (name: string, s: number[], g: (i: number) => number) =>
    out.push({
      name,
      shape: s,
      data: fill(
        s.reduce((a, b) => a * b, 1),
        g,
      ),
    });
  // A linear layer [rows, cols] with std `gain/√cols` keeps unit-scale inputs unit-scale.
  const lin = (name: string, rows: number, cols: number, gain = 1) =>
    add(name, [rows, cols], () => (gain * gauss()) / Math.sqrt(cols));

  add('emb.weight', [V, d], () => 0.1 * gauss());
  for (let b = 0; b < nLayer; b++) {
    const p = `blocks.${b}`;
    if (b === 0) {
      add(`${p}.ln0.weight`, [d], () => 1 + 0.1 * gauss());
      add(`${p}.ln0.bias`, [d], () => 0.1 * gauss());
    }
    for (const ln of ['ln1', 'ln2']) {
      add(`${p}.${ln}.weight`, [d], () => 1 + 0.1 * gauss());
      add(`${p}.${ln}.bias`, [d], () => 0.1 * gauss());
    }
    // Decay rates spread over channels as in trained models: w from about −5 to 3.
    add(`${p}.att.time_decay`, [d], (i) => -5 + (8 * i) / Math.max(1, d - 1) + 0.3 * gauss());
    add(`${p}.att.time_first`, [d], () => Math.log(0.3) + 0.5 * gauss());
    for (const m of ['time_mix_k', 'time_mix_v', 'time_mix_r'])
      add(`${p}.att.${m}`, [1, 1, d], () => u());
    lin(`${p}.att.key.weight`, d, d);
    lin(`${p}.att.value.weight`, d, d);
    lin(`${p}.att.receptance.weight`, d, d);
    lin(`${p}.att.output.weight`, d, d, 0.5);
    for (const m of ['time_mix_k', 'time_mix_r']) add(`${p}.ffn.${m}`, [1, 1, d], () => u());
    lin(`${p}.ffn.key.weight`, f, d, 1.5);
    lin(`${p}.ffn.receptance.weight`, d, d);
    lin(`${p}.ffn.value.weight`, d, f, 0.5);
  }
  add('ln_out.weight', [d], () => 1 + 0.1 * gauss());
  add('ln_out.bias', [d], () => 0.1 * gauss());
  lin('head.weight', V, d);
  return out;
}
