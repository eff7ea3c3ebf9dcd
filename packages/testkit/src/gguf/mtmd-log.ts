// The one reader of llama-mtmd-cli's log: runMtmdCli (mtmd-cli.ts) and the benchmark's stock
// llama.cpp anchor (examples/bench/mtmd-anchor.js) both use it. No dependency beyond core, so the
// examples import it alone as @leanvision/testkit/mtmd-log.
import { LeanVisionError } from "@leanvision/core";

/** What one single-image llama-mtmd-cli run logs about the image and the prompt. */
export interface MtmdLogTimings {
  /** Visual tokens the image became (n_tokens_batch summed over its batches). */
  visualTokens: number;
  /** Tokens llama.cpp counted as prompt (text + image). */
  promptTokens: number;
  /** Vision encoder + projector time, as llama.cpp logs it (summed over slices / batches). */
  encodeMs: number;
  /** Language-model decode time of the image embeddings (summed over batches). */
  imageDecodeMs: number;
  /** The prompt eval time llama.cpp reports for promptTokens. */
  prefillMs: number;
  /** encodeMs + prefillMs: the CLI does not time its first token itself. */
  ttftMs: number;
}

/**
 * Reads llama-mtmd-cli's log (stdout and stderr together, `-lv 4`) for one single-turn run:
 *   "image slice encoded in 812 ms", or in newer builds
 *   "mtmd batch encoding done in 812 ms"                    → encodeMs
 *   "decoding image batch 1/1, n_tokens_batch = 576"        → visualTokens
 *   "image decoded (batch 1/1) in 95 ms"                    → imageDecodeMs
 *   "llama_perf_context_print: prompt eval time = 130.5 ms / 612 tokens" → prefillMs, promptTokens
 * Throws MTMD_CLI_OUTPUT, with the log's tail, when the encode or prompt eval lines are missing.
 */
export function parseMtmdLog(log: string): MtmdLogTimings {
  const all = (re: RegExp) => [...log.matchAll(re)].map((m) => Number(m[1]));
  const encode = all(/(?:image slice encoded in|mtmd batch encoding done in) (\d+(?:\.\d+)?) ms/g);
  const batches = all(/decoding image batch \d+\/\d+, n_tokens_batch = (\d+)/g);
  const decoded = all(/image decoded \(batch \d+\/\d+\) in (\d+(?:\.\d+)?) ms/g);
  const promptEval = /prompt eval time =\s*(\d+(?:\.\d+)?) ms \/\s*(\d+) tokens/.exec(log);
  if (encode.length === 0 || batches.length === 0 || !promptEval) {
    throw new LeanVisionError(
      "MTMD_CLI_OUTPUT",
      "llama-mtmd-cli's log lacks its image encode / prompt eval timings; run it by hand with the same " +
        "arguments to see why (its last lines):\n" + log.trim().split("\n").slice(-15).join("\n")
    );
  }
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
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
