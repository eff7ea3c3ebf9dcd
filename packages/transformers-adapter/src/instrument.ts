// Rewrites a transformers.js LLaVA-style `vision_encoder.onnx` (pixel_values -> image_features) into two graphs:
//  - features:  pixel_values -> the feature layer's hidden states and, computed inside the graph, what the
//               reducers need from its attention: the VisionZip score per token and the keys averaged over
//               heads. All outputs are float32 whatever precision the graph computes in (fp32, fp16, q4, q8).
//  - projector: the feature layer's tokens -> image_features, so the projector runs only on the tokens a
//               reducer keeps.
// The graph is found by structure, not by names:
//  - the feature layer's attention is the last Softmax (or fused attention op) that feeds image_features;
//  - its hidden states are the last residual Add after it (an Add of two computed values) that every path
//    from pixel_values to image_features passes through;
//  - a Slice right after that drops the first token means the model has a CLS token (LLaVA-1.5's CLIP); the
//    projector then starts after the Slice. Otherwise (SigLIP: OneVision, nanoLLaVA) it starts at the hidden states;
//  - the keys are the scores MatMul's second operand, traced back through head split, transposes, casts and
//    constant scaling to the key projection;
//  - multi-level hidden states (TokenPacker, `levels`): Hugging Face's hidden_states[l] is the output of encoder
//    layer l, the last residual Add between layer l's attention and layer l + 1's that cuts every path.
import { LeanVisionError } from "@leanvision/core";
import onnxProto from "onnx-proto";
import type * as OnnxTypes from "onnx-proto";

const { onnx } = onnxProto;
type Model = OnnxTypes.onnx.ModelProto;
type Node = OnnxTypes.onnx.INodeProto;
type ValueInfo = OnnxTypes.onnx.IValueInfoProto;
type TensorProto = OnnxTypes.onnx.ITensorProto;

const DT = onnx.TensorProto.DataType;

/** Output names of the new in-graph values (stable across models). */
export const SPLIT_OUTPUTS = {
  /** [batch, tokens, dim] float32: the feature layer's hidden states, when the graph computes them in another precision. */
  hidden: "leanvision_hidden",
  /** [batch, tokens] float32: VisionZip's dominant-token score (see VisionSplit.found.scoreKind). */
  score: "leanvision_score",
  /** [batch, tokens, headDim] float32: the feature layer's keys averaged over heads. */
  headKeys: "leanvision_keys_mean",
  /** [batch, tokens, dim] float32 input of the projector graph, when the graph computes in another precision. */
  projectorInput: "leanvision_projector_input",
  /** [batch, tokens, levels x dim] float32: the hidden states SplitOptions.levels names, concatenated per token. */
  multiLevel: "leanvision_multilevel"
} as const;

export interface SplitOptions {
  /**
   * "compact" (what the adapter should use): the features graph outputs only `hidden`, `score` and `headKeys`
   * (float32); models with and without CLS and every dtype work, and a tensor the graph cannot give is listed in
   * `missing` (its name is "") instead of failing.
   * "legacy" (default; the interface before): the features graph additionally outputs the full attention softmax
   * [batch, heads, tokens, tokens] and the key projection [batch, tokens, heads*headDim], and splitting fails with
   * UNSUPPORTED_MODEL unless the graph has an unfused Softmax, traceable keys and a CLS-dropping Slice.
   */
  outputs?: "legacy" | "compact";
  /**
   * Hugging Face hidden_states indices (1 = the first encoder layer's output, up to the number of layers the graph
   * runs) to concatenate per token into `multiLevel` (TokenPacker's multi-level features: 12, 16, 22, 23 of CLIP-L).
   * UNSUPPORTED_MODEL when a layer's output cannot be found.
   */
  levels?: readonly number[];
}

export interface MissingTensor {
  tensor: "attention" | "keys";
  reason: string;
  /** Which reducers still work without it. */
  consequence: string;
}

