/**
 * Zero-shot tasks: the exact requests lm-eval 0.4.2 builds (hand-written expected
 * strings), the loaders for the shared files and Hugging Face exports, the metrics on
 * hand-made scores, and a UserError naming file, line and field for every bad input.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { UserError } from '../../../src/errors.ts';
import { arcChallenge, arcEasy } from '../../../src/eval/tasks/arc.ts';
import { hellaswag, preprocess } from '../../../src/eval/tasks/hellaswag.ts';
import { lambadaOpenai } from '../../../src/eval/tasks/lambada.ts';
import { argmax, computeMetrics, meanAndStderr } from '../../../src/eval/tasks/metrics.ts';
import { openbookqa } from '../../../src/eval/tasks/openbookqa.ts';
import { piqa } from '../../../src/eval/tasks/piqa.ts';
import { getTask, resolveTaskPath, TASKS } from '../../../src/eval/tasks/registry.ts';
import { charLength, makeRequest, pyCapitalize } from '../../../src/eval/tasks/requests.ts';
import { sciq } from '../../../src/eval/tasks/sciq.ts';
import type { Item, Scored, Task } from '../../../src/eval/tasks/task.ts';
import { winogrande } from '../../../src/eval/tasks/winogrande.ts';
import { needsShared, shared, tmpDir } from '../../helpers/shared.ts';

const dir = tmpDir('actsparse-tasks-');
let fileCount = 0;

/** Writes `content` to a fresh file named `name` (in its own folder) and returns its path. */
function write(name: string, content: string | Uint8Array): string {
  const sub = join(dir, String(fileCount++));
  mkdirSync(sub);
  const path = join(sub, name);
  writeFileSync(path, content);
  return path;
}

const jsonl = (...rows: unknown[]) => `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`;
const contexts = (item: Item) => item.requests.map((r) => r.context);
const continuations = (item: Item) => item.requests.map((r) => r.continuation);

/** Fails unless `fn` throws a UserError whose message contains every part. */
function throwsUserError(fn: () => unknown, ...parts: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof UserError, `expected a UserError, got ${String(e)}`);
    for (const p of parts) assert.ok(e.message.includes(p), `"${e.message}" lacks "${p}"`);
    return true;
  });
}

function loadShared(task: Task): Item[] {
  return task.load(resolveTaskPath(task, shared('tasks')));
}

describe('request building', () => {
  test('trailing whitespace of the context moves to the continuation', () => {
    assert.deepEqual(makeRequest('Question: a \n', ' b'), {
      context: 'Question: a',
      continuation: ' \n b',
    });
    assert.deepEqual(makeRequest('a', ' b'), { context: 'a', continuation: ' b' });
    assert.deepEqual(makeRequest('  ', 'b'), { context: '', continuation: '  b' });
    // Python's whitespace set: U+0085 is whitespace, U+FEFF is not.
    assert.deepEqual(makeRequest('a\u0085', 'b'), { context: 'a', continuation: '\u0085b' });
    assert.deepEqual(makeRequest('a\ufeff', 'b'), { context: 'a\ufeff', continuation: 'b' });
  });

  test('Python len and capitalize', () => {
    assert.equal(charLength('😀ab'), 3);
    assert.equal(pyCapitalize('the LADY said Bob'), 'The lady said bob');
    assert.equal(pyCapitalize(''), '');
  });
});

