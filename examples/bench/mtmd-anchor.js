// The stock llama.cpp anchor: llama-mtmd-cli on the same model and image, all visual tokens kept.
import { spawn } from "node:child_process";
import { LeanVisionError } from "@leanvision/core";
import { median } from "@leanvision/core/stats";
import { parseMtmdLog } from "@leanvision/testkit/mtmd-log";
import { round } from "./stats.js";

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
