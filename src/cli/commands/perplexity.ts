import { readDocuments, tokenizeDocuments } from '../../data/documents.ts';
import { textWindows } from '../../data/windows.ts';
import { Interrupted, UserError } from '../../errors.ts';
import { type PerplexityResult, perplexityText } from '../../formats/outputs.ts';
import { thresholdsPath } from '../../formats/thresholds.ts';
import { type LossResult, textLoss } from '../../models/loss.ts';
import { macWeighted, zeroCounter, zeroFractions } from '../../sparsity/plan.ts';
import { Stopped, stopPoint } from '../../util/cancel.ts';
import {
  backendOption,
  checkJson,
  contextLength,
  ctxOption,
  forceOption,
  jsonOption,
  MODEL,
  openModel,
  thresholdsOption,
  tokenizerOption,
} from '../common.ts';
import type { Command } from '../io.ts';
import { humanOut, writeOutput } from '../output.ts';

/** Windows per call of the text loss (the stop points lie between calls). */
const CHUNK = 256;

export const perplexity: Command = {
  name: 'perplexity',
  summary: 'mean next-token NLL (nats) and perplexity of a text',
  stoppable: true,
  description:
    'The mean negative log-likelihood of every token of a text after the first, in windows of --ctx tokens each from a fresh state (lm-eval’s rolling log-likelihood), dense or with thresholds; with thresholds it also reports the share of zeros they reach.',
  positionals: [
    MODEL,
    {
      name: 'TEXT_FILE',
      help: 'A .txt file (one document) or .jsonl file with a "text" field per line.',
    },
  ],
  options: [
    ctxOption('the text'),
    {
      name: 'max-windows',
      type: 'integer',
      min: 1,
      help: 'Score at most this many windows (the first ones).',
      defaultText: 'all',
    },
    thresholdsOption,
    tokenizerOption,
    backendOption,
    jsonOption('the loss, perplexity and sparsity'),
    forceOption,
  ],
  examples: [
    'actsparse perplexity models/rwkv4-brown-3m.safetensors held-out.txt',
    'actsparse perplexity models/rwkv4-brown-3m.safetensors held-out.txt --thresholds runs/cal',
  ],
  async run(a, io) {
    const [path, file] = a.positionals;
    const json = checkJson(a, io);
    const say = humanOut(io, json);
    const docs = readDocuments(file);
    const { model, tokenizer, ckpt } = await openModel(path, a, io);
    ckpt.close();
    const ctx = contextLength(a, model);
    const thresholds = a.str('thresholds');
    const windows = textWindows(
      tokenizeDocuments(docs, tokenizer),
      ctx,
      a.num('max-windows') ?? Number.POSITIVE_INFINITY,
    );
    if (windows.length === 0)
      throw new UserError(`${file}: too little text to score (fewer than 2 tokens)`);
    const t0 = performance.now();
    const counter = zeroCounter(model);
    // The one text loss, CHUNK windows at a time so that Ctrl-C is heard between chunks;
    // a text of up to CHUNK windows is one call, as `eval --text` makes it.
    const parts: LossResult[] = [];
    try {
      for (let i = 0; i < windows.length; i += CHUNK) {
        parts.push(await textLoss(model, windows.slice(i, i + CHUNK), counter.hook));
        await stopPoint(io.signal);
      }
    } catch (e) {
      if (!(e instanceof Stopped)) throw e;
      throw new Interrupted('nothing to save (the loss needs the whole text)', false);
    }
    const tokens = parts.reduce((acc, x) => acc + x.tokens, 0);
    const meanNll = parts.reduce((acc, x) => acc + x.meanNll * x.tokens, 0) / tokens;
    const r = parts.length === 1 ? parts[0] : { meanNll, perplexity: Math.exp(meanNll), tokens };
    const sparsity = macWeighted(model, zeroFractions(await counter.read()));
    const s = (performance.now() - t0) / 1000;
    const pct = (100 * sparsity).toFixed(1);
    say(
      `documents ${docs.length}, windows ${windows.length} of up to ${ctx + 1} tokens, ${r.tokens} predictions\n` +
        `mean NLL ${r.meanNll.toFixed(5)} nats/token, perplexity ${r.perplexity.toFixed(4)}\n` +
        (thresholds
          ? `thresholds applied (${thresholdsPath(thresholds)}): ${pct}% zeros in the block-site inputs, MAC-weighted\n`
          : `dense model: ${pct}% natural zeros in the block-site inputs, MAC-weighted\n`),
    );
    io.err(
      `${s.toFixed(1)} s, ${(r.tokens / s).toFixed(0)} tokens/s (${model.backend.name} backend)\n`,
    );
    if (json) {
      const result: PerplexityResult = {
        formatVersion: 1,
        kind: 'actsparse.perplexity',
        model: path,
        text: file,
        tokenizer: `${tokenizer.kind} (${tokenizer.source})`,
        thresholds: thresholds ? thresholdsPath(thresholds) : null,
        documents: docs.length,
        ctx,
        windows: windows.length,
        tokens: r.tokens,
        meanNll: r.meanNll,
        perplexity: r.perplexity,
        sparsity,
        seconds: s,
      };
      writeOutput(io, json, perplexityText(result));
    }
  },
};
