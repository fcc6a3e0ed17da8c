/**
 * Every command held to the same rules: `--help` lists every option; an unwritable
 * output, `-` where a folder is needed, and an existing output each give one line (and
 * a hint) and exit 2 before any work, leaving what was there untouched; `-` as a file
 * output is standard output (the table then on stderr); SIGINT mid-run ends with one
 * line saying what was saved and how to continue (exit 130), and nothing is lost.
 * In-process through runCli (the entry point's own dispatcher) except for signals,
 * which go to real child processes.
 */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { commands } from '../../src/cli/commands/index.ts';
import { runCli } from '../../src/cli/dispatch.ts';
import type { Io } from '../../src/cli/io.ts';
import { BENCH_FORMAT_VERSION } from '../../src/formats/bench.ts';
import { writeSafetensors } from '../../src/io/safetensors.ts';
import { randomRwkv4 } from '../../src/models/random.ts';
import { tmpDir } from '../helpers/shared.ts';

const dir = tmpDir('actsparse-conformance-');
const model = join(dir, 'm.safetensors');
writeSafetensors(model, randomRwkv4({ nLayer: 2, nEmbd: 32, nVocab: 256, seed: 5 }), {
  dtype: 'f32',
});
const text = join(dir, 'text.txt');
writeFileSync(text, 'sparse activations in recurrent language models, measured. '.repeat(60));
/** A regular file: a path under it can never be written. */
const blocker = join(dir, 'blocker');
writeFileSync(blocker, 'a file, not a folder');

async function cli(argv: string[]): Promise<{ code: number; out: Buffer; err: string }> {
  const out: Buffer[] = [];
  let err = '';
  const io: Io = {
    out: (s) => {
      out.push(Buffer.from(typeof s === 'string' ? s : s));
    },
    err: (s) => {
      err += s;
    },
    tty: false,
  };
  const code = await runCli(argv, io);
  return { code, out: Buffer.concat(out), err };
}

/** A calibration to feed hw, report and --thresholds. */
const run = join(dir, 'run');
const calibrated = cli([
  'calibrate',
  model,
  '--data',
  text,
  '--ctx',
  '32',
  '--windows',
  '4',
  '--backend',
  'js',
  '--out',
  run,
]);

type Kind = 'file' | 'folder';
/** Each command with its output in place of OUT, and what kind of output that is. */
const CASES: Record<string, { kind: Kind; argv: (out: string) => string[] }> = {
  demo: { kind: 'folder', argv: (o) => ['demo', '--out', o] },
  info: { kind: 'file', argv: (o) => ['info', model, '--json', o] },
  generate: {
    kind: 'file',
    argv: (o) => ['generate', model, '--prompt', 'ab', '--tokens', '3', '--json', o],
  },
  logits: { kind: 'file', argv: (o) => ['logits', model, '--tokens', '1,2,3', '--out', o] },
  perplexity: {
    kind: 'file',
    argv: (o) => ['perplexity', model, text, '--ctx', '32', '--json', o],
  },
  calibrate: {
    kind: 'folder',
    argv: (o) => ['calibrate', model, '--data', text, '--ctx', '32', '--windows', '4', '--out', o],
  },
  eval: {
    kind: 'folder',
    argv: (o) => ['eval', model, '--text', text, '--ctx', '32', '--windows', '2', '--out', o],
  },
  hw: { kind: 'file', argv: (o) => ['hw', run, '--json', o] },
  report: { kind: 'file', argv: (o) => ['report', run, '--out', o] },
  convert: { kind: 'file', argv: (o) => ['convert', model, o] },
  bench: {
    kind: 'file',
    argv: (o) => [
      'bench',
      '--quick',
      '--model-only',
      '--backend',
      'js',
      '--seq-len',
      '4',
      '--json',
      o,
    ],
  },
  train: {
    kind: 'folder',
    argv: (o) => [
      'train',
      '--data',
      text,
      '--layers',
      '1',
      '--embd',
      '8',
      '--ctx',
      '16',
      '--batch',
      '2',
      '--steps',
      '2',
      '--out',
      o,
    ],
  },
};
/** A file that marks an existing run in each folder output. */
const RUN_MARKER: Record<string, string> = {
  demo: 'report.html',
  calibrate: 'thresholds.json',
  eval: 'results.json',
  train: 'train-state.json',
};

