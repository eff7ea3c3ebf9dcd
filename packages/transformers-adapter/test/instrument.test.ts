// splitVisionEncoder on every vision_encoder the testkit writes: LLaVA-1.5's CLIP (CLS, fp32) and the
// SigLIP encoders of the OneVision and nanoLLaVA layouts (no CLS) in fp32, fp16, q4 and q8. The split graphs
// run in onnxruntime; the in-graph VisionZip score and head-averaged keys are checked against a float64
// reference (an unfused attention computed from the feature layer's input, captured from the full graph,
// with the weights the graph computes with: float16-rounded, dequantized from MatMulNBits' int4 blocks, or
// int8 with DynamicQuantizeLinear's activation quantization replayed).
import { LeanVisionError } from "@leanvision/core";
import { dequantizeBlockwise4, ensureLlavaOnnx, ONNX_PROFILES, tensorFloats } from "@leanvision/testkit";
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";
import onnxProto from "onnx-proto";
import type * as OnnxTypes from "onnx-proto";
import { beforeAll, describe, expect, it } from "vitest";
import { SPLIT_OUTPUTS, splitVisionEncoder } from "../src/instrument.js";
import { relativeError } from "@leanvision/testkit";

// onnxruntime-node as transformers.js loads it (a dependency of @huggingface/transformers, not of this package).
const ort = createRequire(import.meta.resolve("@huggingface/transformers"))("onnxruntime-node");
const { onnx } = onnxProto;
const DT = onnx.TensorProto.DataType;

type Case = { profile: "tiny" | "tiny-onevision" | "tiny-nanollava"; dtype: "fp32" | "fp16" | "q4" | "q8" };
const CASES: Case[] = [
  { profile: "tiny", dtype: "fp32" },
  ...(["tiny-onevision", "tiny-nanollava"] as const).flatMap((profile) => (["fp32", "fp16", "q4", "q8"] as const).map((dtype) => ({ profile, dtype })))
];
const SUFFIX = { fp32: "", fp16: "_fp16", q4: "_q4", q8: "_quantized" };

const dirs: Record<string, string> = {};
beforeAll(async () => {
  for (const p of ["tiny", "tiny-onevision", "tiny-nanollava"] as const) dirs[p] = (await ensureLlavaOnnx(p)).dir;
});
const encoderBytes = ({ profile, dtype }: Case) => readFileSync(path.join(dirs[profile], "onnx", `vision_encoder${SUFFIX[dtype]}.onnx`));

/** The feature layer's shape and parameter names in the testkit's graphs. */
function layerSpec(profile: Case["profile"]) {
  const spec = ONNX_PROFILES[profile];
  const v = spec.vision;
  const featureLayer = profile === "tiny" ? v.layers - 2 : v.layers - 1; // LLaVA-1.5 runs layers - 1 of the CLIP tower
  const tower = profile === "tiny-nanollava" ? "model.vision_tower.vision_tower.vision_model" : "vision_tower.vision_model";
  return {
    size: v.imageSize,
    dim: v.hidden,
    heads: v.heads,
    eps: profile === "tiny" ? 1e-5 : 1e-6,
    cls: profile === "tiny",
    param: `${tower}.encoder.layers.${featureLayer}`,
    node: `/vision_tower/vision_model/encoder/layers.${featureLayer}`
  };
}

function pixels(size: number, variant = 0): Float32Array {
  return Float32Array.from({ length: 3 * size * size }, (_, i) => Math.sin(i * 0.013 + variant) * 0.9 + 0.05 * Math.cos(i * 0.0007));
}

async function run(model: Uint8Array, feeds: Record<string, { data: Float32Array; dims: number[] }>): Promise<Record<string, { data: Float32Array; dims: number[] }>> {
  const session = await ort.InferenceSession.create(model);
  const inputs = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor("float32", v.data, v.dims)]));
  const out = await session.run(inputs);
  await session.release();
  return Object.fromEntries(Object.entries(out).map(([k, v]: [string, any]) => [k, { data: v.data as Float32Array, dims: [...v.dims] as number[] }]));
}