describe('piqa', () => {
  test('shared file: first item', needsShared('tasks/piqa/valid.jsonl'), () => {
    const items = loadShared(piqa);
    assert.equal(items.length, 1838);
    const [first, second] = items;
    const q = "Question: How do I ready a guinea pig cage for it's new occupants?\nAnswer:";
    assert.deepEqual(contexts(first), [q, q]);
    assert.deepEqual(continuations(first), [
      ' Provide the guinea pig with a cage full of a few inches of bedding made of ripped paper strips, you will also need to supply it with a water bottle and a food dish.',
      ' Provide the guinea pig with a cage full of a few inches of bedding made of ripped jeans material, you will also need to supply it with a water bottle and a food dish.',
    ]);
    assert.equal(first.gold, 0);
    assert.deepEqual(first.choiceLengths, [164, 166]);
    assert.equal(first.kind, 'multiple-choice');
    // Second item: choices keep their trailing space (and their length counts it).
    assert.deepEqual(continuations(second), [
      ' replace drawer with bobby pin ',
      ' finish, woodgrain with  bobby pin ',
    ]);
    assert.deepEqual(second.choiceLengths, [30, 34]);
    assert.equal(second.gold, 1);
  });

  test('Hugging Face export with labels', () => {
    const f = write(
      'validation.jsonl',
      jsonl({ goal: 'Keep a door open', sol1: 'Use a wedge. ', sol2: 'Use a feather.', label: 1 }),
    );
    const [item] = piqa.load(f);
    assert.deepEqual(contexts(item), [
      'Question: Keep a door open\nAnswer:',
      'Question: Keep a door open\nAnswer:',
    ]);
    assert.deepEqual(continuations(item), [' Use a wedge. ', ' Use a feather.']);
    assert.deepEqual(item.choiceLengths, [13, 14]);
    assert.equal(item.gold, 1);
  });

  test('official layout: labels from valid-labels.lst; a folder means valid.jsonl', () => {
    const f = write(
      'valid.jsonl',
      jsonl({ goal: 'g1', sol1: 'a', sol2: 'b' }, { goal: 'g2', sol1: 'c', sol2: 'd' }),
    );
    writeFileSync(f.replace('valid.jsonl', 'valid-labels.lst'), '1\n0\n');
    const items = piqa.load(join(f, '..'));
    assert.deepEqual(
      items.map((i) => i.gold),
      [1, 0],
    );
    writeFileSync(f.replace('valid.jsonl', 'valid-labels.lst'), '1\n');
    throwsUserError(() => piqa.load(f), 'valid-labels.lst', '1 labels for 2 questions');
    writeFileSync(f.replace('valid.jsonl', 'valid-labels.lst'), '1\n2\n');
    throwsUserError(() => piqa.load(f), 'valid-labels.lst:2', 'expected 0 or 1');
    const lone = write('valid.jsonl', jsonl({ goal: 'g', sol1: 'a', sol2: 'b' }));
    throwsUserError(() => piqa.load(lone), `${lone}:1`, '"label"', 'valid-labels.lst');
  });
});

describe('arc', () => {
  test(
    'shared files: first items',
    needsShared('tasks/arc/arc_easy.jsonl', 'tasks/arc/arc_challenge.jsonl'),
    () => {
      const easy = loadShared(arcEasy);
      assert.equal(easy.length, 2376);
      const e = easy[0];
      assert.equal(
        e.requests[0].context,
        'Question: Which statement best explains why photosynthesis is the foundation of most food webs?\nAnswer:',
      );
      assert.deepEqual(continuations(e), [
        ' Sunlight is the source of energy for nearly all ecosystems.',
        ' Most ecosystems are found on land instead of in water.',
        ' Carbon dioxide is more available than other gases.',
        ' The producers in all ecosystems are plants.',
      ]);
      assert.deepEqual(e.choiceLengths, [59, 54, 50, 43]);
      assert.equal(e.gold, 0);

      const challenge = loadShared(arcChallenge);
      assert.equal(challenge.length, 1172);
      const c = challenge[0];
      assert.equal(
        c.requests[3].context,
        'Question: An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most likely effect of this increase in rotation?\nAnswer:',
      );
      assert.deepEqual(continuations(c), [
        ' Planetary density will decrease.',
        ' Planetary years will become longer.',
        ' Planetary days will become shorter.',
        ' Planetary gravity will become stronger.',
      ]);
      assert.deepEqual(c.choiceLengths, [32, 35, 35, 39]);
      assert.equal(c.gold, 2);
    },
  );

  test('Hugging Face export: letter and digit answer keys, 3 choices', () => {
    const f = write(
      'ARC-Easy-test.jsonl',
      jsonl(
        {
          id: 'x1',
          question: 'Which is a gas?',
          choices: { text: ['ice', 'water', 'steam', 'rock'], label: ['A', 'B', 'C', 'D'] },
          answerKey: 'C',
        },
        {
          id: 'x2',
          question: 'Pick three.',
          choices: { text: ['one', 'two', 'three'], label: ['1', '2', '3'] },
          answerKey: '3',
        },
      ),
    );
    const [a, b] = arcEasy.load(f);
    assert.deepEqual(contexts(a), Array(4).fill('Question: Which is a gas?\nAnswer:'));
    assert.deepEqual(continuations(a), [' ice', ' water', ' steam', ' rock']);
    assert.equal(a.gold, 2);
    assert.deepEqual(continuations(b), [' one', ' two', ' three']);
    assert.deepEqual(b.choiceLengths, [3, 3, 5]);
    assert.equal(b.gold, 2);
  });

  test('an answer key that is not a label', () => {
    const f = write(
      'arc.jsonl',
      jsonl({ question: 'q', choices: { text: ['a', 'b'], label: ['A', 'B'] }, answerKey: '2' }),
    );
    throwsUserError(() => arcEasy.load(f), `${f}:1`, '"answerKey"', '"2" is not one of the labels');
  });
});

