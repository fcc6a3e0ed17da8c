import { UserError } from '../../errors.ts';
import { sequenceLogits, step } from '../../models/model.ts';
import { modelOptions, parse, positionals, str } from '../args.ts';
import { openModel, parseTokenList } from '../common.ts';
import type { Command } from '../io.ts';
import { writeFileAtomic } from '../output.ts';

const usage =
  'actsparse logits <model> (--text S | --tokens 1,2,3) --out FILE [--mode sequence|step]';

export const logits: Command = {
  name: 'logits',
  summary: 'raw float32 logits [T, vocab] for checking against other implementations',
  usage,
  async run(args, io) {
    const p = parse(
      'logits',
      args,
      {
        ...modelOptions,
        text: { type: 'string' },
        tokens: { type: 'string' },
        out: { type: 'string' },
        mode: { type: 'string' },
      },
      usage,
    );
    const [path] = positionals(p, 1, usage);
    const out = str(p, 'out');
    if (!out) throw new UserError('logits: --out FILE is required', `Usage: ${usage}`);
    const text = str(p, 'text');
    const list = str(p, 'tokens');
    if ((text === undefined) === (list === undefined)) {
      throw new UserError('logits: give exactly one of --text or --tokens', `Usage: ${usage}`);
    }
    const mode = str(p, 'mode') ?? 'sequence';
    if (mode !== 'sequence' && mode !== 'step')
      throw new UserError(`--mode ${mode}: expected sequence or step`);
    const { model, tokenizer, ckpt } = await openModel(path, p);
    ckpt.close();
    const ids = text !== undefined ? tokenizer.encode(text) : parseTokenList(list!, model.nVocab);
    if (ids.length === 0) throw new UserError('logits: the input has no tokens');

    // Row t = logits after tokens 0..t, from the zero state.
    const V = model.nVocab;
    let result: Float32Array;
    const state = model.newState();
    if (mode === 'sequence') result = await sequenceLogits(model, ids, state);
    else {
      result = new Float32Array(ids.length * V);
      for (let t = 0; t < ids.length; t++) result.set(await step(model, ids[t], state), t * V);
    }
    writeFileAtomic(out, new Uint8Array(result.buffer, result.byteOffset, result.byteLength));
    io.err(`wrote ${out}: float32 [${ids.length}, ${V}] little-endian (${mode} mode)\n`);
  },
};