/** The encoder with extra float32 outputs `capture_<i>` for the given internal values. */
function withCaptures(bytes: Uint8Array, values: string[]): Uint8Array {
  const model = onnx.ModelProto.decode(bytes);
  const g = model.graph!;
  values.forEach((v, i) => {
    g.node!.push(onnx.NodeProto.create({ name: `capture_${i}`, opType: "Cast", input: [v], output: [`capture_${i}`], attribute: [{ name: "to", type: 2, i: DT.FLOAT }] }));
    g.output!.push(onnx.ValueInfoProto.create({ name: `capture_${i}`, type: { tensorType: { elemType: DT.FLOAT } } }));
  });
  return onnx.ModelProto.encode(model).finish();
}

/** A weight as the graph computes with it: float32, float16 -> float, MatMulNBits int4 blocks or int8 dequantized. */
function weight(inits: Map<string, OnnxTypes.onnx.ITensorProto>, name: string, K: number, N: number): Float32Array {
  const t = inits.get(name);
  if (t) return tensorFloats(t);
  const q8 = inits.get(`${name}_quantized`);
  if (q8?.rawData) {
    const bytes = new Uint8Array(q8.rawData);
    const values = q8.dataType === DT.INT8 ? new Int8Array(bytes.buffer) : bytes;
    const zp = new Uint8Array(inits.get(`${name}_zero_point`)!.rawData!)[0];
    const zero = q8.dataType === DT.INT8 ? (zp << 24) >> 24 : zp;
    const scale = tensorFloats(inits.get(`${name}_scale`)!)[0];
    return Float32Array.from(values, (q) => (q - zero) * scale);
  }
  const packed = inits.get(`${name}_Q4`);
  const scales = inits.get(`${name}_scales`);
  if (!packed?.rawData || !scales) throw new Error(`no weight ${name}`);
  return dequantizeBlockwise4(packed.rawData, tensorFloats(scales), K, N);
}

/** Float64 reference: LayerNorm, q/k projections, per-head softmax(q k^T / sqrt(hd)); VisionZip's score and head-mean keys. */
function reference(x: Float32Array, tokens: number, bytes: Uint8Array, spec: ReturnType<typeof layerSpec>) {
  const { dim: D, heads: H, eps, param, cls } = spec;
  const hd = D / H;
  const inits = new Map(onnx.ModelProto.decode(bytes).graph!.initializer!.map((t) => [t.name!, t]));
  const q8 = inits.has(`${param}.self_attn.q_proj.weight_T_quantized`);
  const lnW = weight(inits, `${param}.layer_norm1.weight`, 0, 0);
  const lnB = weight(inits, `${param}.layer_norm1.bias`, 0, 0);
  const ln = new Float64Array(tokens * D);
  for (let t = 0; t < tokens; t++) {
    let mean = 0;
    for (let d = 0; d < D; d++) mean += x[t * D + d] / D;
    let variance = 0;
    for (let d = 0; d < D; d++) variance += (x[t * D + d] - mean) ** 2 / D;
    for (let d = 0; d < D; d++) ln[t * D + d] = ((x[t * D + d] - mean) / Math.sqrt(variance + eps)) * lnW[d] + lnB[d];
  }
  const activations = q8 ? dynamicQuantize(ln) : ln;
  const project = (name: string) => {
    const w = weight(inits, `${param}.self_attn.${name}.weight_T`, D, D);
    const b = weight(inits, `${param}.self_attn.${name}.bias`, 0, 0);
    const out = new Float64Array(tokens * D);
    for (let t = 0; t < tokens; t++) {
      for (let o = 0; o < D; o++) {
        let s = b[o];
        for (let i = 0; i < D; i++) s += activations[t * D + i] * w[i * D + o];
        out[t * D + o] = s;
      }
    }
    return out;
  };
  const q = project("q_proj");
  const k = project("k_proj");
  const score = new Float64Array(tokens);
  const row = new Float64Array(tokens);
  for (let h = 0; h < H; h++) {
    for (let i = 0; i < (cls ? 1 : tokens); i++) {
      let max = -Infinity;
      for (let j = 0; j < tokens; j++) {
        let s = 0;
        for (let d = 0; d < hd; d++) s += q[i * D + h * hd + d] * k[j * D + h * hd + d];
        row[j] = s / Math.sqrt(hd);
        max = Math.max(max, row[j]);
      }
      let sum = 0;
      for (let j = 0; j < tokens; j++) sum += (row[j] = Math.exp(row[j] - max));
      for (let j = 0; j < tokens; j++) score[j] += cls ? row[j] / sum : row[j] / sum / (H * tokens);
    }
  }
  const keys = new Float64Array(tokens * hd);
  for (let t = 0; t < tokens; t++) for (let h = 0; h < H; h++) for (let d = 0; d < hd; d++) keys[t * hd + d] += k[t * D + h * hd + d] / H;
  return { score, keys };
}

