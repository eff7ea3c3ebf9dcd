// The LLaMA language model as transformers.js loads it for LLaVA: `embed_tokens` (ids -> embeddings)
// and `decoder_model_merged` (embeddings + past key values -> logits + present key values).
import { BOOL, FLOAT, GraphBuilder, INT64, Rng } from "./graph.js";

export interface LanguageShape {
  vocab: number;
  hidden: number;
  heads: number;
  intermediate: number;
  layers: number;
  ropeTheta: number;
  rmsEps: number;
  /** Key/value heads (grouped-query attention, as Qwen2); default = heads. */
  kvHeads?: number;
  /** Biases on q_proj, k_proj and v_proj (Qwen2 has them, LLaMA does not). */
  qkvBias?: boolean;
  /** Initializer name prefixes: the decoder body and lm_head (default LLaVA's "language_model.model", "language_model.lm_head"). */
  names?: { model: string; lmHead: string };
}

const DEFAULT_NAMES = { model: "language_model.model", lmHead: "language_model.lm_head" };

export function buildEmbedTokens(shape: LanguageShape, seed: number): { bytes: Uint8Array; parameters: number } {
  const b = embedTokensGraph(shape, seed);
  return { bytes: b.toBytes("embed_tokens"), parameters: b.parameters };
}

export function embedTokensGraph(shape: LanguageShape, seed: number): GraphBuilder {
  const b = new GraphBuilder(new Rng(seed));
  const ids = b.input("input_ids", INT64, ["batch_size", "sequence_length"]);
  const table = b.param(`${(shape.names ?? DEFAULT_NAMES).model}.embed_tokens.weight`, [shape.vocab, shape.hidden], { std: 1 });
  b.rename(b.scope("embed_tokens", () => b.op("Gather", [table, ids], { axis: 0 })), "inputs_embeds");
  b.output("inputs_embeds", FLOAT, ["batch_size", "sequence_length", shape.hidden]);
  return b;
}

export function buildDecoder(shape: LanguageShape, seed: number): { bytes: Uint8Array; parameters: number } {
  const b = decoderGraph(shape, seed);
  return { bytes: b.toBytes("decoder_model_merged"), parameters: b.parameters };
}