describe('hellaswag', () => {
  test(
    'shared gz file: first item',
    needsShared('tasks/hellaswag/hellaswag_val_full.txt.gz'),
    () => {
      const t0 = performance.now();
      const items = loadShared(hellaswag);
      const ms = performance.now() - t0;
      assert.equal(items.length, 10042);
      assert.ok(ms < 2000, `loading took ${ms.toFixed(0)} ms`);
      const [first] = items;
      // ctx_b ("he") stays lower-case: this file's ctx is one string (SCORING.md).
      assert.deepEqual(
        contexts(first),
        Array(4).fill('Roof shingle removal: A man is sitting on a roof. he'),
      );
      assert.deepEqual(continuations(first), [
        ' is using wrap to wrap a pair of skis.',
        ' is ripping level tiles off.',
        " is holding a rubik's cube.",
        ' starts pulling up roofing on a roof.',
      ]);
      assert.deepEqual(first.choiceLengths, [37, 27, 26, 36]);
      assert.equal(first.gold, 3);
    },
  );

  test('cleaning: strip, [title], tags, one pass of double spaces', () => {
    // " [title]" → ". " gives a double space, collapsed; "[header]" leaves its space.
    assert.equal(
      preprocess(' [header] How to bake a cake [title] Preheat the oven. '),
      ' How to bake a cake. Preheat the oven.',
    );
    // Tags go after the strip, so the space after one stays; three spaces become two (one pass).
    assert.equal(preprocess('[step] Pour   it in. '), ' Pour  it in.');
    assert.equal(preprocess('a [b\nc] d'), 'a [b\nc] d');
  });

  test('Hugging Face row: ctx_b capitalized, context and endings cleaned', () => {
    const f = write(
      'hellaswag_validation.jsonl',
      jsonl({
        activity_label: 'Making a cake',
        ctx_a: '[header] How to bake a cake [title] Preheat the oven.',
        ctx_b: 'mix THE flour',
        endings: ['[step] Pour   it in. ', 'eat it.', 'sing [substeps] loudly.', 'stop.'],
        label: '2',
      }),
    );
    const [item] = hellaswag.load(f);
    assert.deepEqual(
      contexts(item),
      Array(4).fill('Making a cake: How to bake a cake. Preheat the oven. Mix the flour'),
    );
    assert.deepEqual(continuations(item), [
      '  Pour  it in.',
      ' eat it.',
      ' sing loudly.',
      ' stop.',
    ]);
    assert.deepEqual(item.choiceLengths, [13, 7, 12, 5]);
    assert.equal(item.gold, 2);
  });

  test('six-line text, plain and gzipped', () => {
    const text =
      'Cooking: A man [title] stirs.\n1\nend one\n [step] end two\nend three\nend four\n';
    for (const [name, content] of [
      ['h.txt', text],
      ['h.txt.gz', gzipSync(text)],
    ] as const) {
      const [item] = hellaswag.load(write(name, content));
      assert.deepEqual(contexts(item), Array(4).fill('Cooking: A man. stirs.'));
      assert.deepEqual(continuations(item), [' end one', '  end two', ' end three', ' end four']);
      assert.equal(item.gold, 1);
    }
  });

  test('bad six-line files and a broken gz', () => {
    const ok = 'a: b\n0\ne1\ne2\ne3\ne4\n';
    const truncated = write('t.txt', `${ok}a: c\n1\ne1\n`);
    throwsUserError(
      () => hellaswag.load(truncated),
      `${truncated}:7`,
      'item 2 has 3 of its 6 lines',
    );
    const badLabel = write('l.txt', `${ok}a: c\nx\ne1\ne2\ne3\ne4\n`);
    throwsUserError(
      () => hellaswag.load(badLabel),
      `${badLabel}:8`,
      '"label"',
      'expected an integer',
    );
    const range = write('r.txt', 'a: c\n4\ne1\ne2\ne3\ne4\n');
    throwsUserError(
      () => hellaswag.load(range),
      `${range}:2`,
      '"label"',
      '4 is out of range for 4 choices',
    );
    const gz = write('h.txt.gz', 'this is not gzip');
    throwsUserError(() => hellaswag.load(gz), gz, 'not a readable gzip file');
    const cut = write('c.txt.gz', gzipSync(ok.repeat(50)).subarray(0, 40));
    throwsUserError(() => hellaswag.load(cut), cut, 'gzip');
  });
});

