#!/usr/bin/env node
// Builds the native addon (src/tensor/native/) into build/native/actsparse.node with
// npm's bundled node-gyp, offline when the Node headers are installed locally.
//
// OpenBLAS is used when its header and library are found (pkg-config, then the usual
// directories) and a test program using them compiles, links and runs; ACTSPARSE_NO_BLAS=1
// builds without it. The addon loads the library at run time and can switch it off
// (useBlas(false)), so one build covers both the OpenBLAS and the own-kernel paths.
//
// Any failure prints ONE notice and exits 0, so that `npm install` still succeeds and the
// library falls back to WebAssembly; `--strict` (CI) exits 1 instead.
// Other switches: ACTSPARSE_SKIP_NATIVE=1 skips the build, ACTSPARSE_NATIVE_VERBOSE=1 shows
// the compiler output (always kept in build/native/build.log).
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'src', 'tensor', 'native');
const outDir = join(root, 'build', 'native');
const objDir = join(outDir, 'obj');
const outFile = join(outDir, 'actsparse.node');
const logFile = join(outDir, 'build.log');
const strict = process.argv.includes('--strict');
const verbose = process.env.ACTSPARSE_NATIVE_VERBOSE === '1';
const log = [];

function done(ok, message) {
  try {
    mkdirSync(outDir, { recursive: true });
    writeFileSync(logFile, `${log.join('\n')}\n`);
  } catch {
    // an unwritable build/ is reported by the message itself
  }
  console.log(message);
  process.exit(ok || !strict ? 0 : 1);
}

function fail(reason) {
  // A stale addon from older sources would be tested and used as if current: remove it.
  try {
    rmSync(outFile, { force: true });
  } catch {
    // nothing to remove
  }
  done(
    false,
    `native kernels unavailable: ${reason}; using WebAssembly (log: ${relative(root, logFile)})`,
  );
}

function run(cmd, args, opts = {}) {
  log.push(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    ...opts,
    stdio: verbose ? 'inherit' : 'pipe',
  });
  if (r.stdout) log.push(r.stdout);
  if (r.stderr) log.push(r.stderr);
  if (r.error) log.push(String(r.error));
  return r;
}

/** npm's own node-gyp: npm passes its path to install scripts; otherwise look beside npm. */
function findNodeGyp() {
  const rel = join('node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  const prefix = dirname(dirname(process.execPath));
  const candidates = [
    process.env.npm_config_node_gyp,
    process.env.npm_execpath && join(dirname(dirname(process.env.npm_execpath)), rel),
    join(prefix, 'lib', 'node_modules', 'npm', rel),
    join(dirname(process.execPath), 'node_modules', 'npm', rel),
  ];
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not a project dependency
  }
  const found = candidates.find((p) => p && existsSync(p));
  if (found) return found;
  const npmPrefix = spawnSync('npm', ['prefix', '-g'], { encoding: 'utf8' }).stdout?.trim();
  const fromNpm = npmPrefix && join(npmPrefix, 'lib', 'node_modules', 'npm', rel);
  return fromNpm && existsSync(fromNpm) ? fromNpm : null;
}

/** Local Node headers (Debian/NodeSource put them in <prefix>/include/node): no download. */
function nodeDirArgs() {
  const prefix = dirname(dirname(process.execPath));
  const inc = join(prefix, 'include', 'node');
  if (existsSync(join(inc, 'node_api.h')) && existsSync(join(inc, 'common.gypi'))) {
    return [`--nodedir=${prefix}`];
  }
  return []; // node-gyp uses npm_config_nodedir or its header cache (may download)
}

