// Stock llama.cpp (llama-mtmd-cli built from node-llama-cpp's bundled source) loads each small
// profile's pair and turns the sample image into the expected number of tokens. Building the binary
// takes minutes, so this runs only once `pnpm --filter @leanvision/testkit make mtmd-cli` has built it.
import { existsSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ensureLlavaGguf, type GgufProfileName, imageTokenGrid, GGUF_PROFILES, mtmdCliDir, runMtmdCli, sampleImagePath } from "../src/gguf/index.js";

const binary = path.join(mtmdCliDir(), "build", "bin", "llama-mtmd-cli");
const built = existsSync(path.join(mtmdCliDir(), "built")) && existsSync(binary);

describe.skipIf(!built)("llama-mtmd-cli on the synthetic pairs", () => {
  it.each(["tiny", "tiny-siglip"] as GgufProfileName[])("%s encodes the sample image to its token count", async (profile) => {
    const pair = await ensureLlavaGguf(profile);
    const run = await runMtmdCli({ binary, modelPath: pair.modelPath, mmprojPath: pair.mmprojPath, image: sampleImagePath(), threads: 1 });
    const { tokens } = imageTokenGrid(GGUF_PROFILES[profile].vision);
    expect(run.imageTokens).toBe(tokens);
    expect(run.promptTokens).toBeGreaterThan(tokens); // image + chat-formatted text
    expect(run.encodeMs).toBeGreaterThan(0);
    expect(run.output.trim().length).toBeGreaterThan(0);
  });

  it("tiny-next (LLaVA-1.6 layout) loads, and the 640x488 sample photo is an overview plus a 2x2 grid: 5 x 576 tokens", async () => {
    const pair = await ensureLlavaGguf("tiny-next");
    const run = await runMtmdCli({ binary, modelPath: pair.modelPath, mmprojPath: pair.mmprojPath, image: sampleImagePath(), threads: 1 });
    // One "decoding image batch" line per tile: each tile is its own image chunk.
    expect([...run.log.matchAll(/decoding image batch 1\/1, n_tokens_batch = 576/g)]).toHaveLength(5);
    expect(run.imageTokens).toBe(5 * imageTokenGrid(GGUF_PROFILES["tiny-next"].vision).tokens);
    expect(run.promptTokens).toBeGreaterThan(run.imageTokens);
    expect(run.output.trim().length).toBeGreaterThan(0);
  });
});
