/**
 * Text documents from files users have: plain text (one document) or JSON lines with a
 * `text` field (MiniPile and other Hugging Face exports), and their tokenization into
 * one stream with an end-of-document token after each.
 */
import { readFileSync } from 'node:fs';
import { UserError } from '../errors.ts';
import { decodeUtf8Strict, type Tokenizer } from '../io/tokenizer.ts';

export function readDocuments(path: string): string[] {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    throw new UserError(
      `${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? e})`,
      'Check the path.',
    );
  }
  const text = decodeUtf8Strict(buf, path);
  if (!/\.jsonl?$/i.test(path)) return [text];
  const docs: string[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch (e) {
      throw new UserError(
        `${path}:${i + 1}: not valid JSON (${(e as Error).message})`,
        'Each line must be one JSON object.',
      );
    }
    const t = (row as { text?: unknown } | null)?.text;
    if (typeof t !== 'string') {
      throw new UserError(
        `${path}:${i + 1}: no string field "text"`,
        'Each line must look like {"text": "…"}.',
      );
    }
    docs.push(t);
  });
  if (docs.length === 0) throw new UserError(`${path}: no documents found`, 'The file is empty.');
  return docs;
}

/** Tokenizes documents into one stream, each followed by the end-of-document token. */
export function tokenizeDocuments(docs: readonly string[], tokenizer: Tokenizer): number[] {
  const out: number[] = [];
  for (const d of docs) {
    for (const id of tokenizer.encode(d)) out.push(id);
    if (tokenizer.endOfDocId !== null) out.push(tokenizer.endOfDocId);
  }
  return out;
}