describe('lambada_openai', () => {
  test('shared file: first item', needsShared('tasks/lambada/lambada_test.jsonl'), () => {
    const items = loadShared(lambadaOpenai);
    assert.equal(items.length, 5153);
    const [first] = items;
    assert.equal(first.kind, 'loglikelihood');
    assert.equal(first.gold, 0);
    assert.deepEqual(first.requests, [
      {
        context:
          'In my palm is a clear stone, and inside it is a small ivory statuette. A guardian angel.\n\n"Figured if you\'re going to be out at night getting hit by cars, you might as well have some backup."\n\nI look at him, feeling stunned. Like this is some sort of sign. But as I stare at Harlin, his mouth curved in a confident grin, I don\'t care about',
        continuation: ' signs',
      },
    ]);
  });

  test('split on the last space only; whitespace before it moves over', () => {
    const f = write(
      'l.jsonl',
      jsonl({ text: 'one two\n three' }, { text: 'single' }, { text: 'a\nb c' }),
    );
    const items = lambadaOpenai.load(f);
    assert.deepEqual(items[0].requests, [{ context: 'one two', continuation: '\n three' }]);
    assert.deepEqual(items[1].requests, [{ context: '', continuation: ' single' }]);
    assert.deepEqual(items[2].requests, [{ context: 'a\nb', continuation: ' c' }]);
    throwsUserError(
      () => lambadaOpenai.load(write('e.jsonl', jsonl({ text: 'x' }, { text: '' }))),
      ':2',
      '"text"',
      'empty',
    );
  });
});

describe('winogrande', () => {
  test(
    'shared file (partial form): first item',
    needsShared('tasks/winogrande/winogrande.jsonl'),
    () => {
      const items = loadShared(winogrande);
      assert.equal(items.length, 1267);
      const [first] = items;
      assert.equal(first.kind, 'partial');
      assert.deepEqual(first.requests, [
        {
          context: 'Sarah was a much better surgeon than Maria so Sarah',
          continuation: ' always got the easier cases.',
        },
        {
          context: 'Sarah was a much better surgeon than Maria so Maria',
          continuation: ' always got the easier cases.',
        },
      ]);
      assert.equal(first.gold, 1);
    },
  );

  test('Hugging Face row → partial form as lm-eval builds it', () => {
    const f = write(
      'winogrande_xl_validation.jsonl',
      jsonl(
        {
          sentence: "The trophy doesn't fit into the brown suitcase because the _ is too large. ",
          option1: 'trophy',
          option2: 'suitcase',
          answer: '1',
        },
        { sentence: 'Ann gave _ a call.', option1: 'Bo', option2: 'Cy', answer: 2 },
      ),
    );
    const [a, b] = winogrande.load(f);
    assert.deepEqual(a.requests, [
      {
        context: "The trophy doesn't fit into the brown suitcase because the trophy",
        continuation: ' is too large.',
      },
      {
        context: "The trophy doesn't fit into the brown suitcase because the suitcase",
        continuation: ' is too large.',
      },
    ]);
    assert.equal(a.gold, 0);
    assert.deepEqual(contexts(b), ['Ann gave Bo', 'Ann gave Cy']);
    assert.deepEqual(continuations(b), [' a call.', ' a call.']);
    assert.equal(b.gold, 1);
  });

  test('bad rows', () => {
    const row = { sentence: 'A _ b.', option1: 'x', option2: 'y', answer: '1' };
    const noBlank = write('w.jsonl', jsonl(row, { ...row, sentence: 'no blank' }));
    throwsUserError(() => winogrande.load(noBlank), `${noBlank}:2`, '"sentence"', 'no blank');
    const test_ = write('w.jsonl', jsonl({ ...row, answer: '' }));
    throwsUserError(() => winogrande.load(test_), `${test_}:1`, '"answer"', 'empty');
    const three = write('w.jsonl', jsonl({ ...row, answer: '3' }));
    throwsUserError(() => winogrande.load(three), `${three}:1`, '"answer"', '3 is out of range');
    const gold = write(
      'w.jsonl',
      jsonl({ context_options: ['a', 'b'], continuation: 'c', gold: 2 }),
    );
    throwsUserError(() => winogrande.load(gold), `${gold}:1`, '"gold"', 'out of range');
  });
});