/** DynamicQuantizeLinear's uint8 round trip of a whole tensor (what MatMulInteger multiplies). */
function dynamicQuantize(x: Float64Array): Float64Array {
  let min = 0;
  let max = 0;
  for (const v of x) {
    min = Math.min(min, Math.fround(v));
    max = Math.max(max, Math.fround(v));
  }
  const scale = Math.fround((max - min) / 255);
  const zp = Math.min(255, Math.max(0, Math.round(-min / scale)));
  return x.map((v) => (Math.min(255, Math.max(0, Math.round(Math.fround(v) / scale) + zp)) - zp) * scale);
}


function topK(values: ArrayLike<number>, k: number, skip = -1): Set<number> {
  return new Set([...Array.from(values).keys()].filter((i) => i !== skip).sort((a, b) => values[b] - values[a] || a - b).slice(0, k));
}

describe.each(CASES)("splitVisionEncoder($profile, $dtype)", (c) => {
  const spec = layerSpec(c.profile);
  const grid = Math.floor(spec.size / 14);
  const tokens = grid * grid + (spec.cls ? 1 : 0);
  const hd = spec.dim / spec.heads;

  it("finds the feature layer, the projector start and what the reducers need, and says so", () => {
    const split = splitVisionEncoder(encoderBytes(c), undefined, { outputs: "compact" });
    expect(split.missing).toEqual([]);
    expect(split.found).toMatchObject({
      softmax: `${spec.node}/self_attn/Softmax`,
      keyProjection: `${spec.node}/self_attn/k_proj/Add`,
      cls: spec.cls,
      clsSlice: spec.cls ? "/Slice" : "",
      scoreKind: spec.cls ? "cls-attention" : "mean-received",
      precision: c.dtype === "fp16" ? "float16" : "float32",
      quantizedOps: { fp32: [], fp16: [], q4: ["MatMulNBits"], q8: ["ConvInteger", "MatMulInteger"] }[c.dtype]
    });
    expect(split.names).toMatchObject({ score: SPLIT_OUTPUTS.score, headKeys: SPLIT_OUTPUTS.headKeys, attention: "", keys: "" });
    if (c.dtype === "fp16") expect(split.names).toMatchObject({ hidden: SPLIT_OUTPUTS.hidden, projectorInput: SPLIT_OUTPUTS.projectorInput });
    else expect(split.names.hidden).toBe(`${spec.node}/Add_1_output_0`);
  });

  it("the split graphs run: float32 [tokens] score and [tokens x headDim] keys, equal to a float64 unfused attention; projector = full graph", async () => {
    const bytes = encoderBytes(c);
    const split = splitVisionEncoder(bytes, undefined, { outputs: "compact" });
    const px = { data: pixels(spec.size), dims: [1, 3, spec.size, spec.size] };
    const features = await run(split.features, { pixel_values: px });
    expect(Object.keys(features).sort()).toEqual([split.names.hidden, split.names.score, split.names.headKeys].sort());
    const hidden = features[split.names.hidden];
    const score = features[split.names.score];
    const keys = features[split.names.headKeys];
    expect(hidden.dims).toEqual([1, tokens, spec.dim]);
    expect(score.dims).toEqual([1, tokens]);
    expect(keys.dims).toEqual([1, tokens, hd]);
    for (const t of [hidden, score, keys]) expect(t.data).toBeInstanceOf(Float32Array);

    // The full graph, with the feature layer's input and output captured.
    const full = await run(withCaptures(bytes, [`${spec.node}/layer_norm1/ReduceMean`, `${spec.node}/Add_1`].map((n) => {
      const node = onnx.ModelProto.decode(bytes).graph!.node!.find((x) => x.name === n)!;
      return n.endsWith("ReduceMean") ? node.input![0] : node.output![0];
    })), { pixel_values: px });
    expect(relativeError(hidden.data, full.capture_1.data)).toBe(0);

    const ref = reference(full.capture_0.data, tokens, bytes, spec);
    // fp16 graphs hold float16 activations between ops; the reference uses their float16 weights in float64.
    // (Measured: fp32, q4 and q8 ~2e-6, fp16 ~2e-4.)
    const tolerance = { fp32: 1e-5, q4: 1e-5, fp16: 2e-3, q8: 1e-5 }[c.dtype];
    expect(relativeError(score.data, ref.score)).toBeLessThan(tolerance);
    expect(relativeError(keys.data, ref.keys)).toBeLessThan(tolerance);
    if (!spec.cls) {
      let sum = 0;
      for (const s of score.data) sum += s;
      expect(sum).toBeCloseTo(1, 3); // every query's row sums to 1, so the mean received sums to 1
    }
    // What VisionZip does with the score: the same dominant tokens.
    const dominant = c.dtype === "fp16" ? 0.9 : 1;
    const a = topK(score.data, 54, spec.cls ? 0 : -1);
    const b = topK(ref.score, 54, spec.cls ? 0 : -1);
    expect([...a].filter((i) => b.has(i)).length / 54).toBeGreaterThanOrEqual(dominant);

    // Projector on the feature layer's tokens (CLS dropped where the model drops it) = the encoder's image_features.
    const patchTokens = spec.cls ? hidden.data.slice(spec.dim) : hidden.data;
    const projected = await run(split.projector, { [split.names.projectorInput]: { data: patchTokens, dims: [1, grid * grid, spec.dim] } });
    const stock = await run(bytes, { pixel_values: px });
    expect(projected.image_features.dims).toEqual(stock.image_features.dims);
    expect(relativeError(projected.image_features.data, stock.image_features.data)).toBeLessThan(1e-5);
  });
});