export interface VisionSplit {
  features: Uint8Array;
  projector: Uint8Array;
  /** Output names of the features graph and the projector's input name; "" for an output the graph does not have. */
  names: {
    /** [batch, tokens, dim] float32, the feature layer's hidden states (CLS first where the model has one). */
    hidden: string;
    /** legacy only: [batch, heads, tokens, tokens] float32 softmax of the feature layer. */
    attention: string;
    /** legacy only: [batch, tokens, heads*headDim] float32 key projection of the feature layer. */
    keys: string;
    /** [batch, tokens] float32 (SPLIT_OUTPUTS.score). */
    score: string;
    /** [batch, tokens, headDim] float32 (SPLIT_OUTPUTS.headKeys). */
    headKeys: string;
    /** [batch, tokens, dim] float32 input of the projector graph (for a CLS model: the patch tokens, or whichever tokens are kept). */
    projectorInput: string;
    /** [batch, tokens, levels x dim] float32 (SPLIT_OUTPUTS.multiLevel), "" unless SplitOptions.levels was given. */
    multiLevel: string;
  };
  /** Names of the nodes found, for error messages and debugging. */
  found: {
    softmax: string;
    keyProjection: string;
    clsSlice: string;
    attentionLayers: number;
    /** The exported graph drops a leading CLS token with a Slice before the projector (LLaVA-1.5's "default" strategy). */
    cls: boolean;
    /** "cls-attention": CLS row of the attention summed over heads; "mean-received": mean attention each token receives over heads and queries. */
    scoreKind: "cls-attention" | "mean-received" | null;
    /** Element type the graph computes the feature layer in. */
    precision: "float32" | "float16";
    /** Quantized weight operators found in the encoder (MatMulNBits for q4, MatMulInteger / ConvInteger for q8, ...). */
    quantizedOps: string[];
    /** The hidden_states indices concatenated into names.multiLevel (SplitOptions.levels), [] without. */
    levels: number[];
  };
  /** What the graph cannot give, and which reducers still work (compact mode only; legacy mode throws instead). */
  missing: MissingTensor[];
}

