/**
 * From a checkpoint to a runnable model: the architecture is inferred from tensor
 * names and shapes (as web-rwkv's Loader::info does), with a clear error otherwise.
 */
import { UserError } from '../errors.ts';
import type { Checkpoint } from '../io/checkpoint.ts';
import type { Backend } from '../tensor/backend.ts';
import type { LanguageModel } from './model.ts';
import { Opt } from './opt.ts';
import { Rwkv4 } from './rwkv4.ts';

export type Architecture = 'rwkv4' | 'rwkv5' | 'rwkv6' | 'rwkv7' | 'opt' | 'unknown';

export function detectArchitecture(ckpt: Checkpoint): Architecture {
  const has = (n: string) => ckpt.tensors.has(n);
  // OPTForCausalLM names; OPTModel checkpoints drop the `model.` prefix.
  if (has('model.decoder.embed_tokens.weight') || has('decoder.embed_tokens.weight')) return 'opt';
  if (!has('emb.weight') && !has('blocks.0.ln1.weight')) return 'unknown';
  if (has('blocks.0.att.x_rwkvag') || has('blocks.0.att.x_r') || has('blocks.0.att.a0'))
    return 'rwkv7';
  if (has('blocks.0.att.time_maa_x') || has('blocks.0.att.time_maa_w1')) return 'rwkv6';
  if (has('blocks.0.att.ln_x.weight')) return 'rwkv5';
  if (has('blocks.0.att.time_first') && has('blocks.0.att.key.weight')) return 'rwkv4';
  return 'unknown';
}

export function loadModel(
  ckpt: Checkpoint,
  backend: Backend,
  opts: { sparse?: boolean } = {},
): LanguageModel {
  const arch = detectArchitecture(ckpt);
  switch (arch) {
    case 'rwkv4':
      return Rwkv4.load(ckpt, backend, opts);
    case 'opt':
      return Opt.load(ckpt, backend, opts);
    case 'unknown':
      throw new UserError(
        `${ckpt.path}: cannot tell the architecture from its ${ckpt.tensors.size} tensors`,
        'Expected RWKV (emb.weight, blocks.N.…) or OPT (model.decoder.…) names; `actsparse info` lists them.',
      );
    default:
      throw new UserError(
        `${ckpt.path} is ${arch.toUpperCase()}, which actsparse cannot run yet (RWKV-4 and OPT are supported)`,
        '`actsparse info` and `convert` still work on it.',
      );
  }
}
