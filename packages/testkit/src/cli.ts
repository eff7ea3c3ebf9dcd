#!/usr/bin/env node
// pnpm --filter @leanvision/testkit make <profile...> [--out dir] [--onnx] [--check]
// Writes synthetic LLaVA models (GGUF pairs, or transformers.js ONNX folders) into the cache.
import { statSync } from "node:fs";
import { LeanVisionError } from "@leanvision/core";
import { ensureLlavaGguf, GGUF_PROFILES, type GgufProfileName, readGgufManifest, sampleImagePath, TOKENPACKER_PROFILES } from "./gguf/index.js";
import { formatBytes, progressBar } from "./gguf/progress.js";
import { ensureMtmdCli, runMtmdCli } from "./gguf/mtmd-cli.js";
import { measurePromptEval } from "./gguf/prompt-speed.js";
import { type Args, ONNX_ONLY, USAGE, parseMakeArgs } from "./cli-args.js";

// The ONNX factory lives beside this one; it is looked up at run time so this CLI works with or without it.
interface OnnxFactory {
  ensureLlavaOnnx(
    profile: string,
    opts: { cacheDir?: string; onProgress?: (done: number, total: number) => void; dtypes?: string[] }
  ): Promise<{ profile: string; dir: string; projectorPath?: string }>;
  ONNX_PROFILES: Record<string, unknown>;
}

async function makeGguf(profile: string, args: Args): Promise<void> {
  if (!Object.hasOwn(GGUF_PROFILES, profile) && !Object.hasOwn(TOKENPACKER_PROFILES, profile)) {
    const names = [...Object.keys(GGUF_PROFILES), ...Object.keys(TOKENPACKER_PROFILES)];
    throw new LeanVisionError("INVALID_INPUT", `Unknown GGUF profile "${profile}"; use one of: ${names.join(", ")} (or --onnx for ONNX profiles)`);
  }
  const started = performance.now();
  const pair = await ensureLlavaGguf(profile as GgufProfileName, { cacheDir: args.out, onProgress: progressBar(`writing ${profile}`) });
  const manifest = readGgufManifest(pair);
  const seconds = (performance.now() - started) / 1000;
  const fresh = seconds * 1000 >= manifest.writeMs * 0.5; // a cache hit takes far less than the recorded write
  console.log(`${profile}: ${manifest.imageTokens} image tokens${manifest.hasCls ? " + CLS" : ""}`);
  console.log(`  model   ${pair.modelPath} (${formatBytes(statSync(pair.modelPath).size)})`);
  console.log(`  mmproj  ${pair.mmprojPath} (${formatBytes(statSync(pair.mmprojPath).size)})`);
  if (pair.projectorPath) console.log(`  projector ${pair.projectorPath} (${formatBytes(statSync(pair.projectorPath).size)}, TokenPacker through convert-tokenpacker.py)`);
  console.log(`  ${fresh ? "written" : "cached; written"} in ${(manifest.writeMs / 1000).toFixed(1)} s`);
  if (args.check) {
    const binary = await ensureMtmdCli({ cacheDir: args.out, onLog: (line) => process.stderr.write(`  [build] ${line}\n`) });
    const run = await runMtmdCli({ binary, modelPath: pair.modelPath, mmprojPath: pair.mmprojPath, image: sampleImagePath(), threads: args.threads });
    const ok = run.imageTokens === manifest.imageTokens;
    console.log(`  llama-mtmd-cli: ${run.imageTokens} image tokens (expected ${manifest.imageTokens}), encode ${run.encodeMs} ms, ` +
      `image decode ${run.imageDecodeMs} ms, prompt eval ${run.promptTokens} tokens in ${run.promptEvalMs.toFixed(0)} ms${ok ? "" : "  MISMATCH"}`);
    if (!ok) process.exitCode = 1;
  }
  if (args.bench) {
    const lengths = [manifest.imageTokens + 40, 64 + 40];
    for (const r of await measurePromptEval(pair.modelPath, lengths, { threads: args.threads, runs: args.runs })) {
      console.log(`  prompt eval (node-llama-cpp${args.threads ? `, threads ${args.threads}` : ""}): ${r.tokens} tokens in ${r.ms.toFixed(0)} ms = ${r.tokensPerSecond.toFixed(1)} tokens/s (median of ${r.runs.length})`);
    }
  }
}

async function makeOnnx(profile: string, args: Args): Promise<void> {
  const onnx = (await import("./onnx/index.js")) as unknown as Partial<OnnxFactory>;
  if (!onnx.ensureLlavaOnnx || !onnx.ONNX_PROFILES) {
    throw new LeanVisionError("INVALID_INPUT", "This build of the testkit has no ONNX factory yet (src/onnx)");
  }
  if (!Object.hasOwn(onnx.ONNX_PROFILES, profile)) {
    throw new LeanVisionError("INVALID_INPUT", `Unknown ONNX profile "${profile}"; use one of: ${Object.keys(onnx.ONNX_PROFILES).join(", ")}`);
  }
  const started = performance.now();
  const result = await onnx.ensureLlavaOnnx(profile, {
    cacheDir: args.out,
    dtypes: args.dtypes,
    onProgress: progressBar(`writing ${profile} (onnx)`, { unit: "steps" })
  });
  const projector = result.projectorPath ? `, TokenPacker projector ${result.projectorPath}` : "";
  console.log(`${profile} (onnx): ${result.dir}${projector} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
}

async function main(): Promise<void> {
  const args = parseMakeArgs(process.argv.slice(2));
  if (args.profiles.length === 0) {
    process.stdout.write(USAGE);
    return;
  }
  for (const profile of args.profiles) {
    if (profile === "mtmd-cli") {
      const binary = await ensureMtmdCli({ cacheDir: args.out, onLog: (line) => process.stderr.write(`[build] ${line}\n`) });
      console.log(`llama-mtmd-cli: ${binary}`);
    } else if (args.onnx || ONNX_ONLY.includes(profile)) {
      await makeOnnx(profile, args);
    } else {
      await makeGguf(profile, args);
    }
  }
}

main().catch((err: unknown) => {
  if (err instanceof LeanVisionError) {
    process.stderr.write(`error [${err.code}]: ${err.message}\n`);
  } else {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  }
  process.exitCode = 1;
});