describe('openbookqa', () => {
  test('shared file: first item', needsShared('tasks/openbookqa/openbook_qa.jsonl'), () => {
    const items = loadShared(openbookqa);
    assert.equal(items.length, 500);
    const [first] = items;
    assert.equal(
      first.requests[0].context,
      'A person wants to start saving money so that they can afford a nice vacation at the end of the year. After looking over their budget and expenses, they decide the best way to save money is to',
    );
    assert.deepEqual(continuations(first), [
      ' make more phone calls',
      ' quit eating lunch out',
      ' buy less with monopoly money',
      ' have lunch with friends',
    ]);
    assert.deepEqual(first.choiceLengths, [21, 21, 28, 23]);
    assert.equal(first.gold, 1);
  });

  test('Hugging Face export: answerKey lstripped, trailing space of the stem moves', () => {
    const f = write(
      'openbookqa_test.jsonl',
      jsonl({
        id: '7-980',
        question_stem: 'The sun is responsible for ',
        choices: { text: ['puppies', 'plants sprouting'], label: ['A', 'B'] },
        answerKey: ' B',
      }),
    );
    const [item] = openbookqa.load(f);
    assert.deepEqual(contexts(item), ['The sun is responsible for', 'The sun is responsible for']);
    assert.deepEqual(continuations(item), ['  puppies', '  plants sprouting']);
    assert.deepEqual(item.choiceLengths, [7, 16]);
    assert.equal(item.gold, 1);
  });
});

describe('sciq', () => {
  const cheese = {
    question:
      'What type of organism is commonly used in preparation of foods such as cheese and yogurt?',
    distractor3: 'viruses',
    distractor1: 'protozoa',
    distractor2: 'gymnosperms',
    correct_answer: 'mesophilic organisms',
    support: '\n Mesophiles grow best in moderate temperature.',
  };
  const noSupport = {
    question: 'What is the least dangerous radioactive decay?',
    distractor3: 'zeta decay',
    distractor1: 'beta decay',
    distractor2: 'gamma decay',
    correct_answer: 'alpha decay',
    support: '',
  };

  test('official layout (JSON array) and JSON lines', () => {
    for (const f of [
      write('test.json', JSON.stringify([cheese, noSupport])),
      write('test.jsonl', jsonl(cheese, noSupport)),
    ]) {
      const [a, b] = sciq.load(f);
      assert.deepEqual(
        contexts(a),
        Array(4).fill(
          'Mesophiles grow best in moderate temperature.\nQuestion: What type of organism is commonly used in preparation of foods such as cheese and yogurt?\nAnswer:',
        ),
      );
      assert.deepEqual(continuations(a), [
        ' protozoa',
        ' gymnosperms',
        ' viruses',
        ' mesophilic organisms',
      ]);
      assert.deepEqual(a.choiceLengths, [8, 11, 7, 20]);
      assert.equal(a.gold, 3);
      assert.deepEqual(
        contexts(b),
        Array(4).fill('\nQuestion: What is the least dangerous radioactive decay?\nAnswer:'),
      );
      assert.deepEqual(continuations(b), [
        ' beta decay',
        ' gamma decay',
        ' zeta decay',
        ' alpha decay',
      ]);
      assert.equal(b.gold, 3);
    }
  });

  test('a missing field', () => {
    const { correct_answer: _, ...partial } = cheese;
    const f = write('test.jsonl', jsonl(cheese, partial));
    throwsUserError(() => sciq.load(f), `${f}:2`, '"correct_answer"', 'missing');
    const arr = write('test.json', JSON.stringify([cheese, partial]));
    throwsUserError(() => sciq.load(arr), `${arr}: item 2`, '"correct_answer"');
  });
});

