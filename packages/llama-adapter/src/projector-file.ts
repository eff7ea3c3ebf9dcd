// Checks a LeanVision projector file (GGUF written by scripts/convert-tokenpacker.py) completely
// before the native side loads it: the keys it declares, every tensor the projector reads (present,
// shape, type), nothing else in the file, and the declared sizes against the tensors. The native
// side (src/native/projector-file.cpp) re-checks the tensors it loads against the layout found here.
//
// The format (keys under leanvision.projector.*; tensors by the official state-dict names, shapes
// in ggml order, i.e. PyTorch's reversed) is described in the package README, "Projector files".
//
// Errors (LeanVisionError): INVALID_INPUT for the wrong file (missing, not GGUF, not a projector
// file), INVALID_MODEL for a malformed one (naming the key or tensor), UNSUPPORTED_MODEL for a
// projector type LeanVision does not run.
import { LeanVisionError } from "@leanvision/core";
import { ggmlTypeName, GgufValueType as T, readGgufHeader } from "./gguf.js";
import type { GgufEntry, GgufHeader } from "./gguf.js";

interface ProjectorFileCommon {
  path: string;
  /** general.name: what it was converted from. */
  name: string;
  /** Width of the encoder features it reads (the mmproj's hidden size). */
  inputDim: number;
  /** Width of its embeddings (the language model's n_embd). */
  outputDim: number;
  /** Floats per input row: inputDim for mlp; inputDim + scaleFactor² × multiLevelDim for tokenpacker (core's tokenPackerRows). */
  rowDim: number;
}

/** LLaVA's mlp projector (mm.0 → GELU → mm.2), e.g. one fine-tuned for reduced tokens: replaces the mmproj's own. */
export interface MlpProjectorFileInfo extends ProjectorFileCommon {
  type: "mlp";
  hidden: number;
}

/** TokenPacker's trained projector: serves the `tokenpacker` reducer. */
export interface TokenPackerProjectorFileInfo extends ProjectorFileCommon {
  type: "tokenpacker";
  /** Side of the regions it packs (2: 144 tokens from 24x24). */
  scaleFactor: number;
  heads: number;
  eps: number;
  /** Patch grid side it was trained on (official raw_grid 24). */
  gridSize: number;
  /** Hugging Face hidden_states index of its patch features (mm_vision_select_layer -2 of CLIP-L: 23). */
  featureLayer: number;
  /** Hugging Face hidden_states indices concatenated into the multi-level features (official 12, 16, 22, 23). */
  multiLevelLayers: number[];
  multiLevelDim: number;
  embedDim: number;
  kvHidden: number;
  mlpHidden: number;
}

export type ProjectorFileInfo = MlpProjectorFileInfo | TokenPackerProjectorFileInfo;

export const PROJECTOR_FILE_ARCHITECTURE = "leanvision-projector";
const CONVERT = "convert the checkpoint with packages/llama-adapter/scripts/convert-tokenpacker.py";
const VECTOR_TYPES = new Set([0]);
const MATRIX_TYPES = new Set([0, 1, 30]); // F32, F16, BF16

/** Reads and checks the projector file at `path` (its header only). Throws LeanVisionError (see above). */
export function inspectProjectorFile(path: string): ProjectorFileInfo {
  return new ProjectorFileCheck(readGgufHeader(path)).run();
}

class ProjectorFileCheck {
  constructor(private readonly h: GgufHeader) {}

  run(): ProjectorFileInfo {
    const arch = this.entry("general.architecture");
    if (arch?.type !== T.STRING || arch.value !== PROJECTOR_FILE_ARCHITECTURE) {
      const what = arch?.type === T.STRING ? `general.architecture "${arch.value}"` : "no general.architecture";
      const hint = arch?.value === "clip" ? "; it is an mmproj: pass it as mmprojPath" : "";
      throw new LeanVisionError("INVALID_INPUT", `${this.h.path} is not a LeanVision projector file (${what})${hint}; ${CONVERT}`);
    }
    const type = this.string("leanvision.projector.type");
    const common = {
      path: this.h.path,
      name: this.optionalString("general.name") ?? "",
      inputDim: this.count("leanvision.projector.input_dim"),
      outputDim: this.count("leanvision.projector.output_dim")
    };
    if (type === "mlp") return this.mlp(common);
    if (type === "tokenpacker") return this.tokenPacker(common);
    throw new LeanVisionError("UNSUPPORTED_MODEL", `${this.h.path}: projector type "${type}" is not one LeanVision runs (mlp, tokenpacker)`);
  }

