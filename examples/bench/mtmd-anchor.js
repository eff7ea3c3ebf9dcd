// The stock llama.cpp anchor: llama-mtmd-cli on the same model and image, all visual tokens kept.
import { spawn } from "node:child_process";
import { LeanVisionError } from "@leanvision/core";
import { median, round } from "./stats.js";

/**
 * Reads llama-mtmd-cli's log (stdout and stderr together) for one single-turn run:
 *   "image slice encoded in 812 ms", or in newer builds
 *   "mtmd batch encoding done in 812 ms"                    → encodeMs (vision encoder + projector)
 *   "decoding image batch 1/1, n_tokens_batch = 576"        → visualTokens (summed over batches)
 *   "image decoded (batch 1/1) in 95 ms"                    → imageDecodeMs (summed)
 *   "llama_perf_context_print: prompt eval time = 130.5 ms / 612 tokens" → prefillMs, promptTokens
 * ttftMs is encode + prefill: the CLI does not time its first token itself.
 */
export function parseMtmdLog(log) {
  const encode = [...log.matchAll(/(?:image slice encoded in|mtmd batch encoding done in) (\d+(?:\.\d+)?) ms/g)].map((m) => Number(m[1]));
  const batches = [...log.matchAll(/decoding image batch \d+\/\d+, n_tokens_batch = (\d+)/g)].map((m) => Number(m[1]));
  const decoded = [...log.matchAll(/image decoded \(batch \d+\/\d+\) in (\d+(?:\.\d+)?) ms/g)].map((m) => Number(m[1]));
  const promptEval = log.match(/prompt eval time =\s*(\d+(?:\.\d+)?) ms \/\s*(\d+) tokens/);
  if (encode.length === 0 || batches.length === 0 || !promptEval) {
    throw new LeanVisionError(
      "MTMD_CLI_OUTPUT",
      "llama-mtmd-cli's log lacks its image encode / prompt eval timings; run it by hand with the same " +
        "arguments to see why (its last lines):\n" + log.trim().split("\n").slice(-15).join("\n")
    );
  }
  const encodeMs = sum(encode);
  const prefillMs = Number(promptEval[1]);
  return {
    visualTokens: sum(batches),
    promptTokens: Number(promptEval[2]),
    encodeMs,
    imageDecodeMs: sum(decoded),
    prefillMs,
    ttftMs: encodeMs + prefillMs
  };
}

/** Command-line arguments for one single-turn, one-token llama-mtmd-cli run. */
export function mtmdArgs({ modelPath, mmprojPath, image, prompt, threads, chatTemplate }) {
  // -lv 4: the timings are logged at info level.
  const args = ["-m", modelPath, "--mmproj", mmprojPath, "--image", image, "-p", prompt, "-n", "1", "--temp", "0", "-c", "4096", "-lv", "4"];
  if (threads) args.push("-t", String(threads));
  if (chatTemplate) args.push("--chat-template", chatTemplate);
  return args;
}

/**
 * Runs llama-mtmd-cli `runs` times and returns the medians. Synthetic GGUFs may carry no chat
 * template; the CLI refuses those, so it is retried with LLaVA-1.5's own (vicuna).
 */
export async function runMtmdAnchor({ cliPath, modelPath, mmprojPath, image, prompt, runs, threads }) {
  let chatTemplate = null;
  const parsed = [];
  for (let i = 0; i < runs; i++) {
    let result = await runOnce(cliPath, mtmdArgs({ modelPath, mmprojPath, image, prompt, threads, chatTemplate }));
    if (result.code !== 0 && /does not have chat template/i.test(result.log) && !chatTemplate) {
      chatTemplate = "vicuna";
      result = await runOnce(cliPath, mtmdArgs({ modelPath, mmprojPath, image, prompt, threads, chatTemplate }));
    }
    if (result.code !== 0) {
      throw new LeanVisionError(
        "MTMD_CLI_FAILED",
        `llama-mtmd-cli exited with ${result.code}; its last lines:\n` + result.log.trim().split("\n").slice(-15).join("\n")
      );
    }
    parsed.push(parseMtmdLog(result.log));
  }
  const pick = (key) => round(median(parsed.map((p) => p[key])));
  return {
    tool: "llama-mtmd-cli",
    visualTokens: parsed[0].visualTokens,
    promptTokens: parsed[0].promptTokens,
    encodeMs: pick("encodeMs"),
    imageDecodeMs: pick("imageDecodeMs"),
    prefillMs: pick("prefillMs"),
    ttftMs: pick("ttftMs"),
    runs
  };
}

function runOnce(cliPath, args) {
  return new Promise((resolve, reject) => {
    const child = spawn(cliPath, args, { stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    child.stdout.on("data", (d) => (log += d));
    child.stderr.on("data", (d) => (log += d));
    child.on("error", (error) =>
      reject(new LeanVisionError("MTMD_CLI_FAILED", `could not start ${cliPath}: ${error.message}`, { cause: error }))
    );
    child.on("close", (code) => resolve({ code, log }));
  });
}

function sum(values) {
  return values.reduce((a, b) => a + b, 0);
}
