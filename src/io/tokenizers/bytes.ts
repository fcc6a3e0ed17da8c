import type { Tokenizer } from '../tokenizer.ts';
import { checkId } from './ids.ts';
import { utf8DecodeLossy, utf8Encode } from './utf8.ts';

/** Byte-level tokenizer of the tiny models: token id = UTF-8 byte (vocab 256). */
export class ByteTokenizer implements Tokenizer {
  readonly kind = 'bytes';
  readonly vocabSize = 256;
  readonly source = 'built-in';
  /** "\n" */
  readonly prefixId = 10;
  /** Training documents were followed by a 0 byte. */
  readonly endOfDocId = 0;

  encode(text: string): number[] {
    return Array.from(utf8Encode(text));
  }

  decodeBytes(ids: number[]): Uint8Array {
    const out = new Uint8Array(ids.length);
    for (let i = 0; i < ids.length; i++) {
      checkId(ids[i], 256, 'byte-level');
      out[i] = ids[i];
    }
    return out;
  }

  decode(ids: number[]): string {
    return utf8DecodeLossy(this.decodeBytes(ids));
  }
}
