// Before the adapter touches anything: stock transformers.js loads the testkit's synthetic LLaVA
// folder, tokenizes like LLaMA, and generates.
import { RawImage } from "@huggingface/transformers";
import { llamaSpmVocabPath } from "@leanvision/testkit";
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { loadTiny, newTokens, PROMPT, testPicture, type Loaded } from "./helpers.js";

let tiny: Loaded;
const image = (variant = 0) => {
  const p = testPicture(320, 240, variant);
  return new RawImage(new Uint8ClampedArray(p.data), p.width, p.height, 3);
};

beforeAll(async () => {
  tiny = await loadTiny();
});

describe("stock transformers.js on the tiny synthetic LLaVA", () => {
  it("has the three LLaVA sessions", () => {
    expect(Object.keys(tiny.model.sessions).sort()).toEqual(["decoder_model_merged", "embed_tokens", "vision_encoder"]);
  });

  it("tokenizes exactly like llama.cpp's reference for the LLaMA SentencePiece vocabulary", async () => {
    const vocab = await llamaSpmVocabPath();
    const inputs = readFileSync(`${vocab}.inp`, "utf8").split("\n__ggml_vocab_test__\n");
    const expected = readFileSync(`${vocab}.out`, "utf8").split("\n");
    inputs[inputs.length - 1] = inputs[inputs.length - 1].replace(/\n__ggml_vocab_test__\n?$/, "");
    expect(inputs.length).toBeGreaterThan(30);
    for (let i = 0; i < inputs.length; i++) {
      const ids = tiny.processor.tokenizer.encode(inputs[i], { add_special_tokens: false });
      expect(ids.join(" "), JSON.stringify(inputs[i])).toBe(expected[i].trim());
    }
  });

  it("expands <image> to 256 patch tokens and generates deterministically (greedy)", async () => {
    const inputs = await tiny.processor._call(image(), PROMPT);
    const ids = (inputs.input_ids as any).tolist()[0] as bigint[];
    expect(ids.filter((t) => t === 32000n)).toHaveLength(256);
    expect(ids[0]).toBe(1n); // BOS
    const length = ids.length;
    const a = newTokens(await tiny.model.generate({ ...inputs, max_new_tokens: 8, do_sample: false }), length);
    const b = newTokens(await tiny.model.generate({ ...inputs, max_new_tokens: 8, do_sample: false }), length);
    expect(a).toHaveLength(8);
    expect(a).toEqual(b);
  });

  it("the image reaches the language model: another picture gives other features and another continuation", async () => {
    const one = await tiny.processor._call(image(0), PROMPT);
    const two = await tiny.processor._call(image(1), PROMPT);
    const f1 = await tiny.model.encode_image({ pixel_values: one.pixel_values as any });
    const f2 = await tiny.model.encode_image({ pixel_values: two.pixel_values as any });
    expect(f1.dims).toEqual([1, 256, 64]);
    expect(Array.from(f1.data as Float32Array)).not.toEqual(Array.from(f2.data as Float32Array));
    const length = (one.input_ids as any).dims[1];
    const g1 = newTokens(await tiny.model.generate({ ...one, max_new_tokens: 12, do_sample: false }), length);
    const g2 = newTokens(await tiny.model.generate({ ...two, max_new_tokens: 12, do_sample: false }), length);
    expect(g1).not.toEqual(g2);
  });
});
