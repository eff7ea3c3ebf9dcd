#!/usr/bin/env node
// Measures the vision stage on one image: plain mtmd encode (encodeStock) vs the encode with the
// feature layer captured (hidden only, and hidden + attention + keys), then each reducer's reduce
// and native projector time. Medians over --runs, as wall time and as this process's CPU time (on a
// shared, oversubscribed machine CPU time is the steadier of the two; with --threads 1 it is the
// work done). Needs `pnpm build` (imports ../dist).
//
// node packages/llama-adapter/scripts/measure-vision.mjs --model <lm.gguf> --mmproj <mmproj.gguf>
//   [--image <file>] [--runs 3] [--threads N] [--reducer none --reducer visionzip:dominant=54,contextual=10 ...]
import path from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { getLlama } from "node-llama-cpp";
import { parseReducerSpec, reduce } from "@leanvision/core";
import { BENCH_REDUCERS } from "@leanvision/core/presets";
import { median } from "@leanvision/core/stats";
import { decodeImage, loadNativeBinding, loadVisionModel } from "../dist/index.js";
import { ensureLlamaSource } from "./llama-source.mjs";

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    mmproj: { type: "string" },
    image: { type: "string" },
    runs: { type: "string", default: "3" },
    threads: { type: "string" },
    reducer: { type: "string", multiple: true, default: [...BENCH_REDUCERS] }
  }
});
if (!values.model || !values.mmproj) throw new Error("--model and --mmproj are required");
const args = {
  model: values.model,
  mmproj: values.mmproj,
  image: values.image ?? path.join(ensureLlamaSource(), "tools", "mtmd", "test-1.jpeg"),
  runs: Number(values.runs),
  threads: values.threads === undefined ? undefined : Number(values.threads),
  reducers: values.reducer
};

const round = (x) => Math.round(x * 10) / 10;
async function timed(fn) {
  const t = performance.now();
  const cpu = process.cpuUsage();
  const value = await fn();
  const used = process.cpuUsage(cpu);
  return { value, ms: performance.now() - t, cpuMs: (used.user + used.system) / 1000 };
}
const overhead = (a, b, key) => round((median(a.map((x) => x[key])) / median(b.map((x) => x[key])) - 1) * 100) + "%";
const both = (xs) => ({ wall: round(median(xs.map((x) => x.ms))), cpu: round(median(xs.map((x) => x.cpuMs))) });

const llama = await getLlama({ gpu: false });
const model = await llama.loadModel({ modelPath: args.model });
const threads = args.threads ?? Math.max(1, llama.cpuMathCores);
const binding = loadNativeBinding();
const handle = binding.createVisionContext(args.mmproj, { nThreads: threads, useGpu: false });
// mtmd with its default flash attention (auto), as llama.cpp's own tools run it.
const defaultHandle = binding.createVisionContext(args.mmproj, { nThreads: threads, useGpu: false, flashAttention: true });
const rgb = await decodeImage(args.image);

// Native encode variants, interleaved so load drifts hit them alike; one warm-up of each first.
const samples = { stockDefault: [], stock: [], hidden: [], capture: [] };
let features;
for (let run = -1; run < args.runs; run++) {
  const stockDefault = await timed(() => binding.encodeStock(defaultHandle, rgb.data, rgb.width, rgb.height));
  const stock = await timed(() => binding.encodeStock(handle, rgb.data, rgb.width, rgb.height));
  const hidden = await timed(() => binding.encode(handle, rgb.data, rgb.width, rgb.height, { capture: false }));
  const capture = await timed(() => binding.encode(handle, rgb.data, rgb.width, rgb.height, { capture: true }));
  features = capture.value[0]; // the first tile (mtmd order); the whole image for a single-tile one
  if (run < 0) continue;
  samples.stockDefault.push(stockDefault);
  samples.stock.push(stock);
  samples.hidden.push(hidden);
  samples.capture.push(capture);
}
const vf = { ...features, grid: { rows: features.gridRows, cols: features.gridCols } };

const reducers = [];
for (const text of args.reducers) {
  const spec = parseReducerSpec(text);
  const reduceMs = [];
  const projectMs = [];
  let tokens = 0;
  for (let run = -1; run < args.runs; run++) {
    const r = await timed(async () => reduce(vf, spec));
    const p = await timed(() => binding.project(handle, r.value.hidden, r.value.numTokens));
    tokens = r.value.numTokens;
    if (run < 0) continue;
    reduceMs.push(r);
    projectMs.push(p);
  }
  reducers.push({ reducer: text, tokens, reduceMs: both(reduceMs), projectMs: both(projectMs) });
}

// The public path end to end (sharp decode + capture encode, reduce, project), for one reducer.
const vision = await loadVisionModel({ llama, model, mmprojPath: args.mmproj, reducer: args.reducers.find((r) => r.startsWith("visionzip")) ?? "none", threads });
const endToEnd = [];
for (let run = -1; run < args.runs; run++) {
  const out = await vision.encodeImage(args.image);
  if (run >= 0) endToEnd.push(out.timings);
}

const result = {
  model: path.basename(path.dirname(args.model)) + "/" + path.basename(args.model),
  mmproj: handle.info,
  image: { file: path.basename(args.image), width: rgb.width, height: rgb.height },
  threads,
  runs: args.runs,
  tokens: { features: features.numTokens, heads: features.heads },
  // stockDefault: mtmd as llama.cpp runs it (flash attention auto); stock: the same without flash
  // attention (what capture needs); captureHidden: + projector input copied; captureFull: + attention and keys.
  encodeMs: {
    stockDefault: both(samples.stockDefault),
    stock: both(samples.stock),
    captureHidden: both(samples.hidden),
    captureFull: both(samples.capture)
  },
  captureOverheadCpu: {
    vsStockDefault: overhead(samples.capture, samples.stockDefault, "cpuMs"),
    vsStockNoFlash: overhead(samples.capture, samples.stock, "cpuMs")
  },
  captureOverheadWall: {
    vsStockDefault: overhead(samples.capture, samples.stockDefault, "ms"),
    vsStockNoFlash: overhead(samples.capture, samples.stock, "ms")
  },
  reducers,
  encodeImage: {
    reducer: vision.reducer,
    encodeMs: round(median(endToEnd.map((t) => t.encodeMs))),
    reduceMs: round(median(endToEnd.map((t) => t.reduceMs))),
    projectMs: round(median(endToEnd.map((t) => t.projectMs)))
  }
};
console.log(JSON.stringify(result, null, 2));
vision.dispose();
binding.freeVisionContext(handle);
binding.freeVisionContext(defaultHandle);
await model.dispose();
await llama.dispose();
