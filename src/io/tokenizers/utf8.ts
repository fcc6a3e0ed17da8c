import { readFileSync, statSync } from 'node:fs';
import { FormatError, UserError } from '../../errors.ts';
import { errorText } from '../text.ts';

/** Tokenizer files are megabytes; anything this large is the wrong file. */
const MAX_TOKENIZER_FILE = 512 * 1024 * 1024;

const encoder = new TextEncoder();
/** Non-fatal decoder (invalid sequences → U+FFFD) that keeps a leading BOM as text. */
const lossyDecoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });
const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function utf8Encode(text: string): Uint8Array {
  return encoder.encode(text);
}

/** UTF-8 → string, replacing invalid sequences with U+FFFD (for model output). */
export function utf8DecodeLossy(bytes: Uint8Array): string {
  return lossyDecoder.decode(bytes);
}

/**
 * Offset of the first byte that starts an invalid UTF-8 sequence, or -1 when all of
 * `buf` is valid. Rejects overlong forms, surrogates (ED A0..BF) and code points above
 * U+10FFFF, as the WHATWG decoder does.
 */
export function firstInvalidUtf8(buf: Uint8Array): number {
  const n = buf.length;
  let i = 0;
  while (i < n) {
    const c = buf[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    // Continuation count and the allowed range of the second byte for this lead byte.
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      if (c === 0xe0) lo = 0xa0; // overlong
      if (c === 0xed) hi = 0x9f; // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      if (c === 0xf0) lo = 0x90; // overlong
      if (c === 0xf4) hi = 0x8f; // > U+10FFFF
    } else return i;
    for (let k = 1; k <= need; k++) {
      if (i + k >= n) return i;
      const d = buf[i + k];
      if (d < (k === 1 ? lo : 0x80) || d > (k === 1 ? hi : 0xbf)) return i;
    }
    i += need + 1;
  }
  return -1;
}

/**
 * Decodes a text file's bytes as UTF-8, dropping a leading BOM. Invalid UTF-8 is a
 * FormatError naming the file, the byte offset and line of the first bad sequence.
 */
export function decodeUtf8Strict(buf: Uint8Array, file: string): string {
  const bom = buf.length >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf ? 3 : 0;
  const body = buf.subarray(bom);
  try {
    return strictDecoder.decode(body);
  } catch {
    const at = firstInvalidUtf8(body) + bom;
    let line = 1;
    for (let i = 0; i < at; i++) if (buf[i] === 0x0a) line++;
    const bytes = Array.from(buf.subarray(at, at + 4), (b) => b.toString(16).padStart(2, '0'));
    throw new FormatError(
      file,
      `not valid UTF-8: byte offset ${at} (line ${line}) starts an invalid sequence (${bytes.join(' ')})`,
      'Convert the file to UTF-8, e.g. `iconv -f LATIN1 -t UTF-8 in.txt > out.txt` (use its real encoding).',
    );
  }
}

/** Whole file as bytes, with a size guard and errors a user can act on. */
export function readSmallFile(path: string, what: string): Buffer {
  let size: number;
  try {
    const st = statSync(path);
    if (st.isDirectory()) throw new UserError(`${path} is a directory`, `Name the ${what} file.`);
    size = st.size;
  } catch (e) {
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new UserError(`${path}: no such file`, 'Check the path.');
    throw new UserError(`${path}: cannot read (${code ?? String(e)})`, 'Check permissions.');
  }
  if (size > MAX_TOKENIZER_FILE) {
    throw new FormatError(
      path,
      `${size} bytes is far too large for a ${what}`,
      `Name the ${what} file.`,
    );
  }
  return readFileSync(path);
}

/** Reads a UTF-8 text file (strict) for a tokenizer. */
export function readTextFile(path: string, what: string): string {
  return decodeUtf8Strict(readSmallFile(path, what), path);
}

/** Reads and parses a JSON file; bad JSON is a FormatError with the parser's message. */
export function readJsonFile(path: string, what: string): unknown {
  const text = readTextFile(path, what);
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new FormatError(path, `not valid JSON (${errorText(e)})`);
  }
}
