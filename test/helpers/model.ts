/** Running models in tests: logits read back as plain arrays. */
import type { LanguageModel, ModelState } from '../../src/models/model.ts';
import { forward, makeBatch, sequenceLogits, step } from '../../src/models/model.ts';

/** Logits [T, vocab] of the tokens from `state` (a fresh one by default). */
export function logitsOf(
  model: LanguageModel,
  tokens: ArrayLike<number>,
  state: ModelState = model.newState(),
): Promise<Float32Array> {
  return sequenceLogits(model, tokens, state);
}

/** Logits of every position, one token at a time (T = 1) from `state`. */
export async function stepAll(
  model: LanguageModel,
  tokens: ArrayLike<number>,
  state: ModelState = model.newState(),
): Promise<Float32Array> {
  const V = model.nVocab;
  const out = new Float32Array(tokens.length * V);
  for (let i = 0; i < tokens.length; i++) out.set(await step(model, tokens[i], state), i * V);
  return out;
}

/**
 * Runs the tokens from a fresh state with a hook that sees each site's input as a CPU
 * array [rows·cols] (CPU backends only).
 */
export function observe(
  model: LanguageModel,
  tokens: ArrayLike<number>,
  fn: (g: number, x: Float32Array, rows: number, cols: number) => void,
): void {
  const batch = makeBatch(model, [tokens]);
  const state = model.newState();
  forward(model, batch, state, {
    logits: 'none',
    hook: (g, x, rows, cols) => fn(g, (x as Float32Array).subarray(0, rows * cols), rows, cols),
  });
  state.free();
}
