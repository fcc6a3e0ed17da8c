/**
 * actsparse as a library: open a checkpoint, run the model on any backend, calibrate
 * thresholds, evaluate, estimate hardware cost, and read or write every result file.
 * Importing it has no side effects; the command line lives in src/cli/.
 *
 *   import { openModel, calibrate, runEval, readRun, estimate, loadProfile, loadMapping } from 'actsparse';
 *
 * The README's "As a library" section shows a whole script.
 */

export { type OpenedModel, type OpenOptions, openModel, openModelOnly } from './api.ts';
export { brownDocuments, type Doc } from './data/brown.ts';
export { loadCorpus, readDocuments, splitDocuments, tokenizeDocuments } from './data/documents.ts';
export { textWindows, tokenWindows } from './data/windows.ts';
export { FormatError, UserError } from './errors.ts';
export { combineUnits, type EvalRun, type EvalUnit, evaluateUnit } from './eval/evaluate.ts';
export { type EvalConfig, resolveTasks, resolveTexts, runEval } from './eval/run.ts';
export { encodeRequest, scoreRequests } from './eval/scorer.ts';
export { TASKS } from './eval/tasks/registry.ts';
export { type BenchResult, readBench, writeBench } from './formats/bench.ts';
export { CalibrationConfig, readCalibrationCsv } from './formats/calibration.ts';
export { ModelFacts, modelFacts } from './formats/facts.ts';
export { HwFile, readHw, writeHw } from './formats/hw.ts';
export { EvalResults, readEvalResults, writeEvalResults } from './formats/results.ts';
export { readThresholds, ThresholdsFile, writeThresholds } from './formats/thresholds.ts';
export { type Estimate, estimate } from './hardware/estimate.ts';
export { estimateJson, formatEstimate } from './hardware/format.ts';
export { type CostInput, parseShape, readRun, whatIf } from './hardware/inputs.ts';
export { loadMapping, loadProfile } from './hardware/profile.ts';
export type { Checkpoint, TensorEntry } from './io/checkpoint.ts';
export { writeGguf } from './io/gguf.ts';
export { memoryCheckpoint, type NamedTensor } from './io/memory.ts';
export { openCheckpoint } from './io/open.ts';
export { writePth } from './io/pth-writer.ts';
export { writeSafetensors } from './io/safetensors.ts';
export { loadTokenizer, type Tokenizer, tokenizerForModel } from './io/tokenizer.ts';
export { type LossResult, textLoss } from './models/loss.ts';
export {
  type Batch,
  forward,
  type LanguageModel,
  type ModelState,
  makeBatch,
  type SiteHook,
  type SiteSpec,
  type SiteTable,
  sequenceLogits,
  step,
  withThresholds,
} from './models/model.ts';
export { randomRwkv4 } from './models/random.ts';
export { ARCHITECTURES, architecture, detectArchitecture, loadModel } from './models/registry.ts';
export { RWKV4_SITES, Rwkv4, type Rwkv4State } from './models/rwkv4.ts';
export { LN_X_EPS, Rwkv5, type Rwkv5Config, type Rwkv5State } from './models/rwkv5.ts';
export { RWKV6_SITES, Rwkv6, type Rwkv6Config, type Rwkv6State } from './models/rwkv6.ts';
export { calibrate, calibrationWindows } from './sparsity/calibrate.ts';
export { applyThresholds, macWeighted, measureSparsity } from './sparsity/plan.ts';
export type { Backend, Buf, Linear } from './tensor/backend.ts';
export { Seqs } from './tensor/backend.ts';
export { closeBackends, openBackend, selectBackend } from './tensor/select.ts';
export type { WebGpuBackend } from './tensor/webgpu/backend.ts';
export { toolVersion } from './version.ts';
