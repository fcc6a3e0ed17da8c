/**
 * The shape of the house (shared/docs/STYLE.md): imports run down the layer order only,
 * and each result file format is defined and parsed in its own module of src/formats/.
 * Checked on the source text: every relative import of every file under src/.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

/**
 * Lowest first. A module may import its own layer and the layers below it; layers that
 * share a rank (sparsity and train; hardware and bench) do not import each other.
 */
const LAYERS: [string, number][] = [
  ['errors.ts', 0],
  ['util', 1],
  ['version.ts', 2],
  ['tensor', 3],
  ['io', 4],
  ['models', 5],
  ['data', 6],
  ['formats', 7],
  ['sparsity', 8],
  ['train', 8],
  ['eval', 9],
  ['hardware', 10],
  ['bench', 10],
  ['report', 11],
  ['api.ts', 12],
  ['index.ts', 13],
  ['cli', 14],
];

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return files(p);
    return p.endsWith('.ts') && !p.includes('/wasm/assembly/') ? [p] : [];
  });
}

/** The layer of a file: the first path component under src/. */
function layerOf(file: string): [string, number] {
  const top = relative(SRC, file).split('/')[0];
  const l = LAYERS.find(([name]) => name === top);
  if (!l) throw new Error(`${relative(SRC, file)}: in no layer of the list in this test`);
  return l;
}

const imports = (text: string) =>
  [...text.matchAll(/^(?:import|export)[^'"]*from\s+['"](\.[^'"]+)['"]/gm)].map((m) => m[1]);

test('imports run down the layer order only', () => {
  const bad: string[] = [];
  for (const f of files(SRC)) {
    const [from, rank] = layerOf(f);
    for (const spec of imports(readFileSync(f, 'utf8'))) {
      const target = resolve(dirname(f), spec);
      const [to, toRank] = layerOf(target);
      if (toRank > rank || (toRank === rank && to !== from))
        bad.push(`${relative(SRC, f)} imports ${relative(SRC, target)} (${from} → ${to})`);
    }
  }
  assert.deepEqual(bad, [], `imports up the layer order:\n${bad.join('\n')}`);
});

test('each result format is defined and parsed in its own module', () => {
  const kinds: Record<string, string> = {
    'actsparse.thresholds': 'formats/thresholds.ts',
    'actsparse.eval': 'formats/results.ts',
    'actsparse.hw': 'formats/hw.ts',
  };
  const allowed = new Set(['formats/run-file.ts']);
  const bad: string[] = [];
  for (const f of files(SRC)) {
    const rel = relative(SRC, f);
    const text = readFileSync(f, 'utf8');
    for (const [kind, home] of Object.entries(kinds)) {
      // The kind literal marks a schema or a dispatch on it.
      if (text.includes(`'${kind}'`) && rel !== home && !allowed.has(rel))
        bad.push(`${rel} names '${kind}' (its module is ${home})`);
    }
    // JSON is parsed by the one reader, or by readers of formats that are not result files.
    const parsers = new Set([
      'util/files.ts',
      'data/documents.ts', // .jsonl text corpora
      'eval/tasks/source.ts', // task files
      'sparsity/calibrate.ts', // its journal
      'eval/run.ts', // its journal
      'train/trainer.ts', // the trainer's own checkpoint state
    ]);
    if (text.includes('JSON.parse(') && !rel.startsWith('io/') && !parsers.has(rel))
      bad.push(`${rel} parses JSON itself (use util/files.ts readJsonFile or a formats/ reader)`);
  }
  assert.deepEqual(bad, [], bad.join('\n'));
});
