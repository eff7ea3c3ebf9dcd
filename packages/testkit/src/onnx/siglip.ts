// The vision encoder of SigLIP-based LLaVA models (LLaVA-OneVision, nanoLLaVA) as their transformers.js
// exports ship it: SigLIP patch embeddings (no CLS token, learned position embeddings), the encoder
// layers up to the feature layer (eager attention: softmax((q k^T) * scale) v, gelu_pytorch_tanh MLP,
// LayerNorm eps 1e-6), no post-layernorm (the feature layer is a hidden state, not the pooled output),
// then the two-layer GELU projector. One graph: pixel_values -> image_features [batch, patches, hidden].
import { FLOAT, GraphBuilder, Rng } from "./graph.js";
import type { VitShape } from "./vision.js";

export interface SiglipShape extends VitShape {
  /** Encoder layers the graph runs (up to the feature layer). */
  layers: number;
}

/** Initializer names: OneVision's (HF LlavaOnevision state dict) or nanoLLaVA's (its remote-code model). */
export type SiglipNaming = "llava_onevision" | "llava_qwen2";

const PREFIX: Record<SiglipNaming, { tower: string; projector: [string, string] }> = {
  llava_onevision: { tower: "vision_tower.vision_model", projector: ["multi_modal_projector.linear_1", "multi_modal_projector.linear_2"] },
  llava_qwen2: { tower: "model.vision_tower.vision_tower.vision_model", projector: ["model.mm_projector.0", "model.mm_projector.2"] }
};

export function buildSiglipEncoder(shape: SiglipShape, naming: SiglipNaming, seed: number): GraphBuilder {
  const { imageSize, patchSize, hidden: D, heads: H, intermediate, layers, projectTo } = shape;
  const headDim = D / H;
  const grid = Math.floor(imageSize / patchSize);
  const patches = grid * grid;
  const b = new GraphBuilder(new Rng(seed));
  const pixels = b.input("pixel_values", FLOAT, ["batch_size", 3, imageSize, imageSize]);
  const vm = PREFIX[naming].tower;

  let h = b.scope("vision_tower/vision_model/embeddings", () => {
    const weight = b.param(`${vm}.embeddings.patch_embedding.weight`, [D, 3, patchSize, patchSize], { std: 0.02 });
    const bias = b.param(`${vm}.embeddings.patch_embedding.bias`, [D], { std: 0.02 });
    const conv = b.op("Conv", [pixels, weight, bias], { kernel_shape: [patchSize, patchSize], strides: [patchSize, patchSize] });
    const flat = b.op("Transpose", [b.op("Reshape", [conv, b.constInt64([0, D, -1])])], { perm: [0, 2, 1] });
    return b.op("Add", [flat, b.param(`${vm}.embeddings.position_embedding.weight`, [patches, D], { std: 0.02 })]);
  });

  for (let i = 0; i < layers; i++) {
    const p = `${vm}.encoder.layers.${i}`;
    h = b.scope(`vision_tower/vision_model/encoder/layers.${i}`, () => {
      const residual = h;
      const x = b.scope("layer_norm1", () => b.layerNorm(h, `${p}.layer_norm1`, D, 1e-6));
      const attended = b.scope("self_attn", () => {
        const q = b.scope("q_proj", () => b.linear(x, `${p}.self_attn.q_proj`, D, D, true));
        const k = b.scope("k_proj", () => b.linear(x, `${p}.self_attn.k_proj`, D, D, true));
        const v = b.scope("v_proj", () => b.linear(x, `${p}.self_attn.v_proj`, D, D, true));
        const split = b.constInt64([0, -1, H, headDim]);
        const heads = (t: string) => b.op("Transpose", [b.op("Reshape", [t, split])], { perm: [0, 2, 1, 3] });
        const kT = b.op("Transpose", [heads(k)], { perm: [0, 1, 3, 2] });
        const scores = b.op("Mul", [b.op("MatMul", [heads(q), kT]), b.constFloat([headDim ** -0.5], [])]);
        const probs = b.op("Softmax", [scores], { axis: -1 });
        const ctx = b.op("Transpose", [b.op("MatMul", [probs, heads(v)])], { perm: [0, 2, 1, 3] });
        const merged = b.op("Reshape", [ctx, b.constInt64([0, -1, D])]);
        return b.scope("out_proj", () => b.linear(merged, `${p}.self_attn.out_proj`, D, D, true));
      });
      const afterAttn = b.op("Add", [residual, attended]);
      const y = b.scope("layer_norm2", () => b.layerNorm(afterAttn, `${p}.layer_norm2`, D, 1e-6));
      const mlp = b.scope("mlp", () => {
        const up = b.scope("fc1", () => b.linear(y, `${p}.mlp.fc1`, D, intermediate, true));
        return b.scope("fc2", () => b.linear(b.geluTanh(up), `${p}.mlp.fc2`, intermediate, D, true));
      });
      return b.op("Add", [afterAttn, mlp]);
    });
  }

  // vision_feature_select_strategy "full" / mm_vision_select_feature "patch" on SigLIP: every token goes on.
  const [linear1, linear2] = PREFIX[naming].projector;
  const projected = b.scope("multi_modal_projector", () => {
    const a = b.scope("linear_1", () => b.linear(h, linear1, D, projectTo, true));
    const g = b.scope("act", () => b.gelu(a));
    return b.scope("linear_2", () => b.linear(g, linear2, projectTo, projectTo, true));
  });
  b.rename(projected, "image_features");
  b.output("image_features", FLOAT, ["batch_size", patches, projectTo]);
  return b;
}
