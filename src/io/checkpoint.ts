import type { Tensor } from '../tensor/tensor.ts';

/**
 * How a tensor is stored on disk. Quantized types are ggml's: 32-value blocks (q4_0 …
 * q8_1, iq4_nl, mxfp4) and 256-value super-blocks (the k-quants, the other iq/tq
 * types). Types after q8_0 occur only in GGUF files; `read` dequantizes q2_k … q8_k but
 * not the iq/tq/fp4 types (a UserError says so).
 */
export type StoredDType =
  | 'f32'
  | 'f16'
  | 'bf16'
  | 'f64'
  | 'i64'
  | 'i32'
  | 'i16'
  | 'i8'
  | 'u8'
  | 'bool'
  | 'q4_0'
  | 'q4_1'
  | 'q5_0'
  | 'q5_1'
  | 'q8_0'
  | 'q8_1'
  | 'q2_k'
  | 'q3_k'
  | 'q4_k'
  | 'q5_k'
  | 'q6_k'
  | 'q8_k'
  | 'iq2_xxs'
  | 'iq2_xs'
  | 'iq3_xxs'
  | 'iq1_s'
  | 'iq4_nl'
  | 'iq3_s'
  | 'iq2_s'
  | 'iq4_xs'
  | 'iq1_m'
  | 'tq1_0'
  | 'tq2_0'
  | 'mxfp4'
  | 'nvfp4'
  | 'q1_0';

export type CheckpointFormat = 'pth' | 'safetensors' | 'rwkvcpp' | 'gguf';

export interface TensorEntry {
  /**
   * Canonical name: BlinkDL `.pth` key names for RWKV (`blocks.0.att.key.weight`),
   * Hugging Face names for OPT (`model.decoder.layers.0.fc1.weight`), the file's own
   * names for other GGUF architectures (`blk.0.attn_q.weight`).
   */
  readonly name: string;
  /** The name as written in the file. */
  readonly fileName: string;
  /** Canonical shape, PyTorch order (outermost first), e.g. [out, in] for a weight. */
  readonly shape: readonly number[];
  readonly dtype: StoredDType;
  /** Bytes the tensor occupies on disk. */
  readonly byteLength: number;
}

/**
 * An opened checkpoint. The index of tensors is read at open; tensor data is read
 * only by `read`, so opening a 14 GB file costs a few kilobytes.
 */
export interface Checkpoint {
  readonly path: string;
  readonly format: CheckpointFormat;
  /** Canonical name → entry, in file order. */
  readonly tensors: ReadonlyMap<string, TensorEntry>;
  /** Format facts worth showing (`info`): rwkv.cpp header, HF config.json, … */
  readonly meta: Readonly<Record<string, unknown>>;
  /**
   * Reads one tensor as float32: dequantized, with any converter transform undone so
   * that every format gives the values of the original PyTorch checkpoint.
   * Throws FormatError (naming file and tensor) when the data is broken.
   */
  read(name: string): Tensor;
  close(): void;
}
