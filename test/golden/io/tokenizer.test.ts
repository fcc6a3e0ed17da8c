import assert from 'node:assert/strict';
import { symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { FormatError, UserError } from '../../../src/errors.ts';
import {
  ByteTokenizer,
  checkTokenizerFits,
  decodeUtf8Strict,
  firstInvalidUtf8,
  loadTokenizer,
  type Tokenizer,
  tokenizerForModel,
  WorldTokenizer,
} from '../../../src/io/tokenizer.ts';
import { parsePythonLiteral } from '../../../src/io/tokenizers/python-literal.ts';
import { needsShared, shared, tmpDir } from '../../helpers/shared.ts';

const NEOX = 'tokenizers/20B_tokenizer.json';
const WORLD = 'tokenizers/rwkv_vocab_v20230424.txt';
const FAIRSEQ = ['tokenizers/encoder.json', 'tokenizers/vocab.bpe', 'tokenizers/dict.txt'];

/** ASCII, accents, CJK, emoji (with ZWJ and skin tone), tabs, CRLF and blank lines. */
const MIXED =
  'Hello, world!\nCafé naïve — déjà vu\n日本語のテキストと中文混合\n' +
  "emoji 🎉👍🏽 family 👨‍👩‍👧\r\n\tdon't  I'll\n\n  x 1234567890 ÿ\u0000";

/** Loads a tokenizer once per file (the NeoX JSON is 2.4 MB). */
const cache = new Map<string, Tokenizer>();
function tok(rel: string): Tokenizer {
  let t = cache.get(rel);
  if (!t) {
    t = loadTokenizer(shared(rel));
    cache.set(rel, t);
  }
  return t;
}

function tmpFile(name: string, content: string | Uint8Array): string {
  const p = join(tmpDir(), name);
  writeFileSync(p, content);
  return p;
}

describe('byte-level tokenizer', () => {
  const t = new ByteTokenizer();

  test('ids are the UTF-8 bytes and round-trip mixed Unicode', () => {
    assert.deepEqual(t.encode('aé\n'), [0x61, 0xc3, 0xa9, 0x0a]);
    assert.deepEqual(t.encode('🎉'), [0xf0, 0x9f, 0x8e, 0x89]);
    assert.equal(t.decode(t.encode(MIXED)), MIXED);
    // A leading BOM is text, not dropped on decode.
    assert.equal(t.decode(t.encode('\ufeffx')), '\ufeffx');
    assert.equal(t.kind, 'bytes');
    assert.equal(t.vocabSize, 256);
    assert.equal(t.prefixId, 10);
    assert.equal(t.endOfDocId, 0);
  });

  test('decode replaces invalid UTF-8, decodeBytes keeps the raw bytes', () => {
    // 'é' cut after its first byte, then 'a'.
    assert.equal(t.decode([0xc3, 0x61]), '\ufffda');
    assert.deepEqual(t.decodeBytes([0xc3, 0x61]), Uint8Array.of(0xc3, 0x61));
  });

  test('ids outside 0..255 are refused', () => {
    assert.throws(() => t.decode([256]), UserError);
    assert.throws(() => t.decode([-1]), UserError);
    assert.throws(() => t.decode([1.5]), UserError);
  });
});

describe('GPT-NeoX-20B tokenizer', needsShared(NEOX), () => {
  test('"\\n" is 187 and [187,510,1563,310,247] is "\\nThe following is a"', () => {
    const t = tok(NEOX);
    assert.deepEqual(t.encode('\n'), [187]);
    assert.deepEqual(t.encode('\nThe following is a'), [187, 510, 1563, 310, 247]);
    assert.equal(t.decode([187, 510, 1563, 310, 247]), '\nThe following is a');
    assert.equal(t.kind, 'neox');
    assert.equal(t.vocabSize, 50277);
    assert.equal(t.prefixId, 187);
    assert.equal(t.endOfDocId, 0);
  });

  test('known encodings (checked with a Python re-implementation: regex + BPE merges)', () => {
    const t = tok(NEOX);
    // Runs of spaces are NeoX added tokens (50275 = 3 spaces, 50276 = 2 spaces).
    assert.deepEqual(
      t.encode('Hello   world  \n\n  x'),
      [12092, 50275, 10186, 50276, 535, 50276, 89],
    );
    assert.deepEqual(
      t.encode('Café naïve résumé — déjà vu'),
      [36, 2320, 860, 36060, 9568, 2204, 860, 1905, 41751, 24821],
    );
    // NFC normalizer: a decomposed é encodes like the composed one.
    assert.deepEqual(t.encode('e\u0301'), t.encode('é'));
  });

  test('round trip keeps spaces before punctuation (no clean-up) and the special token', () => {
    const t = tok(NEOX);
    for (const s of [MIXED, " hello , world . don ' t", 'a<|endoftext|>b']) {
      assert.equal(t.decode(t.encode(s)), s);
    }
    assert.deepEqual(t.encode('<|endoftext|>'), [0]);
    // Raw bytes of a token that is half of a multi-byte character.
    const ids = t.encode('🎉');
    const bytes = Uint8Array.from([...ids].flatMap((id) => [...t.decodeBytes([id])]));
    assert.deepEqual(bytes, Uint8Array.of(0xf0, 0x9f, 0x8e, 0x89));
    assert.throws(() => t.decode([50277]), UserError);
  });
});

describe('RWKV World tokenizer', needsShared(WORLD), () => {
  test('vocabulary facts', () => {
    const t = tok(WORLD);
    assert.equal(t.kind, 'world');
    assert.equal(t.vocabSize, 65536);
    assert.equal(t.prefixId, 11);
    assert.equal(t.endOfDocId, 0);
    assert.deepEqual(t.encode('\n'), [11]);
    assert.deepEqual(t.decodeBytes([0]), new Uint8Array(0));
    // Last line: 128 spaces.
    assert.equal(t.decode([65529]), ' '.repeat(128));
  });

  test('known encodings (computed with ChatRWKV-style greedy match in Python, ast.literal_eval)', () => {
    const t = tok(WORLD);
    assert.deepEqual(t.encode('Hello, my dog is cute'), [33155, 45, 4677, 21551, 4600, 30554]);
    assert.deepEqual(t.encode('\nThe following is a'), [11, 6699, 59725, 4600, 332]);
    assert.deepEqual(
      t.encode('日本語のテキストと中文混合'),
      [13053, 13205, 16592, 10138, 10199, 10177, 43480, 10133, 10285, 13012, 13916, 11038],
    );
    assert.deepEqual(
      t.encode('Café naïve résumé — déjà vu'),
      [918, 7596, 46644, 31918, 2238, 2503, 22898, 45814, 4853],
    );
    // Emoji fall back to byte tokens (🎉 = f0 9f 8e 89 → '\xf0\x9f' 3319, then bytes).
    assert.deepEqual(t.encode('emoji 🎉👍🏽'), [34295, 33, 3319, 143, 138, 28333, 3319, 144, 190]);
  });

  test('round trips mixed Unicode; a token cut mid-character decodes to U+FFFD', () => {
    const t = tok(WORLD);
    assert.equal(t.decode(t.encode(MIXED)), MIXED);
    const ids = t.encode('🎉');
    assert.equal(t.decode(ids.slice(0, 1)), '\ufffd');
    assert.deepEqual(t.decodeBytes(ids.slice(0, 1)), Uint8Array.of(0xf0, 0x9f));
    assert.throws(() => t.decode([65536]), UserError);
  });
});

describe('GPT-2 BPE with the fairseq dictionary (OPT)', needsShared(...FAIRSEQ), () => {
  test('"Hello, my dog is cute" gives the OPT ids', () => {
    const t = tok('tokenizers/dict.txt');
    assert.equal(t.kind, 'gpt2-fairseq');
    assert.deepEqual(t.encode('Hello, my dog is cute'), [31414, 6, 127, 2335, 16, 11962]);
    assert.equal(t.prefixId, 2);
    assert.equal(t.endOfDocId, 2);
    // 4 specials + GPT-2's 50257 ids; dict.txt's madeupword fillers come after.
    assert.equal(t.vocabSize, 50261);
  });

  test('known encodings (Python: GPT-2 regex, BPE by rank, dict.txt lines) and round trip', () => {
    const t = tok('tokenizers/dict.txt');
    assert.deepEqual(
      t.encode('Hello   world  \n\n  x'),
      [31414, 1437, 1437, 232, 1437, 1437, 50140, 1437, 3023],
    );
    assert.deepEqual(
      t.encode('Question: What is 2+2?\nAnswer: 4'),
      [45641, 35, 653, 16, 132, 2744, 176, 116, 50118, 33683, 35, 204],
    );
    assert.equal(t.decode(t.encode(MIXED)), MIXED);
    assert.equal(t.decode([2, 31414]), '</s>Hello');
    // The directory loads the same tokenizer.
    assert.deepEqual(loadTokenizer(shared('tokenizers/encoder.json')).encode('Hello'), [31414]);
  });
});

describe('Python literal parser (World vocab)', () => {
  const hex = (s: string): string => Buffer.from(parsePythonLiteral(s)).toString('hex');

  test('str and bytes literals with escapes', () => {
    assert.equal(hex("'\\x00'"), '00');
    assert.equal(hex("'\\xe9'"), 'c3a9'); // str: U+00E9, UTF-8 encoded
    assert.equal(hex("b'\\xe9'"), 'e9'); // bytes: the byte itself
    assert.equal(hex("'\\u2002'"), 'e28082');
    assert.equal(hex("'\\U0001f389'"), 'f09f8e89');
    assert.equal(hex(`"it's"`), '69742773');
    assert.equal(hex("'\\'\\\"\\\\\\n\\t\\r'"), '27225c0a090d');
    assert.equal(hex("'\\101'"), '41'); // octal
    assert.equal(hex("'\\q'"), '5c71'); // unknown escape keeps the backslash
    assert.equal(hex("'é'"), 'c3a9');
    assert.equal(hex("b'\\u00e9'"), '5c7530306539'); // no \u in bytes
  });

  test('malformed literals are refused with a reason', () => {
    assert.throws(() => parsePythonLiteral("'abc"), /missing closing quote/);
    assert.throws(() => parsePythonLiteral("'a'b"), /after the closing quote/);
    assert.throws(() => parsePythonLiteral('abc'), /quoted/);
    assert.throws(() => parsePythonLiteral("'\\x4'"), /hex digits/);
    assert.throws(() => parsePythonLiteral("'\\ud800'"), /surrogate/);
    assert.throws(() => parsePythonLiteral("b'é'"), /non-ASCII/);
    assert.throws(() => parsePythonLiteral("'\\N{BULLET}'"), /not supported/);
    assert.throws(() => parsePythonLiteral("__import__('os')"), /quoted/);
  });
});

describe('strict UTF-8 for text files', () => {
  test('valid text decodes and a BOM is stripped', () => {
    const buf = new TextEncoder().encode('\ufeffCafé 日本 🎉');
    assert.equal(decodeUtf8Strict(buf, 'a.txt'), 'Café 日本 🎉');
  });

  test('invalid UTF-8 names the file, the byte offset and the line', () => {
    // Latin-1 'é' (0xe9) on line 2 at byte offset 8.
    const buf = Uint8Array.from([...Buffer.from('line 1\nx'), 0xe9, 0x20, 0x61]);
    assert.throws(
      () => decodeUtf8Strict(buf, 'doc.txt'),
      (e: unknown) =>
        e instanceof FormatError &&
        /^doc\.txt: .*byte offset 8 \(line 2\)/.test(e.message) &&
        /iconv/.test(e.hint ?? ''),
    );
    // With a BOM, offsets stay file offsets.
    const withBom = Uint8Array.from([0xef, 0xbb, 0xbf, 0x61, 0xff]);
    assert.throws(() => decodeUtf8Strict(withBom, 'b.txt'), /byte offset 4 /);
  });

  test('firstInvalidUtf8 rejects overlongs, surrogates, too-large and truncated sequences', () => {
    const at = (...b: number[]): number => firstInvalidUtf8(Uint8Array.from(b));
    assert.equal(at(0x61, 0xc3, 0xa9, 0xf0, 0x9f, 0x8e, 0x89), -1);
    assert.equal(at(0x61, 0xc0, 0xaf), 1); // overlong '/'
    assert.equal(at(0xe0, 0x80, 0x80), 0); // overlong
    assert.equal(at(0x61, 0xed, 0xa0, 0x80), 1); // surrogate U+D800
    assert.equal(at(0xf4, 0x90, 0x80, 0x80), 0); // above U+10FFFF
    assert.equal(at(0x61, 0x62, 0xe2, 0x82), 2); // truncated at the end
    assert.equal(at(0x80), 0); // lone continuation byte
  });
});

describe('malformed tokenizer files', () => {
  const world = (text: string): WorldTokenizer =>
    WorldTokenizer.fromFile(tmpFile('vocab.txt', text));

  test('World vocab: bad literal, byte length, duplicate id, bad line, each with its line', () => {
    assert.throws(
      () => world("1 'a' 1\n2 'b 1\n"),
      /line 2: bad token literal: missing closing quote/,
    );
    assert.throws(
      () => world("1 'a' 1\n2 'é' 1\n"),
      /line 2: token has 2 bytes but the line says 1/,
    );
    assert.throws(() => world("1 'a' 1\n1 'b' 1\n"), /line 2: id 1 appears twice/);
    assert.throws(() => world("1 'a' 1\nx 'b' 1\n"), /line 2: token id 'x' is not a number/);
    assert.throws(() => world("1 'a' 1\n2\n"), /line 2: expected 'id <literal> byte_len'/);
    assert.throws(() => world(''), /empty/);
    assert.throws(() => world("1 'a' 1\n"), /no token for "\\n"/);
    // Errors are FormatErrors naming the file.
    assert.throws(
      () => world("1 'a' 1\n2 'b 1\n"),
      (e: unknown) => e instanceof FormatError && /vocab\.txt/.test(e.file),
    );
  });

  test('a small valid World vocab works and reports a byte it cannot cover', () => {
    const t = world("1 '\\n' 1\n2 'a' 1\n3 'ab' 2\n4 b'\\xc3' 1\n");
    assert.deepEqual(t.encode('aab\n'), [2, 3, 1]);
    assert.equal(t.prefixId, 1);
    assert.throws(() => t.encode('é'), /byte 0xa9 at offset 1/);
  });

  test('World vocab in a wrong encoding reports the offset', () => {
    const p = tmpFile(
      'rwkv_vocab.txt',
      Uint8Array.from([...Buffer.from("1 '\\n' 1\n2 '"), 0xe9, 0x27]),
    );
    assert.throws(() => loadTokenizer(p), /not valid UTF-8: byte offset 12 \(line 2\)/);
  });

  test('tokenizer.json: bad JSON, no model, bad ids', () => {
    assert.throws(
      () => loadTokenizer(tmpFile('tokenizer.json', '{"model": ')),
      (e: unknown) => {
        return e instanceof FormatError && /tokenizer\.json: not valid JSON/.test(e.message);
      },
    );
    assert.throws(() => loadTokenizer(tmpFile('tokenizer.json', '{"a": 1}')), /no "model" object/);
    const badId = '{"model": {"type": "BPE", "vocab": {"a": -1}, "merges": []}}';
    assert.throws(
      () => loadTokenizer(tmpFile('tokenizer.json', badId)),
      /model\.vocab\["a"\] is -1/,
    );
    const noBytes =
      '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "decoder": {"type": "ByteLevel"}}';
    assert.throws(() => loadTokenizer(tmpFile('tokenizer.json', noBytes)), /no token for byte/);
  });

  test('unknown or missing files', () => {
    assert.throws(
      () => loadTokenizer(tmpFile('model.bin', 'GGML\u0000\u0001')),
      /not a recognised tokenizer file/,
    );
    assert.throws(() => loadTokenizer('/nonexistent/tokenizer.json'), UserError);
    assert.throws(() => loadTokenizer(tmpDir()), /no tokenizer found/);
  });

  test('fairseq dict.txt with a bad line or an unknown GPT-2 id', needsShared(...FAIRSEQ), () => {
    const dir = tmpDir();
    symlinkSync(shared('tokenizers/encoder.json'), join(dir, 'encoder.json'));
    symlinkSync(shared('tokenizers/vocab.bpe'), join(dir, 'vocab.bpe'));
    writeFileSync(join(dir, 'dict.txt'), '13 850\nbroken\n');
    assert.throws(() => loadTokenizer(dir), /dict\.txt: line 2: expected '<symbol> <count>'/);
    writeFileSync(join(dir, 'dict.txt'), '13 850\n99999 1\n');
    assert.throws(() => loadTokenizer(dir), /line 2: GPT-2 id 99999 is not in/);
  });
});

describe('tokenizer for a model', () => {
  test('vocab 256 gives bytes without looking for files', () => {
    assert.equal(
      tokenizerForModel({ modelPath: '/nowhere/tiny.pth', vocabSize: 256 }).kind,
      'bytes',
    );
  });

  test(
    'fit rule: neox fits 50277/50304/50432; bytes, world and mismatches are refused',
    needsShared(NEOX, WORLD),
    () => {
      // Through tokenizerForModel once; the other sizes on the loaded tokenizer.
      const explicit = shared(NEOX);
      assert.equal(
        tokenizerForModel({ modelPath: 'm.pth', vocabSize: 50304, explicit }).kind,
        'neox',
      );
      const neox = tok(NEOX);
      for (const v of [50277, 50304, 50432]) checkTokenizerFits(neox, v);
      const refused = (t: Tokenizer, vocab: number, sizes: RegExp): void =>
        assert.throws(
          () => checkTokenizerFits(t, vocab, 'm.pth'),
          (e: unknown) => e instanceof UserError && sizes.test(e.message),
        );
      refused(neox, 65536, /50277 ids.*vocab 65536.*far more tokens/);
      refused(neox, 50000, /50277 ids.*vocab 50000.*ids the model has no embedding for/);
      refused(tok(WORLD), 50277, /world, 65536 ids.*vocab 50277/);
      assert.throws(
        () => tokenizerForModel({ modelPath: 'm.pth', vocabSize: 50277, explicit: 'bytes' }),
        /256 ids.*vocab 50277/,
      );
      assert.throws(
        () => checkTokenizerFits(new ByteTokenizer(), 512, 'tiny'),
        /does not fit tiny/,
      );
    },
  );

  test(
    'finds the tokenizer next to the model, picking the one that fits',
    needsShared(NEOX, WORLD),
    () => {
      const dir = tmpDir();
      symlinkSync(shared(NEOX), join(dir, '20B_tokenizer.json'));
      symlinkSync(shared(WORLD), join(dir, 'rwkv_vocab_v20230424.txt'));
      const model = join(dir, 'model.pth');
      const neox = tokenizerForModel({ modelPath: model, vocabSize: 50277 });
      assert.equal(neox.kind, 'neox');
      assert.equal(neox.source, join(dir, '20B_tokenizer.json'));
      assert.equal(tokenizerForModel({ modelPath: model, vocabSize: 65536 }).kind, 'world');
      assert.throws(
        () => tokenizerForModel({ modelPath: model, vocabSize: 1000 }),
        /fits its vocab 1000/,
      );
    },
  );

  test('no tokenizer next to the model asks for --tokenizer', () => {
    assert.throws(
      () => tokenizerForModel({ modelPath: join(tmpDir(), 'model.pth'), vocabSize: 50277 }),
      (e: unknown) =>
        e instanceof UserError &&
        /no tokenizer found/.test(e.message) &&
        /--tokenizer/.test(e.hint ?? ''),
    );
  });

  test(
    'OPT: encoder.json + vocab.bpe + dict.txt next to a 50272-row model',
    needsShared(...FAIRSEQ),
    () => {
      const dir = tmpDir();
      for (const f of FAIRSEQ) symlinkSync(shared(f), join(dir, f.split('/')[1]));
      const t = tokenizerForModel({ modelPath: dir, vocabSize: 50272 });
      assert.equal(t.kind, 'gpt2-fairseq');
    },
  );
});