describe('bad input', () => {
  const good = { query: 'Question: q', choices: ['a', 'b'], gold: 0 };

  test('malformed JSON, non-object, missing field, gold out of range', () => {
    const bad = write('a.jsonl', `${JSON.stringify(good)}\n{"query": "Question: q", \n`);
    throwsUserError(() => arcEasy.load(bad), `${bad}:2`, 'not valid JSON');
    const num = write('a.jsonl', `${JSON.stringify(good)}\n\n42\n`);
    throwsUserError(() => arcEasy.load(num), `${num}:3`, 'expected a JSON object');
    const missing = write('a.jsonl', jsonl({ query: 'Question: q', gold: 0 }));
    throwsUserError(() => arcEasy.load(missing), `${missing}:1`, '"choices"', 'missing');
    const range = write('a.jsonl', jsonl(good, { ...good, gold: 2 }));
    throwsUserError(
      () => arcChallenge.load(range),
      `${range}:2`,
      '"gold"',
      '2 is out of range for 2 choices',
    );
    const neg = write('a.jsonl', jsonl({ ...good, gold: -1 }));
    throwsUserError(() => openbookqa.load(neg), `${neg}:1`, '"gold"', 'out of range');
    const frac = write('a.jsonl', jsonl({ ...good, gold: 0.5 }));
    throwsUserError(() => openbookqa.load(frac), `${frac}:1`, '"gold"', 'expected an integer');
    const neither = write('a.jsonl', jsonl({ text: 'hi' }));
    throwsUserError(() => arcEasy.load(neither), `${neither}:1`, '"question"', 'missing');
  });

  test('empty, missing, not UTF-8, a folder without the file', () => {
    const empty = write('a.jsonl', '');
    throwsUserError(() => arcEasy.load(empty), empty, 'empty');
    const blank = write('a.jsonl', '\n  \n');
    throwsUserError(() => lambadaOpenai.load(blank), blank, 'empty');
    const emptyGz = write('h.txt.gz', gzipSync(''));
    throwsUserError(() => hellaswag.load(emptyGz), emptyGz, 'empty');
    throwsUserError(() => piqa.load(join(dir, 'nope.jsonl')), 'nope.jsonl', 'no such file');
    const latin = write('a.jsonl', Buffer.from([0x7b, 0x22, 0xe9, 0x22, 0x7d, 0x0a]));
    throwsUserError(() => arcEasy.load(latin), latin, 'not valid UTF-8');
    throwsUserError(() => winogrande.load(dir), dir, 'winogrande.jsonl');
  });
});

describe('registry', () => {
  test('names, unknown names, task paths', () => {
    assert.deepEqual(Object.keys(TASKS).sort(), [
      'arc_challenge',
      'arc_easy',
      'hellaswag',
      'lambada_openai',
      'openbookqa',
      'piqa',
      'sciq',
      'winogrande',
    ]);
    for (const [name, task] of Object.entries(TASKS)) assert.equal(task.name, name);
    assert.equal(getTask('ARC_Easy'), arcEasy);
    throwsUserError(() => getTask('mmlu'), 'unknown task "mmlu"');
    try {
      getTask('constructor');
      assert.fail('no error');
    } catch (e) {
      assert.ok(e instanceof UserError && e.hint?.includes('piqa, hellaswag'), String(e));
    }
    assert.equal(resolveTaskPath(piqa, '/data'), '/data/piqa/valid.jsonl');
    // A folder holding the file itself (no task sub-folder).
    const f = write('arc_easy.jsonl', jsonl({ query: 'Question: q', choices: ['a'], gold: 0 }));
    assert.equal(resolveTaskPath(arcEasy, join(f, '..')), f);
    assert.equal(arcEasy.load(join(f, '..')).length, 1);
  });
});

