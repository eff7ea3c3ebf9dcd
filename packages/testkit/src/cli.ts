#!/usr/bin/env node
// pnpm --filter @leanvision/testkit make <profile...> [--out dir] [--onnx] [--check]
// Writes synthetic LLaVA models (GGUF pairs, or transformers.js ONNX folders) into the cache.
import { statSync } from "node:fs";
import path from "node:path";
import { LeanVisionError } from "@leanvision/core";
import { ensureLlavaGguf, GGUF_PROFILES, type GgufProfileName, readGgufManifest, sampleImagePath } from "./gguf/index.js";
import { formatBytes, progressBar } from "./gguf/progress.js";
import { ensureMtmdCli, runMtmdCli } from "./gguf/mtmd-cli.js";
import { measurePromptEval } from "./gguf/prompt-speed.js";

// The ONNX factory lives beside this one; it is looked up at run time so this CLI works with or without it.
interface OnnxFactory {
  ensureLlavaOnnx(
    profile: string,
    opts: { cacheDir?: string; onProgress?: (done: number, total: number) => void; dtypes?: string[] }
  ): Promise<{ profile: string; dir: string }>;
  ONNX_PROFILES: Record<string, unknown>;
}

/** ONNX profiles whose names no GGUF profile shares, so they need no --onnx. */
const ONNX_ONLY = ["llava-1.5-7b-shaped", "tiny-onevision", "tiny-nanollava", "onevision-0.5b-shaped"];

const USAGE = `Usage: pnpm --filter @leanvision/testkit make <profile...> [--out dir] [--onnx] [--dtypes list] [--check] [--bench] [--threads n]

  GGUF profiles (llama.cpp / node-llama-cpp): ${Object.keys(GGUF_PROFILES).join(", ")}
  ONNX profiles (transformers.js): tiny (with --onnx), ${ONNX_ONLY.join(", ")}
  mtmd-cli        build stock llama.cpp's llama-mtmd-cli from node-llama-cpp's bundled source

  --out dir       cache directory (default $LEANVISION_CACHE_DIR or ~/.cache/leanvision)
  --onnx          write the transformers.js ONNX layout instead of GGUF
  --dtypes list   SigLIP ONNX profiles: dtypes to write, e.g. fp32,fp16,q4,q8 (default: the profile's)
  --check         run llama-mtmd-cli on each GGUF pair with the sample image and print the token count
  --bench         measure the language model's prompt evaluation in node-llama-cpp: a LLaVA prompt
                  with all image tokens + 40 text tokens, and one with 64 image tokens + 40
  --threads n     threads for --check and --bench (default: llama.cpp's / node-llama-cpp's own)
  --runs n        timed runs per prompt length for --bench (default 3; the median is printed)
`;

interface Args { profiles: string[]; out?: string; onnx: boolean; check: boolean; bench: boolean; threads?: number; runs?: number; dtypes?: string[] }

function parseArgs(argv: string[]): Args {
  const args: Args = { profiles: [], onnx: false, check: false, bench: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--out") {
      const value = argv[++i];
      if (!value) throw new LeanVisionError("INVALID_INPUT", "--out needs a directory");
      // pnpm runs the script in the package folder; resolve relative paths against where it was called.
      args.out = path.resolve(process.env.INIT_CWD ?? process.cwd(), value);
    } else if (a === "--threads" || a === "--runs") {
      const value = Number(argv[++i]);
      if (!Number.isInteger(value) || value < 1) throw new LeanVisionError("INVALID_INPUT", `${a} needs a positive integer`);
      if (a === "--threads") args.threads = value;
      else args.runs = value;
    } else if (a === "--dtypes") {
      const value = argv[++i] ?? "";
      const dtypes = value.split(",").filter(Boolean);
      if (!dtypes.length || dtypes.some((d) => !["fp32", "fp16", "q4", "q8"].includes(d))) {
        throw new LeanVisionError("INVALID_INPUT", `--dtypes needs a comma-separated list of fp32, fp16, q4, q8 (got "${value}")`);
      }
      args.dtypes = dtypes;
    } else if (a === "--onnx") args.onnx = true;
    else if (a === "--bench") args.bench = true;
    else if (a === "--check") args.check = true;
    else if (a === "--help" || a === "-h") args.profiles = [];
    else if (a.startsWith("-")) throw new LeanVisionError("INVALID_INPUT", `Unknown option ${a}\n\n${USAGE}`);
    else args.profiles.push(a);
  }
  return args;
}

async function makeGguf(profile: string, args: Args): Promise<void> {
  if (!Object.hasOwn(GGUF_PROFILES, profile)) {
    throw new LeanVisionError("INVALID_INPUT", `Unknown GGUF profile "${profile}"; use one of: ${Object.keys(GGUF_PROFILES).join(", ")} (or --onnx for ONNX profiles)`);
  }
  const started = performance.now();
  const pair = await ensureLlavaGguf(profile as GgufProfileName, { cacheDir: args.out, onProgress: progressBar(`writing ${profile}`) });
  const manifest = readGgufManifest(pair);
  const seconds = (performance.now() - started) / 1000;
  const fresh = seconds * 1000 >= manifest.writeMs * 0.5; // a cache hit takes far less than the recorded write
  console.log(`${profile}: ${manifest.imageTokens} image tokens${manifest.hasCls ? " + CLS" : ""}`);
  console.log(`  model   ${pair.modelPath} (${formatBytes(statSync(pair.modelPath).size)})`);
  console.log(`  mmproj  ${pair.mmprojPath} (${formatBytes(statSync(pair.mmprojPath).size)})`);
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
  console.log(`${profile} (onnx): ${result.dir} (${((performance.now() - started) / 1000).toFixed(1)} s)`);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
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
