import { UserError } from '../../errors.ts';
import { readDocuments, tokenizeDocuments } from '../../eval/documents.ts';
import { cutWindows, windowLoss } from '../../eval/loss.ts';
import { modelOptions, num, parse, positionals } from '../args.ts';
import { openModel } from '../common.ts';
import type { Command } from '../io.ts';

const usage = 'actsparse perplexity <model> <FILE.txt|FILE.jsonl> [--ctx N] [--max-windows N]';

export const perplexity: Command = {
  name: 'perplexity',
  summary: 'mean next-token NLL (nats) and perplexity of a text',
  usage,
  async run(args, io) {
    const p = parse(
      'perplexity',
      args,
      { ...modelOptions, ctx: { type: 'string' }, 'max-windows': { type: 'string' } },
      usage,
    );
    const [path, file] = positionals(p, 2, usage);
    const ctx = num(p, 'ctx', 1024, { min: 1, max: 1 << 20, integer: true });
    const maxWindows = num(p, 'max-windows', Number.POSITIVE_INFINITY, { min: 1 });
    const docs = readDocuments(file);
    const { model, tokenizer, ckpt } = await openModel(path, p);
    ckpt.close();
    const windows = cutWindows(tokenizeDocuments(docs, tokenizer), ctx + 1).slice(0, maxWindows);
    if (windows.length === 0)
      throw new UserError(`${file}: too little text to score (fewer than 2 tokens)`);
    const t0 = performance.now();
    const r = await windowLoss(model, windows);
    const s = (performance.now() - t0) / 1000;
    io.out(
      `documents ${docs.length}, windows ${windows.length} of up to ${ctx + 1} tokens, ${r.tokens} predictions\n` +
        `mean NLL ${r.meanNll.toFixed(5)} nats/token, perplexity ${r.perplexity.toFixed(4)}\n`,
    );
    io.err(
      `${s.toFixed(1)} s, ${(r.tokens / s).toFixed(0)} tokens/s (${model.backend.name} backend)\n`,
    );
  },
};
