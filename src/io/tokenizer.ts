/**
 * Tokenizers: byte-level (tiny models), GPT-NeoX-20B and any Hugging Face
 * tokenizer.json, RWKV World, and GPT-2 BPE with fairseq's dictionary (OPT).
 *
 * Vocabulary fit rule (`checkTokenizerFits`): a tokenizer with V ids fits a model whose
 * embedding has M rows when V ≤ M < V + 256. The lower bound keeps every id the
 * tokenizer can produce inside the model; the upper bound allows the padding rows
 * models add to round M up (NeoX 50277 → 50304 or 50432, OPT 50261 → 50272, World
 * 65536 = 65536, bytes 256 = 256) but refuses e.g. bytes for a 50277-row model.
 */
import { closeSync, existsSync, openSync, readSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { FormatError, UserError } from '../errors.ts';
import { FileSource } from './file.ts';
import { isGguf, readGgufHeader } from './gguf.ts';
import { ByteTokenizer } from './tokenizers/bytes.ts';
import { Gpt2FairseqTokenizer } from './tokenizers/fairseq.ts';
import { HfTokenizer } from './tokenizers/hf.ts';
import { WorldTokenizer } from './tokenizers/world.ts';

export { decodeUtf8Strict, firstInvalidUtf8 } from './tokenizers/utf8.ts';
export { ByteTokenizer, Gpt2FairseqTokenizer, HfTokenizer, WorldTokenizer };

export interface Tokenizer {
  readonly kind: 'bytes' | 'neox' | 'world' | 'gpt2-fairseq' | 'hf';
  /** Number of ids encode can produce (max id + 1); World: the model's 65536. */
  readonly vocabSize: number;
  /** The file it was loaded from, or 'built-in'. */
  readonly source: string;
  encode(text: string): number[];
  /** Text of the ids; invalid UTF-8 (a token cut mid-character) becomes U+FFFD. */
  decode(ids: number[]): string;
  /** Raw bytes of the ids. */
  decodeBytes(ids: number[]): Uint8Array;
  /** Id fed before each document / zero-shot request ("\n" for RWKV, </s> for OPT). */
  readonly prefixId: number;
  /** Id that ends a document, when there is one. */
  readonly endOfDocId: number | null;
}

/** Padding rows a model may add beyond its tokenizer's vocabulary (see the header). */
const MAX_PADDING = 256;
/** Files looked for next to a model, in order. */
const TOKENIZER_FILES = ['tokenizer.json', '20B_tokenizer.json', 'rwkv_vocab_v20230424.txt'];
const FAIRSEQ_FILES = ['encoder.json', 'vocab.bpe', 'dict.txt'] as const;
const LOOKED_FOR = `${TOKENIZER_FILES.join(', ')} or ${FAIRSEQ_FILES.join(' + ')}`;

function fairseqIn(dir: string): Gpt2FairseqTokenizer | null {
  const [encoder, merges, dict] = FAIRSEQ_FILES.map((f) => join(dir, f));
  if (![encoder, merges, dict].every((f) => existsSync(f))) return null;
  return new Gpt2FairseqTokenizer({ encoder, merges, dict });
}

/** First bytes of a file, to tell the formats apart before reading it all. */
function head(path: string, n: number): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`${path}: cannot read (${code ?? String(e)})`, 'Check permissions.');
  }
  try {
    const buf = Buffer.alloc(n);
    const got = readSync(fd, buf, 0, n, 0);
    return buf.subarray(0, got).toString('latin1');
  } finally {
    closeSync(fd);
  }
}

/**
 * Loads a tokenizer from a file or directory, detected by content: JSON with a
 * `model` → Hugging Face (kind 'neox' for GPT-NeoX-20B, else 'hf'); lines
 * `id <literal> len` → World; encoder.json / vocab.bpe / dict.txt (or their directory)
 * → GPT-2/fairseq; a directory → the first tokenizer file in it. `'bytes'` gives the
 * byte-level tokenizer (name a file called bytes as ./bytes).
 */