describe("legacy outputs (the interface before; default)", () => {
  it("LLaVA-1.5: also the full softmax and raw keys; the in-graph score is their CLS row summed over heads, the keys their head mean", async () => {
    const c: Case = { profile: "tiny", dtype: "fp32" };
    const spec = layerSpec("tiny");
    const split = splitVisionEncoder(encoderBytes(c));
    expect(split.names.attention).toBe(`${spec.node}/self_attn/Softmax_output_0`);
    expect(split.names.keys).toBe(`${spec.node}/self_attn/k_proj/Add_output_0`);
    const out = await run(split.features, { pixel_values: { data: pixels(224, 1), dims: [1, 3, 224, 224] } });
    const attention = out[split.names.attention];
    const keys = out[split.names.keys];
    const [, H, T] = attention.dims;
    expect(keys.dims).toEqual([1, T, spec.dim]);
    const score = new Float64Array(T);
    for (let h = 0; h < H; h++) for (let j = 0; j < T; j++) score[j] += attention.data[h * T * T + j];
    const hd = spec.dim / H;
    const mean = new Float64Array(T * hd);
    for (let t = 0; t < T; t++) for (let h = 0; h < H; h++) for (let d = 0; d < hd; d++) mean[t * hd + d] += keys.data[t * spec.dim + h * hd + d] / H;
    expect(relativeError(out[split.names.score].data, score)).toBeLessThan(1e-6);
    expect(relativeError(out[split.names.headKeys].data, mean)).toBeLessThan(1e-6);
  });

  it("needs a CLS-dropping Slice: a SigLIP encoder is UNSUPPORTED_MODEL in legacy mode, fine in compact mode", () => {
    const bytes = encoderBytes({ profile: "tiny-onevision", dtype: "fp32" });
    expect(() => splitVisionEncoder(bytes)).toThrow(/found no Slice/);
    expect(splitVisionEncoder(bytes, undefined, { outputs: "compact" }).found.cls).toBe(false);
  });
});

