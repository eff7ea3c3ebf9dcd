#!/usr/bin/env node
// Measures the vision stage on one image: plain mtmd encode (encodeStock) vs the encode with the
// feature layer captured, then each reducer's reduce and native projector time. Medians over --runs,
// as wall time and as this process's CPU time (on a shared, oversubscribed machine CPU time is the
// steadier of the two; with --threads 1 it is the work done). Says which node-llama-cpp binaries it
// measured (prebuilt or local build, the ggml CPU variant mapped, and the backend the vision graph runs on). Needs `pnpm build` (imports ../dist).
//
// Encode variants, interleaved so load drifts hit them alike:
//   plain            mtmd as llama.cpp runs it (flash attention auto), its output embeddings copied out
//   captureHidden    + the projector input copied (the `none` reducer's encode)
//   capture          + VisionZip's attention scores from the feature layer's Q/K and the head-averaged keys
//   plainNoFlash     mtmd with flash attention off in every layer
//   captureReference capture on that graph, with the whole softmax copied (what capture did before)
//   plainOnNodeLlamaCppCpu  plain, on node-llama-cpp's CPU backend instead of the addon's (cpu-backend.h)
// With --mtmd-cli (default: the testkit's build in $LEANVISION_CACHE_DIR, if there) stock
// llama-mtmd-cli's own "image slice encoded in" time on the same image, interleaved too (wall only).
//
// node packages/llama-adapter/scripts/measure-vision.mjs --model <lm.gguf> --mmproj <mmproj.gguf>
//   [--image <file>] [--size 336x336] [--runs 3] [--threads N] [--mtmd-cli <binary> | --no-mtmd-cli]
//   [--reducer none --reducer visionzip:dominant=54,contextual=10 ...]
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { getLlama } from "node-llama-cpp";
import sharp from "sharp";
import { parseReducerSpec, reduce } from "@leanvision/core";
import { BENCH_REDUCERS } from "@leanvision/core/presets";
import { median } from "@leanvision/core/stats";
import { binariesInUse, decodeImage, loadNativeBinding, loadVisionModel } from "../dist/index.js";
import { bundledLlamaCommit, ensureLlamaSource } from "./llama-source.mjs";

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    mmproj: { type: "string" },
    image: { type: "string" },
    size: { type: "string" },
    runs: { type: "string", default: "3" },
    threads: { type: "string" },
    "mtmd-cli": { type: "string" },
    "no-mtmd-cli": { type: "boolean", default: false },
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

const llama = await getLlama({ gpu: false, build: "never" });
const model = await llama.loadModel({ modelPath: args.model });
const threads = args.threads ?? Math.max(1, llama.cpuMathCores);
const binding = loadNativeBinding();
const handle = binding.createVisionContext(args.mmproj, { nThreads: threads, useGpu: false });
const noFlashHandle = binding.createVisionContext(args.mmproj, { nThreads: threads, useGpu: false, flashAttention: false });
// The same graph on node-llama-cpp's own CPU backend (its prebuilt libggml-cpu-*.so when prebuilt).
process.env.LEANVISION_VISION_CPU = "node-llama-cpp";
const nlcHandle = binding.createVisionContext(args.mmproj, { nThreads: threads, useGpu: false });
delete process.env.LEANVISION_VISION_CPU;

// The image, optionally resized first (e.g. --size 336x336 so preprocessing is negligible); the same
// pixels go to llama-mtmd-cli through a temporary PNG.
let imageFile = args.image;
let tmpDir;
if (values.size) {
  const [w, h] = values.size.split("x").map(Number);
  tmpDir = mkdtempSync(path.join(os.tmpdir(), "lv-measure-"));
  imageFile = path.join(tmpDir, `image-${w}x${h}.png`);
  await sharp(args.image).resize(w, h, { fit: "fill" }).removeAlpha().png().toFile(imageFile);
}
const rgb = await decodeImage(imageFile);