/** One error line (`actsparse CMD: …`), optionally a hint line, nothing else, no stack. */
function oneLineError(cmd: string, r: { code: number; err: string }, what: string): void {
  assert.equal(r.code, 2, `${cmd} ${what}: exit ${r.code}: ${r.err}`);
  assert.match(
    r.err,
    new RegExp(`^actsparse ${cmd}: [^\\n]+\\n(hint: [^\\n]+\\n)?$`),
    `${cmd} ${what}: ${JSON.stringify(r.err)}`,
  );
  assert.doesNotMatch(r.err, /\n\s+at /);
}

describe('CLI conformance: every command', () => {
  test('every command is covered here', () => {
    assert.deepEqual(Object.keys(CASES).sort(), commands.map((c) => c.name).sort());
  });

  test('--help lists every option with its default and allowed values, and examples', async () => {
    for (const c of commands) {
      const r = await cli([c.name, '--help']);
      assert.equal(r.code, 0);
      const help = r.out.toString();
      assert.match(help, new RegExp(`^Usage: actsparse ${c.name}`));
      assert.deepEqual(help, (await cli(['help', c.name])).out.toString());
      for (const o of c.options) {
        const line = new RegExp(`--${o.name}\\b`);
        assert.match(help, line, `${c.name} --help lacks --${o.name}`);
        if (o.choices && o.value) {
          for (const v of o.choices) assert.ok(help.includes(v), `${c.name} --${o.name}: ${v}`);
        }
        const def = o.defaultText ?? (o.default === undefined ? null : String(o.default));
        if (def)
          assert.ok(
            help.replace(/\s+/g, ' ').includes(`Default: ${def}`),
            `${c.name} --${o.name} default`,
          );
      }
      assert.match(help, /\nExamples:\n {2}actsparse /);
    }
  });

  test('every option a command reads is in its table (so in its --help)', () => {
    for (const c of commands) {
      const file = join(import.meta.dirname, '..', '..', 'src', 'cli', 'commands', `${c.name}.ts`);
      const src = readFileSync(file, 'utf8');
      const read = [...src.matchAll(/\ba\.(?:str|num|flag|list|has)\('([a-z-]+)'\)/g)].map(
        (m) => m[1],
      );
      assert.ok(read.length > 0 || c.options.length === 0, `${c.name}: no option read`);
      for (const name of read) {
        assert.ok(
          c.options.some((o) => o.name === name),
          `${c.name} reads --${name}, not in its table`,
        );
      }
    }
  });

  test('an unwritable output: one line, exit 2, before any work', async () => {
    await calibrated;
    for (const [name, c] of Object.entries(CASES)) {
      const out = join(blocker, name === 'convert' ? 'x.safetensors' : 'x');
      oneLineError(name, await cli(c.argv(out)), 'unwritable');
    }
  });

  test('- is standard output for files (the table on stderr), refused for folders', async () => {
    await calibrated;
    for (const [name, c] of Object.entries(CASES)) {
      const r = await cli(c.argv('-'));
      if (c.kind === 'folder' || name === 'convert') {
        oneLineError(name, r, '-');
        assert.match(r.err, /standard output/);
        continue;
      }
      assert.equal(r.code, 0, `${name}: ${r.err}`);
      assert.ok(!existsSync('-'), 'no file named -');
      if (name === 'logits') assert.equal(r.out.length, 3 * 256 * 4);
      else if (name === 'report') assert.match(r.out.toString(), /^<!doctype html>/);
      else {
        const json = JSON.parse(r.out.toString());
        assert.equal(json.formatVersion, name === 'bench' ? BENCH_FORMAT_VERSION : 1, name);
      }
    }
    // The human table moved to stderr.
    assert.match((await cli(CASES.info.argv('-'))).err, /architecture\s+rwkv4/);
  });

  test('an existing output is refused untouched; --force replaces it', async () => {
    await calibrated;
    for (const [name, c] of Object.entries(CASES)) {
      const base = join(dir, `existing-${name}`);
      const out = name === 'convert' ? `${base}.safetensors` : base;
      const marker = c.kind === 'folder' ? join(out, RUN_MARKER[name]) : out;
      mkdirSync(c.kind === 'folder' ? out : dir, { recursive: true });
      writeFileSync(marker, 'keep me');
      const r = await cli(c.argv(out));
      oneLineError(name, r, 'existing');
      assert.match(r.err, /--force/);
      assert.equal(readFileSync(marker, 'utf8'), 'keep me', `${name} touched ${marker}`);
      if (name === 'demo' || name === 'report') continue; // minutes, or covered by report tests
      const forced = await cli([...c.argv(out), '--force']);
      assert.equal(forced.code, 0, `${name} --force: ${forced.err}`);
      assert.match(forced.err, /--force/, `${name} says it replaces`);
      assert.notEqual(existsSync(marker) && readFileSync(marker, 'utf8'), 'keep me');
    }
  });
});

