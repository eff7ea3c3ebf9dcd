// Rewrites a transformers.js LLaVA `vision_encoder.onnx` (pixel_values -> image_features) into two graphs:
//  - features:  pixel_values -> the feature layer's hidden states (CLS included), its attention
//               softmax and its key projection, i.e. what the reducers need;
//  - projector: the feature layer's patch tokens -> image_features, so the projector runs only on
//               the tokens a reducer keeps.
// The graph is found by structure, not by names: the last attention Softmax that feeds
// image_features is the feature layer's; its scores MatMul's second operand traces back to the key
// projection; the first Slice after it (dropping CLS) is where the projector starts.
import { LeanVisionError } from "@leanvision/core";
import onnxProto from "onnx-proto";
import type * as OnnxTypes from "onnx-proto";

const { onnx } = onnxProto;
type Model = OnnxTypes.onnx.ModelProto;
type Node = OnnxTypes.onnx.INodeProto;
type ValueInfo = OnnxTypes.onnx.IValueInfoProto;

export interface VisionSplit {
  features: Uint8Array;
  projector: Uint8Array;
  /** Output names of the features graph and the projector's input name. */
  names: { hidden: string; attention: string; keys: string; projectorInput: string };
  /** Names of the nodes found, for error messages and debugging. */
  found: { softmax: string; keyProjection: string; clsSlice: string; attentionLayers: number };
}

const IMAGE_FEATURES = "image_features";
const FUSED_ATTENTION = new Set(["Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention"]);

function unsupported(message: string): never {
  throw new LeanVisionError(
    "UNSUPPORTED_MODEL",
    `${message}. LeanVision needs a LLaVA vision_encoder.onnx exported with explicit attention (Softmax), ` +
      `a CLS-dropping Slice and the projector after it (as optimum / transformers.js exports are).`
  );
}

/** Reads `length` bytes at `offset` of an external data file named in the model (relative to the model's folder). */
export type ExternalDataReader = (location: string, offset: number, length: number | undefined) => Uint8Array;

