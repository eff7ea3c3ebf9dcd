// The one llama-mtmd-cli log parser (testkit's runMtmdCli and the benchmark's anchor both use it).
import { describe, expect, it } from "vitest";
import { LeanVisionError } from "@leanvision/core";
import { parseMtmdLog } from "../src/gguf/mtmd-log.js";

// The lines llama-mtmd-cli prints, in the formats of the bundled tools/mtmd/mtmd-helper.cpp and src/llama-context.cpp.
const SLICE_LOG = `main: loading model: /cache/tiny.gguf
WARN: This is an experimental CLI for testing multimodal capability.
encoding image slice...
image slice encoded in 812 ms
decoding image batch 1/2, n_tokens_batch = 512
image decoded (batch 1/2) in 70 ms
decoding image batch 2/2, n_tokens_batch = 64
image decoded (batch 2/2) in 11 ms
 the cat

llama_perf_context_print:        load time =     123.45 ms
llama_perf_context_print: prompt eval time =     130.50 ms /   612 tokens (    0.21 ms per token,  4689.66 tokens per second)
llama_perf_context_print:        eval time =       0.00 ms /     1 runs   (    0.00 ms per token,      inf tokens per second)
llama_perf_context_print:       total time =    1500.00 ms /   613 tokens
`;

// A real run of the bundled build (tiny profile, test-1.jpeg, -t 1 -lv 4), the lines that matter.
const BATCH_LOG = `0.00.188.770 I get_dummy_batch: warmup with image size = 336 x 336
0.00.208.901 I encoding mtmd batch, n_chunks = 1 (done = 1, total = 3)
0.00.291.880 I mtmd batch encoding done in 83 ms
0.00.291.912 I decoding image batch 1/1, n_tokens_batch = 576
0.00.377.656 I image decoded (batch 1/1) in 86 ms
0.00.383.832 I llama_perf_context_print:        load time =      47.89 ms
0.00.383.834 I llama_perf_context_print: prompt eval time =     174.68 ms /   594 tokens (    0.29 ms per token,  3400.48 tokens per second)
0.00.383.835 I llama_perf_context_print:        eval time =       0.00 ms /     1 runs   (    0.00 ms per token,      inf tokens per second)
`;

describe("parseMtmdLog", () => {
  it("reads the batched-encoding log of the bundled build", () => {
    expect(parseMtmdLog(BATCH_LOG)).toEqual({ visualTokens: 576, promptTokens: 594, encodeMs: 83, imageDecodeMs: 86, prefillMs: 174.68, ttftMs: 257.68 });
  });

  it("reads the per-slice log of older builds, summing batches", () => {
    expect(parseMtmdLog(SLICE_LOG)).toEqual({ visualTokens: 576, promptTokens: 612, encodeMs: 812, imageDecodeMs: 81, prefillMs: 130.5, ttftMs: 942.5 });
  });

  it("takes fractional milliseconds", () => {
    expect(parseMtmdLog(BATCH_LOG.replace("done in 83 ms", "done in 83.25 ms")).encodeMs).toBe(83.25);
  });

  it("throws MTMD_CLI_OUTPUT with the log's tail when the timings are missing", () => {
    const log = "main: loading model\nerror: failed to load vision model\n";
    try {
      parseMtmdLog(log);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(LeanVisionError);
      expect((error as LeanVisionError).code).toBe("MTMD_CLI_OUTPUT");
      expect((error as Error).message).toContain("failed to load vision model");
    }
  });
});
