// The LLaVA-1.5 vision encoder as transformers.js exports ship it: a CLIP ViT run up to the
// feature layer (hidden_states[-2], so the last layer is absent), CLS dropped, then the two-layer
// GELU MLP projector. One graph: pixel_values -> image_features.
import { FLOAT, GraphBuilder, Rng } from "./graph.js";

/** What every ViT-based vision encoder profile gives: the tower's sizes and the projector's output. */
export interface VitShape {
  imageSize: number;
  patchSize: number;
  hidden: number;
  heads: number;
  intermediate: number;
  /** Projector output = the language model's hidden size. */
  projectTo: number;
}

export interface VisionShape extends VitShape {
  /** Layers of the full CLIP tower; the graph runs layers - 1 of them (feature layer -2). */
  layers: number;
}

export function buildVisionEncoder(shape: VisionShape, seed: number): { bytes: Uint8Array; parameters: number } {
  const { imageSize, patchSize, hidden: D, heads: H, intermediate, layers, projectTo } = shape;
  const headDim = D / H;
  const grid = imageSize / patchSize;
  const tokens = grid * grid + 1;
  const b = new GraphBuilder(new Rng(seed));
  const pixels = b.input("pixel_values", FLOAT, ["batch_size", 3, imageSize, imageSize]);
  const vm = "vision_tower.vision_model";

  let h = b.scope("vision_tower/vision_model/embeddings", () => {
    const patchWeight = b.param(`${vm}.embeddings.patch_embedding.weight`, [D, 3, patchSize, patchSize], { std: 0.02 });
    const patches = b.op("Conv", [pixels, patchWeight], {
      kernel_shape: [patchSize, patchSize],
      strides: [patchSize, patchSize]
    });
    const flat = b.op("Transpose", [b.op("Reshape", [patches, b.constInt64([0, D, -1])])], { perm: [0, 2, 1] });
    // CLS embedding broadcast to the batch: Expand([1,1,D] -> [batch,1,D]).
    const batch = b.op("Gather", [b.op("Shape", [pixels]), b.constInt64([0])], { axis: 0 });
    const clsShape = b.op("Concat", [batch, b.constInt64([1, D])], { axis: 0 });
    const cls = b.op("Expand", [b.param(`${vm}.embeddings.class_embedding`, [1, 1, D], { std: 0.02 }), clsShape]);
    const joined = b.op("Concat", [cls, flat], { axis: 1 });
    return b.op("Add", [joined, b.param(`${vm}.embeddings.position_embedding.weight`, [tokens, D], { std: 0.02 })]);
  });
  h = b.scope("vision_tower/vision_model/pre_layrnorm", () => b.layerNorm(h, `${vm}.pre_layrnorm`, D));

  for (let i = 0; i < layers - 1; i++) {
    const p = `${vm}.encoder.layers.${i}`;
    h = b.scope(`vision_tower/vision_model/encoder/layers.${i}`, () => {
      const residual = h;
      const x = b.scope("layer_norm1", () => b.layerNorm(h, `${p}.layer_norm1`, D));
      const attended = b.scope("self_attn", () => {
        const q = b.scope("q_proj", () => b.linear(x, `${p}.self_attn.q_proj`, D, D, true));
        const k = b.scope("k_proj", () => b.linear(x, `${p}.self_attn.k_proj`, D, D, true));
        const v = b.scope("v_proj", () => b.linear(x, `${p}.self_attn.v_proj`, D, D, true));
        const split = b.constInt64([0, -1, H, headDim]);
        const qh = b.op("Transpose", [b.op("Reshape", [b.op("Mul", [q, b.constFloat([headDim ** -0.5], [])]), split])], {
          perm: [0, 2, 1, 3]
        });
        const kT = b.op("Transpose", [b.op("Reshape", [k, split])], { perm: [0, 2, 3, 1] });
        const vh = b.op("Transpose", [b.op("Reshape", [v, split])], { perm: [0, 2, 1, 3] });
        const probs = b.op("Softmax", [b.op("MatMul", [qh, kT])], { axis: -1 });
        const ctx = b.op("Transpose", [b.op("MatMul", [probs, vh])], { perm: [0, 2, 1, 3] });
        const merged = b.op("Reshape", [ctx, b.constInt64([0, -1, D])]);
        return b.scope("out_proj", () => b.linear(merged, `${p}.self_attn.out_proj`, D, D, true));
      });
      const afterAttn = b.op("Add", [residual, attended]);
      const y = b.scope("layer_norm2", () => b.layerNorm(afterAttn, `${p}.layer_norm2`, D));
      const mlp = b.scope("mlp", () => {
        const up = b.scope("fc1", () => b.linear(y, `${p}.mlp.fc1`, D, intermediate, true));
        return b.scope("fc2", () => b.linear(b.quickGelu(up), `${p}.mlp.fc2`, intermediate, D, true));
      });
      return b.op("Add", [afterAttn, mlp]);
    });
  }

  // vision_feature_select_strategy "default": drop CLS.
  const patchesOnly = b.op("Slice", [h, b.constInt64([1]), b.constInt64([2 ** 53 - 1]), b.constInt64([1])]);
  const projected = b.scope("multi_modal_projector", () => {
    const a = b.scope("linear_1", () => b.linear(patchesOnly, "multi_modal_projector.linear_1", D, projectTo, true));
    const g = b.scope("act", () => b.gelu(a));
    return b.scope("linear_2", () => b.linear(g, "multi_modal_projector.linear_2", projectTo, projectTo, true));
  });
  b.rename(projected, "image_features");
  b.output("image_features", FLOAT, ["batch_size", grid * grid, projectTo]);
  return { bytes: b.toBytes("vision_encoder"), parameters: b.parameters };
}
