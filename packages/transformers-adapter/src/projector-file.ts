// Reads and checks a LeanVision TokenPacker projector file in ONNX (written by the llama adapter's
// scripts/convert-tokenpacker.py --onnx): the leanvision.projector.* keys in the model's metadata_props
// (the same keys as the GGUF projector file, as strings) and the graph's input and output. The graph
// runs core's tokenPackerRows rows, [rows, inputDim + scaleFactor² x multiLevelDim], into
// [rows, outputDim] embeddings.
//
// Errors (LeanVisionError): INVALID_INPUT for the wrong file (missing, not ONNX, the GGUF projector file,
// not a projector file), INVALID_MODEL for a malformed one (naming the key), UNSUPPORTED_MODEL for a
// projector type the transformers adapter does not run.
import { LeanVisionError } from "@leanvision/core";
import { readFileSync } from "node:fs";
import onnxProto from "onnx-proto";

const { onnx } = onnxProto;

/** TokenPacker's trained projector as an ONNX graph: serves the `tokenpacker` reducer. */
export interface OnnxProjectorFileInfo {
  path: string;
  type: "tokenpacker";
  /** general.name: what it was converted from. */
  name: string;
  /** Width of the encoder features it reads (the vision tower's hidden size). */
  inputDim: number;
  /** Width of its embeddings (the language model's hidden size). */
  outputDim: number;
  /** Floats per input row: inputDim + scaleFactor² x multiLevelDim (core's tokenPackerRows). */
  rowDim: number;
  /** Side of the regions it packs (2: 144 tokens from 24x24). */
  scaleFactor: number;
  heads: number;
  /** Patch grid side it was trained on (official raw_grid 24). */
  gridSize: number;
  /** Hugging Face hidden_states index of its patch features (mm_vision_select_layer -2 of CLIP-L: 23). */
  featureLayer: number;
  /** Hugging Face hidden_states indices concatenated into the multi-level features (official 12, 16, 22, 23). */
  multiLevelLayers: number[];
  multiLevelDim: number;
  /** The graph's input and output names. */
  input: string;
  output: string;
}

const CONVERT = "write it with packages/llama-adapter/scripts/convert-tokenpacker.py CHECKPOINT --onnx tokenpacker.onnx";

/** Reads and checks the ONNX projector file at `path`. Throws LeanVisionError (see above). */
export function inspectOnnxProjectorFile(path: string): OnnxProjectorFileInfo {
  if (typeof path !== "string" || !path) throw new LeanVisionError("INVALID_INPUT", `projectorPath must be the path of a TokenPacker projector file (.onnx); ${CONVERT}`);
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (cause) {
    throw new LeanVisionError("INVALID_INPUT", `cannot read the projector file ${path}: ${(cause as Error).message}`, { cause });
  }
  if (bytes.subarray(0, 4).toString("latin1") === "GGUF") {
    throw new LeanVisionError(
      "INVALID_INPUT",
      `${path} is a GGUF file (the llama adapter's projector file, or an mmproj); the transformers adapter runs the ONNX one: ${CONVERT}`
    );
  }
  let model: ReturnType<typeof onnx.ModelProto.decode>;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (cause) {
    throw new LeanVisionError("INVALID_INPUT", `${path} is not an ONNX model (${String(cause)}); ${CONVERT}`, { cause });
  }
  const meta = new Map((model.metadataProps ?? []).map((p) => [p.key ?? "", p.value ?? ""]));
  const invalid = (message: string): never => {
    throw new LeanVisionError("INVALID_MODEL", `${path}: ${message}; ${CONVERT}`);
  };
  const key = (k: string) => `leanvision.projector.${k}`;
  if (meta.get("general.architecture") !== "leanvision-projector") {
    throw new LeanVisionError("INVALID_INPUT", `${path} is not a LeanVision projector file (no general.architecture "leanvision-projector" in its metadata); ${CONVERT}`);
  }
  const type = meta.get(key("type"));
  if (type !== "tokenpacker") {
    throw new LeanVisionError("UNSUPPORTED_MODEL", `${path}: projector type "${type ?? "(none)"}" is not one the transformers adapter runs (tokenpacker)`);
  }
  const count = (k: string): number => {
    const text = meta.get(key(k));
    const v = Number(text);
    if (text === undefined || !/^\d+$/.test(text) || v < 1 || v > 1 << 24) invalid(`${key(k)} is ${text === undefined ? "missing" : `"${text}"`}; it must be a whole number in [1, ${1 << 24}]`);
    return v;
  };
  const inputDim = count("input_dim");
  const outputDim = count("output_dim");
  const scaleFactor = count("scale_factor");
  const heads = count("head_count");
  const gridSize = count("grid_size");
  const featureLayer = count("feature_layer");
  const multiLevelDim = count("multi_level_dim");
  const levelsText = meta.get(key("multi_level_layers")) ?? "";
  const multiLevelLayers = levelsText.split(",").map(Number);
  if (!/^\d+(,\d+)*$/.test(levelsText)) invalid(`${key("multi_level_layers")} is "${levelsText}"; it must list hidden_states indices such as "12,16,22,23"`);
  if (!multiLevelLayers.every((l) => l >= 1 && l <= featureLayer)) invalid(`${key("multi_level_layers")} [${multiLevelLayers}] must lie in [1, ${key("feature_layer")} ${featureLayer}]`);
  if (multiLevelDim !== multiLevelLayers.length * inputDim) invalid(`${key("multi_level_dim")} ${multiLevelDim} is not ${multiLevelLayers.length} layers x input_dim ${inputDim}`);
  if (gridSize % scaleFactor !== 0) invalid(`${key("scale_factor")} ${scaleFactor} does not divide ${key("grid_size")} ${gridSize}`);
  const rowDim = inputDim + scaleFactor * scaleFactor * multiLevelDim;

  // The graph: one input [rows, rowDim], one output [rows, outputDim] (dimension 1 as declared by the converter).
  const graph = model.graph;
  const initializers = new Set((graph?.initializer ?? []).map((t) => t.name ?? ""));
  const inputs = (graph?.input ?? []).filter((i) => !initializers.has(i.name ?? ""));
  const outputs = graph?.output ?? [];
  const width = (v: (typeof inputs)[number]) => {
    const dims = v.type?.tensorType?.shape?.dim ?? [];
    return dims.length === 2 ? Number(dims[1].dimValue ?? NaN) : NaN;
  };
  if (inputs.length !== 1 || outputs.length !== 1) invalid(`the graph has ${inputs.length} inputs and ${outputs.length} outputs, expected one of each`);
  if (width(inputs[0]) !== rowDim) invalid(`the graph's input ${inputs[0].name} is ${width(inputs[0])} wide, but the keys make rows of ${rowDim}`);
  if (width(outputs[0]) !== outputDim) invalid(`the graph's output ${outputs[0].name} is ${width(outputs[0])} wide, but ${key("output_dim")} is ${outputDim}`);
  return {
    path,
    type: "tokenpacker",
    name: meta.get("general.name") ?? "",
    inputDim,
    outputDim,
    rowDim,
    scaleFactor,
    heads,
    gridSize,
    featureLayer,
    multiLevelLayers,
    multiLevelDim,
    input: inputs[0].name ?? "",
    output: outputs[0].name ?? ""
  };
}

