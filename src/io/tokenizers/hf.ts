import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import { FormatError } from '../../errors.ts';
import { errorText, listText, printable } from '../text.ts';
import type { Tokenizer } from '../tokenizer.ts';
import { checkId, concatBytes } from './ids.ts';
import { readJsonFile, utf8DecodeLossy, utf8Encode } from './utf8.ts';

/** GPT-NeoX-20B's tokenizer (RWKV-4 Pile models): 50277 ids, 0 = <|endoftext|>. */
const NEOX_VOCAB = 50277;
/** Special tokens that end a document, in order of preference. */
const END_OF_DOC_TOKENS = ['<|endoftext|>', '</s>', '<|end_of_text|>', '<eos>'];

/**
 * GPT-2's byte ↔ printable character table (`bytes_to_unicode`): printable Latin-1
 * bytes map to themselves, the other 68 to U+0100 onwards. ByteLevel BPE vocabularies
 * spell every token's bytes with these characters.
 */
export function byteLevelCharToByte(): Map<string, number> {
  const map = new Map<string, number>();
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    map.set(String.fromCodePoint(printable ? b : 256 + extra++), b);
  }
  return map;
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Number of ids a tokenizer.json defines: max over the model vocab and added tokens, + 1. */
function jsonVocabSize(json: Json, model: Json, file: string): number {
  let max = -1;
  const vocab = model.vocab;
  if (Array.isArray(vocab)) max = vocab.length - 1;
  else if (isObject(vocab)) {
    for (const [tok, id] of Object.entries(vocab)) {
      if (!Number.isInteger(id) || (id as number) < 0) {
        throw new FormatError(
          file,
          `model.vocab["${printable(tok, 40)}"] is ${printable(String(id), 20)}, not a token id`,
        );
      }
      if ((id as number) > max) max = id as number;
    }
  } else throw new FormatError(file, 'model.vocab is missing (not a tokenizer.json?)');
  for (const t of json.added_tokens as Json[]) {
    if (!isObject(t) || !Number.isInteger(t.id) || (t.id as number) < 0) {
      throw new FormatError(
        file,
        `added_tokens has an entry without a valid id: ${printable(JSON.stringify(t) ?? String(t), 60)}`,
      );
    }
    if (typeof t.content !== 'string') {
      throw new FormatError(file, `added token ${t.id} has no string content`);
    }
    max = Math.max(max, t.id as number);
  }
  if (max < 0) throw new FormatError(file, 'the vocabulary is empty');
  return max + 1;
}

/**
 * A Hugging Face `tokenizer.json`, run by `@huggingface/tokenizers`. Kind 'neox' when it
 * is GPT-NeoX-20B's (50277 ids, "\n" = 187), otherwise 'hf'.
 */
export class HfTokenizer implements Tokenizer {
  readonly kind: 'neox' | 'hf';
  readonly vocabSize: number;
  readonly prefixId: number;
  readonly endOfDocId: number | null;
  private readonly lib: HfLibTokenizer;
  /** Added tokens by id: decoded as their literal text. */
  private readonly added = new Map<number, string>();
  /** Set for ByteLevel tokenizers, whose tokens spell bytes (see byteLevelCharToByte). */
  private readonly charToByte: Map<string, number> | null;

