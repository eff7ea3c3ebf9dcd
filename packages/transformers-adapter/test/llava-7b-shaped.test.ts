// The same checks at LLaVA-1.5-7B shapes (CLIP ViT-L/14-336, 576 patches, 4096-wide decoder).
// Slow (3 GB of ONNX, ~1-2 min on 2 cores), so it runs only with LEANVISION_SLOW_TESTS=1:
//   LEANVISION_SLOW_TESTS=1 pnpm vitest run packages/transformers-adapter/test/llava-7b-shaped.test.ts
import { AutoProcessor, LlavaForConditionalGeneration, RawImage } from "@huggingface/transformers";
import { ensureLlavaOnnx } from "@leanvision/testkit";
import { describe, expect, it } from "vitest";
import { withLeanVision } from "../src/index.js";
import { newTokens, PROMPT, testPicture } from "./helpers.js";

describe.runIf(process.env.LEANVISION_SLOW_TESTS === "1")("llava-1.5-7b-shaped", () => {
  it("none generates what stock generates; visionzip 54+10 merges 64 of 576 image embeddings", { timeout: 900_000 }, async () => {
    const { dir } = await ensureLlavaOnnx("llava-1.5-7b-shaped");
    const model = await LlavaForConditionalGeneration.from_pretrained(dir, { local_files_only: true, dtype: "fp32" });
    const processor = await AutoProcessor.from_pretrained(dir, { local_files_only: true });
    const p = testPicture(640, 480, 0);
    const image = new RawImage(new Uint8ClampedArray(p.data), p.width, p.height, 3);
    const run = async () => {
      const inputs = await processor(image, PROMPT);
      const length = inputs.input_ids.dims[1];
      return { length, tokens: newTokens(await model.generate({ ...inputs, max_new_tokens: 6, do_sample: false }), length) };
    };

    const stock = await run();
    const lean = await withLeanVision({ model, processor, modelPath: dir, reducer: "none" });
    try {
      expect(lean.split.found.attentionLayers).toBe(23);
      const none = await run();
      expect(none).toEqual(stock);
      const zipped = await lean.withReducer({ kind: "visionzip", dominant: 54, contextual: 10 }, run);
      expect(zipped.length).toBe(stock.length - 576 + 64);
      expect(zipped.tokens).toHaveLength(6);
      expect(lean.lastImages[0].features.tiles[0].grid).toEqual({ rows: 24, cols: 24 });
    } finally {
      await lean.dispose();
    }
  });
});
