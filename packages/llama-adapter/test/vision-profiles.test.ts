// Every synthetic testkit profile's mmproj loads and encodes the sample photo to the token count
// llama.cpp gives it; the CLS-less SigLIP tower works end to end. The two large profiles (minutes of
// CPU each) run with LEANVISION_TEST_LARGE=1.
import { afterAll, describe, expect, it } from "vitest";
import { getLlama, type Llama } from "node-llama-cpp";
import { ensureLlavaGguf, GGUF_PROFILES, imageTokenGrid, sampleImagePath, type GgufProfileName } from "@leanvision/testkit";
import { loadVisionModel } from "../src/vision-model.js";

const profiles: GgufProfileName[] = ["tiny", "tiny-siglip", "small"];
if (process.env.LEANVISION_TEST_LARGE === "1") profiles.push("nanollava", "llava-1.5-7b");

let llamaPromise: Promise<Llama> | undefined;
const llama = () => (llamaPromise ??= getLlama({ gpu: false }));

async function load(profile: GgufProfileName) {
  const pair = await ensureLlavaGguf(profile);
  const model = await (await llama()).loadModel({ modelPath: pair.modelPath });
  const vision = await loadVisionModel({ llama: await llama(), model, mmprojPath: pair.mmprojPath });
  return { model, vision, dispose: async () => (vision.dispose(), await model.dispose()) };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

describe.each(profiles)("profile %s", (profile) => {
  it("loads its mmproj and encodes the sample photo to llama.cpp's token count", { timeout: 1_200_000 }, async () => {
    const shapes = GGUF_PROFILES[profile];
    const grid = imageTokenGrid(shapes.vision);
    const { model, vision, dispose } = await load(profile);
    try {
      expect(vision.info).toMatchObject({ hasCls: grid.hasCls, gridRows: grid.side, gridCols: grid.side, hiddenDim: shapes.vision.nEmbd });
      const out = await vision.encodeImage(sampleImagePath());
      expect(out.features.tiles[0].numTokens).toBe(grid.tokens + (grid.hasCls ? 1 : 0));
      expect(out.features.tiles[0].clsIndex).toBe(grid.hasCls ? grid.tokens : null);
      expect(out.reduced.numTokens).toBe(grid.tokens);
      expect(out.embeddings.length).toBe(grid.tokens * model.embeddingVectorSize);
    } finally {
      await dispose();
    }
  });
});

describe("CLS-less SigLIP (tiny-siglip)", () => {
  it("none equals mtmd's own output; visionzip 54+10 gives 64 tokens without a CLS", async () => {
    const { model, vision, dispose } = await load("tiny-siglip");
    try {
      const none = await vision.encodeImage(sampleImagePath());
      const stock = await vision.encodeImageStock(sampleImagePath());
      expect(none.features.tiles[0]).toMatchObject({ numTokens: 729, clsIndex: null, grid: { rows: 27, cols: 27 } });
      expect(stock.numTokens).toBe(729);
      expect(maxAbsDiff(none.embeddings, stock.embeddings)).toBeLessThan(1e-4);
      // Without CLS, llama.cpp feeds every token in order: the same as core's own `none`.
      expect(none.reduced.provenance.every((p, i) => p.kind === "patch" && p.sources[0] === i)).toBe(true);

      const zipped = await vision.encodeImage(sampleImagePath(), { kind: "visionzip", dominant: 54, contextual: 10 });
      const tile = zipped.features.tiles[0];
      expect(tile.attentionScores!.length).toBe(729);
      expect(zipped.reduced.numTokens).toBe(64);
      expect(zipped.reduced.provenance.filter((p) => p.kind === "cls")).toHaveLength(0);
      expect(zipped.reduced.provenance.filter((p) => p.kind === "dominant")).toHaveLength(54);
      expect(zipped.embeddings.length).toBe(64 * model.embeddingVectorSize);
    } finally {
      await dispose();
    }
  });
});

afterAll(async () => {
  await (await llamaPromise)?.dispose();
});
