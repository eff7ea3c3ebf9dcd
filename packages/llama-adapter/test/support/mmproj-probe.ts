// Child process of mmproj-corpus.test.ts: loads each mmproj of a job file with loadVisionModel and
// encodes one image with it (VisionZip capture, then mtmd's own encode), appending each outcome to a
// results file before the next starts, so a crash (a signal) is pinned to the file that caused it.
//
//   node --import ./ts-loader.mjs mmproj-probe.ts <job.json> <results.jsonl>
//   job.json: { modelPath, mmprojs: [{ id, path }] }; results: {"id","phase":"start"} and
//   {"id","phase":"done","result":"ok"|"error"|"untyped",...} lines.
import { appendFileSync, readFileSync } from "node:fs";
import { getLlama, LlamaLogLevel } from "node-llama-cpp";
import { LeanVisionError } from "@leanvision/core";
import { loadVisionModel } from "../../src/vision-model.js";

export interface ProbeJob {
  modelPath: string;
  mmprojs: Array<{ id: string; path: string }>;
}
export type ProbeResult =
  | { id: string; phase: "start" }
  | { id: string; phase: "done"; result: "ok"; tokens: number; stockTokens: number }
  | { id: string; phase: "done"; result: "error"; code: string; message: string }
  | { id: string; phase: "done"; result: "untyped"; message: string };

/** 448x336 raw RGB, wider than the tiny tower's 336 px (LLaVA-1.6 mmprojs tile it). */
const PROBE_IMAGE = { width: 448, height: 336, data: new Uint8Array(448 * 336 * 3).map((_, i) => (i * 37 + (i >> 9)) % 251) };

async function main(jobFile: string, resultsFile: string): Promise<void> {
  const job = JSON.parse(readFileSync(jobFile, "utf8")) as ProbeJob;
  const record = (r: ProbeResult) => appendFileSync(resultsFile, JSON.stringify(r) + "\n");
  // build "never": a fork of getLlama's binary self-test must not fall back to building llama.cpp.
  const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
  const model = await llama.loadModel({ modelPath: job.modelPath });
  for (const { id, path } of job.mmprojs) {
    record({ id, phase: "start" });
    try {
      const vision = await loadVisionModel({ llama, model, mmprojPath: path, threads: 1 });
      try {
        const encoded = await vision.encodeImage(PROBE_IMAGE, "visionzip:54+10");
        const stock = await vision.encodeImageStock(PROBE_IMAGE);
        record({ id, phase: "done", result: "ok", tokens: encoded.reduced.numTokens, stockTokens: stock.numTokens });
      } finally {
        vision.dispose();
      }
    } catch (err) {
      if (err instanceof LeanVisionError) record({ id, phase: "done", result: "error", code: err.code, message: err.message });
      else record({ id, phase: "done", result: "untyped", message: String((err as Error)?.stack ?? err) });
    }
  }
  await model.dispose();
  await llama.dispose();
}

await main(process.argv[2], process.argv[3]);
