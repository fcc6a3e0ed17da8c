/**
 * Parser for the Python `str` / `bytes` literals that `repr` writes (the RWKV World
 * vocab stores its tokens this way). Never evaluates anything: it reads quotes and
 * escapes and returns the token's bytes (a str literal is UTF-8 encoded, as
 * ChatRWKV's `x.encode("utf-8")` does). Throws a plain Error with the reason; the
 * caller adds the file and line.
 */

const SIMPLE_ESCAPES: Record<string, number> = {
  '\\': 0x5c,
  "'": 0x27,
  '"': 0x22,
  a: 0x07,
  b: 0x08,
  f: 0x0c,
  n: 0x0a,
  r: 0x0d,
  t: 0x09,
  v: 0x0b,
};

function pushUtf8(out: number[], cp: number): void {
  if (cp < 0x80) out.push(cp);
  else if (cp < 0x800) out.push(0xc0 | (cp >> 6), 0x80 | (cp & 63));
  else if (cp < 0x10000) out.push(0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 63), 0x80 | (cp & 63));
  else {
    out.push(
      0xf0 | (cp >> 18),
      0x80 | ((cp >> 12) & 63),
      0x80 | ((cp >> 6) & 63),
      0x80 | (cp & 63),
    );
  }
}

function hexValue(src: string, at: number, digits: number): number {
  const h = src.slice(at, at + digits);
  if (h.length !== digits || !/^[0-9a-fA-F]+$/.test(h)) {
    throw new Error(`\\${src[at - 1]} escape needs ${digits} hex digits, got '${h}'`);
  }
  return Number.parseInt(h, 16);
}

export function parsePythonLiteral(src: string): Uint8Array {
  let i = 0;
  const isBytes = src[0] === 'b' || src[0] === 'B';
  if (isBytes) i = 1;
  const quote = src[i];
  if (quote !== "'" && quote !== '"') throw new Error('expected a quoted str or bytes literal');
  i++;
  const out: number[] = [];
  // Appends one code point (str) or one byte (bytes).
  const emit = (v: number, what: string): void => {
    if (!isBytes) {
      if (v >= 0xd800 && v <= 0xdfff) throw new Error(`${what} is a lone surrogate (not UTF-8)`);
      pushUtf8(out, v);
    } else if (v > 0xff) throw new Error(`${what} does not fit in a byte`);
    else out.push(v);
  };
  for (;;) {
    if (i >= src.length) throw new Error('missing closing quote');
    const cp = src.codePointAt(i)!;
    const ch = String.fromCodePoint(cp);
    if (ch === quote) break;
    if (ch !== '\\') {
      if (isBytes && cp >= 0x80) throw new Error('bytes literal contains a non-ASCII character');
      emit(cp, 'character');
      i += ch.length;
      continue;
    }
    // An escape: src[i] is the backslash, e the escaped character.
    const e = src[i + 1];
    if (e === undefined) throw new Error('literal ends inside an escape');
    if (e in SIMPLE_ESCAPES) {
      out.push(SIMPLE_ESCAPES[e]);
      i += 2;
    } else if (e >= '0' && e <= '7') {
      const oct = /^[0-7]{1,3}/.exec(src.slice(i + 1, i + 4))![0];
      emit(Number.parseInt(oct, 8), `\\${oct}`);
      i += 1 + oct.length;
    } else if (e === 'x') {
      const v = hexValue(src, i + 2, 2);
      // In a str, \xhh is the code point U+00hh; in bytes it is the byte.
      emit(v, `\\x${src.slice(i + 2, i + 4)}`);
      i += 4;
    } else if (!isBytes && (e === 'u' || e === 'U')) {
      const digits = e === 'u' ? 4 : 8;
      const v = hexValue(src, i + 2, digits);
      if (v > 0x10ffff) throw new Error(`\\${e} escape ${v.toString(16)} is above U+10FFFF`);
      emit(v, `\\${e}${src.slice(i + 2, i + 2 + digits)}`);
      i += 2 + digits;
    } else if (!isBytes && e === 'N') {
      throw new Error('\\N{...} escapes are not supported');
    } else {
      // Python keeps an unknown escape as the backslash and the character.
      out.push(0x5c);
      i += 1;
    }
  }
  if (i !== src.length - 1) throw new Error('text after the closing quote');
  return Uint8Array.from(out);
}
