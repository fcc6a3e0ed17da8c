import { UserError } from '../../errors.ts';
import { sample } from '../../eval/sample.ts';
import { sequenceLogits, step } from '../../models/model.ts';
import { rng } from '../../util/random.ts';
import { modelOptions, num, parse, positionals, str } from '../args.ts';
import { openModel } from '../common.ts';
import type { Command } from '../io.ts';

const usage =
  'actsparse generate <model> --prompt TEXT [--tokens N] [--temperature T] [--top-p P] [--seed N] [--tokenizer FILE] [--backend B]';

export const generate: Command = {
  name: 'generate',
  summary: 'continue a prompt, printing tokens/s on stderr',
  usage,
  async run(args, io) {
    const p = parse(
      'generate',
      args,
      {
        ...modelOptions,
        prompt: { type: 'string' },
        tokens: { type: 'string' },
        temperature: { type: 'string' },
        'top-p': { type: 'string' },
        seed: { type: 'string' },
      },
      usage,
    );
    const [path] = positionals(p, 1, usage);
    const prompt = str(p, 'prompt');
    if (prompt === undefined)
      throw new UserError('generate: --prompt is required', `Usage: ${usage}`);
    const nTokens = num(p, 'tokens', 100, { min: 1, max: 1e6, integer: true });
    const temperature = num(p, 'temperature', 1, { min: 0, max: 100 });
    const topP = num(p, 'top-p', 0.85, { min: 0, max: 1 });
    const random = rng(num(p, 'seed', 42, { integer: true, min: 0, max: 2 ** 32 - 1 }));
    const { model, tokenizer, ckpt } = await openModel(path, p);
    ckpt.close();

    const promptIds = tokenizer.encode(prompt);
    if (promptIds.length === 0) promptIds.push(tokenizer.prefixId);
    const state = model.newState();
    const t0 = performance.now();
    let logits = await sequenceLogits(model, promptIds, state, 'last');
    const t1 = performance.now();

    // Print text as it becomes valid UTF-8: decode all generated ids, emit the new tail.
    const out: number[] = [];
    let printed = '';
    io.out(prompt);
    for (let i = 0; i < nTokens; i++) {
      const id = sample(logits, { temperature, topP }, random);
      out.push(id);
      const text = tokenizer.decode(out);
      if (!text.endsWith('\uFFFD')) {
        io.out(text.slice(printed.length));
        printed = text;
      }
      logits = await step(model, id, state);
    }
    const t2 = performance.now();
    const text = tokenizer.decode(out);
    if (text.length > printed.length) io.out(text.slice(printed.length));
    io.out('\n');
    io.err(
      `prompt ${promptIds.length} tokens in ${((t1 - t0) / 1000).toFixed(2)} s (${((promptIds.length * 1000) / (t1 - t0)).toFixed(1)} tokens/s); ` +
        `generated ${nTokens} tokens in ${((t2 - t1) / 1000).toFixed(2)} s (${((nTokens * 1000) / (t2 - t1)).toFixed(1)} tokens/s, ${model.backend.name} backend)\n`,
    );
  },
};
