#!/usr/bin/env node
// Times the ONNX TokenPacker projector (convert-tokenpacker.py --onnx) in onnxruntime-node, the
// runtime transformers.js uses, on one image's rows: (grid / scale)² rows of core's tokenPackerRows.
// Medians over --runs of wall time and of this process's CPU time (with --threads 1, the work done).
// Needs `pnpm build` (imports ../dist).
//
// node packages/transformers-adapter/scripts/measure-tokenpacker-onnx.mjs [--projector <file.onnx>] [--runs 10] [--threads 1]
//
// Without --projector: the real-size projector (c 1024, multi-level 4096, LM width 4096, scale 2) that
// packages/llama-adapter/scripts/measure-tokenpacker.mjs writes next to its GGUF twin (run that first).
import { createRequire } from "node:module";
import { existsSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { median } from "@leanvision/core/stats";
import { inspectOnnxProjectorFile } from "../dist/projector-file.js";

const { values } = parseArgs({
  options: { projector: { type: "string" }, runs: { type: "string", default: "10" }, threads: { type: "string", default: "1" } }
});
const cache = process.env.LEANVISION_CACHE_DIR ?? path.join(os.homedir(), ".cache", "leanvision");
const file = values.projector ?? path.join(cache, "tokenpacker", "real-size-f16", "projector.onnx");
if (!existsSync(file)) {
  throw new Error(`${file} does not exist: run node packages/llama-adapter/scripts/measure-tokenpacker.mjs once (it writes the real-size projector), or pass --projector`);
}
const runs = Number(values.runs);
const threads = Number(values.threads);
// The onnxruntime-node that transformers.js itself loads.
const ort = createRequire(createRequire(import.meta.url).resolve("@huggingface/transformers"))("onnxruntime-node");

const info = inspectOnnxProjectorFile(file);
const rows = (info.gridSize / info.scaleFactor) ** 2;
const session = await ort.InferenceSession.create(file, { intraOpNumThreads: threads, interOpNumThreads: 1 });
let seed = 12345;
const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32) * 2 - 1;
const input = new ort.Tensor("float32", Float32Array.from({ length: rows * info.rowDim }, rand), [rows, info.rowDim]);
const wall = [];
const cpu = [];
for (let run = -1; run < runs; run++) {
  const t = performance.now();
  const c = process.cpuUsage();
  const out = await session.run({ [session.inputNames[0]]: input });
  const used = process.cpuUsage(c);
  if (run < 0) continue; // warm-up
  wall.push(performance.now() - t);
  cpu.push((used.user + used.system) / 1000);
  if (out[session.outputNames[0]].dims[0] !== rows) throw new Error(`expected ${rows} output rows`);
}
const r = (x) => Math.round(x * 10) / 10;
console.log(
  `TokenPacker ${path.basename(file)}: ${info.gridSize}x${info.gridSize} patches, scale ${info.scaleFactor} -> ${rows} tokens, rows of ${info.rowDim}; ` +
    `onnxruntime-node ${ort.env?.versions?.common ?? ""}, ${threads} thread(s)`
);
console.log(`  ONNX projector: median ${r(median(wall))} ms wall, ${r(median(cpu))} ms CPU; fastest ${r(Math.min(...wall))} ms wall (${runs} runs after one warm-up)`);
await session.release();
