/** Next-token sampling: temperature, nucleus (top-p), greedy at temperature 0. */

export interface SampleOptions {
  temperature: number;
  topP: number;
}

export function sample(
  logits: Float32Array,
  { temperature, topP }: SampleOptions,
  random: () => number,
): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (temperature <= 0) return best;
  // p_i ∝ exp((l_i − max) / T)
  const probs = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) {
    probs[i] = Math.exp((logits[i] - logits[best]) / temperature);
    sum += probs[i];
  }
  // Keep the smallest set of most likely tokens whose mass reaches top-p.
  const order = Array.from(probs.keys()).sort((a, b) => probs[b] - probs[a]);
  let kept = 0;
  let mass = 0;
  while (kept < order.length && mass < topP * sum) mass += probs[order[kept++]];
  let u = random() * mass;
  for (let j = 0; j < kept; j++) {
    u -= probs[order[j]];
    if (u <= 0) return order[j];
  }
  return order[kept - 1];
}