/** Spawns the CLI, sends SIGINT once stderr matches `when`, and waits for the end. */
function interrupt(
  argv: string[],
  when: RegExp,
): Promise<{ code: number | null; signal: string | null; err: string }> {
  const main = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', main, ...argv], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  let sent = false;
  child.stderr!.on('data', (d) => {
    err += d;
    if (!sent && when.test(err)) {
      sent = true;
      child.kill('SIGINT');
    }
  });
  return new Promise((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, err })),
  );
}

/** The last line: `interrupted: …`, with the resume command when there is one. */
function interruptedLine(name: string, r: { code: number | null; err: string }, resume: boolean) {
  assert.equal(r.code, 130, `${name}: exit ${r.code}: ${r.err.slice(-500)}`);
  const last = r.err.trimEnd().split('\n').at(-1)!;
  assert.match(last, /^interrupted: \S/, `${name}: ${last}`);
  if (resume) assert.match(last, new RegExp(`; continue with: actsparse ${name} .*--resume$`));
  assert.doesNotMatch(r.err, /\n\s+at /);
  return last;
}

test(
  'SIGINT mid-run: one line, exit 130, what was finished is kept',
  { timeout: 120_000 },
  async () => {
    const bigText = join(dir, 'big.txt');
    writeFileSync(bigText, 'a long text to score, slowly, on the reference backend. '.repeat(5000));
    const cal = join(dir, 'sig-cal');
    const ev = join(dir, 'sig-eval');
    const tr = join(dir, 'sig-train');
    const bj = join(dir, 'sig-bench.json');
    const calArgs = [
      'calibrate',
      model,
      '--data',
      text,
      '--ctx',
      '64',
      '--windows',
      '4',
      '--backend',
      'js',
      '--out',
      cal,
    ];
    const evArgs = [
      'eval',
      model,
      '--tasks',
      'brown_next_word',
      '--limit',
      '200',
      '--text',
      text,
      '--ctx',
      '32',
      '--backend',
      'js',
      '--out',
      ev,
    ];
    const trArgs = [
      'train',
      '--data',
      text,
      '--layers',
      '1',
      '--embd',
      '16',
      '--ctx',
      '32',
      '--batch',
      '2',
      '--steps',
      '100000',
      '--save-every',
      '1000',
      '--out',
      tr,
    ];
    const logitsOut = join(dir, 'sig-logits.f32');
    const [c, e, t, b, g, p, l] = await Promise.all([
      interrupt(calArgs, /calibrate paper \[.*\] [1-9]/),
      interrupt(evArgs, /brown_next_word \[/),
      interrupt(trArgs, /train step 1\//),
      interrupt(['bench', '--quick', '--backend', 'js', '--repeats', '50', '--json', bj], / … /),
      interrupt(['generate', model, '--prompt', 'a', '--tokens', '1000000'], /tokenizer: /),
      interrupt(['perplexity', model, bigText, '--ctx', '64', '--backend', 'js'], /tokenizer: /),
      // A command that writes its output whole at the end is ended at once.
      interrupt(
        [
          'logits',
          model,
          '--text',
          'x'.repeat(20_000),
          '--backend',
          'js',
          '--mode',
          'step',
          '--out',
          logitsOut,
        ],
        /tokenizer: /,
      ),
    ]);
    interruptedLine('calibrate', c, true);
    interruptedLine('eval', e, true);
    assert.match(interruptedLine('train', t, true), /checkpoint at step [1-9]\d* of 100000/);
    assert.match(interruptedLine('bench', b, false), /measurements made so far/);
    assert.match(interruptedLine('generate', g, false), /generated \d+ of 1000000 tokens/);
    assert.match(interruptedLine('perplexity', p, false), /nothing to save/);
    assert.equal(l.signal, 'SIGINT', `logits: ${l.code} ${l.err}`);
    assert.ok(!existsSync(logitsOut), 'no partial output');

    // Nothing lost: the runs continue from what they kept; bench wrote what it measured.
    const resumed = await Promise.all([
      cli([...calArgs, '--resume']),
      cli([...evArgs, '--resume']),
    ]);
    for (const r of resumed) assert.equal(r.code, 0, r.err);
    assert.ok(existsSync(join(cal, 'thresholds.json')) && existsSync(join(ev, 'results.json')));
    const state = JSON.parse(readFileSync(join(tr, 'train-state.json'), 'utf8'));
    assert.ok(state.step >= 1, `train saved step ${state.step}`);
    assert.equal(JSON.parse(readFileSync(bj, 'utf8')).interrupted, true);
  },
);
