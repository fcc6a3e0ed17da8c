/**
 * actsparse as a library: open checkpoints, run models, choose kernels. Importing it
 * has no side effects; the command line lives in src/cli/.
 */
export { FormatError, UserError } from './errors.ts';
export { readDocuments, tokenizeDocuments } from './eval/documents.ts';
export { cutWindows, type LossResult, windowLoss } from './eval/loss.ts';
export type { Checkpoint, TensorEntry } from './io/checkpoint.ts';
export { memoryCheckpoint, type NamedTensor } from './io/memory.ts';
export { openCheckpoint } from './io/open.ts';
export { writePth } from './io/pth-writer.ts';
export { writeSafetensors } from './io/safetensors.ts';
export { loadTokenizer, type Tokenizer, tokenizerForModel } from './io/tokenizer.ts';
export {
  forward,
  type LanguageModel,
  makeBatch,
  type SiteHook,
  type SiteSpec,
  type SiteTable,
  sequenceLogits,
  step,
  withThresholds,
} from './models/model.ts';
export { randomRwkv4 } from './models/random.ts';
export { detectArchitecture, loadModel } from './models/registry.ts';
export { RWKV4_SITES, Rwkv4, type Rwkv4State } from './models/rwkv4.ts';
export type { Backend, Buf, Linear } from './tensor/backend.ts';
export { Seqs } from './tensor/backend.ts';
export { closeBackends, openBackend, selectBackend } from './tensor/select.ts';
export type { WebGpuBackend } from './tensor/webgpu/backend.ts';
