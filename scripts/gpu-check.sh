#!/usr/bin/env bash
# The WebGPU checks and figures of issue 14 on a GPU machine (written for one NVIDIA
# H200), in about 8 minutes. Prepare the bundle here, then run this from the project
# root on the GPU machine, where `bash .device/run ARGS` is the actsparse CLI:
#
#   ../shared/tools/pack-gpu-bundle              # here, after npm ci: makes .device/
#   OUT=/some/dir bash scripts/gpu-check.sh      # there ($OUT: where results go)
#
# Every step has its own timeout and a log in $OUT; a failed step does not stop the
# others. $OUT/summary.txt lists each step's exit code and seconds, then the checks
# (webgpu against the js reference, webgpu calibration against native) and the
# figures beside the issue's torch figures for the same GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder for the results}"
mkdir -p "$OUT"
[ -f .device/run ] || { echo "gpu-check: no .device/run: run ../shared/tools/pack-gpu-bundle first" >&2; exit 2; }
summary=$OUT/summary.txt
: >"$summary"
model=models/rwkv4-brown-3m.safetensors

# step NAME SECONDS ARGS…: one actsparse command, its output in $OUT/NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" bash .device/run "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  local cmd="actsparse $*"
  [ ${#cmd} -gt 150 ] && cmd="${cmd:0:147}..."
  printf '%-20s rc=%-4s %4ss  %s\n' "$name" "$rc" "$((SECONDS - t0))" "$cmd" >>"$summary"
  return $rc
}

# 1. The adapter, its limits and the features the kernels use (also unpacks the bundle).
step info 30 info "$model" --backend webgpu

# 2. Logits of the trained RWKV-4 on webgpu (sequence and step mode) against js.
# 200 byte-level token ids (the model's vocabulary is 256).
tokens=$(seq 1 7 1400 | awk '{ printf "%s%d", (NR > 1 ? "," : ""), $1 % 256 }')
step logits-webgpu 30 logits "$model" --tokens "$tokens" --backend webgpu --out "$OUT/logits-webgpu.f32"
step logits-webgpu-step 30 logits "$model" --tokens "$tokens" --backend webgpu --mode step --out "$OUT/logits-webgpu-step.f32"
step logits-js 30 logits "$model" --tokens "$tokens" --backend js --out "$OUT/logits-js.f32"

# 3. Kernels and the 430M layout (24 × 1024): GEMM, GEMV, zero skipping, decode,
# sequence and calibration rates; then RWKV-7 of the same layout, model figures only.
step bench-webgpu 180 bench --backend webgpu --shape 24x1024 --json "$OUT/bench-webgpu.json" --force
step bench-rwkv7 60 bench --backend webgpu --arch rwkv7 --shape 24x1024 --model-only --repeats 3 --json "$OUT/bench-rwkv7.json" --force

# 4. Calibration of the trained RWKV-4 on webgpu and on native: wall time, same choices.
cal=(--docs 16 --ctx 256 --windows 16 --force)
step calibrate-webgpu 75 calibrate "$model" --backend webgpu --out "$OUT/cal-webgpu" "${cal[@]}"
step calibrate-native 75 calibrate "$model" --backend native --out "$OUT/cal-native" "${cal[@]}"

# The checks and the comparison, with the bundle's Node (GPU_CHECK_NODE: another).
node=${GPU_CHECK_NODE:-/tmp/actsparse-bundle/bin/node}
command -v "$node" >/dev/null || { echo "no bundled node: the bundle did not unpack" >>"$summary"; exit 1; }
OUT=$OUT "$node" --input-type=module >>"$summary" 2>&1 <<'JS'
import { existsSync, readFileSync } from 'node:fs';
const out = process.env.OUT;
const f32 = (f) => {
  const b = readFileSync(`${out}/${f}`);
  return new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
};
const json = (f) => (existsSync(`${out}/${f}`) ? JSON.parse(readFileSync(`${out}/${f}`, 'utf8')) : null);
console.log('');
// webgpu logits against js: max |Δ| relative to the largest logit (the issue's bar: 1e-4).
try {
  const want = f32('logits-js.f32');
  const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  for (const f of ['logits-webgpu.f32', 'logits-webgpu-step.f32']) {
    const got = f32(f);
    let d = got.length === want.length ? 0 : Number.POSITIVE_INFINITY;
    for (let i = 0; i < want.length && d < Infinity; i++) d = Math.max(d, Math.abs(got[i] - want[i]));
    const rel = d / scale;
    console.log(`${f} vs js: max |Δ| ${d.toExponential(2)}, ${rel.toExponential(2)} of the largest logit: ${rel <= 1e-4 ? 'PASS' : 'FAIL'}`);
  }
} catch (e) {
  console.log(`logits check: ${e.message}`);
}
// Calibration: the same K at every site on webgpu and native.
const a = json('cal-webgpu/thresholds.json');
const b = json('cal-native/thresholds.json');
if (a && b) {
  const ks = (p) => p.sites.map((s) => `${s.site}@${s.block}:${s.k}`).join(' ');
  console.log(`calibration choices webgpu vs native: ${ks(a) === ks(b) ? 'SAME' : `DIFFER\n  webgpu ${ks(a)}\n  native ${ks(b)}`}`);
} else console.log('calibration check: a run did not finish');
// The figures beside the issue's torch figures on an H200.
const r = json('bench-webgpu.json');
const g = r?.gpu?.[0];
if (g) {
  console.log(`adapter: ${g.device.adapter}`);
  for (const x of g.gemm)
    console.log(`GEMM ${x.variant} ${x.shape}: ${x.tflops.median.toFixed(1)} TFLOP/s (torch fp32 50, goal ≥ 40; tf32 290–330; bf16 570–690)`);
  console.log(`  (${g.matrix})`);
  for (const x of g.gemv)
    console.log(`GEMV ${x.dtype} ${x.shape}: ${x.gbps.median.toFixed(0)} GB/s of weights (torch 3850, goal ≥ 3270)`);
  for (const x of g.sparse)
    console.log(`zero-skipping GEMV at ${(100 * x.zeros).toFixed(0)}% zeros: ${x.speedup.median.toFixed(2)}× dense (ideal ${x.ideal.toFixed(2)}; TEAL 1.53× at 40%, 1.8× at 50%)`);
}
for (const [f, what] of [['bench-webgpu.json', 'RWKV-4'], ['bench-rwkv7.json', 'RWKV-7']]) {
  const m = json(f)?.model;
  if (!m) continue;
  console.log(`${what} ${m.shape}: decode ${m.decodeDense.median.toFixed(1)} tok/s dense, ${m.decodeSparse.median.toFixed(1)} at ${(100 * m.measuredZeros).toFixed(0)}% zeros; sequence T=${m.sequenceT} ${m.sequence?.median.toFixed(0)} tok/s`);
  const c = m.calibration;
  // torch in the authors' style: 16 × 1024 tokens through 24 blocks in 1.0 s (fp32), 0.6 s (bf16).
  if (c)
    console.log(`  calibration ${c.blockTokensPerSec.median.toFixed(0)} block-token forwards/s (${c.windows} × ${c.ctx}); torch fp32 ${(24 * 16384).toFixed(0)}, bf16 ${((24 * 16384) / 0.6).toFixed(0)}`);
}
JS
cat "$summary"
