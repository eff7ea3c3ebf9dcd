// Shared fixtures: the tiny synthetic LLaVA (testkit) loaded by stock transformers.js, and test images.
import { AutoProcessor, env, LlavaForConditionalGeneration, RawImage, Tensor } from "@huggingface/transformers";
import { ensureLlavaOnnx } from "@leanvision/testkit";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { LlavaLikeModel, LlavaLikeProcessor } from "../src/index.js";

env.allowRemoteModels = false;

export interface Loaded {
  dir: string;
  model: LlavaLikeModel;
  processor: LlavaLikeProcessor;
}

export async function loadTiny(): Promise<Loaded> {
  const { dir } = await ensureLlavaOnnx("tiny");
  const model = await LlavaForConditionalGeneration.from_pretrained(dir, { local_files_only: true, dtype: "fp32" });
  const processor = await AutoProcessor.from_pretrained(dir, { local_files_only: true });
  return { dir, model: model as unknown as LlavaLikeModel, processor: processor as unknown as LlavaLikeProcessor };
}

/** A deterministic RGB test picture (gradients and a few blocks), so images differ in content and layout. */
export function testPicture(width: number, height: number, variant = 0): { data: Uint8Array; width: number; height: number } {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      const block = ((Math.floor(x / 40) + Math.floor(y / 40) + variant) % 3) * 80;
      data[i] = (x * 255) / width;
      data[i + 1] = (y * 255) / height;
      data[i + 2] = block;
    }
  }
  return { data, width, height };
}

/** Writes a PNG of testPicture to a temp folder and returns its path. */
export async function testPng(width = 320, height = 240, variant = 0): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), "lv-img-"));
  const file = path.join(dir, `picture-${variant}.png`);
  const { data } = testPicture(width, height, variant);
  await new RawImage(new Uint8ClampedArray(data), width, height, 3).save(file);
  return file;
}

export const PROMPT = "USER: <image>\nDescribe the picture. ASSISTANT:";

export function newTokens(out: unknown, inputLength: number): bigint[] {
  return ((out as Tensor).tolist()[0] as bigint[]).slice(inputLength);
}

/** Greedy continuation of a whole token sequence (image tokens included) from scratch: no cache, the image encoded again. */
export async function generateFrom(model: LlavaLikeModel, ids: bigint[], pixelValues: unknown, maxNewTokens: number): Promise<bigint[]> {
  const out = await model.generate({
    input_ids: new Tensor("int64", BigInt64Array.from(ids), [1, ids.length]),
    attention_mask: new Tensor("int64", new BigInt64Array(ids.length).fill(1n), [1, ids.length]),
    pixel_values: pixelValues,
    max_new_tokens: maxNewTokens,
    do_sample: false
  });
  return newTokens(out, ids.length);
}

export async function caught(p: Promise<unknown> | (() => unknown)): Promise<any> {
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    return e;
  }
  throw new Error("expected an error, got none");
}
