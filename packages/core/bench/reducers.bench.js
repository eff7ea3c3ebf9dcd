// Times every @leanvision/core reducer on feature tensors with the real shapes of LLaVA-1.5
// (CLIP-L/14 at 336 px), SigLIP-so400m at 384 px and the official TokenPacker projector.
// Values are random (seeded, test/synthetic.js); reducer cost depends only on the shapes.
//
// Each row: 20 warm-up runs (JIT, caches), then --iterations timed runs (default 200; the
// TokenPacker projector, seconds per run, gets 1 warm-up and at most 3), reporting the median and
// minimum wall-clock time and the median process CPU time (the steadier one on a shared machine).
// The LLaVA-NeXT rows reduce 5 crops of 577 tokens (AnyRes: base image + 4 tiles) one by one and
// time all five together.
//
//   pnpm --filter @leanvision/core build && pnpm --filter @leanvision/core bench [-- --iterations 200 --json --skip-tokenpacker]
import { cpus } from "node:os";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { random, randomArray, syntheticFeatures } from "../test/synthetic.js";

const core = await import("../dist/index.js").catch((e) => {
  console.error(`Cannot load ../dist/index.js (${e.message}). Build first: pnpm --filter @leanvision/core build`);
  process.exit(1);
});
const { reduce, parseReducerSpec, formatReducerSpec, tokenPacker } = core;
const { median } = await import("../dist/stats.js");
const { BENCH_REDUCERS } = await import("../dist/presets.js");

const { values: args } = parseArgs({
  options: {
    iterations: { type: "string", default: "200" },
    json: { type: "boolean", default: false },
    "skip-tokenpacker": { type: "boolean", default: false }
  }
});
const iterations = Number(args.iterations);
if (!Number.isInteger(iterations) || iterations < 1) {
  console.error(`--iterations must be a positive integer (got ${args.iterations})`);
  process.exit(1);
}

/** Wall and process CPU time per run; CPU time is the steadier one on a shared machine. */
function time(fn, runs, warmup = 20) {
  for (let i = 0; i < warmup; i++) fn(); // JIT, allocation, caches
  const wall = [];
  const cpu = [];
  let result;
  for (let i = 0; i < runs; i++) {
    const cpuStart = process.cpuUsage();
    const start = performance.now();
    result = fn();
    wall.push(performance.now() - start);
    const used = process.cpuUsage(cpuStart);
    cpu.push((used.user + used.system) / 1000);
  }
  const tokens = Array.isArray(result) ? result.reduce((n, r) => n + r.numTokens, 0) : result.numTokens;
  return { medianMs: median(wall), minMs: Math.min(...wall), medianCpuMs: median(cpu), runs, tokens };
}

const encoders = {
  // llama.cpp's llava graph order: CLS after the 576 patches.
  "CLIP-L/14-336 (LLaVA-1.5)": { rows: 24, cols: 24, dim: 1024, heads: 16, keyDim: 64, cls: "last" },
  "SigLIP-so400m-384": { rows: 27, cols: 27, dim: 1152, heads: 16, keyDim: 72, cls: null }
};
const specs = {
  "CLIP-L/14-336 (LLaVA-1.5)": [
    "none",
    "visionzip:54+10",
    "visionzip:108+20",
    "visionzip:162+30",
    "visionzip:auto:0.5+10:32-192",
    "pool:2",
    "pool:3",
    "regionpack:2",
    "regionpack:3"
  ],
  "SigLIP-so400m-384": ["none", "visionzip:54+10", "pool:3", "regionpack:3"]
};

const rows = [];
for (const [encoder, shape] of Object.entries(encoders)) {
  const f = syntheticFeatures(shape, 42);
  for (const text of specs[encoder]) {
    const spec = parseReducerSpec(text);
    rows.push({ encoder, reducer: formatReducerSpec(spec), inputTokens: f.numTokens, ...time(() => reduce(f, spec), iterations) });
  }
}

