import { check as checkFormat, FormatError, UserError } from '../../errors.ts';
import { errorText, printable } from '../text.ts';
import type { Tokenizer } from '../tokenizer.ts';
import { checkId, concatBytes } from './ids.ts';
import { parsePythonLiteral } from './python-literal.ts';
import { readTextFile, utf8DecodeLossy, utf8Encode } from './utf8.ts';

/** The World models' embedding has 65536 rows (ids 1..65529 used, 0 = end of text). */
const WORLD_MODEL_VOCAB = 65536;
const HINT = 'Use the unmodified rwkv_vocab_v20230424.txt from ChatRWKV.';

/**
 * Byte trie for greedy longest match (ChatRWKV's TRIE_TOKENIZER). Node 0 is the root;
 * the edge (node, byte) is the map key node·256 + byte.
 */
class ByteTrie {
  private readonly edges = new Map<number, number>();
  /** Token id ending at each node, -1 when none. */
  private readonly ids: number[] = [-1];

  insert(bytes: Uint8Array, id: number): void {
    let node = 0;
    for (const b of bytes) {
      const key = node * 256 + b;
      let child = this.edges.get(key);
      if (child === undefined) {
        child = this.ids.length;
        this.ids.push(-1);
        this.edges.set(key, child);
      }
      node = child;
    }
    // A repeated byte string keeps the later id, as ChatRWKV's dict does.
    this.ids[node] = id;
  }

  /** Longest token starting at `start`: [end offset, id], or null when no token matches. */
  longest(buf: Uint8Array, start: number): [number, number] | null {
    let node = 0;
    let best: [number, number] | null = null;
    for (let i = start; i < buf.length; i++) {
      const child = this.edges.get(node * 256 + buf[i]);
      if (child === undefined) break;
      node = child;
      if (this.ids[node] >= 0) best = [i + 1, this.ids[node]];
    }
    return best;
  }
}

/** RWKV World tokenizer from `rwkv_vocab_v20230424.txt`. */
export class WorldTokenizer implements Tokenizer {
  readonly kind = 'world';
  readonly vocabSize: number;
  readonly prefixId: number;
  readonly endOfDocId = 0;
  private readonly tokens: (Uint8Array | undefined)[] = [];
  private readonly trie = new ByteTrie();

  /**
   * `vocab` is the vocab file's content, or the tokens by id (ids ≥ 1, in file order);
   * `source` names it in errors.
   */
  constructor(
    vocab: string | ReadonlyMap<number, Uint8Array>,
    readonly source: string,
  ) {
    const tokens = typeof vocab === 'string' ? parseVocab(vocab, source) : vocab;
    check(tokens.size > 0, source, 'the World vocab is empty');
    for (const [id, bytes] of tokens) {
      this.tokens[id] = bytes;
      this.trie.insert(bytes, id);
    }
    this.vocabSize = Math.max(WORLD_MODEL_VOCAB, this.tokens.length);
    const nl = this.trie.longest(Uint8Array.of(10), 0);
    check(nl !== null, source, 'the vocab has no token for "\\n"');
    this.prefixId = nl[1];
  }

  /**
   * The World tokenizer embedded in a GGUF file by llama.cpp's converter
   * (`_set_vocab_rwkv_world`): `tokenizer.ggml.tokens` holds id 0 "<s>" (CONTROL), each
   * vocab token as Python's bytes repr without `b'…'` (so `\xe4\xbd\xa0`, `\n`, `\\`,
   * `\'`), then "[PADn]" (UNUSED) up to the model's vocab; `tokenizer.ggml.token_type`
   * says which. Only NORMAL (1) tokens are kept, unescaped as llama.cpp's
   * llama_unescape_rwkv_token does, so the result equals the tokenizer of
   * rwkv_vocab_v20230424.txt.
   */
  static fromGguf(
    tokens: readonly string[],
    tokenTypes: ArrayLike<number> | undefined,
    source: string,
  ): WorldTokenizer {
    const map = new Map<number, Uint8Array>();
    for (let id = 1; id < tokens.length; id++) {
      const type = tokenTypes ? tokenTypes[id] : 1;
      if (type !== 1) continue;
      const bytes = unescapeRwkvToken(tokens[id]);
      check(bytes !== null, source, `token ${id} '${printable(tokens[id], 40)}' has a bad escape`);
      check(bytes.length > 0, source, `token ${id} is empty`);
      map.set(id, bytes);
    }
    return new WorldTokenizer(map, source);
  }

