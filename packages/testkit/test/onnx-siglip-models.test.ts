// The SigLIP + Qwen2 transformers.js folders (LLaVA-OneVision and nanoLLaVA layouts): files, graph
// interfaces per dtype, the dtype conversions' operators, config / tokenizer consistency, determinism.
// (That stock transformers.js loads and generates on them is tested in packages/transformers-adapter.)
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import onnxProto from "onnx-proto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dequantizeBlockwise4, ensureLlavaOnnx, ONNX_PROFILES, quantize8, quantizeBlockwise4, tensorFloats } from "../src/onnx/index.js";

const { onnx } = onnxProto;
const DT = onnx.TensorProto.DataType;
const tmp = mkdtempSync(path.join(os.tmpdir(), "lv-onnx-siglip-"));
const dirs: Record<string, string> = {};

type Io = { name: string; type: number; dims: Array<number | string> };
function graph(dir: string, file: string) {
  const model = onnx.ModelProto.decode(readFileSync(path.join(dir, "onnx", file)));
  const io = (list: any[]): Io[] =>
    list.map((v) => ({
      name: v.name,
      type: v.type.tensorType.elemType,
      dims: (v.type.tensorType.shape?.dim ?? []).map((d: any) => (d.dimParam ? d.dimParam : Number(d.dimValue)))
    }));
  const g = model.graph!;
  return {
    model,
    inputs: io(g.input!),
    outputs: io(g.output!),
    ops: g.node!.map((n) => n.opType!),
    nodes: g.node!,
    inits: new Map(g.initializer!.map((t) => [t.name!, t]))
  };
}
const json = (dir: string, f: string) => JSON.parse(readFileSync(path.join(dir, f), "utf8"));

