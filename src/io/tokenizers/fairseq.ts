import { FormatError } from '../../errors.ts';
import { printable } from '../text.ts';
import type { Tokenizer } from '../tokenizer.ts';
import { HfTokenizer } from './hf.ts';
import { checkId, concatBytes } from './ids.ts';
import { readJsonFile, readTextFile, utf8DecodeLossy, utf8Encode } from './utf8.ts';

/** fairseq's four reserved ids. */
const SPECIALS = ['<s>', '<pad>', '</s>', '<unk>'];
const UNK = 3;

/**
 * GPT-2 byte-level BPE (`encoder.json` + `vocab.bpe`) with fairseq's dictionary
 * (`dict.txt`), as OPT uses it: OPT id = 4 + the line of the GPT-2 id in dict.txt.
 * Text is plain text: "</s>" or "<|endoftext|>" in it are spelled out, not special.
 */
export class Gpt2FairseqTokenizer implements Tokenizer {
  readonly kind = 'gpt2-fairseq';
  readonly vocabSize: number;
  /** OPT starts every sequence with </s>, and ends documents with it. */
  readonly prefixId = 2;
  readonly endOfDocId = 2;
  readonly source: string;
  private readonly bpe: HfTokenizer;
  /** GPT-2 id → OPT id (UNK when dict.txt lacks it). */
  private readonly toOpt: Int32Array;
  /** OPT id - 4 → GPT-2 id, or -1 for dict.txt symbols that are not GPT-2 ids. */
  private readonly fromOpt: Int32Array;
  private readonly symbols: string[];

  constructor(files: { encoder: string; merges: string; dict: string }) {
    this.source = files.dict;
    const encoder = readJsonFile(files.encoder, 'encoder.json');
    if (typeof encoder !== 'object' || encoder === null || Array.isArray(encoder)) {
      throw new FormatError(files.encoder, 'expected a JSON object {token: id}');
    }
    // vocab.bpe: a '#version' line, then one merge 'left right' per line.
    const merges = readTextFile(files.merges, 'vocab.bpe').split('\n');
    if (merges[0]?.startsWith('#version')) merges.shift();
    while (merges.length > 0 && merges[merges.length - 1].trim() === '') merges.pop();
    merges.forEach((m, i) => {
      if (!/^\S+ \S+$/.test(m)) {
        throw new FormatError(
          files.merges,
          `line ${i + 2}: expected a merge 'left right', got '${printable(m)}'`,
        );
      }
    });
    const json = {
      model: { type: 'BPE', vocab: encoder, merges, unk_token: null, fuse_unk: false },
      pre_tokenizer: {
        type: 'ByteLevel',
        add_prefix_space: false,
        trim_offsets: true,
        use_regex: true,
      },
      decoder: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      added_tokens: [],
    };
    this.bpe = new HfTokenizer(json, files.encoder);

    // dict.txt: '<symbol> <count>' per line (fairseq Dictionary.add_from_file).
    const lines = readTextFile(files.dict, 'dict.txt').split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    this.toOpt = new Int32Array(this.bpe.vocabSize).fill(UNK);
    this.fromOpt = new Int32Array(lines.length).fill(-1);
    this.symbols = [];
    let maxEncoded = UNK;
    lines.forEach((raw, i) => {
      const line = raw.trimEnd();
      const cut = line.lastIndexOf(' ');
      let symbol = line.slice(0, cut);
      if (cut <= 0 || !/^\d+$/.test(line.slice(cut + 1))) {
        throw new FormatError(
          files.dict,
          `line ${i + 1}: expected '<symbol> <count>', got '${printable(raw)}'`,
        );
      }
      symbol = symbol.replace(/ #fairseq:overwrite$/, '');
      this.symbols.push(symbol);
      if (!/^\d+$/.test(symbol)) return; // fillers such as madeupword0000
      const gpt2 = Number(symbol);
      if (gpt2 >= this.bpe.vocabSize) {
        throw new FormatError(
          files.dict,
          `line ${i + 1}: GPT-2 id ${gpt2} is not in ${files.encoder}`,
        );
      }
      if (this.toOpt[gpt2] !== UNK) {
        throw new FormatError(files.dict, `line ${i + 1}: GPT-2 id ${gpt2} appears twice`);
      }
      this.toOpt[gpt2] = 4 + i;
      this.fromOpt[i] = gpt2;
      maxEncoded = Math.max(maxEncoded, 4 + i);
    });
    // Ids encode can produce; the filler lines after them are model padding.
    this.vocabSize = maxEncoded + 1;
  }

  encode(text: string): number[] {
    return this.bpe.encode(text).map((id) => this.toOpt[id]);
  }

  decodeBytes(ids: number[]): Uint8Array {
    const parts: Uint8Array[] = [];
    for (const id of ids) {
      checkId(id, 4 + this.symbols.length, 'GPT-2/fairseq');
      if (id < 4) parts.push(utf8Encode(SPECIALS[id]));
      else if (this.fromOpt[id - 4] >= 0) parts.push(this.bpe.decodeBytes([this.fromOpt[id - 4]]));
      // Filler symbols (madeupwordNNNN) stand for nothing.
    }
    return concatBytes(parts);
  }

  decode(ids: number[]): string {
    return utf8DecodeLossy(this.decodeBytes(ids));
  }
}