const IMAGE_FEATURES = "image_features";
const FUSED_ATTENTION = new Set(["Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention", "PackedMultiHeadAttention"]);
const QUANTIZED_OPS = new Set(["MatMulNBits", "MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "QLinearMatMul", "QLinearConv", "DequantizeLinear", "MatMulBnb4", "GatherBlockQuantized"]);

function unsupported(message: string): never {
  throw new LeanVisionError(
    "UNSUPPORTED_MODEL",
    `${message}. LeanVision needs a LLaVA vision_encoder.onnx exported with explicit attention (Softmax), ` +
      `a CLS-dropping Slice and the projector after it (as optimum / transformers.js exports are).`
  );
}

/** Reads `length` bytes at `offset` of an external data file named in the model (relative to the model's folder). */
export type ExternalDataReader = (location: string, offset: number, length: number | undefined) => Uint8Array;

export function splitVisionEncoder(bytes: Uint8Array, readExternal?: ExternalDataReader, options: SplitOptions = {}): VisionSplit {
  const legacy = (options.outputs ?? "legacy") === "legacy";
  let model: Model;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (cause) {
    throw new LeanVisionError("UNSUPPORTED_MODEL", `vision_encoder.onnx is not a readable ONNX model: ${String(cause)}`, { cause });
  }
  const graph = model.graph;
  if (!graph) unsupported("vision_encoder.onnx has no graph");
  const nodes = (graph.node ?? []) as Node[];
  const outputs = (graph.output ?? []).map((o: ValueInfo) => o.name ?? "");
  if (!outputs.includes(IMAGE_FEATURES)) unsupported(`vision_encoder has outputs [${outputs.join(", ")}], expected "${IMAGE_FEATURES}"`);

  inlineExternalData(graph.initializer ?? [], readExternal);
  const initializers = new Map((graph.initializer ?? []).map((t) => [t.name ?? "", t]));
  const graphInputs = new Set((graph.input ?? []).map((i) => i.name ?? "").filter((n) => !initializers.has(n)));
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => (n.output ?? []).forEach((o) => producer.set(o, i)));
  const types = inferTypes(nodes, graph);
  const dynamic = dynamicValues(nodes, graphInputs);
  const opset = Number((model.opsetImport ?? []).find((o) => !o.domain)?.version ?? 13);

  const featureAncestors = [...ancestors(nodes, producer, [IMAGE_FEATURES])].sort((a, b) => a - b);
  const softmaxes = featureAncestors.filter((i) => nodes[i].opType === "Softmax");
  const fused = featureAncestors.filter((i) => FUSED_ATTENTION.has(nodes[i].opType ?? ""));
  const lastSoftmax = softmaxes.at(-1) ?? -1;
  const lastFused = fused.at(-1) ?? -1;
  if (legacy && fused.length) {
    unsupported(`vision_encoder uses fused attention (${nodes[fused[0]].opType} "${nodes[fused[0]].name}"), whose softmax cannot be read out`);
  }
  if (lastSoftmax < 0 && lastFused < 0) {
    const ops = [...new Set(nodes.map((n) => n.opType))].join(", ");
    unsupported(`vision_encoder has no Softmax on the way to image_features (op types found: ${ops})`);
  }
  const anchor = Math.max(lastSoftmax, lastFused);
  const anchorNode = nodes[anchor];
  const missing: MissingTensor[] = [];

  // Hidden states: the last residual Add after the attention that cuts every path from the pixels.
  const isCut = (value: string) => {
    for (const i of ancestors(nodes, producer, [IMAGE_FEATURES], new Set([value]))) {
      if ((nodes[i].input ?? []).some((x) => graphInputs.has(x))) return false;
    }
    return true;
  };
  const residualCuts = featureAncestors.filter(
    (i) => i > anchor && nodes[i].opType === "Add" && (nodes[i].input ?? []).filter((x) => dynamic.has(x)).length === 2 && isCut(nodes[i].output![0])
  );
  if (!residualCuts.length) unsupported(`found no residual output after the feature layer's attention "${anchorNode.name}" that the projector starts from`);
  const hiddenValue = nodes[residualCuts.at(-1)!].output![0];

  // CLS: a Slice on the hidden states that drops the first token, between them and image_features.
  const projectorFromHidden = ancestors(nodes, producer, [IMAGE_FEATURES], new Set([hiddenValue]));
  const sliceIndex = [...projectorFromHidden].sort((a, b) => a - b).find((i) => nodes[i].opType === "Slice" && nodes[i].input?.[0] === hiddenValue);
  let slice: Node | undefined;
  if (sliceIndex !== undefined) {
    slice = nodes[sliceIndex];
    const [, starts, , axes] = slice.input ?? [];
    const startValues = starts ? int64Values(initializers.get(starts)) : null;
    const axesValues = axes ? int64Values(initializers.get(axes)) : null;
    if (startValues && (startValues[0] !== 1 || (axesValues && axesValues[0] !== 1 && axesValues[0] !== -2))) {
      unsupported(`the Slice "${slice.name}" after the feature layer does not drop the first token (starts ${startValues}, axes ${axesValues})`);
    }
  } else if (legacy) {
    unsupported(`found no Slice between the feature layer's attention "${anchorNode.name}" and image_features, so CLS is not dropped where expected`);
  }
  const cls = slice !== undefined;
  const projectorStart = slice ? slice.output![0] : hiddenValue;

  // Projector: everything image_features needs downstream of its start. It must not reach the pixels.
  const projectorNodes = ancestors(nodes, producer, [IMAGE_FEATURES], new Set([projectorStart]));
  for (const i of projectorNodes) {
    for (const input of nodes[i].input ?? []) {
      if (input && graphInputs.has(input)) unsupported(`the projector after "${slice?.name ?? hiddenValue}" also reads graph input "${input}"`);
    }
  }

  // New nodes computed from the encoder's values.
  const added: Node[] = [];
  const addedInits: TensorProto[] = [];
  let counter = 0;
  const op = (opType: string, inputs: string[], attrs: Record<string, number | number[]> = {}, output?: string): string => {
    const name = `/leanvision/${opType}_${counter++}`;
    const out = output ?? `${name}_output_0`;
    added.push(
      onnx.NodeProto.create({
        name,
        opType,
        input: inputs,
        output: [out],
        attribute: Object.entries(attrs).map(([k, v]) =>
          Array.isArray(v) ? { name: k, type: onnx.AttributeProto.AttributeType.INTS, ints: v } : { name: k, type: onnx.AttributeProto.AttributeType.INT, i: v }
        )
      })
    );
    return out;
  };
  const int64 = (values: number[], dims: number[] = [values.length]) => {
    const name = `leanvision_const_${counter++}`;
    const data = BigInt64Array.from(values.map(BigInt));
    addedInits.push(onnx.TensorProto.create({ name, dataType: DT.INT64, dims, rawData: new Uint8Array(data.buffer) }));
    return name;
  };
  const toFloat = (value: string, output?: string) => (types.get(value) === DT.FLOAT && !output ? value : op("Cast", [value], { to: DT.FLOAT }, output));
  const reduce = (kind: "ReduceMean" | "ReduceSum", value: string, axes: number[], output?: string) => {
    const axesAsInput = kind === "ReduceSum" ? opset >= 13 : opset >= 18;
    return axesAsInput ? op(kind, [value, int64(axes)], { keepdims: 0 }, output) : op(kind, [value], { axes, keepdims: 0 }, output);
  };

  // Score.
  let probs = "";
  let score = "";
  let scoreKind: VisionSplit["found"]["scoreKind"] = null;
  if (lastSoftmax > lastFused) {
    probs = nodes[lastSoftmax].output![0];
    const p = toFloat(probs);
    if (cls) {
      score = reduce("ReduceSum", op("Gather", [p, int64([0], [])], { axis: 2 }), [1], SPLIT_OUTPUTS.score);
      scoreKind = "cls-attention";
    } else {
      score = reduce("ReduceMean", p, [1, 2], SPLIT_OUTPUTS.score);
      scoreKind = "mean-received";
    }
  } else {
    missing.push({
      tensor: "attention",
      reason: `the feature layer's attention is fused into ${anchorNode.opType} "${anchorNode.name}", so its softmax is not a tensor of the graph`,
      consequence: "VisionZip's dominant-token selection and the adaptive budget need it; pool and regionpack work"
    });
  }

  // Keys: from the scores MatMul's second operand (or the fused op's key input) back to the key projection.
  let keyProjection = "";
  let keyHeads = "";
  let keyReason = "";
  if (probs) {
    let scores = nodes[producer.get(nodes[lastSoftmax].input![0]) ?? -1];
    while (scores && ["Add", "Mul", "Div", "Sub", "Cast"].includes(scores.opType ?? "")) {
      const data = (scores.input ?? []).find((x) => x && dynamic.has(x)) ?? "";
      scores = nodes[producer.get(data) ?? -1];
    }
    if (!scores || scores.opType !== "MatMul") keyReason = `the feature layer's Softmax "${nodes[lastSoftmax].name}" is not fed by a Q·Kᵀ MatMul`;
    else {
      const traced = traceKeys(scores.input![1], nodes, producer, dynamic);
      if (!traced.headSplit || !producer.has(traced.value)) keyReason = `could not trace the keys of "${nodes[lastSoftmax].name}" back to a key projection`;
      else {
        keyProjection = traced.value;
        keyHeads = op("Gather", [op("Shape", [probs]), int64([1])], { axis: 0 });
      }
    }
  } else if (anchorNode.opType === "MultiHeadAttention" && anchorNode.input?.[1] && producer.has(anchorNode.input[1])) {
    const heads = Number(anchorNode.attribute?.find((a) => a.name === "num_heads")?.i ?? 0);
    if (heads > 0) {
      keyProjection = anchorNode.input[1];
      keyHeads = int64([heads]);
    }
  }
  if (!keyProjection && !keyReason) keyReason = `the keys are packed inside ${anchorNode.opType} "${anchorNode.name}"`;
  if (legacy && keyReason) unsupported(keyReason);
  let headKeys = "";
  let rawKeys = "";
  if (keyProjection) {
    rawKeys = toFloat(keyProjection);
    const shape = op("Concat", [int64([0, 0]), keyHeads, int64([-1])], { axis: 0 });
    headKeys = reduce("ReduceMean", op("Reshape", [rawKeys, shape]), [2], SPLIT_OUTPUTS.headKeys);
  } else {
    missing.push({
      tensor: "keys",
      reason: keyReason,
      consequence: "VisionZip's contextual tokens need them (VisionZip with contextual 0 still works if the attention is there); pool and regionpack work"
    });
  }

  // Multi-level: the output of layer l (1-based) is the last cut residual Add between attention l and attention l + 1.
  const levels = [...(options.levels ?? [])];
  let multiLevel = "";
  if (levels.length) {
    const anchors = [...new Set([...softmaxes, ...fused])].sort((a, b) => a - b);
    const layerOutputs = new Map<number, string>();
    for (const level of levels) {
      if (!Number.isInteger(level) || level < 1 || level > anchors.length) {
        throw new LeanVisionError(
          "MMPROJ_MISMATCH",
          `multi-level hidden state ${level} is not one this vision encoder computes: it runs ${anchors.length} layers (hidden states 1..${anchors.length})`
        );
      }
      if (layerOutputs.has(level)) continue;
      const after = anchors[level - 1];
      const before = anchors[level] ?? Infinity;
      const cut = featureAncestors.filter(
        (i) => i > after && i < before && nodes[i].opType === "Add" && (nodes[i].input ?? []).filter((x) => dynamic.has(x)).length === 2 && isCut(nodes[i].output![0])
      );
      if (!cut.length) unsupported(`found no residual output of encoder layer ${level} (after "${nodes[after].name}") for the multi-level hidden states`);
      layerOutputs.set(level, nodes[cut.at(-1)!].output![0]);
    }
    multiLevel = op("Concat", levels.map((l) => toFloat(layerOutputs.get(l)!)), { axis: -1 }, SPLIT_OUTPUTS.multiLevel);
  }

  const precision = types.get(hiddenValue) === DT.FLOAT16 ? "float16" : "float32";
  const hidden = precision === "float32" ? hiddenValue : toFloat(hiddenValue, SPLIT_OUTPUTS.hidden);
  const attention = legacy ? toFloat(probs) : "";
  const keys = legacy ? rawKeys : "";
  const names = { hidden, attention, keys, score, headKeys, projectorInput: "", multiLevel };

  const allNodes = [...nodes, ...added];
  const allProducer = new Map(producer);
  added.forEach((n, i) => allProducer.set(n.output![0], nodes.length + i));
  const featureOutputs = [hidden, score, headKeys, attention, keys, multiLevel].filter(Boolean);
  const featureNodes = ancestors(allNodes, allProducer, featureOutputs);
  const allInits = [...(graph.initializer ?? []), ...addedInits];

  const subModel = (keep: Node[], inputs: ValueInfo[], outs: ValueInfo[], name: string) => {
    const used = new Set(keep.flatMap((n) => n.input ?? []));
    return onnx.ModelProto.encode({
      irVersion: model.irVersion,
      opsetImport: model.opsetImport,
      producerName: "leanvision-transformers-adapter",
      graph: { name, node: keep, initializer: allInits.filter((t) => used.has(t.name ?? "")), input: inputs, output: outs }
    }).finish();
  };
  const dims = (d: Array<number | string>) => ({ dim: d.map((x) => (typeof x === "number" ? { dimValue: x } : { dimParam: x })) });
  const floatOutput = (name: string, shape: Array<number | string>) => ({ name, type: { tensorType: { elemType: DT.FLOAT, shape: dims(shape) } } });
  const featureValueInfos = [
    floatOutput(hidden, ["batch_size", "num_tokens", "hidden_size"]),
    ...(score ? [floatOutput(score, ["batch_size", "num_tokens"])] : []),
    ...(headKeys ? [floatOutput(headKeys, ["batch_size", "num_tokens", "head_dim"])] : []),
    ...(attention ? [floatOutput(attention, ["batch_size", "num_heads", "num_tokens", "num_tokens"])] : []),
    ...(keys ? [floatOutput(keys, ["batch_size", "num_tokens", "key_size"])] : []),
    ...(multiLevel ? [floatOutput(multiLevel, ["batch_size", "num_tokens", "multi_level_size"])] : [])
  ];
  const features = subModel(
    allNodes.filter((_, i) => featureNodes.has(i)),
    (graph.input ?? []).filter((i) => graphInputs.has(i.name ?? "")),
    featureValueInfos,
    "leanvision_features"
  );

  // The projector takes float32 tokens; a graph computing in float16 gets a Cast in front.
  const projectorKeep = nodes.filter((_, i) => projectorNodes.has(i));
  let projectorInput = projectorStart;
  if (types.get(projectorStart) !== DT.FLOAT) {
    projectorInput = SPLIT_OUTPUTS.projectorInput;
    projectorKeep.unshift(
      onnx.NodeProto.create({
        name: "/leanvision/projector_input_cast",
        opType: "Cast",
        input: [projectorInput],
        output: [projectorStart],
        attribute: [{ name: "to", type: onnx.AttributeProto.AttributeType.INT, i: types.get(projectorStart) ?? DT.FLOAT16 }]
      })
    );
  }
  names.projectorInput = projectorInput;
  const projector = subModel(
    projectorKeep,
    [floatOutput(projectorInput, ["batch_size", "num_tokens", "hidden_size"])],
    graph.output!.filter((o) => o.name === IMAGE_FEATURES),
    "leanvision_projector"
  );
  const quantizedOps = [...new Set(nodes.map((n) => n.opType ?? "").filter((t) => QUANTIZED_OPS.has(t)))].sort();
  return {
    features,
    projector,
    names,
    found: {
      softmax: probs ? (nodes[lastSoftmax].name ?? "") : "",
      keyProjection: keyProjection ? (nodes[producer.get(keyProjection) ?? -1]?.name ?? keyProjection) : "",
      clsSlice: slice?.name ?? "",
      attentionLayers: softmaxes.length + fused.length,
      cls,
      scoreKind,
      precision,
      quantizedOps,
      levels
    },
    missing
  };
}

/**
 * From the scores MatMul's key operand back to the key projection: through the head split (Reshape),
 * transposes, casts and scaling by a constant (which does not depend on the pixels).
 */
function traceKeys(start: string, nodes: Node[], producer: Map<string, number>, dynamic: Set<string>): { value: string; headSplit: boolean } {
  let value = start;
  let headSplit = false;
  for (let n = nodes[producer.get(value) ?? -1]; n; n = nodes[producer.get(value) ?? -1]) {
    const op = n.opType ?? "";
    const inputs = (n.input ?? []).filter(Boolean);
    if (op === "Transpose" || op === "Cast" || op === "Identity") value = inputs[0];
    else if (op === "Reshape") {
      headSplit = true;
      value = inputs[0];
    } else if ((op === "Mul" || op === "Div") && inputs.length === 2) {
      const data = inputs.filter((x) => dynamic.has(x));
      if (data.length !== 1 || (op === "Div" && data[0] !== inputs[0])) break;
      value = data[0];
    } else break;
  }
  return { value, headSplit };
}

/** Element types of every value, from initializers, graph inputs and each op's typing rule. */
function inferTypes(nodes: Node[], graph: OnnxTypes.onnx.IGraphProto): Map<string, number> {
  const types = new Map<string, number>();
  for (const t of graph.initializer ?? []) types.set(t.name ?? "", t.dataType ?? DT.FLOAT);
  for (const v of [...(graph.input ?? []), ...(graph.valueInfo ?? [])]) {
    const t = v.type?.tensorType?.elemType;
    if (t) types.set(v.name ?? "", t);
  }
  const attr = (n: Node, name: string) => n.attribute?.find((a) => a.name === name);
  for (const n of nodes) {
    const ins = (n.input ?? []).map((x) => (x ? types.get(x) : undefined));
    const first = ins.find((t) => t !== undefined);
    const outs = n.output ?? [];
    const set = (...ts: Array<number | undefined>) => outs.forEach((o, i) => ts[Math.min(i, ts.length - 1)] !== undefined && types.set(o, ts[Math.min(i, ts.length - 1)]!));
    switch (n.opType) {
      case "Cast":
        set(Number(attr(n, "to")?.i ?? DT.FLOAT));
        break;
      case "Shape":
      case "Size":
      case "NonZero":
      case "ArgMax":
      case "ArgMin":
        set(DT.INT64);
        break;
      case "Equal":
      case "Greater":
      case "GreaterOrEqual":
      case "Less":
      case "LessOrEqual":
      case "Not":
      case "And":
      case "Or":
      case "Xor":
      case "IsNaN":
      case "IsInf":
        set(DT.BOOL);
        break;
      case "DynamicQuantizeLinear":
        set(DT.UINT8, DT.FLOAT, DT.UINT8);
        break;
      case "MatMulInteger":
      case "ConvInteger":
        set(DT.INT32);
        break;
      case "QuantizeLinear":
        set(ins[2] ?? DT.UINT8);
        break;
      case "DequantizeLinear":
        set(ins[1] ?? DT.FLOAT);
        break;
      case "Where":
        set(ins[1] ?? ins[2]);
        break;
      case "Constant":
      case "ConstantOfShape":
        set(attr(n, "value")?.t?.dataType ?? DT.FLOAT);
        break;
      default:
        set(first);
    }
  }
  return types;
}

/** Values that depend on a graph input other than through its shape. */
function dynamicValues(nodes: Node[], graphInputs: Set<string>): Set<string> {
  const dynamic = new Set(graphInputs);
  for (const n of nodes) {
    if (n.opType === "Shape" || n.opType === "Size") continue;
    if ((n.input ?? []).some((x) => x && dynamic.has(x))) (n.output ?? []).forEach((o) => dynamic.add(o));
  }
  return dynamic;
}

function int64Values(t: TensorProto | undefined): number[] | null {
  if (!t || t.dataType !== DT.INT64) return null;
  if (t.rawData?.length) {
    const view = new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength);
    return Array.from({ length: t.rawData.byteLength / 8 }, (_, i) => Number(view.getBigInt64(i * 8, true)));
  }
  if (t.int64Data?.length) return t.int64Data.map(Number);
  return null;
}

/** Weights stored in .onnx_data files are read into the graphs, so the split graphs stand alone. */
function inlineExternalData(tensors: TensorProto[], readExternal?: ExternalDataReader): void {
  for (const t of tensors) {
    if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
    const info = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, e.value]));
    if (!readExternal || !info.location) unsupported(`weight "${t.name}" is stored in external data (${info.location ?? "no location"}) that cannot be read here`);
    t.rawData = readExternal(info.location, Number(info.offset ?? 0), info.length === undefined ? undefined : Number(info.length));
    t.externalData = [];
    t.dataLocation = onnx.TensorProto.DataLocation.DEFAULT;
  }
}

/** Indices of the nodes the given values depend on, stopping at `stopAt` values. */
function ancestors(nodes: Node[], producer: Map<string, number>, roots: string[], stopAt = new Set<string>()): Set<number> {
  const seen = new Set<number>();
  const stack = roots.filter((r) => !stopAt.has(r));
  while (stack.length) {
    const i = producer.get(stack.pop()!);
    if (i === undefined || seen.has(i)) continue;
    seen.add(i);
    for (const input of nodes[i].input ?? []) if (input && !stopAt.has(input)) stack.push(input);
  }
  return seen;
}
