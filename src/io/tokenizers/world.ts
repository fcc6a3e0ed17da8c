import { check as checkFormat, FormatError, UserError } from '../../errors.ts';
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

  /** `text` is the vocab file's content; `source` names it in errors. */
  constructor(
    text: string,
    readonly source: string,
  ) {
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    check(lines.length > 0, source, 'the World vocab file is empty');
    lines.forEach((raw, n) => {
      const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      const where = `line ${n + 1}`;
      // `id <literal> byte_len`, split at the first and last space as ChatRWKV does.
      const first = line.indexOf(' ');
      const last = line.lastIndexOf(' ');
      check(first > 0 && last > first, source, `${where}: expected 'id <literal> byte_len'`);
      const idText = line.slice(0, first);
      const lenText = line.slice(last + 1);
      check(/^\d{1,9}$/.test(idText), source, `${where}: token id '${idText}' is not a number`);
      check(
        /^\d{1,9}$/.test(lenText),
        source,
        `${where}: byte length '${lenText}' is not a number`,
      );
      const id = Number(idText);
      check(id >= 1, source, `${where}: id 0 is reserved for end of text`);
      check(this.tokens[id] === undefined, source, `${where}: id ${id} appears twice`);
      let bytes: Uint8Array;
      try {
        bytes = parsePythonLiteral(line.slice(first + 1, last).trim());
      } catch (e) {
        throw new FormatError(source, `${where}: bad token literal: ${(e as Error).message}`, HINT);
      }
      check(bytes.length > 0, source, `${where}: empty token`);
      check(
        bytes.length === Number(lenText),
        source,
        `${where}: token has ${bytes.length} bytes but the line says ${lenText}`,
      );
      this.tokens[id] = bytes;
      this.trie.insert(bytes, id);
    });
    this.vocabSize = Math.max(WORLD_MODEL_VOCAB, this.tokens.length);
    const nl = this.trie.longest(Uint8Array.of(10), 0);
    check(nl !== null, source, 'the vocab has no token for "\\n"');
    this.prefixId = nl[1];
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
