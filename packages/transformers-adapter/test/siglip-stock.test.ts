// Before the adapter touches anything: stock transformers.js 4.3 loads the testkit's OneVision- and
// nanoLLaVA-layout folders in fp32, fp16, q4 and q8 the way their model cards do, tokenizes like Qwen2,
// and generates.
import {
  AutoProcessor,
  AutoTokenizer,
  env,
  LlavaForConditionalGeneration,
  LlavaOnevisionForConditionalGeneration,
  LlavaQwen2ForCausalLM,
  RawImage,
  type Tensor
} from "@huggingface/transformers";
import { ensureLlavaOnnx, qwen2VocabPath } from "@leanvision/testkit";
import { readFileSync } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { newTokens, testPicture } from "./helpers.js";

env.allowRemoteModels = false;
const IMAGE = 151646;
/** The test picture, or (inverted) its negative: different enough to change a tiny random model's greedy reply. */
const picture = (inverted = false) => {
  const p = testPicture(320, 240);
  const data = new Uint8ClampedArray(p.data);
  if (inverted) for (let i = 0; i < data.length; i++) data[i] = 255 - data[i];
  return new RawImage(data, p.width, p.height, 3);
};

const dirs: Record<string, string> = {};
beforeAll(async () => {
  for (const p of ["tiny-onevision", "tiny-nanollava"] as const) dirs[p] = (await ensureLlavaOnnx(p)).dir;
});

const MESSAGES = {
  // OneVision's chat template takes content parts (llava-hf model card); nanoLLaVA's is plain ChatML (Xenova/nanoLLaVA card).
  "tiny-onevision": [{ role: "user", content: [{ type: "image" }, { type: "text", text: "What is in the picture?" }] }],
  "tiny-nanollava": [
    { role: "system", content: "Answer the question." },
    { role: "user", content: "<image>\nWhat is in the picture?" }
  ]
} as const;

describe.each([
  ["tiny-onevision", LlavaOnevisionForConditionalGeneration],
  ["tiny-nanollava", LlavaQwen2ForCausalLM]
] as const)("%s with stock transformers.js", (profile, ModelClass) => {
  let tokenizer: any;
  let processor: any;
  beforeAll(async () => {
    tokenizer = await AutoTokenizer.from_pretrained(dirs[profile], { local_files_only: true });
    processor = await AutoProcessor.from_pretrained(dirs[profile], { local_files_only: true });
  });

  it("AutoProcessor is only the image processor (no LlavaProcessor): 384x384 pixels, no tokenizer", async () => {
    expect(processor.tokenizer).toBeUndefined();
    const { pixel_values } = await processor(picture());
    expect(pixel_values.dims).toEqual([1, 3, 384, 384]);
  });

  it("the chat template comes from tokenizer_config.json (ChatML) and <image> is one special token", () => {
    const text = tokenizer.apply_chat_template(MESSAGES[profile], { tokenize: false, add_generation_prompt: true }) as string;
    expect(text).toContain("<|im_start|>user");
    expect(text.endsWith("<|im_start|>assistant\n")).toBe(true);
    const ids = tokenizer.encode(text) as number[];
    expect(ids.filter((t) => t === IMAGE)).toHaveLength(1);
  });

  it("the model card's flow (one <image> token) fails in 4.3: the prompt must carry 729 image tokens", async () => {
    const model = await ModelClass.from_pretrained(dirs[profile], { local_files_only: true, dtype: "fp32" });
    const text = tokenizer.apply_chat_template(MESSAGES[profile], { tokenize: false, add_generation_prompt: true }) as string;
    const inputs = { ...tokenizer(text), ...(await processor(picture())) };
    await expect(model.generate({ ...inputs, max_new_tokens: 2 })).rejects.toThrow(/tokens: 1, features 729/);
    await model.dispose();
  });

  it.each(["fp32", "fp16", "q4", "q8"] as const)("loads %s (each graph's dtype file) and generates greedily, deterministically", async (dtype) => {
    const model = await ModelClass.from_pretrained(dirs[profile], { local_files_only: true, dtype });
    expect(Object.keys(model.sessions).sort()).toEqual(["decoder_model_merged", "embed_tokens", "vision_encoder"]);
    const text = (tokenizer.apply_chat_template(MESSAGES[profile], { tokenize: false, add_generation_prompt: true }) as string).replace("<image>", "<image>".repeat(729));
    const run = async (inverted: boolean) => {
      const inputs = { ...tokenizer(text), ...(await processor(picture(inverted))) };
      const length = (inputs.input_ids as Tensor).dims[1];
      return newTokens(await model.generate({ ...inputs, max_new_tokens: 6, do_sample: false }), length);
    };
    const a = await run(false);
    expect(a).toHaveLength(6);
    expect(await run(false)).toEqual(a);
    expect(await run(true)).not.toEqual(a); // the image reaches the language model
    await model.dispose();
  });

  if (profile === "tiny-nanollava") {
    it("also loads as LlavaForConditionalGeneration with per-graph dtypes, as the nanoLLaVA model card does", async () => {
      const model = await LlavaForConditionalGeneration.from_pretrained(dirs[profile], {
        local_files_only: true,
        dtype: { embed_tokens: "fp16", vision_encoder: "fp16", decoder_model_merged: "q4" }
      });
      const features = await model.encode_image({ pixel_values: (await processor(picture())).pixel_values });
      expect(features.dims).toEqual([1, 729, 64]);
      await model.dispose();
    });
  }
});

describe("Qwen2 tokenizer.json (from llama.cpp's ggml-vocab-qwen2.gguf)", () => {
  it("tokenizes exactly like llama.cpp's reference for the Qwen2 vocabulary", async () => {
    const tokenizer = await AutoTokenizer.from_pretrained(dirs["tiny-onevision"], { local_files_only: true });
    const vocab = await qwen2VocabPath();
    const inputs = readFileSync(`${vocab}.inp`, "utf8").split("\n__ggml_vocab_test__\n");
    const expected = readFileSync(`${vocab}.out`, "utf8").split("\n");
    inputs[inputs.length - 1] = inputs[inputs.length - 1].replace(/\n__ggml_vocab_test__\n?$/, "");
    expect(inputs.length).toBeGreaterThan(30);
    for (let i = 0; i < inputs.length; i++) {
      const ids = tokenizer.encode(inputs[i], { add_special_tokens: false }) as number[];
      expect(ids.join(" "), JSON.stringify(inputs[i])).toBe(expected[i].trim());
    }
  });
});
