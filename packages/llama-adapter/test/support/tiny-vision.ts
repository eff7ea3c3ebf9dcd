// The tiny profile loaded once per test file: node-llama-cpp (prebuilt CPU binaries), the language
// model and its vision model, freed after the file's tests.
import { afterAll, beforeAll } from "vitest";
import { getLlama, type Llama, type LlamaModel } from "node-llama-cpp";
import { ensureLlavaGguf } from "@leanvision/testkit";
import { loadVisionModel, type LlamaVisionModel } from "../../src/vision-model.js";

export interface TinyVision {
  llama: Llama;
  model: LlamaModel;
  vision: LlamaVisionModel;
  modelPath: string;
  mmprojPath: string;
}

/** Registers beforeAll/afterAll hooks; the returned object is filled before the first test runs. */
export function useTinyVision(threads?: number): TinyVision {
  const loaded = {} as TinyVision;
  beforeAll(async () => {
    const pair = await ensureLlavaGguf("tiny");
    Object.assign(loaded, pair);
    loaded.llama = await getLlama({ gpu: false, build: "never" });
    loaded.model = await loaded.llama.loadModel({ modelPath: pair.modelPath });
    loaded.vision = await loadVisionModel({ llama: loaded.llama, model: loaded.model, mmprojPath: pair.mmprojPath, threads });
  });
  afterAll(async () => {
    loaded.vision?.dispose();
    await loaded.model?.dispose();
  });
  return loaded;
}