describe('metrics', () => {
  const scored = (logLikelihood: number, greedy = false): Scored => ({
    logLikelihood,
    greedy,
    tokens: 1,
  });
  const mc = (index: number, gold: number, choiceLengths: number[]): Item => ({
    index,
    kind: 'multiple-choice',
    requests: choiceLengths.map(() => ({ context: 'c', continuation: ' x' })),
    gold,
    choiceLengths,
  });

  test('argmax is numpy`s: first maximum, NaN wins', () => {
    assert.equal(argmax([-1, -1]), 0);
    assert.equal(argmax([-3, -1, -1]), 1);
    assert.equal(argmax([-1, Number.NaN, 0]), 1);
  });

  test('acc and acc_norm differ on a crafted item', () => {
    // acc: argmax(-10, -12) = 0 ≠ gold. acc_norm: (-10/5, -12/20) = (-2, -0.6) → 1 = gold.
    const m = computeMetrics([mc(0, 1, [5, 20])], [[scored(-10), scored(-12)]]);
    assert.equal(m.acc, 0);
    assert.equal(m.acc_norm, 1);
    assert.ok(Number.isNaN(m.acc_stderr), 'one item: no standard error');
  });

  test('stderr = sample sd / sqrt(n)', () => {
    // [1,0,1,1]: mean 0.75, Σ(x−m)² = 3·0.0625 + 0.5625 = 0.75, sd = √(0.75/3) = 0.5, /√4 = 0.25.
    assert.deepEqual(meanAndStderr([1, 0, 1, 1]), { mean: 0.75, stderr: 0.25 });
    const items = [0, 1, 2, 3].map((i) => mc(i, 0, [1, 1]));
    const lls = [
      [-1, -2],
      [-2, -1],
      [-1, -1], // a tie goes to the first choice
      [-0.5, -3],
    ];
    const m = computeMetrics(
      items,
      lls.map((l) => l.map((x) => scored(x))),
    );
    assert.equal(m.acc, 0.75);
    assert.equal(m.acc_stderr, 0.25);
    assert.equal(m.acc_norm, 0.75);
    assert.equal(m.acc_norm_stderr, 0.25);
    assert.equal(m.perplexity, undefined);
  });

  test('LAMBADA: perplexity = exp(−mean ll), acc = greedy', () => {
    const items: Item[] = [0, 1, 2].map((index) => ({
      index,
      kind: 'loglikelihood',
      requests: [{ context: 'a', continuation: ' b' }],
      gold: 0,
    }));
    const m = computeMetrics(items, [[scored(-1, true)], [scored(-2, false)], [scored(-3, true)]]);
    assert.ok(Math.abs(m.perplexity - Math.exp(2)) < 1e-12, String(m.perplexity));
    assert.ok(Math.abs(m.acc - 2 / 3) < 1e-12);
    // [1,0,1]: Σ(x−m)² = 2/9 + 4/9 = 2/3, sd = √(1/3), /√3 = 1/3.
    assert.ok(Math.abs(m.acc_stderr - 1 / 3) < 1e-12, String(m.acc_stderr));
    assert.equal(m.acc_norm, undefined);
  });

  test('WinoGrande: the continuation scored under each context', () => {
    const item = (index: number, gold: number): Item => ({
      index,
      kind: 'partial',
      requests: [
        { context: 'A x', continuation: ' c' },
        { context: 'A y', continuation: ' c' },
      ],
      gold,
    });
    const m = computeMetrics(
      [item(0, 1), item(1, 0)],
      [
        [scored(-5), scored(-4)],
        [scored(-5), scored(-4)],
      ],
    );
    assert.equal(m.acc, 0.5);
    // [1,0]: sd = √0.5, /√2 = 0.5.
    assert.ok(Math.abs(m.acc_stderr - 0.5) < 1e-12);
    assert.deepEqual(Object.keys(m).sort(), ['acc', 'acc_stderr']);
  });

  test('mismatched scores are a bug, not a user error', () => {
    assert.throws(
      () => computeMetrics([mc(0, 0, [1, 1])], [[scored(-1)]]),
      (e: unknown) => e instanceof Error && !(e instanceof UserError),
    );
  });
});