  constructor(
    parsed: unknown,
    readonly source: string,
  ) {
    if (!isObject(parsed) || !isObject(parsed.model)) {
      throw new FormatError(source, 'not a Hugging Face tokenizer.json (no "model" object)');
    }
    const model = parsed.model;
    if (parsed.added_tokens !== undefined && !Array.isArray(parsed.added_tokens)) {
      throw new FormatError(source, '"added_tokens" is not a list');
    }
    // The library wants every section present; files may omit the empty ones.
    const json: Json = { normalizer: null, pre_tokenizer: null, post_processor: null };
    Object.assign(json, { decoder: null }, parsed, { added_tokens: parsed.added_tokens ?? [] });
    this.vocabSize = jsonVocabSize(json, model, source);
    for (const t of json.added_tokens as { id: number; content: string }[]) {
      this.added.set(t.id, t.content);
    }
    this.charToByte =
      isObject(json.decoder) && json.decoder.type === 'ByteLevel' ? byteLevelCharToByte() : null;
    // The library silently drops pieces missing from a BPE vocab: refuse a vocab that
    // lacks a byte valid UTF-8 can contain (C0, C1, F5..FF never occur).
    if (this.charToByte && model.type === 'BPE' && isObject(model.vocab)) {
      const vocab = model.vocab;
      const missing = [...this.charToByte].filter(
        ([c, b]) => !(c in vocab) && b !== 0xc0 && b !== 0xc1 && b < 0xf5,
      );
      if (missing.length > 0) {
        const bytes = listText(
          missing.map(([, b]) => b.toString(16).padStart(2, '0')),
          8,
        );
        throw new FormatError(source, `the ByteLevel BPE vocab has no token for byte(s) ${bytes}`);
      }
    }
    try {
      this.lib = new HfLibTokenizer(json, {});
    } catch (e) {
      throw new FormatError(source, `cannot build the tokenizer: ${errorText(e)}`);
    }

    const specials = (
      json.added_tokens as { id: number; content: string; special?: boolean }[]
    ).filter((t) => t.special);
    const special = (content: string): number | undefined =>
      specials.find((t) => t.content === content)?.id;
    this.endOfDocId = END_OF_DOC_TOKENS.map(special).find((id) => id !== undefined) ?? null;
    // Prefix: OPT-style </s> when the tokenizer has it, else the "\n" token (RWKV).
    let newline: number[];
    try {
      newline = this.encode('\n');
    } catch (e) {
      throw new FormatError(source, `the tokenizer fails on "\\n": ${errorText(e)}`);
    }
    const prefix = special('</s>') ?? (newline.length === 1 ? newline[0] : this.endOfDocId);
    if (prefix === null) {
      throw new FormatError(
        source,
        'no "\\n" token and no end-of-text token to start documents with',
      );
    }
    this.prefixId = prefix;
    const neox =
      this.vocabSize === NEOX_VOCAB && this.added.get(0) === '<|endoftext|>' && prefix === 187;
    this.kind = neox ? 'neox' : 'hf';
  }

  static fromFile(path: string): HfTokenizer {
    return new HfTokenizer(readJsonFile(path, 'tokenizer.json'), path);
  }

  encode(text: string): number[] {
    return this.lib.encode(text, { add_special_tokens: false }).ids;
  }

  decodeBytes(ids: number[]): Uint8Array {
    if (!this.charToByte) return utf8Encode(this.decode(ids));
    const parts: Uint8Array[] = [];
    for (const id of ids) parts.push(this.tokenBytes(id));
    return concatBytes(parts);
  }

  decode(ids: number[]): string {
    if (this.charToByte) return utf8DecodeLossy(this.decodeBytes(ids));
    for (const id of ids) checkId(id, this.vocabSize, this.kind);
    return this.lib.decode(ids, {
      skip_special_tokens: false,
      clean_up_tokenization_spaces: false,
    });
  }

  /** Bytes of one ByteLevel token; added tokens are their literal text. */
  private tokenBytes(id: number): Uint8Array {
    checkId(id, this.vocabSize, this.kind);
    const added = this.added.get(id);
    if (added !== undefined) return utf8Encode(added);
    const token = this.lib.id_to_token(id) ?? '';
    const out = new Uint8Array(token.length);
    let n = 0;
    for (const ch of token) {
      const b = this.charToByte!.get(ch);
      // As the Rust decoder does: a token with characters outside the table is plain text.
      if (b === undefined) return utf8Encode(token);
      out[n++] = b;
    }
    return out.subarray(0, n);
  }
}
