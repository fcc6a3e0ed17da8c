/**
 * The commands on Mamba and Mamba-2: a random byte-vocabulary model saved as a Hugging Face
 * folder (config.json + model.safetensors) goes through info, calibrate, eval (tasks and a
 * held-out text), hw on the run and hw / bench what-ifs of the architecture, with no
 * architecture-specific options; --backend webgpu is refused by the family it lacks.
 */
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { UserError } from '../../src/errors.ts';
import { readAll } from '../../src/io/memory.ts';
import { writeSafetensors } from '../../src/io/safetensors.ts';
import { architecture } from '../../src/models/registry.ts';
import { runCommand } from '../helpers/cli.ts';
import { needsShared, shared, tmpDir } from '../helpers/shared.ts';

/** A random 2-layer model of `arch` (vocabulary 256: the byte tokenizer) in a folder. */
function hfFolder(arch: 'mamba' | 'mamba2', nVocab = 256): string {
  const dir = tmpDir();
  const shape = arch === 'mamba2' ? { headDim: 16, nState: 8 } : { nState: 8 };
  const ckpt = architecture(arch).random({ nLayer: 2, nEmbd: 32, nVocab, ...shape }, 3);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(ckpt.meta.config));
  writeSafetensors(join(dir, 'model.safetensors'), [...readAll(ckpt)], { dtype: 'f32' });
  return dir;
}

const SITES = {
  mamba: ['in_proj', 'x_proj', 'dt_proj', 'out_proj'],
  mamba2: ['in_proj', 'out_proj'],
};

describe('commands on Mamba and Mamba-2 folders', () => {
  for (const arch of ['mamba', 'mamba2'] as const) {
    test(`${arch}: info, calibrate, eval --text, hw RUN, hw and bench what-ifs`, async () => {
      const model = hfFolder(arch);
      const run = join(tmpDir(), 'cal');
      const info = await runCommand(['info', model]);
      assert.match(info.out, new RegExp(`architecture\\s+${arch}\\n`));
      // WebGPU has no conv1d / scan kernels yet: named, refused before any adapter is asked.
      await assert.rejects(
        runCommand([
          'eval',
          model,
          '--out',
          join(tmpDir(), 'gpu'),
          '--text',
          'brown',
          '--backend',
          'webgpu',
        ]),
        (e: unknown) =>
          e instanceof UserError &&
          /no kernel for the "conv1d" family that Mamba(-2)? needs/.test(e.message),
      );

      await runCommand([
        ...['calibrate', model, '--out', run, '--data', 'brown', '--loss-inc', '1.01'],
        ...['--docs', '4', '--ctx', '16', '--windows', '2', '--backend', 'js'],
      ]);
      const thresholds = JSON.parse(readFileSync(join(run, 'thresholds.json'), 'utf8'));
      assert.equal(thresholds.model.architecture, arch);
      assert.deepEqual(thresholds.model.sitesPerBlock, SITES[arch]);

      const ev = join(run, 'eval');
      await runCommand([
        ...['eval', model, '--thresholds', run, '--out', ev, '--tasks', 'brown_next_word'],
        ...['--limit', '4', '--text', 'brown', '--ctx', '16', '--windows', '2', '--backend', 'js'],
      ]);
      const results = JSON.parse(readFileSync(join(ev, 'results.json'), 'utf8'));
      assert.ok(Number.isFinite(results.heldOut['brown (held-out cn18…cr09)'].meanNll));
      // Every site of both blocks is measured; the loose bound (×1.01 per site) leaves zeros.
      const perSite: { block: number; site: string; sparsity: number }[] = results.sparsity.perSite;
      assert.deepEqual(
        perSite.map((p) => `${p.block}.${p.site}`),
        [0, 1].flatMap((b) => SITES[arch].map((site) => `${b}.${site}`)),
      );
      assert.ok(results.sparsity.macWeighted > 0.1, `sparsity ${results.sparsity.macWeighted}`);

      const hw = await runCommand(['hw', run, '--profile', 'seneca']);
      assert.match(hw.out, /^SENECA/);
      assert.match(hw.out, arch === 'mamba' ? /ops: selectiveScan/ : /ops: ssd/);
      assert.match(hw.out, /ops: conv1d/);
      for (const site of SITES[arch]) assert.match(hw.out, new RegExp(`\\n  ${site} `));

      const whatIf = await runCommand([
        'hw',
        '--sparsity',
        '0.5',
        '--shape',
        '2x64',
        '--arch',
        arch,
        '--vocab',
        '256',
      ]);
      assert.match(whatIf.out, new RegExp(`what-if: --sparsity 0.5: ${arch} 2x64`));
      assert.match(whatIf.out, /ops: conv1d/);

      const bench = await runCommand([
        'bench',
        '--shape',
        '1x32',
        '--arch',
        arch,
        '--vocab',
        '64',
        '--quick',
        '--model-only',
      ]);
      assert.match(bench.out, new RegExp(`model ${arch} 1x32 \\(vocab 64\\)`));
      assert.match(bench.out, /decode sparse/);
    });
  }
});

// The state-spaces/mamba-*-hf folders: vocabulary 50280 (GPT-NeoX's 50277 ids, padded),
// the tokenizer beside the weights.
const NEOX = 'tokenizers/20B_tokenizer.json';
test(
  'a Mamba folder with the GPT-NeoX tokenizer beside it reads text with it',
  needsShared(NEOX),
  async () => {
    const model = hfFolder('mamba', 50280);
    copyFileSync(shared(NEOX), join(model, '20B_tokenizer.json'));
    const out = join(tmpDir(), 'eval');
    const r = await runCommand([
      'eval',
      model,
      '--out',
      out,
      '--text',
      'brown',
      '--ctx',
      '16',
      '--windows',
      '2',
      '--backend',
      'js',
    ]);
    assert.match(r.err, /tokenizer: .*20B_tokenizer\.json/);
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8'));
    assert.equal(results.heldOut['brown (held-out cn18…cr09)'].tokens, 32);
  },
);