  private mlp(c: Omit<ProjectorFileCommon, "rowDim">): MlpProjectorFileInfo {
    const hidden = this.tensorDim("mm.0.weight", 1);
    this.tensors({
      "mm.0.weight": [c.inputDim, hidden],
      "mm.0.bias": [hidden],
      "mm.2.weight": [hidden, c.outputDim],
      "mm.2.bias": [c.outputDim]
    });
    return { ...c, type: "mlp", hidden, rowDim: c.inputDim };
  }

  private tokenPacker(c: Omit<ProjectorFileCommon, "rowDim">): TokenPackerProjectorFileInfo {
    const scaleFactor = this.count("leanvision.projector.scale_factor");
    const heads = this.count("leanvision.projector.head_count");
    const eps = this.number("leanvision.projector.layer_norm_epsilon", T.FLOAT32);
    const gridSize = this.count("leanvision.projector.grid_size");
    const featureLayer = this.number("leanvision.projector.feature_layer", T.INT32);
    const multiLevelLayers = this.intArray("leanvision.projector.multi_level_layers");
    const multiLevelDim = this.count("leanvision.projector.multi_level_dim");
    const embedDim = this.tensorDim("q_proj_1.weight", 1);
    const kvHidden = this.tensorDim("k_proj_1.0.weight", 1);
    const mlpHidden = this.tensorDim("mlp.0.weight", 1);
    const { inputDim: ci, outputDim: o } = c;
    this.tensors({
      "q_proj_1.weight": [ci, embedDim],
      "k_proj_1.0.weight": [multiLevelDim, kvHidden], "k_proj_1.0.bias": [kvHidden],
      "k_proj_1.2.weight": [kvHidden, embedDim], "k_proj_1.2.bias": [embedDim],
      "v_proj_1.0.weight": [multiLevelDim, kvHidden], "v_proj_1.0.bias": [kvHidden],
      "v_proj_1.2.weight": [kvHidden, embedDim], "v_proj_1.2.bias": [embedDim],
      "ln_q_1.weight": [embedDim], "ln_q_1.bias": [embedDim],
      "ln_k_1.weight": [embedDim], "ln_k_1.bias": [embedDim],
      "ln_v_1.weight": [embedDim], "ln_v_1.bias": [embedDim],
      "clip_attn.in_proj_weight": [embedDim, 3 * embedDim], "clip_attn.in_proj_bias": [3 * embedDim],
      "clip_attn.out_proj.weight": [embedDim, embedDim], "clip_attn.out_proj.bias": [embedDim],
      "mlp.0.weight": [embedDim, mlpHidden], "mlp.0.bias": [mlpHidden],
      "mlp.2.weight": [mlpHidden, o], "mlp.2.bias": [o]
    });
    const key = (k: string) => `leanvision.projector.${k}`;
    if (embedDim % heads !== 0) this.invalid(`${key("head_count")} ${heads} does not divide clip_attn's width ${embedDim}`);
    if (!(eps > 0 && eps < 1e-2)) this.invalid(`${key("layer_norm_epsilon")} is ${eps}; it must be in (0, 0.01)`);
    if (gridSize % scaleFactor !== 0) this.invalid(`${key("scale_factor")} ${scaleFactor} does not divide ${key("grid_size")} ${gridSize}`);
    if (multiLevelLayers.length === 0) this.invalid(`${key("multi_level_layers")} lists no layer`);
    if (multiLevelDim !== multiLevelLayers.length * ci) {
      this.invalid(`${key("multi_level_dim")} ${multiLevelDim} is not ${multiLevelLayers.length} layers x input_dim ${ci}`);
    }
    if (!multiLevelLayers.every((l) => l >= 1 && l <= featureLayer)) {
      this.invalid(`${key("multi_level_layers")} [${multiLevelLayers}] must lie in [1, ${key("feature_layer")} ${featureLayer}]`);
    }
    if (scaleFactor > 16) this.invalid(`${key("scale_factor")} ${scaleFactor} is larger than 16`);
    return {
      ...c, type: "tokenpacker", rowDim: ci + scaleFactor * scaleFactor * multiLevelDim,
      scaleFactor, heads, eps, gridSize, featureLayer, multiLevelLayers, multiLevelDim, embedDim, kvHidden, mlpHidden
    };
  }