const cliPath = values["no-mtmd-cli"] ? undefined : (values["mtmd-cli"] ?? defaultMtmdCli());
if (cliPath && !existsSync(cliPath)) throw new Error(`--mtmd-cli ${cliPath} does not exist`);

const samples = { plain: [], captureHidden: [], capture: [], plainNoFlash: [], captureReference: [], plainOnNodeLlamaCppCpu: [], mtmdCli: [] };
let features;
for (let run = -1; run < args.runs; run++) {
  const variants = [
    ["plain", () => binding.encodeStock(handle, rgb.data, rgb.width, rgb.height)],
    ["captureHidden", () => binding.encode(handle, rgb.data, rgb.width, rgb.height, { capture: false })],
    ["capture", () => binding.encode(handle, rgb.data, rgb.width, rgb.height, { capture: true })],
    ["plainNoFlash", () => binding.encodeStock(noFlashHandle, rgb.data, rgb.width, rgb.height)],
    ["captureReference", () => binding.encode(noFlashHandle, rgb.data, rgb.width, rgb.height, { capture: true })],
    ["plainOnNodeLlamaCppCpu", () => binding.encodeStock(nlcHandle, rgb.data, rgb.width, rgb.height)]
  ];
  // Each run starts at another variant: the first encode after a switch of context (two copies of
  // the weights) pays cold caches, and that must not always be the same variant.
  const sample = {};
  for (let i = 0; i < variants.length; i++) {
    const [name, fn] = variants[(i + Math.max(0, run)) % variants.length];
    sample[name] = await timed(fn);
  }
  if (cliPath) sample.mtmdCli = await mtmdCliEncodeMs(cliPath, imageFile);
  features = sample.capture.value[0]; // the first tile (mtmd order); the whole image for a single-tile one
  if (run < 0) continue; // warm-up
  for (const [key, value] of Object.entries(sample)) samples[key].push(value);
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
const endToEndReducer = args.reducers.find((r) => r.startsWith("visionzip")) ?? "none";
const vision = await loadVisionModel({ llama, model, mmprojPath: args.mmproj, threads });
const endToEnd = [];
for (let run = -1; run < args.runs; run++) {
  const out = await vision.encodeImage(imageFile, endToEndReducer);
  if (run >= 0) endToEnd.push(out.timings);
}

const result = {
  model: path.basename(path.dirname(args.model)) + "/" + path.basename(args.model),
  binaries: { ...binariesInUse(llama), vision: handle.backend, visionNoFlash: noFlashHandle.backend, visionNodeLlamaCpp: nlcHandle.backend },
  mmproj: handle.info,
  image: { file: path.basename(args.image), width: rgb.width, height: rgb.height },
  threads,
  runs: args.runs,
  loadAverage: os.loadavg().map(round),
  tokens: { features: features.numTokens, heads: features.heads },
  encodeMs: Object.fromEntries(Object.entries(samples).filter(([k, xs]) => xs.length > 0 && k !== "mtmdCli").map(([k, xs]) => [k, both(xs)])),
  captureOverheadCpu: {
    captureVsPlain: overhead(samples.capture, samples.plain, "cpuMs"),
    // the same encode path copying only the projector input: what the scores and keys add
    captureVsCaptureHidden: overhead(samples.capture, samples.captureHidden, "cpuMs"),
    captureHiddenVsPlain: overhead(samples.captureHidden, samples.plain, "cpuMs"),
    referenceVsPlain: overhead(samples.captureReference, samples.plain, "cpuMs"),
    plainNoFlashVsPlain: overhead(samples.plainNoFlash, samples.plain, "cpuMs"),
    plainOnNodeLlamaCppCpuVsPlain: overhead(samples.plainOnNodeLlamaCppCpu, samples.plain, "cpuMs")
  },
  captureOverheadWall: {
    captureVsPlain: overhead(samples.capture, samples.plain, "ms"),
    referenceVsPlain: overhead(samples.captureReference, samples.plain, "ms")
  },
  stock: cliPath
    ? {
        binary: cliPath,
        // llama-mtmd-cli's encode (its own log; no preprocessing, negligible at 336x336): wall, and
        // its main thread's CPU time over the same span (approximate, see mtmdCliEncodeMs).
        mtmdCliEncode: both(samples.mtmdCli),
        plainVsMtmdCliCpu: overhead(samples.plain, samples.mtmdCli, "cpuMs"),
        captureVsMtmdCliCpu: overhead(samples.capture, samples.mtmdCli, "cpuMs"),
        plainVsMtmdCliWall: overhead(samples.plain, samples.mtmdCli, "ms")
      }
    : "no llama-mtmd-cli (build it: pnpm --filter @leanvision/testkit make mtmd-cli)",
  reducers,
  encodeImage: {
    reducer: endToEndReducer,
    encodeMs: round(median(endToEnd.map((t) => t.encodeMs))),
    reduceMs: round(median(endToEnd.map((t) => t.reduceMs))),
    projectMs: round(median(endToEnd.map((t) => t.projectMs)))
  }
};
console.log(JSON.stringify(result, null, 2));
vision.dispose();
binding.freeVisionContext(handle);
binding.freeVisionContext(noFlashHandle);
binding.freeVisionContext(nlcHandle);
await model.dispose();
await llama.dispose();
if (tmpDir) rmSync(tmpDir, { recursive: true, force: true });

function defaultMtmdCli() {
  const cacheDir = process.env.LEANVISION_CACHE_DIR ?? path.join(os.homedir(), ".cache", "leanvision");
  const binary = path.join(cacheDir, `llama-mtmd-cli-${bundledLlamaCommit().slice(0, 12)}`, "build", "bin", "llama-mtmd-cli");
  return existsSync(binary) ? binary : undefined;
}

/**
 * One llama-mtmd-cli run on the image: its own encode time (wall, summed "encoded in" lines), and the
 * CPU time of its main thread (which runs the encode with -t 1) between the log lines that start
 * and end the encode, from /proc/<pid>/task/<pid>/schedstat (ns). The lines reach us a little after
 * they are written, at both ends alike, so cpuMs is approximate (a few ms).
 */
function mtmdCliEncodeMs(binary, image) {
  const argv = ["-m", args.model, "--mmproj", args.mmproj, "--image", image, "-p", "Describe the image.", "-n", "1",
    "--temp", "0", "-c", "2048", "-lv", "4", "-t", String(threads), "--chat-template", "vicuna"];
  return new Promise((resolve, reject) => {
    const child = spawn(binary, argv, { stdio: ["ignore", "pipe", "pipe"] });
    const cpuNs = () => {
      try {
        return Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/schedstat`, "utf8").split(" ")[0]);
      } catch {
        return NaN;
      }
    };
    let log = "";
    let start = NaN;
    let cpuMs = 0;
    const onData = (d) => {
      const text = String(d);
      log += text;
      if (/encoding (?:mtmd batch|image slice)/.test(text) && Number.isNaN(start)) start = cpuNs();
      if (/(?:image slice encoded in|mtmd batch encoding done in)/.test(text) && !Number.isNaN(start)) {
        cpuMs += (cpuNs() - start) / 1e6;
        start = NaN;
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.on("error", reject);
    child.on("close", (code) => {
      const ms = [...log.matchAll(/(?:image slice encoded in|mtmd batch encoding done in) (\d+(?:\.\d+)?) ms/g)].map((m) => Number(m[1]));
      if (code !== 0 || ms.length === 0) return reject(new Error(`llama-mtmd-cli failed (${code}):\n${log.split("\n").slice(-10).join("\n")}`));
      resolve({ ms: ms.reduce((a, b) => a + b, 0), cpuMs });
    });
  });
}
