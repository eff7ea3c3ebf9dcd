#!/usr/bin/env node
// Times the native TokenPacker projector (ggml, src/native/projector-file.cpp) on one image's rows:
// 576 patches of a 24x24 grid packed 2x2 into 144 rows of [point (c) | 4 x multi-level (4c)].
// Medians over --runs of wall time and of this process's CPU time (the steadier one on a shared
// machine; with --threads 1 it is the work done). Needs `pnpm build` (imports ../dist).
//
// node packages/llama-adapter/scripts/measure-tokenpacker.mjs [--projector <file.gguf>] [--runs 5] [--threads 1] [--check] [--mmproj <file.gguf>]
//
// Without --projector it measures at the official size (c 1024, multi-level 4096, clip_attn 1024 with
// 8 heads, mlp 1024 -> 4096 -> 4096, fp16 matrices as released): a synthetic checkpoint in the official
// format (packages/testkit/python/make_tokenpacker_checkpoint.py, needs torch) converted by
// convert-tokenpacker.py, cached in $LEANVISION_CACHE_DIR (default ~/.cache/leanvision)/tokenpacker.
// --check also runs core's readable tokenPacker() on the same input (seconds) and reports the largest
// difference. --mmproj also times the CLIP encode of llama.cpp's sample image with the projector's
// multi-level layers captured (mtmd, same threads), for the projector's share of the vision stage
// (e.g. the testkit's llava-1.5-7b mmproj: CLIP ViT-L/14-336, 23 layers run).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { getLlama } from "node-llama-cpp";
import { median } from "@leanvision/core/stats";
import { loadNativeBinding } from "../dist/index.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const { values } = parseArgs({
  options: {
    projector: { type: "string" },
    runs: { type: "string", default: "5" },
    threads: { type: "string", default: "1" },
    check: { type: "boolean", default: false },
    mmproj: { type: "string" }
  }
});
const runs = Number(values.runs);
const threads = Number(values.threads);

function realSizeProjector() {
  const cache = process.env.LEANVISION_CACHE_DIR ?? path.join(os.homedir(), ".cache", "leanvision");
  const dir = path.join(cache, "tokenpacker", "real-size-f16");
  const file = path.join(dir, "projector.gguf");
  // The ONNX twin is what packages/transformers-adapter/scripts/measure-tokenpacker-onnx.mjs times.
  if (existsSync(file) && existsSync(path.join(dir, "projector.onnx"))) return file;
  const python = (mods) =>
    [process.env.LEANVISION_PYTHON, "python3", "/usr/bin/python3"].find((p) => {
      try {
        execFileSync(p, ["-c", mods.map((m) => `import ${m}`).join(";")], { stdio: "ignore" });
        return true;
      } catch {
        return false;
      }
    });
  const checkpoint = path.join(dir, "TokenPacker-7b-144token");
  mkdirSync(dir, { recursive: true });
  process.stderr.write("writing a real-size synthetic TokenPacker checkpoint and converting it (once)...\n");
  execFileSync(python(["torch"]), [path.join(here, "..", "..", "testkit", "python", "make_tokenpacker_checkpoint.py"), checkpoint,
    "--width", "1024", "--levels", "4", "--hidden", "4096", "--lm-width", "4096", "--heads", "8", "--scale", "2"], { stdio: "inherit" });
  execFileSync(python(["numpy"]), [path.join(here, "convert-tokenpacker.py"), checkpoint, "-o", file, "--onnx", path.join(dir, "projector.onnx")], { stdio: "inherit" });
  rmSync(checkpoint, { recursive: true, force: true });
  return file;
}

const file = values.projector ?? realSizeProjector();
await getLlama({ build: "never", gpu: false, logLevel: "error" });
const binding = loadNativeBinding();
const handle = binding.loadProjectorFile(file, { nThreads: threads, useGpu: false });
const { info } = handle;
if (info.type !== "tokenpacker") throw new Error(`${file} is an ${info.type} projector, not TokenPacker`);
const grid = info.gridSize;
const rows = (grid / info.scaleFactor) ** 2;
let seed = 12345;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
const input = Float32Array.from({ length: rows * info.rowDim }, rand);