export function decoderGraph(shape: LanguageShape, seed: number): GraphBuilder {
  const { vocab, hidden: D, heads: H, intermediate, layers, ropeTheta, rmsEps } = shape;
  const KV = shape.kvHeads ?? H;
  const names = shape.names ?? DEFAULT_NAMES;
  const hd = D / H;
  const b = new GraphBuilder(new Rng(seed));
  const embeds = b.input("inputs_embeds", FLOAT, ["batch_size", "sequence_length", D]);
  const mask = b.input("attention_mask", INT64, ["batch_size", "total_sequence_length"]);
  const positions = b.input("position_ids", INT64, ["batch_size", "sequence_length"]);
  // Newer exports take num_logits_to_keep (0 = all), so generation runs lm_head on the last position only.
  const logitsToKeep = b.input("num_logits_to_keep", INT64, []);
  for (let i = 0; i < layers; i++) {
    b.input(`past_key_values.${i}.key`, FLOAT, ["batch_size", KV, "past_sequence_length", hd]);
    b.input(`past_key_values.${i}.value`, FLOAT, ["batch_size", KV, "past_sequence_length", hd]);
  }

  // Additive attention bias [batch, 1, seq, total]: causal over the new tokens, padding from attention_mask.
  const bias = b.scope("model/mask", () => {
    const scalarAt = (t: string, axis: number) => b.op("Gather", [b.op("Shape", [t]), b.constInt64([axis], [])], { axis: 0 });
    const seq = scalarAt(embeds, 1);
    const total = scalarAt(mask, 1);
    const one = b.constInt64([1], []);
    const zero = b.constInt64([0], []);
    const queryPos = b.op("Add", [b.op("Range", [zero, seq, one]), b.op("Sub", [total, seq])]);
    const keyPos = b.op("Range", [zero, total, one]);
    const future = b.op("Greater", [
      b.op("Unsqueeze", [keyPos, b.constInt64([0])]),
      b.op("Unsqueeze", [queryPos, b.constInt64([1])])
    ]);
    const padded = b.op("Not", [b.op("Cast", [b.op("Unsqueeze", [mask, b.constInt64([1, 2])])], { to: BOOL })]);
    const blocked = b.op("Or", [future, padded]);
    return b.op("Where", [blocked, b.constFloat([-1e9], []), b.constFloat([0], [])]);
  });

  // Rotary embeddings, shared by every layer: cos/sin [batch, 1, seq, hd].
  const [cos, sin] = b.scope("model/rotary_emb", () => {
    const invFreq = Float32Array.from({ length: hd / 2 }, (_, i) => 1 / ropeTheta ** ((2 * i) / hd));
    const pos = b.op("Unsqueeze", [b.op("Cast", [positions], { to: FLOAT }), b.constInt64([-1])]);
    const freqs = b.op("Mul", [pos, b.constFloat(invFreq)]);
    const emb = b.op("Unsqueeze", [b.op("Concat", [freqs, freqs], { axis: -1 }), b.constInt64([1])]);
    return [b.op("Cos", [emb]), b.op("Sin", [emb])];
  });
  const rotate = (x: string) => {
    const half = b.constInt64([hd / 2]);
    const x1 = b.op("Slice", [x, b.constInt64([0]), half, b.constInt64([-1])]);
    const x2 = b.op("Slice", [x, half, b.constInt64([hd]), b.constInt64([-1])]);
    const rotated = b.op("Concat", [b.op("Neg", [x2]), x1], { axis: -1 });
    return b.op("Add", [b.op("Mul", [x, cos]), b.op("Mul", [rotated, sin])]);
  };

  let h = embeds;
  for (let i = 0; i < layers; i++) {
    const p = `${names.model}.layers.${i}`;
    h = b.scope(`model/layers.${i}`, () => {
      const x = b.scope("input_layernorm", () => b.rmsNorm(h, `${p}.input_layernorm`, D, rmsEps));
      const attended = b.scope("self_attn", () => {
        const heads = (t: string, n: number) => b.op("Transpose", [b.op("Reshape", [t, b.constInt64([0, 0, n, hd])])], { perm: [0, 2, 1, 3] });
        const bias_ = !!shape.qkvBias;
        const q = rotate(heads(b.scope("q_proj", () => b.linear(x, `${p}.self_attn.q_proj`, D, D, bias_)), H));
        const k = rotate(heads(b.scope("k_proj", () => b.linear(x, `${p}.self_attn.k_proj`, D, KV * hd, bias_)), KV));
        const v = heads(b.scope("v_proj", () => b.linear(x, `${p}.self_attn.v_proj`, D, KV * hd, bias_)), KV);
        const keys = b.rename(b.op("Concat", [`past_key_values.${i}.key`, k], { axis: 2 }), `present.${i}.key`);
        const values = b.rename(b.op("Concat", [`past_key_values.${i}.value`, v], { axis: 2 }), `present.${i}.value`);
        // repeat_kv: [batch, kv, seq, hd] -> [batch, kv, rep, seq, hd] -> [batch, heads, seq, hd].
        const repeat = (t: string) =>
          KV === H
            ? t
            : b.op("Reshape", [
                b.op("Expand", [b.op("Unsqueeze", [t, b.constInt64([2])]), b.constInt64([1, 1, H / KV, 1, 1])]),
                b.constInt64([0, H, -1, hd])
              ]);
        const scores = b.op("Mul", [b.op("MatMul", [q, b.op("Transpose", [repeat(keys)], { perm: [0, 1, 3, 2] })]), b.constFloat([hd ** -0.5], [])]);
        const probs = b.op("Softmax", [b.op("Add", [scores, bias])], { axis: -1 });
        const ctx = b.op("Transpose", [b.op("MatMul", [probs, repeat(values)])], { perm: [0, 2, 1, 3] });
        const merged = b.op("Reshape", [ctx, b.constInt64([0, 0, D])]);
        return b.scope("o_proj", () => b.linear(merged, `${p}.self_attn.o_proj`, D, D, false));
      });
      const afterAttn = b.op("Add", [h, attended]);
      const y = b.scope("post_attention_layernorm", () => b.rmsNorm(afterAttn, `${p}.post_attention_layernorm`, D, rmsEps));
      const mlp = b.scope("mlp", () => {
        const gate = b.scope("gate_proj", () => b.linear(y, `${p}.mlp.gate_proj`, D, intermediate, false));
        const up = b.scope("up_proj", () => b.linear(y, `${p}.mlp.up_proj`, D, intermediate, false));
        const silu = b.op("Mul", [gate, b.op("Sigmoid", [gate])]);
        return b.scope("down_proj", () => b.linear(b.op("Mul", [silu, up]), `${p}.mlp.down_proj`, intermediate, D, false));
      });
      return b.op("Add", [afterAttn, mlp]);
    });
  }
  const kept = b.scope("model/keep_logits", () => {
    const start = b.op("Neg", [b.op("Unsqueeze", [logitsToKeep, b.constInt64([0])])]);
    return b.op("Slice", [h, start, b.constInt64([2 ** 53 - 1]), b.constInt64([1])]);
  });
  const normed = b.scope("model/norm", () => b.rmsNorm(kept, `${names.model}.norm`, D, rmsEps));
  b.rename(b.scope("lm_head", () => b.linear(normed, names.lmHead, D, vocab, false)), "logits");

  b.output("logits", FLOAT, ["batch_size", "logits_length", vocab]);
  for (let i = 0; i < layers; i++) {
    b.output(`present.${i}.key`, FLOAT, ["batch_size", KV, "total_sequence_length", hd]);
    b.output(`present.${i}.value`, FLOAT, ["batch_size", KV, "total_sequence_length", hd]);
  }
  return b;
}