export function loadTokenizer(path: string): Tokenizer {
  if (path === 'bytes') return new ByteTokenizer();
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    throw new UserError(
      `${path}: no such tokenizer file or directory`,
      'Check the --tokenizer path.',
    );
  }
  if (isDir) {
    const found = findTokenizerIn(path);
    if (found.length === 0) {
      throw new UserError(
        `${path}: no tokenizer found`,
        `The directory should hold ${LOOKED_FOR}.`,
      );
    }
    return found[0]();
  }
  if ((FAIRSEQ_FILES as readonly string[]).includes(basename(path))) {
    const tok = fairseqIn(dirname(path));
    if (tok) return tok;
    if (basename(path) !== 'encoder.json') {
      throw new UserError(
        `${path}: the GPT-2/fairseq tokenizer needs ${FAIRSEQ_FILES.join(', ')} together`,
      );
    }
  }
  const first = head(path, 64);
  if (first.startsWith('GGUF')) return tokenizerFromGguf(path);
  const start = first.replace(/^\xef\xbb\xbf/, '').trimStart();
  if (start.startsWith('{')) {
    if (basename(path) === 'encoder.json') {
      throw new UserError(`${path}: a GPT-2 encoder.json needs vocab.bpe and dict.txt beside it`);
    }
    return HfTokenizer.fromFile(path);
  }
  if (/^\d+ [bB]?['"]/.test(start)) return WorldTokenizer.fromFile(path);
  throw new FormatError(
    path,
    'not a recognised tokenizer file',
    `Pass a tokenizer.json, rwkv_vocab_v20230424.txt, or the directory of ${FAIRSEQ_FILES.join(' + ')}.`,
  );
}

/** Loaders for the tokenizer files present in `dir`, in TOKENIZER_FILES order. */
function findTokenizerIn(dir: string): (() => Tokenizer)[] {
  const found: (() => Tokenizer)[] = [];
  for (const f of TOKENIZER_FILES) {
    const p = join(dir, f);
    if (existsSync(p)) found.push(() => loadTokenizer(p));
  }
  if (FAIRSEQ_FILES.every((f) => existsSync(join(dir, f)))) found.push(() => fairseqIn(dir)!);
  return found;
}

function isGgufFile(path: string): boolean {
  try {
    return statSync(path).isFile() && isGguf(Buffer.from(head(path, 4), 'latin1'));
  } catch {
    return false;
  }
}

/** `tokenizer.ggml.model` of a GGUF file (undefined when absent or unreadable). */
function ggufTokenizerModel(path: string): string | undefined {
  let file: FileSource | undefined;
  try {
    file = new FileSource(path);
    const model = readGgufHeader(file).kv.get('tokenizer.ggml.model')?.value;
    return typeof model === 'string' ? model : undefined;
  } catch (e) {
    if (e instanceof UserError) return undefined; // the model's own reader reports it
    throw e;
  } finally {
    file?.close();
  }
}

/**
 * The tokenizer embedded in a GGUF file. Only llama.cpp's RWKV World vocabulary
 * (`tokenizer.ggml.model` "rwkv") is built; BPE / SentencePiece vocabularies are refused.
 */
export function tokenizerFromGguf(path: string): Tokenizer {
  const file = new FileSource(path);
  try {
    const h = readGgufHeader(file);
    const model = h.kv.get('tokenizer.ggml.model')?.value;
    const tokens = h.kv.get('tokenizer.ggml.tokens');
    const types = h.kv.get('tokenizer.ggml.token_type')?.value;
    if (model !== 'rwkv' || !tokens || tokens.itemType !== 'string') {
      throw new UserError(
        `${path}: the GGUF file has ${typeof model === 'string' ? `a '${model.slice(0, 40)}' tokenizer` : 'no tokenizer'}, and actsparse builds only RWKV World ('rwkv') from GGUF`,
        'Pass the tokenizer file with --tokenizer (tokenizer.json, rwkv_vocab_v20230424.txt).',
      );
    }
    const typeArray =
      types instanceof Int32Array || types instanceof Uint32Array ? types : undefined;
    return WorldTokenizer.fromGguf(tokens.value as string[], typeArray, path);
  } finally {
    file.close();
  }
}

/** Whether `tok` may drive a model with `modelVocab` embedding rows (rule in the header). */
export function tokenizerFits(tok: Tokenizer, modelVocab: number): boolean {
  return tok.vocabSize <= modelVocab && modelVocab < tok.vocabSize + MAX_PADDING;
}

/** Throws a UserError naming both sizes unless `tok` fits the model. */
export function checkTokenizerFits(tok: Tokenizer, modelVocab: number, model = 'the model'): void {
  if (tokenizerFits(tok, modelVocab)) return;
  const why =
    tok.vocabSize > modelVocab
      ? 'it can produce ids the model has no embedding for'
      : 'the model has far more tokens than it';
  throw new UserError(
    `tokenizer ${tok.source} (${tok.kind}, ${tok.vocabSize} ids) does not fit ${model} (vocab ${modelVocab}): ${why}`,
    'Pass the tokenizer the model was trained with (--tokenizer).',
  );
}

/**
 * The tokenizer for a model: `explicit` when given; byte-level for vocab 256; else the
 * first tokenizer file next to the model (its directory, or itself if a directory) that
 * fits its vocabulary. Refuses a tokenizer that does not fit (see the header).
 */
export function tokenizerForModel(opts: {
  modelPath: string;
  vocabSize: number;
  explicit?: string;
}): Tokenizer {
  const { modelPath, vocabSize, explicit } = opts;
  if (explicit !== undefined) {
    const tok = loadTokenizer(explicit);
    checkTokenizerFits(tok, vocabSize, modelPath);
    return tok;
  }
  if (vocabSize === 256) return new ByteTokenizer();
  // A GGUF model may carry its tokenizer: the World one of RWKV files is built from it.
  const embedded = isGgufFile(modelPath) ? ggufTokenizerModel(modelPath) : undefined;
  if (embedded === 'rwkv') {
    const tok = tokenizerFromGguf(modelPath);
    checkTokenizerFits(tok, vocabSize, modelPath);
    return tok;
  }
  let dir = dirname(modelPath);
  try {
    if (statSync(modelPath).isDirectory()) dir = modelPath;
  } catch {
    // A missing model is reported by its reader; look beside the name anyway.
  }
  // Load lazily: the first file that fits wins; remember the misfits for the error.
  const misfits: string[] = [];
  for (const load of findTokenizerIn(dir)) {
    const tok = load();
    if (tokenizerFits(tok, vocabSize)) return tok;
    misfits.push(`${tok.source} (${tok.kind}, ${tok.vocabSize} ids)`);
  }
  if (misfits.length > 0) {
    throw new UserError(
      `no tokenizer next to ${modelPath} fits its vocab ${vocabSize}: ${misfits.join(', ')}`,
      'Pass the tokenizer the model was trained with (--tokenizer).',
    );
  }
  throw new UserError(
    `no tokenizer found next to ${modelPath} (vocab ${vocabSize})`,
    `Pass --tokenizer <file>, or put ${LOOKED_FOR} in ${dir}.`,
  );
}
