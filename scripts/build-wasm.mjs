#!/usr/bin/env node
// Compiles the AssemblyScript kernels (src/tensor/wasm/assembly/) to build/wasm/kernels.wasm.
// Without AssemblyScript (a registry install, where it is a devDependency) it says so and
// exits 0: the package then ships a prebuilt kernels.wasm. A compile error exits 1.
import { mkdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const entry = join(root, 'src', 'tensor', 'wasm', 'assembly', 'kernels.ts');
const outFile = join(root, 'build', 'wasm', 'kernels.wasm');

let asc;
try {
  asc = await import('assemblyscript/asc');
} catch (e) {
  if (e?.code !== 'ERR_MODULE_NOT_FOUND') throw e;
  console.log(
    'build-wasm: AssemblyScript is not installed; skipped (using a prebuilt kernels.wasm if there is one).',
  );
  process.exit(0);
}

mkdirSync(dirname(outFile), { recursive: true });
// SIMD128 only (no relaxed-SIMD, threads or wasm64: Node 20 needs flags for those).
// No runtime and no allocation in the kernels; memory up to 4 GiB (65536 pages), grown by JS.
const flags =
  '--enable simd -O3 --noAssert --converge --runtime stub --use abort= --initialMemory 1 --maximumMemory 65536';
const args = [entry, '--outFile', outFile, ...flags.split(' ')];
const { error, stderr } = await asc.main(args);
if (error) {
  console.error(stderr.toString());
  console.error(`build-wasm: compile failed: ${error.message}`);
  process.exit(1);
}
console.log(`build-wasm: wrote ${relative(root, outFile)} (${statSync(outFile).size} bytes)`);