const wall = [];
const cpu = [];
let out;
for (let i = 0; i <= runs; i++) {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  out = await binding.runProjectorFile(handle, input, rows);
  const t1 = performance.now();
  const c = process.cpuUsage(c0);
  if (i > 0) {
    wall.push(t1 - t0);
    cpu.push((c.user + c.system) / 1000);
  }
}
console.log(
  `TokenPacker ${path.basename(file)}: ${grid}x${grid} patches, scale ${info.scaleFactor} -> ${rows} tokens, width ${info.inputDim}, ` +
    `multi-level ${info.multiLevelDim}, ${info.heads} heads, mlp ${info.embedDim} -> ${info.mlpHidden} -> ${info.outputDim}; threads ${threads}`
);
console.log(
  `  native projector: median ${median(wall).toFixed(1)} ms wall, ${median(cpu).toFixed(1)} ms CPU; fastest ${Math.min(...wall).toFixed(1)} ms wall, ` +
    `${Math.min(...cpu).toFixed(1)} ms CPU (${runs} runs after one warm-up)`
);

if (values.mmproj) {
  const { decodeImage } = await import("../dist/index.js");
  const { ensureLlamaSource } = await import("./llama-source.mjs");
  const rgb = await decodeImage(path.join(ensureLlamaSource(), "tools", "mtmd", "test-1.jpeg"));
  const vc = binding.createVisionContext(values.mmproj, { nThreads: threads, useGpu: false });
  const levels = info.multiLevelLayers.map((l) => l - 1);
  const encodeCpu = [];
  for (let i = 0; i <= Math.min(runs, 3); i++) {
    const c0 = process.cpuUsage();
    await binding.encode(vc, rgb.data, rgb.width, rgb.height, { capture: false, levels });
    const c = process.cpuUsage(c0);
    if (i > 0) encodeCpu.push((c.user + c.system) / 1000);
  }
  binding.freeVisionContext(vc);
  const e = median(encodeCpu);
  console.log(`  CLIP encode with multi-level capture (${path.basename(values.mmproj)}): median ${e.toFixed(0)} ms CPU; ` +
    `the projector is ${((100 * median(cpu)) / e).toFixed(1)}% of it`);
}

if (values.check) {
  const { tokenPacker } = await import("@leanvision/core");
  const { readProjectorStateDict } = await import("../../testkit/dist/index.js"); // the workspace's testkit (private)
  // Features whose rows are `input`: a constant point per region stands for the region's patches.
  const patches = new Float32Array(grid * grid * info.inputDim);
  const multiLevel = new Float32Array(grid * grid * info.multiLevelDim);
  const per = grid / info.scaleFactor;
  for (let q = 0; q < rows; q++) {
    const row = input.subarray(q * info.rowDim, (q + 1) * info.rowDim);
    const [i, j] = [Math.floor(q / per), q % per];
    let n = 0;
    for (let r = i * info.scaleFactor; r < (i + 1) * info.scaleFactor; r++) {
      for (let c = j * info.scaleFactor; c < (j + 1) * info.scaleFactor; c++, n++) {
        const p = r * grid + c;
        patches.set(row.subarray(0, info.inputDim), p * info.inputDim);
        multiLevel.set(row.subarray(info.inputDim + n * info.multiLevelDim, info.inputDim + (n + 1) * info.multiLevelDim), p * info.multiLevelDim);
      }
    }
  }
  const t0 = performance.now();
  const ref = tokenPacker({ patches, multiLevel, grid: { rows: grid, cols: grid } }, readProjectorStateDict(file), { scaleFactor: info.scaleFactor, numHeads: info.heads });
  const ms = performance.now() - t0;
  let worst = 0;
  for (let k = 0; k < ref.hidden.length; k++) worst = Math.max(worst, Math.abs(out[k] - ref.hidden[k]) / Math.max(1, Math.abs(ref.hidden[k])));
  console.log(`  core tokenPacker() (readable JavaScript): ${ms.toFixed(0)} ms; largest relative difference ${worst.toExponential(2)}`);
}
binding.freeProjectorFile(handle);