  private invalid(message: string): never {
    throw new LeanVisionError("INVALID_MODEL", `${this.h.path}: ${message}`);
  }

  private entry(key: string): GgufEntry | undefined {
    return this.h.metadata.get(key);
  }

  private string(key: string): string {
    const e = this.entry(key);
    if (e?.type !== T.STRING) this.invalid(`${key} must be a string${e ? "" : " (missing)"}; ${CONVERT}`);
    return e.value as string;
  }

  private optionalString(key: string): string | undefined {
    const e = this.entry(key);
    return e?.type === T.STRING ? (e.value as string) : undefined;
  }

  private number(key: string, type: T.UINT32 | T.INT32 | T.FLOAT32): number {
    const e = this.entry(key);
    if (e?.type !== type) this.invalid(`${key} must be ${T[type].toLowerCase()}${e ? ` (it is ${T[e.type].toLowerCase()})` : " (missing)"}`);
    const v = Number(e.value);
    if (!Number.isFinite(v)) this.invalid(`${key} is ${v}`);
    return v;
  }

  /** A positive u32 no larger than 2^24 (sizes and counts). */
  private count(key: string): number {
    const v = this.number(key, T.UINT32);
    if (v < 1 || v > 1 << 24) this.invalid(`${key} is ${v}; it must be in [1, ${1 << 24}]`);
    return v;
  }

  private intArray(key: string): number[] {
    const e = this.entry(key);
    if (e?.type !== T.ARRAY || e.itemType !== T.INT32) this.invalid(`${key} must be an array of int32${e ? "" : " (missing)"}`);
    return (e.value as number[]).map(Number);
  }

  /** Dimension `i` (ggml order) of a tensor, to size the rest of the check; the full check follows in tensors(). */
  private tensorDim(name: string, i: number): number {
    const t = this.h.tensors.get(name);
    if (!t) this.invalid(`lacks the tensor ${name}; ${CONVERT}`);
    const v = t.shape[i] ?? 1;
    if (!(v >= 1 && v <= 1 << 24)) this.invalid(`${name} has a dimension of ${v}`);
    return v;
  }

  /** Exactly these tensors, with these shapes (ggml order); vectors f32, matrices f32, f16 or bf16. */
  private tensors(expected: Record<string, number[]>): void {
    for (const [name, shape] of Object.entries(expected)) {
      const t = this.h.tensors.get(name);
      if (!t) this.invalid(`lacks the tensor ${name}; ${CONVERT}`);
      const actual = [...t.shape];
      while (actual.length > 1 && actual[actual.length - 1] === 1) actual.pop();
      if (actual.length !== shape.length || actual.some((d, i) => d !== shape[i])) {
        this.invalid(`${name} has the shape [${t.shape}] (ggml order), expected [${shape}]`);
      }
      const allowed = shape.length === 1 ? VECTOR_TYPES : MATRIX_TYPES;
      if (!allowed.has(t.type)) {
        this.invalid(`${name} has the type ${ggmlTypeName(t.type)}; ${shape.length === 1 ? "vectors are F32" : "matrices are F32, F16 or BF16"}`);
      }
    }
    const extra = [...this.h.tensors.keys()].filter((n) => !(n in expected));
    if (extra.length) this.invalid(`holds tensors the projector does not read: ${extra.slice(0, 5).join(", ")}`);
  }
}
