/**
 * AdamW as PyTorch's torch.optim.AdamW computes it (decoupled weight decay, bias-corrected
 * moments), gradient clipping by global norm, and the learning-rate schedule (linear
 * warmup, then cosine decay to a floor), as nanoGPT's `get_lr`.
 */

export interface AdamWConfig {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const ADAMW_DEFAULTS: AdamWConfig = { beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1 };

/**
 * One AdamW step on one tensor, in place. `step` counts from 1 (the bias corrections);
 * `decay` says whether weight decay applies (2-D weights only).
 *
 *   p ← p·(1 − lr·λ)
 *   m ← β1·m + (1 − β1)·g;  v ← β2·v + (1 − β2)·g²
 *   p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + ε)
 */
export function adamwUpdate(
  p: Float32Array,
  g: Float32Array,
  m: Float32Array,
  v: Float32Array,
  step: number,
  lr: number,
  decay: boolean,
  cfg: AdamWConfig,
): void {
  const { beta1, beta2, eps } = cfg;
  const keep = decay ? 1 - lr * cfg.weightDecay : 1;
  const stepSize = lr / (1 - beta1 ** step);
  const c2 = Math.sqrt(1 - beta2 ** step);
  for (let i = 0; i < p.length; i++) {
    const gi = g[i];
    const mi = beta1 * m[i] + (1 - beta1) * gi;
    const vi = beta2 * v[i] + (1 - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * keep - (stepSize * mi) / (Math.sqrt(vi) / c2 + eps);
  }
}

/** The L2 norm of all gradients together. */
export function globalNorm(grads: readonly Float32Array[]): number {
  let s = 0;
  for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return Math.sqrt(s);
}

/**
 * Scales all gradients by min(1, maxNorm/‖g‖) (torch.nn.utils.clip_grad_norm_, which
 * also adds 1e-6 to the norm); returns the norm before clipping. maxNorm ≤ 0: no clipping.
 */
export function clipGradNorm(grads: readonly Float32Array[], maxNorm: number): number {
  const norm = globalNorm(grads);
  if (maxNorm > 0 && norm > maxNorm) {
    const scale = maxNorm / (norm + 1e-6);
    for (const g of grads) for (let i = 0; i < g.length; i++) g[i] *= scale;
  }
  return norm;
}

export interface Schedule {
  lr: number;
  minLr: number;
  warmup: number;
  steps: number;
}

/**
 * Learning rate of step `it` (0-based): lr·(it+1)/warmup during warmup, then a cosine
 * from lr down to minLr at the last step.
 */
export function learningRate(it: number, s: Schedule): number {
  if (it < s.warmup) return (s.lr * (it + 1)) / s.warmup;
  const span = Math.max(1, s.steps - s.warmup);
  const ratio = Math.min(1, (it - s.warmup) / span);
  return s.minLr + 0.5 * (1 + Math.cos(Math.PI * ratio)) * (s.lr - s.minLr);
}