describe("what a graph cannot give is reported, not guessed (compact mode)", () => {
  const edited = (edit: (nodes: OnnxTypes.onnx.INodeProto[]) => void) => {
    const model = onnx.ModelProto.decode(encoderBytes({ profile: "tiny-onevision", dtype: "fp32" }));
    edit(model.graph!.node!);
    return onnx.ModelProto.encode(model).finish();
  };

  it("fused attention: no attention and no keys; pooling and region packing still work", () => {
    const bytes = edited((nodes) => {
      nodes.filter((n) => n.opType === "Softmax").at(-1)!.opType = "MultiHeadAttention";
    });
    const split = splitVisionEncoder(bytes, undefined, { outputs: "compact" });
    expect(split.names).toMatchObject({ score: "", headKeys: "", projectorInput: split.names.hidden });
    expect(split.missing.map((m) => m.tensor)).toEqual(["attention", "keys"]);
    expect(split.missing[0].reason).toMatch(/fused into MultiHeadAttention/);
    for (const m of split.missing) expect(m.consequence).toMatch(/pool and regionpack work/);
    const err = (() => {
      try {
        splitVisionEncoder(bytes);
      } catch (e) {
        return e as LeanVisionError;
      }
    })();
    expect(err?.code).toBe("UNSUPPORTED_MODEL");
  });

  it("untraceable keys: the score is still computed, the keys are reported missing", async () => {
    const bytes = edited((nodes) => {
      // The key operand of the last scores MatMul goes through an op the tracer does not know (Neg).
      const softmax = nodes.filter((n) => n.opType === "Softmax").at(-1)!;
      const mul = nodes.find((n) => n.output![0] === softmax.input![0])!;
      const at = nodes.findIndex((n) => n.output![0] === mul.input![0]);
      const matmul = nodes[at];
      nodes.splice(at, 0, onnx.NodeProto.create({ name: "/neg", opType: "Neg", input: [matmul.input![1]], output: ["neg_keys"] }));
      matmul.input![1] = "neg_keys";
    });
    const split = splitVisionEncoder(bytes, undefined, { outputs: "compact" });
    expect(split.missing.map((m) => m.tensor)).toEqual(["keys"]);
    expect(split.missing[0].consequence).toMatch(/contextual/);
    const out = await run(split.features, { pixel_values: { data: pixels(384), dims: [1, 3, 384, 384] } });
    expect(out[split.names.score].dims).toEqual([1, 729]);
    expect(Object.keys(out)).toHaveLength(2);
  });
});

// Multi-level hidden states (TokenPacker's levels): each layer's output, found by structure, in every dtype.
describe.each(CASES)("splitVisionEncoder($profile, $dtype) with levels", (c) => {
  it("outputs the named layers' outputs, concatenated per token, float32", async () => {
    const spec = ONNX_PROFILES[c.profile];
    const layers = spec.vision.layers - (c.profile === "tiny" ? 1 : 0); // LLaVA-1.5's graph runs layers - 1
    const levels = layers === 1 ? [1, 1] : [1, layers, 1];
    const bytes = encoderBytes(c);
    const split = splitVisionEncoder(bytes, undefined, { outputs: "compact", levels });
    expect(split.names.multiLevel).toBe(SPLIT_OUTPUTS.multiLevel);
    expect(split.found.levels).toEqual(levels);
    const size = spec.vision.imageSize;
    const feeds = { pixel_values: { data: pixels(size), dims: [1, 3, size, size] } };
    const layerOut = (l: number) => `/vision_tower/vision_model/encoder/layers.${l - 1}/Add_1_output_0`;
    const ours = await run(split.features, feeds);
    const named = await run(withCaptures(bytes, levels.map(layerOut)), feeds);
    const multi = ours[SPLIT_OUTPUTS.multiLevel];
    const [, tokens, width] = multi.dims;
    const dim = spec.vision.hidden;
    expect(width).toBe(levels.length * dim);
    levels.forEach((_, i) => {
      const expected = named[`capture_${i}`].data;
      const got = Float32Array.from({ length: tokens * dim }, (_, j) => multi.data[Math.floor(j / dim) * width + i * dim + (j % dim)]);
      expect(relativeError(got, expected), `level ${levels[i]}`).toBeLessThan(1e-6);
    });
    // The deepest level run is the feature layer itself.
    const hidden = ours[split.names.hidden].data;
    const last = levels.indexOf(layers);
    expect(relativeError(Float32Array.from({ length: tokens * dim }, (_, j) => multi.data[Math.floor(j / dim) * width + last * dim + (j % dim)]), hidden)).toBeLessThan(1e-6);
    expect(() => splitVisionEncoder(bytes, undefined, { outputs: "compact", levels: [layers + 1] })).toThrow(/runs \d+ layers/);
  });
});