// LLaVA-NeXT (AnyRes, 336 px tiles): the base image and 4 tiles, 5 x 577 tokens, each crop reduced on its own.
{
  const encoder = "CLIP-L/14-336, LLaVA-NeXT 5 crops";
  const crops = [0, 1, 2, 3, 4].map((i) => syntheticFeatures(encoders["CLIP-L/14-336 (LLaVA-1.5)"], 100 + i));
  for (const text of BENCH_REDUCERS) {
    const spec = parseReducerSpec(text);
    rows.push({
      encoder,
      reducer: formatReducerSpec(spec),
      inputTokens: crops.length * crops[0].numTokens,
      ...time(() => crops.map((f) => reduce(f, spec)), iterations)
    });
  }
}

// The official TokenPacker projector (CLIP-L sizes, scale 2): 576 patches + 4-level features -> 144 LLM tokens.
if (!args["skip-tokenpacker"]) {
  const rand = random(7);
  const linear = (out, inp, bias = true) => ({
    weight: { data: randomArray(out * inp, rand, 0.02), shape: [out, inp] },
    ...(bias ? { bias: { data: randomArray(out, rand, 0.02), shape: [out] } } : {})
  });
  const norm = (n) => ({ weight: { data: new Float32Array(n).fill(1), shape: [n] }, bias: { data: new Float32Array(n), shape: [n] } });
  const modules = {
    q_proj_1: linear(1024, 1024, false),
    "k_proj_1.0": linear(1024, 4096),
    "k_proj_1.2": linear(1024, 1024),
    "v_proj_1.0": linear(1024, 4096),
    "v_proj_1.2": linear(1024, 1024),
    ln_q_1: norm(1024),
    ln_k_1: norm(1024),
    ln_v_1: norm(1024),
    "clip_attn.out_proj": linear(1024, 1024),
    "mlp.0": linear(4096, 1024),
    "mlp.2": linear(4096, 4096)
  };
  const weights = {
    "clip_attn.in_proj_weight": { data: randomArray(3 * 1024 * 1024, rand, 0.02), shape: [3072, 1024] },
    "clip_attn.in_proj_bias": { data: new Float32Array(3072), shape: [3072] }
  };
  for (const [module, params] of Object.entries(modules)) {
    for (const [param, tensor] of Object.entries(params)) weights[`${module}.${param}`] = tensor;
  }
  const input = { patches: randomArray(576 * 1024, rand), multiLevel: randomArray(576 * 4096, rand), grid: { rows: 24, cols: 24 } };
  const runs = Math.min(iterations, 3);
  rows.push({
    encoder: "CLIP-L/14-336 (LLaVA-1.5)",
    reducer: "tokenPacker (trained projector, scale 2, 8 heads, -> 4096-d)",
    inputTokens: 576,
    ...time(() => tokenPacker(input, weights, { scaleFactor: 2, numHeads: 8 }), runs, 1)
  });
}

const machine = `${cpus()[0]?.model ?? "unknown CPU"}, ${cpus().length} logical cores, Node ${process.version}`;
if (args.json) {
  console.log(JSON.stringify({ machine, iterations, rows }, null, 2));
} else {
  console.log(`@leanvision/core reducers: ${machine}; wall-clock median and min and process CPU median over the runs, after 20 warm-up runs (TokenPacker: 1)`);
  console.log("| encoder | reducer | tokens in -> out | runs | median ms | min ms | median CPU ms |");
  console.log("| --- | --- | --- | ---: | ---: | ---: | ---: |");
  for (const r of rows) {
    console.log(`| ${r.encoder} | ${r.reducer} | ${r.inputTokens} -> ${r.tokens} | ${r.runs} | ${r.medianMs.toFixed(2)} | ${r.minMs.toFixed(2)} | ${r.medianCpuMs.toFixed(2)} |`);
  }
}
