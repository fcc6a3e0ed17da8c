import { openModelOnly } from '../../api.ts';
import { UserError } from '../../errors.ts';
import { sequenceLogits, step } from '../../models/model.ts';
import {
  backendOption,
  forceOption,
  MODEL,
  openModel,
  parseTokenList,
  sayingNotices,
  thresholdsOption,
  tokenizerOption,
} from '../common.ts';
import type { Command } from '../io.ts';
import { checkOutputFile, writeOutput } from '../output.ts';

export const logits: Command = {
  name: 'logits',
  summary: 'raw float32 logits [T, vocab] for checking against other implementations',
  description:
    'Runs the model over a text or a list of token ids from the zero state and writes its logits as raw little-endian float32, row t after tokens 0..t: compare them with another implementation (numpy.fromfile(FILE, "<f4").reshape(T, V)). Token ids need no tokenizer.',
  positionals: [MODEL],
  options: [
    {
      name: 'text',
      type: 'string',
      value: 'TEXT',
      help: 'The input as text (tokenized as the model’s tokenizer does).',
    },
    {
      name: 'tokens',
      type: 'string',
      value: 'ID,ID,…',
      help: 'The input as token ids, comma-separated (no tokenizer needed).',
    },
    {
      name: 'out',
      type: 'string',
      value: 'FILE|-',
      required: true,
      help: 'Where the float32 rows go; - is standard output.',
    },
    {
      name: 'mode',
      type: 'choice',
      value: 'MODE',
      choices: ['sequence', 'step'],
      default: 'sequence',
      help: 'sequence: all tokens in one pass; step: one token at a time (the two must agree).',
    },
    thresholdsOption,
    tokenizerOption,
    backendOption,
    forceOption,
  ],
  examples: [
    "actsparse logits models/rwkv4-brown-3m.safetensors --text 'hey you' --out hey.f32",
    'actsparse logits RWKV-4-Pile-430M.pth --tokens 510,4460 --mode step --out - | xxd | head',
  ],
  async run(a, io) {
    const [path] = a.positionals;
    const text = a.str('text');
    const list = a.str('tokens');
    if ((text === undefined) === (list === undefined)) {
      throw new UserError(
        'give exactly one of --text or --tokens',
        'Run `actsparse logits --help`.',
      );
    }
    const out = a.str('out')!;
    const line = checkOutputFile(out, '--out', a.flag('force'));
    if (line) io.err(`${line}\n`);
    let ids: number[];
    let model: Awaited<ReturnType<typeof openModelOnly>>['model'];
    if (text !== undefined) {
      const o = await openModel(path, a, io);
      o.ckpt.close();
      model = o.model;
      ids = o.tokenizer.encode(text);
    } else {
      const o = await sayingNotices(io, () =>
        openModelOnly(path, { backend: a.str('backend'), thresholds: a.str('thresholds') }),
      );
      o.checkpoint.close();
      model = o.model;
      ids = parseTokenList(list!, model.nVocab);
    }
    if (ids.length === 0) throw new UserError('the input has no tokens');

    // Row t = logits after tokens 0..t, from the zero state.
    const V = model.nVocab;
    const mode = a.str('mode');
    let result: Float32Array;
    const state = model.newState();
    if (mode === 'sequence') result = await sequenceLogits(model, ids, state);
    else {
      result = new Float32Array(ids.length * V);
      for (let t = 0; t < ids.length; t++) result.set(await step(model, ids[t], state), t * V);
    }
    writeOutput(io, out, new Uint8Array(result.buffer, result.byteOffset, result.byteLength));
    io.err(
      `wrote ${out === '-' ? 'standard output' : out}: float32 [${ids.length}, ${V}] little-endian (${mode} mode)\n`,
    );
  },
};