  static fromFile(path: string): WorldTokenizer {
    return new WorldTokenizer(readTextFile(path, 'World vocab'), path);
  }

  encode(text: string): number[] {
    const buf = utf8Encode(text);
    const ids: number[] = [];
    let at = 0;
    while (at < buf.length) {
      const m = this.trie.longest(buf, at);
      if (m === null) {
        throw new UserError(
          `${this.source}: no token covers byte 0x${buf[at].toString(16)} at offset ${at} of the text`,
          'This vocab file lacks single-byte tokens; use the full rwkv_vocab_v20230424.txt.',
        );
      }
      ids.push(m[1]);
      at = m[0];
    }
    return ids;
  }

  decodeBytes(ids: number[]): Uint8Array {
    const parts: Uint8Array[] = [];
    for (const id of ids) {
      checkId(id, this.vocabSize, 'World');
      // End of text (0) and the unused padding ids have no bytes.
      const t = this.tokens[id];
      if (t) parts.push(t);
    }
    return concatBytes(parts);
  }

  decode(ids: number[]): string {
    return utf8DecodeLossy(this.decodeBytes(ids));
  }
}

function check(cond: unknown, file: string, what: string): asserts cond {
  checkFormat(cond, file, what, HINT);
}

/** `id <literal> byte_len` lines → tokens by id, in file order. */
function parseVocab(text: string, source: string): Map<number, Uint8Array> {
  const tokens = new Map<number, Uint8Array>();
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  lines.forEach((raw, n) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    const where = `line ${n + 1}`;
    // `id <literal> byte_len`, split at the first and last space as ChatRWKV does.
    const first = line.indexOf(' ');
    const last = line.lastIndexOf(' ');
    check(first > 0 && last > first, source, `${where}: expected 'id <literal> byte_len'`);
    const idText = line.slice(0, first);
    const lenText = line.slice(last + 1);
    check(
      /^\d{1,9}$/.test(idText),
      source,
      `${where}: token id '${printable(idText, 20)}' is not a number`,
    );
    check(
      /^\d{1,9}$/.test(lenText),
      source,
      `${where}: byte length '${printable(lenText, 20)}' is not a number`,
    );
    const id = Number(idText);
    check(id >= 1, source, `${where}: id 0 is reserved for end of text`);
    check(!tokens.has(id), source, `${where}: id ${id} appears twice`);
    let bytes: Uint8Array;
    try {
      bytes = parsePythonLiteral(line.slice(first + 1, last).trim());
    } catch (e) {
      throw new FormatError(source, `${where}: bad token literal: ${errorText(e)}`, HINT);
    }
    check(bytes.length > 0, source, `${where}: empty token`);
    check(
      bytes.length === Number(lenText),
      source,
      `${where}: token has ${bytes.length} bytes but the line says ${lenText}`,
    );
    tokens.set(id, bytes);
  });
  return tokens;
}

/**
 * llama.cpp's RWKV token unescaping: `\t \n \r`, `\xhh`, `\<c>` → c; other characters
 * are their UTF-8 bytes. Null for a cut-off escape or a bad hex digit.
 */
export function unescapeRwkvToken(text: string): Uint8Array | null {
  const src = new TextEncoder().encode(text);
  const out: number[] = [];
  for (let i = 0; i < src.length; i++) {
    const c = src[i];
    if (c !== 0x5c) {
      out.push(c);
      continue;
    }
    const e = src[++i];
    if (e === undefined) return null;
    if (e === 0x74) out.push(9);
    else if (e === 0x6e) out.push(10);
    else if (e === 0x72) out.push(13);
    else if (e === 0x78) {
      const hex = String.fromCharCode(src[i + 1] ?? 0, src[i + 2] ?? 0);
      if (!/^[0-9a-fA-F]{2}$/.test(hex)) return null;
      out.push(Number.parseInt(hex, 16));
      i += 2;
    } else out.push(e);
  }
  return Uint8Array.from(out);
}