export function splitVisionEncoder(bytes: Uint8Array, readExternal?: ExternalDataReader): VisionSplit {
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
  const fused = nodes.filter((n) => FUSED_ATTENTION.has(n.opType ?? ""));
  if (fused.length) unsupported(`vision_encoder uses fused attention (${fused[0].opType} "${fused[0].name}"), whose softmax cannot be read out`);

  inlineExternalData(graph.initializer ?? [], readExternal);
  const initializers = new Set((graph.initializer ?? []).map((t) => t.name ?? ""));
  const producer = new Map<string, number>();
  nodes.forEach((n, i) => (n.output ?? []).forEach((o) => producer.set(o, i)));
  const constantValue = (name: string): number[] | null => {
    const t = (graph.initializer ?? []).find((x: OnnxTypes.onnx.ITensorProto) => x.name === name);
    if (t?.rawData?.length && t.dataType === onnx.TensorProto.DataType.INT64) {
      const view = new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength);
      return Array.from({ length: t.rawData.byteLength / 8 }, (_, i) => Number(view.getBigInt64(i * 8, true)));
    }
    if (t?.int64Data?.length) return t.int64Data.map(Number);
    return null;
  };

  const featureAncestors = ancestors(nodes, producer, [IMAGE_FEATURES]);
  const softmaxes = [...featureAncestors].sort((a, b) => a - b).filter((i) => nodes[i].opType === "Softmax");
  if (!softmaxes.length) {
    const ops = [...new Set(nodes.map((n) => n.opType))].join(", ");
    unsupported(`vision_encoder has no Softmax on the way to image_features (op types found: ${ops})`);
  }
  const softmaxIndex = softmaxes[softmaxes.length - 1];
  const softmax = nodes[softmaxIndex];

  // Scores MatMul: walk up from the Softmax through scaling and masking.
  const data = (n: Node) => (n.input ?? []).find((x) => x && !initializers.has(x) && producer.has(x)) ?? "";
  let scores = nodes[producer.get(softmax.input![0]) ?? -1];
  while (scores && ["Add", "Mul", "Div", "Sub", "Cast"].includes(scores.opType ?? "")) scores = nodes[producer.get(data(scores)) ?? -1];
  if (!scores || scores.opType !== "MatMul") unsupported(`the feature layer's Softmax "${softmax.name}" is not fed by a Q·Kᵀ MatMul`);
  // Keys: the MatMul's second operand, back through head split / transpose / scaling.
  let keys = scores.input![1];
  for (let n = nodes[producer.get(keys) ?? -1]; n && ["Transpose", "Reshape", "Mul", "Div"].includes(n.opType ?? ""); n = nodes[producer.get(keys) ?? -1]) {
    keys = data(n);
  }
  if (!producer.has(keys)) unsupported(`could not trace the keys of "${softmax.name}" back to a key projection`);

  // The CLS-dropping Slice between the feature layer and image_features.
  const sliceIndex = [...featureAncestors].sort((a, b) => a - b).find((i) => i > softmaxIndex && nodes[i].opType === "Slice");
  if (sliceIndex === undefined) {
    unsupported(`found no Slice between the feature layer's attention "${softmax.name}" and image_features, so CLS is not dropped where expected`);
  }
  const slice = nodes[sliceIndex];
  const [sliceData, starts, , axes] = slice.input ?? [];
  const startValues = starts ? constantValue(starts) : null;
  const axesValues = axes ? constantValue(axes) : null;
  if (startValues && (startValues[0] !== 1 || (axesValues && axesValues[0] !== 1 && axesValues[0] !== -2))) {
    unsupported(`the Slice "${slice.name}" after the feature layer does not drop the first token (starts ${startValues}, axes ${axesValues})`);
  }
  const projectorInput = slice.output![0];

  // Projector: everything image_features needs downstream of the Slice. It must not reach the pixels.
  const projectorNodes = ancestors(nodes, producer, [IMAGE_FEATURES], new Set([projectorInput]));
  for (const i of projectorNodes) {
    for (const input of nodes[i].input ?? []) {
      if (input && !initializers.has(input) && !producer.has(input) && input !== projectorInput) {
        unsupported(`the projector after "${slice.name}" also reads graph input "${input}"`);
      }
    }
  }
  const names = { hidden: sliceData, attention: softmax.output![0], keys, projectorInput };
  const featureNodes = ancestors(nodes, producer, [names.hidden, names.attention, names.keys]);

  const floatOutput = (name: string) => ({ name, type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT } } });
  const subModel = (keep: Set<number>, inputs: ValueInfo[], outs: ValueInfo[], name: string) => {
    const kept = nodes.filter((_, i) => keep.has(i));
    const used = new Set(kept.flatMap((n) => n.input ?? []));
    return onnx.ModelProto.encode({
      irVersion: model.irVersion,
      opsetImport: model.opsetImport,
      producerName: "leanvision-transformers-adapter",
      graph: {
        name,
        node: kept,
        initializer: (graph.initializer ?? []).filter((t) => used.has(t.name ?? "")),
        input: inputs,
        output: outs
      }
    }).finish();
  };
  const features = subModel(featureNodes, graph.input ?? [], [floatOutput(names.hidden), floatOutput(names.attention), floatOutput(names.keys)], "leanvision_features");
  const projectorIn = {
    name: projectorInput,
    type: { tensorType: { elemType: onnx.TensorProto.DataType.FLOAT, shape: { dim: [{ dimParam: "batch_size" }, { dimParam: "num_tokens" }, { dimParam: "hidden_size" }] } } }
  };
  const projectorOut = graph.output!.filter((o) => o.name === IMAGE_FEATURES);
  const projector = subModel(projectorNodes, [projectorIn], projectorOut, "leanvision_projector");
  return {
    features,
    projector,
    names,
    found: { softmax: softmax.name ?? "", keyProjection: nodes[producer.get(keys)!].name ?? keys, clsSlice: slice.name ?? "", attentionLayers: softmaxes.length }
  };
}

/** Weights stored in .onnx_data files are read into the graphs, so the split graphs stand alone. */
function inlineExternalData(tensors: OnnxTypes.onnx.ITensorProto[], readExternal?: ExternalDataReader): void {
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