beforeAll(async () => {
  for (const p of ["tiny-onevision", "tiny-nanollava"] as const) dirs[p] = (await ensureLlavaOnnx(p, { cacheDir: tmp })).dir;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const ONNX_FILES = ["vision_encoder", "embed_tokens", "decoder_model_merged"].flatMap((g) => ["", "_fp16", "_q4", "_quantized"].map((s) => `${g}${s}.onnx`)).sort();

describe("file layouts", () => {
  it("tiny-onevision has llava-hf/llava-onevision-qwen2-0.5b-ov-hf's files (no weights folder, no video processor)", () => {
    expect(readdirSync(dirs["tiny-onevision"]).filter((f) => !f.startsWith(".")).sort()).toEqual([
      "added_tokens.json",
      "chat_template.json",
      "config.json",
      "generation_config.json",
      "merges.txt",
      "onnx",
      "preprocessor_config.json",
      "processor_config.json",
      "special_tokens_map.json",
      "tokenizer.json",
      "tokenizer_config.json",
      "vocab.json"
    ]);
    expect(readdirSync(path.join(dirs["tiny-onevision"], "onnx")).sort()).toEqual(ONNX_FILES);
  });

  it("tiny-nanollava has Xenova/nanoLLaVA's files: no processor_config.json (no LlavaProcessor expands <image>)", () => {
    expect(readdirSync(dirs["tiny-nanollava"]).filter((f) => !f.startsWith(".")).sort()).toEqual([
      "added_tokens.json",
      "config.json",
      "generation_config.json",
      "merges.txt",
      "onnx",
      "preprocessor_config.json",
      "special_tokens_map.json",
      "tokenizer.json",
      "tokenizer_config.json",
      "vocab.json"
    ]);
    expect(readdirSync(path.join(dirs["tiny-nanollava"], "onnx")).sort()).toEqual(ONNX_FILES);
  });
});

describe.each(["tiny-onevision", "tiny-nanollava"] as const)("%s", (profile) => {
  const spec = ONNX_PROFILES[profile];
  const dir = () => dirs[profile];

  it("config.json: model_type, image token, SigLIP vision config and Qwen2 text config", () => {
    const c = json(dir(), "config.json");
    const text = profile === "tiny-onevision" ? c.text_config : c;
    expect(c.model_type).toBe(profile === "tiny-onevision" ? "llava_onevision" : "llava_qwen2");
    expect(c.image_token_index).toBe(151646);
    expect(c.vision_config).toMatchObject({ model_type: "siglip_vision_model", image_size: 384, patch_size: 14, hidden_size: spec.vision.hidden });
    expect(c.vision_config.num_hidden_layers).toBe(spec.vision.towerLayers);
    expect(text).toMatchObject({
      hidden_size: spec.language.hidden,
      num_attention_heads: spec.language.heads,
      num_key_value_heads: spec.language.kvHeads,
      num_hidden_layers: spec.language.layers,
      vocab_size: 151936
    });
    expect(c.text_config.model_type).toBe("qwen2");
    if (profile === "tiny-onevision") {
      expect(c).toMatchObject({ vision_feature_layer: -1, vision_feature_select_strategy: "full", video_token_index: 151647 });
      expect(c.image_grid_pinpoints).toHaveLength(36);
      expect(json(dir(), "processor_config.json")).toMatchObject({ num_image_tokens: 729, image_token: "<image>", processor_class: "LlavaOnevisionProcessor" });
      expect(json(dir(), "preprocessor_config.json")).toMatchObject({ image_processor_type: "LlavaOnevisionImageProcessor", size: { height: 384, width: 384 } });
    } else {
      expect(c.num_image_tokens).toBe(729);
      expect(json(dir(), "preprocessor_config.json")).toMatchObject({ image_processor_type: "SiglipImageProcessor", image_mean: [0.5, 0.5, 0.5] });
    }
  });

  it("tokenizer: Qwen2 byte-level BPE with the LLaVA special tokens and a ChatML template", () => {
    const tok = json(dir(), "tokenizer.json");
    const cfg = json(dir(), "tokenizer_config.json");
    expect(Object.keys(tok.model.vocab)).toHaveLength(151643);
    expect(tok.model.merges).toHaveLength(151387);
    const added = Object.fromEntries(tok.added_tokens.map((t: any) => [t.content, t.id]));
    expect(added).toMatchObject({ "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<image>": 151646 });
    expect(json(dir(), "added_tokens.json")).toEqual(added);
    expect(cfg).toMatchObject({ tokenizer_class: "Qwen2Tokenizer", eos_token: "<|im_end|>", pad_token: "<|endoftext|>" });
    expect(cfg.chat_template).toContain("<|im_start|>");
  });

  it("vision_encoder in every dtype: pixel_values [b,3,384,384] -> image_features [b,729,hidden], no CLS Slice, one Softmax per layer", () => {
    for (const suffix of ["", "_fp16", "_q4", "_quantized"]) {
      const g = graph(dir(), `vision_encoder${suffix}.onnx`);
      expect(g.inputs, suffix).toEqual([{ name: "pixel_values", type: DT.FLOAT, dims: ["batch_size", 3, 384, 384] }]);
      expect(g.outputs, suffix).toEqual([{ name: "image_features", type: DT.FLOAT, dims: ["batch_size", 729, spec.language.hidden] }]);
      expect(g.ops.filter((o) => o === "Softmax"), suffix).toHaveLength(spec.vision.layers);
      expect(g.ops, suffix).not.toContain("Slice");
      expect(g.ops, suffix).toContain("Tanh"); // gelu_pytorch_tanh in the SigLIP MLP
    }
  });

  it("fp16 variants: float16 initializers, float32 inputs and outputs behind Casts (keep_io_types)", () => {
    for (const name of ["vision_encoder", "embed_tokens", "decoder_model_merged"]) {
      const g = graph(dir(), `${name}_fp16.onnx`);
      const types = new Set([...g.inits.values()].map((t) => t.dataType));
      expect(types.has(DT.FLOAT), name).toBe(false);
      expect(types.has(DT.FLOAT16), name).toBe(true);
      for (const o of g.outputs) if (o.type === DT.FLOAT) expect(g.nodes.find((n) => n.output!.includes(o.name))!.opType, `${name} ${o.name}`).toBe("Cast");
    }
    // The causal mask's -1e9 is clamped to -1e4 as float16.py does, not turned into -inf.
    const dec = graph(dir(), "decoder_model_merged_fp16.onnx");
    let min = Infinity;
    for (const t of dec.inits.values()) if (t.dataType === DT.FLOAT16) for (const v of tensorFloats(t)) min = Math.min(min, v);
    expect(min).toBe(-10000);
  });

  it("q4 variants: every MatMul with a constant 2-D weight is com.microsoft MatMulNBits (bits 4, block 32); Gather and Conv stay float32", () => {
    for (const name of ["vision_encoder", "decoder_model_merged"]) {
      const g = graph(dir(), `${name}_q4.onnx`);
      expect(g.model.opsetImport!.map((o) => o.domain)).toContain("com.microsoft");
      const nbits = g.nodes.filter((n) => n.opType === "MatMulNBits");
      expect(nbits.length, name).toBeGreaterThan(0);
      for (const n of nbits) {
        expect(n.domain).toBe("com.microsoft");
        const attr = Object.fromEntries(n.attribute!.map((a) => [a.name, Number(a.i)]));
        expect(attr).toMatchObject({ bits: 4, block_size: 32 });
        const [, b, scales] = n.input!;
        expect(g.inits.get(b)!.dataType).toBe(DT.UINT8);
        expect(g.inits.get(b)!.dims!.map(Number)).toEqual([attr.N, Math.ceil(attr.K / 32), 16]);
        expect(g.inits.get(scales)!.dims!.map(Number)).toEqual([attr.N * Math.ceil(attr.K / 32)]);
      }
      for (const n of g.nodes.filter((x) => x.opType === "MatMul")) expect(g.inits.has(n.input![1]), `${name} ${n.name}`).toBe(false);
    }
    // Per layer: q, k, v, out, fc1, fc2; plus the projector's two.
    expect(graph(dir(), "vision_encoder_q4.onnx").ops.filter((o) => o === "MatMulNBits")).toHaveLength(6 * spec.vision.layers + 2);
    expect(graph(dir(), "vision_encoder_q4.onnx").ops).toContain("Conv");
    const embed = graph(dir(), "embed_tokens_q4.onnx");
    expect(embed.ops).toEqual(["Gather"]);
    expect([...embed.inits.values()][0].dataType).toBe(DT.FLOAT);
  });

  it("q8 variants (_quantized): DynamicQuantizeLinear + MatMulInteger / ConvInteger, uint8 weights beside a Conv, int8 otherwise; quantized embeddings", () => {
    const vision = graph(dir(), "vision_encoder_quantized.onnx");
    expect(vision.ops).toContain("ConvInteger");
    expect(vision.ops.filter((o) => o === "MatMulInteger")).toHaveLength(6 * spec.vision.layers + 2);
    expect(vision.ops).toContain("DynamicQuantizeLinear");
    expect(vision.ops).not.toContain("Conv");
    const weightType = (g: ReturnType<typeof graph>, op: string) =>
      new Set(g.nodes.filter((n) => n.opType === op).map((n) => g.inits.get(n.input![1])!.dataType));
    expect(weightType(vision, "MatMulInteger")).toEqual(new Set([DT.UINT8]));
    const decoder = graph(dir(), "decoder_model_merged_quantized.onnx");
    expect(weightType(decoder, "MatMulInteger")).toEqual(new Set([DT.INT8]));
    for (const n of decoder.nodes.filter((x) => x.opType === "MatMul")) expect(decoder.inits.has(n.input![1])).toBe(false);
    const embed = graph(dir(), "embed_tokens_quantized.onnx");
    expect(embed.ops).toEqual(["Gather", "DequantizeLinear"]);
    expect(embed.inits.get(embed.nodes[0].input![0])!.dataType).toBe(DT.INT8);
  });

  it("decoder_model_merged: Qwen2 (q/k/v biases, grouped key-value heads) with transformers.js' inputs and outputs", () => {
    const { language } = spec;
    const hd = language.hidden / language.heads;
    const dec = graph(dir(), "decoder_model_merged.onnx");
    const pkv = Array.from({ length: language.layers }, (_, i) => [`${i}.key`, `${i}.value`]).flat();
    expect(dec.inputs.map((i) => i.name)).toEqual(["inputs_embeds", "attention_mask", "position_ids", "num_logits_to_keep", ...pkv.map((n) => `past_key_values.${n}`)]);
    expect(dec.inputs.find((i) => i.name === "past_key_values.0.key")!.dims).toEqual(["batch_size", language.kvHeads, "past_sequence_length", hd]);
    expect(dec.outputs.map((o) => o.name)).toEqual(["logits", ...pkv.map((n) => `present.${n}`)]);
    expect(dec.outputs[0].dims).toEqual(["batch_size", "logits_length", 151936]);
    const prefix = profile === "tiny-onevision" ? "language_model.model" : "model";
    expect(dec.inits.has(`${prefix}.layers.0.self_attn.k_proj.bias`)).toBe(true);
    expect(dec.inits.get(`${prefix}.layers.0.self_attn.k_proj.weight_T`)!.dims!.map(Number)).toEqual([language.hidden, language.kvHeads! * hd]);
  });
});

describe("dtype conversions", () => {
  it("int8 weights: uint8 asymmetric (zero point from the minimum) or int8 symmetric, as onnxruntime's quantize_data", () => {
    const w = Float32Array.from([-0.5, -0.25, 0, 0.1, 1.0]);
    const u = quantize8(w, true);
    expect(u.scale).toBeCloseTo(1.5 / 255, 7);
    expect(u.zeroPoint).toBe(85);
    // -0.25 / scale = -42.5 rounds half to even (numpy), to -42.
    expect(Array.from(u.q, (q) => q - u.zeroPoint)).toEqual([-85, -42, 0, 17, 170]);
    const s = quantize8(w, false);
    expect(s.scale).toBeCloseTo(1 / 127, 7);
    expect(s.zeroPoint).toBe(0);
    expect(Array.from(new Int8Array(s.q.buffer))).toEqual([-64, -32, 0, 13, 127]);
  });

  it("int4 blocks: (q - 8) * scale reproduces each block's largest magnitude exactly and every other weight to within a step", () => {
    const K = 80; // not a multiple of 32: the last block is zero-padded
    const N = 3;
    const w = Float32Array.from({ length: K * N }, (_, i) => Math.sin(i * 1.7) * (1 + (i % 7)));
    const { packed, scales } = quantizeBlockwise4(w, K, N);
    expect(packed).toHaveLength(N * 3 * 16);
    const back = dequantizeBlockwise4(packed, scales, K, N);
    for (let n = 0; n < N; n++) {
      for (let k = 0; k < K; k++) {
        const scale = Math.abs(scales[n * 3 + Math.floor(k / 32)]);
        // Half a step, except values of the opposite sign near the maximum, clipped at +7 (symmetric int4 is -8..7).
        expect(Math.abs(back[k * N + n] - w[k * N + n])).toBeLessThanOrEqual(scale + 1e-6);
        if (Math.abs(w[k * N + n]) <= 7 * scale) expect(Math.abs(back[k * N + n] - w[k * N + n])).toBeLessThanOrEqual(scale / 2 + 1e-6);
        if (Math.abs(w[k * N + n]) === 8 * scale) expect(back[k * N + n]).toBe(w[k * N + n]);
      }
    }
  });

  it("is deterministic: a second build writes byte-identical graphs", async () => {
    const other = mkdtempSync(path.join(os.tmpdir(), "lv-onnx-siglip-"));
    const sha = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
    try {
      const second = await ensureLlavaOnnx("tiny-onevision", { cacheDir: other, dtypes: ["fp16", "q4"] });
      for (const f of ["vision_encoder_fp16.onnx", "vision_encoder_q4.onnx", "decoder_model_merged_q4.onnx", "embed_tokens_fp16.onnx"]) {
        expect(sha(path.join(second.dir, "onnx", f)), f).toBe(sha(path.join(dirs["tiny-onevision"], "onnx", f)));
      }
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });

  it("a folder lacking a requested dtype is rebuilt with it; one that has it is reused", async () => {
    const other = mkdtempSync(path.join(os.tmpdir(), "lv-onnx-siglip-"));
    try {
      const first = await ensureLlavaOnnx("tiny-nanollava", { cacheDir: other, dtypes: ["q4"] });
      expect(readdirSync(path.join(first.dir, "onnx")).sort()).toEqual(["decoder_model_merged_q4.onnx", "embed_tokens_q4.onnx", "vision_encoder_q4.onnx"]);
      expect(readFileSync(path.join(first.dir, ".complete"), "utf8")).toMatch(/\nq4\n$/);
      const again = await ensureLlavaOnnx("tiny-nanollava", { cacheDir: other, dtypes: ["q4"] });
      expect(again.dir).toBe(first.dir);
      await ensureLlavaOnnx("tiny-nanollava", { cacheDir: other, dtypes: ["fp16"] });
      expect(readdirSync(path.join(first.dir, "onnx"))).toHaveLength(6);
    } finally {
      rmSync(other, { recursive: true, force: true });
    }
  });
});