/** OpenBLAS include and library directories, or a reason why not. */
function findOpenBlas() {
  if (process.env.ACTSPARSE_NO_BLAS === '1') return { reason: 'ACTSPARSE_NO_BLAS=1' };
  const triplet = `${process.arch === 'arm64' ? 'aarch64' : 'x86_64'}-linux-gnu`;
  const options = [];
  const pc = spawnSync('pkg-config', ['--cflags', '--libs', 'openblas'], { encoding: 'utf8' });
  if (pc.status === 0) {
    const flags = pc.stdout.trim().split(/\s+/);
    const inc = flags
      .find((f) => f.startsWith('-I'))
      ?.slice(2)
      .replace(/\/$/, '');
    const lib = flags
      .find((f) => f.startsWith('-L'))
      ?.slice(2)
      .replace(/\/$/, '');
    if (inc && lib) options.push({ inc, lib });
  }
  for (const [inc, lib] of [
    [`/usr/include/${triplet}/openblas-pthread`, `/usr/lib/${triplet}/openblas-pthread`],
    ['/usr/include/openblas', '/usr/lib64'],
    ['/usr/include/openblas', `/usr/lib/${triplet}`],
    ['/usr/local/include', '/usr/local/lib'],
    ['/opt/homebrew/opt/openblas/include', '/opt/homebrew/opt/openblas/lib'],
    ['/usr/local/opt/openblas/include', '/usr/local/opt/openblas/lib'],
  ]) {
    options.push({ inc, lib });
  }
  const usable = options.filter(
    (o) =>
      existsSync(join(o.inc, 'cblas.h')) &&
      existsSync(o.lib) &&
      readdirSync(o.lib).some((f) => /^libopenblas\.(so|dylib)/.test(f)),
  );
  if (usable.length === 0) return { reason: 'OpenBLAS not found (install libopenblas-dev)' };
  // The header must be OpenBLAS's and the library must link and compute: try a 1×1 GEMM.
  const dir = join(tmpdir(), `actsparse-blas-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  const test = join(dir, 'test.cc');
  writeFileSync(
    test,
    `#include <cblas.h>
#include <cstdio>
int main() {
  openblas_set_num_threads(1);
  float a = 2, b = 3, c = 0;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1);
  std::printf("%s\\n", openblas_get_config());
  return c == 6.0f ? 0 : 1;
}
`,
  );
  const cxx = process.env.CXX || 'c++';
  try {
    for (const o of usable) {
      const exe = join(dir, 'test');
      const cc = run(cxx, [test, `-I${o.inc}`, `-L${o.lib}`, '-lopenblas', '-o', exe]);
      if (cc.status !== 0) continue;
      const env = { ...process.env, LD_LIBRARY_PATH: o.lib, DYLD_LIBRARY_PATH: o.lib };
      const r = run(exe, [], { env });
      if (r.status === 0) return { ...o, config: r.stdout.trim() };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return { reason: `OpenBLAS found in ${usable[0].lib} but a test program failed to build or run` };
}

/** The first line of node-gyp's output that says what went wrong. */
function buildError(r) {
  const text = `${r.stdout ?? ''}\n${r.stderr ?? ''}`;
  if (/Could not find any Python/.test(text)) return 'Python 3 not found; node-gyp needs it';
  const patterns = [
    /No such file or directory: '[^']+'/, // compiler missing
    /make: [^\n]*not found/,
    /fatal error: [^\n]+/, // missing header
    /error: [^\n]+/,
    /gyp ERR! stack Error: [^\n]+/,
  ];
  for (const p of patterns) {
    const m = p.exec(text);
    if (m) return m[0].replace(/^gyp ERR! stack /, '');
  }
  return r.error ? String(r.error) : `node-gyp exited with ${r.status}`;
}

function main() {
  if (process.env.ACTSPARSE_SKIP_NATIVE === '1') {
    done(true, 'native kernels skipped (ACTSPARSE_SKIP_NATIVE=1); using WebAssembly');
  }

  if (!existsSync(join(srcDir, 'binding.gyp'))) {
    done(
      true,
      `native kernels unavailable: no sources in ${relative(root, srcDir)}; using WebAssembly`,
    );
  }

  const nodeGyp = findNodeGyp();
  if (!nodeGyp) fail('node-gyp not found (it ships with npm; is npm installed beside this node?)');

  const blas = findOpenBlas();
  const gypDefines = blas.reason
    ? ['-Dopenblas=0']
    : ['-Dopenblas=1', `-Dopenblas_include=${blas.inc}`, `-Dopenblas_libdir=${blas.lib}`];
  log.push(
    blas.reason ? `OpenBLAS: no (${blas.reason})` : `OpenBLAS: ${blas.config} in ${blas.lib}`,
  );

  // Build in a copy under build/ so that node-gyp's output stays out of src/.
  rmSync(objDir, { recursive: true, force: true });
  mkdirSync(objDir, { recursive: true });
  for (const f of readdirSync(srcDir)) {
    if (/\.(cc|h|gyp)$/.test(f)) copyFileSync(join(srcDir, f), join(objDir, f));
  }
  const gyp = run(
    process.execPath,
    [nodeGyp, 'rebuild', '--jobs=max', ...nodeDirArgs(), '--', ...gypDefines],
    { cwd: objDir },
  );
  const built = join(objDir, 'build', 'Release', 'actsparse.node');
  if (gyp.status !== 0 || !existsSync(built)) fail(`build failed (${buildError(gyp)})`);
  // Copy then rename: a process that has the old addon mapped keeps its (unchanged) file.
  copyFileSync(built, `${outFile}.tmp`);
  renameSync(`${outFile}.tmp`, outFile);

  // Load it once in a fresh process: catches a wrong ABI or a missing shared library now.
  const check = run(process.execPath, [
    '-e',
    `const i = require(${JSON.stringify(outFile)}).info(); console.log(JSON.stringify(i));`,
  ]);
  if (check.status !== 0)
    fail(`the built addon does not load (${check.stderr.trim().split('\n')[0]})`);
  const info = JSON.parse(check.stdout);
  const gemm = info.gemm === 'openblas' ? 'OpenBLAS' : `own ${info.simd} kernels`;
  const blasNote = info.blas
    ? `${info.blas}; GEMM by ${gemm}`
    : `no OpenBLAS: ${blas.reason ?? info.blasReason}`;
  done(
    true,
    `native kernels built: ${relative(root, outFile)} (${info.simd} kernels, ${info.threads} threads; ${blasNote})`,
  );
}

try {
  main();
} catch (e) {
  fail(`unexpected error: ${e instanceof Error ? e.message : String(e)}`);
}
