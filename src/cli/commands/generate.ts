import { Interrupted } from '../../errors.ts';
import { sample } from '../../eval/sample.ts';
import { type GenerateResult, generateText } from '../../formats/outputs.ts';
import { sequenceLogits, step } from '../../models/model.ts';
import { Stopped, stopPoint } from '../../util/cancel.ts';
import { rng } from '../../util/random.ts';
import {
  backendOption,
  checkJson,
  forceOption,
  jsonOption,
  MODEL,
  openModel,
  thresholdsOption,
  tokenizerOption,
} from '../common.ts';
import type { Command } from '../io.ts';
import { STDOUT, writeOutput } from '../output.ts';

export const generate: Command = {
  name: 'generate',
  summary: 'continue a prompt, printing tokens/s on stderr',
  description:
    'Continues a prompt one token at a time (step mode) and prints the text as it comes. Sampling is nucleus (top-p) sampling at a temperature; temperature 0 is greedy. Speed is reported with and without the time spent sampling.',
  stoppable: true,
  positionals: [MODEL],
  options: [
    {
      name: 'prompt',
      type: 'string',
      value: 'TEXT',
      required: true,
      help: 'The text to continue.',
    },
    {
      name: 'tokens',
      type: 'integer',
      min: 1,
      max: 1e6,
      default: 100,
      help: 'Tokens to generate.',
    },
    {
      name: 'temperature',
      type: 'number',
      min: 0,
      max: 100,
      default: 1,
      help: 'Softmax temperature; 0 picks the most likely token (greedy).',
    },
    {
      name: 'top-p',
      type: 'number',
      above: 0,
      max: 1,
      default: 0.85,
      help: 'Sample among the most likely tokens whose probabilities add up to this (1: all).',
    },
    {
      name: 'seed',
      type: 'integer',
      min: 0,
      max: 2 ** 32 - 1,
      default: 42,
      help: 'Random seed of the sampler.',
    },
    thresholdsOption,
    tokenizerOption,
    backendOption,
    jsonOption('the text, its token ids and the speed'),
    forceOption,
  ],
  examples: [
    "actsparse generate models/rwkv4-brown-3m.safetensors --prompt 'The jury said' --tokens 200",
    "actsparse generate RWKV-4-Pile-430M.pth --prompt 'Hello' --thresholds runs/430m --temperature 0",
  ],
  async run(a, io) {
    const [path] = a.positionals;
    const json = checkJson(a, io);
    const prompt = a.str('prompt')!;
    const nTokens = a.num('tokens')!;
    const temperature = a.num('temperature')!;
    const topP = a.num('top-p')!;
    const seed = a.num('seed')!;
    const random = rng(seed);
    const { model, tokenizer, ckpt } = await openModel(path, a, io);
    ckpt.close();
    // The text goes to stdout, or to stderr when stdout holds the JSON.
    const text = json === STDOUT ? io.err : io.out;

    const promptIds = tokenizer.encode(prompt);
    if (promptIds.length === 0) promptIds.push(tokenizer.prefixId);
    const state = model.newState();
    const t0 = performance.now();
    let logits = await sequenceLogits(model, promptIds, state, 'last');
    const t1 = performance.now();

    // Print text as it becomes valid UTF-8: decode all generated ids, emit the new tail.
    const ids: number[] = [];
    let printed = '';
    let sampling = 0;
    text(prompt);
    try {
      for (let i = 0; i < nTokens; i++) {
        const ts = performance.now();
        const id = sample(logits, { temperature, topP }, random);
        sampling += performance.now() - ts;
        ids.push(id);
        const sofar = tokenizer.decode(ids);
        if (!sofar.endsWith('\uFFFD')) {
          text(sofar.slice(printed.length));
          printed = sofar;
        }
        logits = await step(model, id, state);
        await stopPoint(io.signal);
      }
    } catch (e) {
      if (!(e instanceof Stopped)) throw e;
      text('\n');
      throw new Interrupted(`generated ${ids.length} of ${nTokens} tokens (printed above)`, false);
    }
    const t2 = performance.now();
    const all = tokenizer.decode(ids);
    if (all.length > printed.length) text(all.slice(printed.length));
    text('\n');
    const rate = (n: number, ms: number) => (n * 1000) / ms;
    const r: GenerateResult = {
      formatVersion: 1,
      kind: 'actsparse.generate',
      model: path,
      tokenizer: `${tokenizer.kind} (${tokenizer.source})`,
      thresholds: a.str('thresholds') ?? null,
      prompt,
      text: all,
      ids,
      temperature,
      topP,
      seed,
      promptTokensPerSecond: rate(promptIds.length, t1 - t0),
      tokensPerSecond: rate(nTokens, t2 - t1),
      modelTokensPerSecond: rate(nTokens, t2 - t1 - sampling),
      backend: model.backend.name,
    };
    io.err(
      `prompt ${promptIds.length} tokens in ${((t1 - t0) / 1000).toFixed(2)} s (${r.promptTokensPerSecond.toFixed(1)} tokens/s); ` +
        `generated ${nTokens} tokens in ${((t2 - t1) / 1000).toFixed(2)} s: ${r.tokensPerSecond.toFixed(1)} tokens/s with sampling, ` +
        `${r.modelTokensPerSecond.toFixed(1)} without (sampling ${(sampling / nTokens).toFixed(2)} ms/token; ${model.backend.name} backend)\n`,
    );
    if (json) writeOutput(io, json, generateText(r));
  },
};
