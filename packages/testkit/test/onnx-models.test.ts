// The transformers.js-layout LLaVA folders: files, graph interfaces, config consistency, determinism.
// (That stock transformers.js loads and generates on them is tested in packages/transformers-adapter.)
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import onnxProto from "onnx-proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureLlavaOnnx, ONNX_PROFILES } from "../src/onnx/index.js";

const { onnx } = onnxProto;
const tmp = mkdtempSync(path.join(os.tmpdir(), "lv-onnx-"));
let dir = "";

type Io = { name: string; dims: Array<number | string> };
function graphIo(file: string) {
  const model = onnx.ModelProto.decode(readFileSync(path.join(dir, "onnx", file)));
  const io = (list: any[]): Io[] =>
    list.map((v) => ({
      name: v.name,
      dims: (v.type.tensorType.shape?.dim ?? []).map((d: any) => (d.dimParam ? d.dimParam : Number(d.dimValue)))
    }));
  return { model, inputs: io(model.graph!.input!), outputs: io(model.graph!.output!), ops: model.graph!.node!.map((n) => n.opType) };
}
const sha = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

beforeAll(async () => {
  const progress: Array<[number, number]> = [];
  ({ dir } = await ensureLlavaOnnx("tiny", { cacheDir: tmp, onProgress: (d, t) => progress.push([d, t]) }));
  expect(progress.at(-1)).toEqual([4, 4]);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("ensureLlavaOnnx('tiny')", () => {
  it("writes the folder transformers.js loads", () => {
    for (const f of [
      "config.json",
      "preprocessor_config.json",
      "processor_config.json",
      "tokenizer.json",
      "tokenizer_config.json",
      "generation_config.json",
      "onnx/vision_encoder.onnx",
      "onnx/embed_tokens.onnx",
      "onnx/decoder_model_merged.onnx"
    ]) {
      expect(statSync(path.join(dir, f)).size, f).toBeGreaterThan(0);
    }
  });

  it("reuses a finished folder instead of rebuilding it", async () => {
    const before = statSync(path.join(dir, "onnx", "decoder_model_merged.onnx")).mtimeMs;
    const again = await ensureLlavaOnnx("tiny", { cacheDir: tmp });
    expect(again.dir).toBe(dir);
    expect(statSync(path.join(dir, "onnx", "decoder_model_merged.onnx")).mtimeMs).toBe(before);
  });

  it("vision_encoder: CLIP tower up to feature layer -2, CLS dropped, GELU projector", () => {
    const { vision, language } = ONNX_PROFILES.tiny;
    const g = graphIo("vision_encoder.onnx");
    expect(g.inputs).toEqual([{ name: "pixel_values", dims: ["batch_size", 3, 224, 224] }]);
    expect(g.outputs).toEqual([{ name: "image_features", dims: ["batch_size", 256, language.hidden] }]);
    // One attention softmax per layer that runs: all but the last of the tower's layers.
    expect(g.ops.filter((o) => o === "Softmax")).toHaveLength(vision.layers - 1);
    expect(g.ops).toContain("Conv");
    expect(g.ops).toContain("Erf"); // exact GELU in the projector
    expect(g.ops.filter((o) => o === "Slice")).toHaveLength(1);
  });

  it("embed_tokens and decoder_model_merged have the inputs and outputs transformers.js feeds", () => {
    const { language } = ONNX_PROFILES.tiny;
    const headDim = language.hidden / language.heads;
    const embed = graphIo("embed_tokens.onnx");
    expect(embed.inputs).toEqual([{ name: "input_ids", dims: ["batch_size", "sequence_length"] }]);
    expect(embed.outputs).toEqual([{ name: "inputs_embeds", dims: ["batch_size", "sequence_length", language.hidden] }]);

    const dec = graphIo("decoder_model_merged.onnx");
    const pkv = Array.from({ length: language.layers }, (_, i) => [`${i}.key`, `${i}.value`]).flat();
    expect(dec.inputs.map((i) => i.name)).toEqual([
      "inputs_embeds",
      "attention_mask",
      "position_ids",
      "num_logits_to_keep",
      ...pkv.map((n) => `past_key_values.${n}`)
    ]);
    expect(dec.inputs.find((i) => i.name === "past_key_values.0.key")!.dims).toEqual(["batch_size", language.heads, "past_sequence_length", headDim]);
    expect(dec.outputs.map((o) => o.name)).toEqual(["logits", ...pkv.map((n) => `present.${n}`)]);
    expect(dec.outputs[0].dims).toEqual(["batch_size", "logits_length", 32002]);
  });

  it("config, tokenizer and processor agree on the image token and the vocabulary", () => {
    const json = (f: string) => JSON.parse(readFileSync(path.join(dir, f), "utf8"));
    const config = json("config.json");
    const tokenizer = json("tokenizer.json");
    const processor = json("processor_config.json");
    expect(config.model_type).toBe("llava");
    expect(config.vision_feature_layer).toBe(-2);
    expect(tokenizer.model.vocab[processor.image_token]).toBe(config.image_token_index);
    expect(config.image_token_index).toBe(32000);
    expect(Object.keys(tokenizer.model.vocab)).toHaveLength(config.text_config.vocab_size);
    // SentencePiece merges rebuilt from scores: the best-scored piece "▁t" (id 260) merges first.
    expect(tokenizer.model.merges[0]).toEqual(["▁", "t"]);
    expect(tokenizer.model.merges.length).toBeGreaterThan(60000);
    expect(json("tokenizer_config.json").chat_template).toContain("ASSISTANT:");
  });

  it("is deterministic: a second build writes byte-identical graphs", async () => {
    const other = mkdtempSync(path.join(os.tmpdir(), "lv-onnx-"));
    try {
      const second = await ensureLlavaOnnx("tiny", { cacheDir: other });
      for (const f of ["vision_encoder.onnx", "embed_tokens.onnx", "decoder_model_merged.onnx"]) {
        expect(sha(path.join(second.dir, "onnx", f)), f).toBe(sha(path.join(dir, "onnx", f)));
      }
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it("rejects an unknown profile with the list of known ones", async () => {
    await expect(ensureLlavaOnnx("huge" as never, { cacheDir: tmp })).rejects.toThrow(/tiny, llava-1.5-7b-shaped/);
  });
});
