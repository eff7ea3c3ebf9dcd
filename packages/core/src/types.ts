/** Output of a vision encoder's feature layer, before the projector. See DESIGN.md "Core data model". */
export interface VisionFeatures {
  /** [numTokens x dim], row-major. */
  hidden: Float32Array;
  numTokens: number;
  dim: number;
  /** Patch grid; patches are the non-CLS tokens, row-major. */
  grid: { rows: number; cols: number };
  /** 0 in Hugging Face order, numTokens-1 in llama.cpp's llava graph, null for SigLIP. */
  clsIndex: number | null;
  /** [heads x numTokens x numTokens] softmax probabilities of the feature layer. */
  attention?: Float32Array;
  heads?: number;
  /** [numTokens x keyDim] keys of the feature layer, averaged over heads. */
  keys?: Float32Array;
  keyDim?: number;
}

export type TokenKind = "cls" | "dominant" | "contextual" | "pooled" | "packed" | "patch";

export interface TokenProvenance {
  kind: TokenKind;
  /** Input token indices this output token covers (ascending). */
  sources: Int32Array;
}

export interface ReducedTokens {
  /** [numTokens x dim], row-major. */
  hidden: Float32Array;
  numTokens: number;
  dim: number;
  /** One entry per output token, in output order. */
  provenance: TokenProvenance[];
  /** Set by the adaptive VisionZip budget: the dominant count it chose for this image. */
  chosenDominant?: number;
}

/** A reducer and its budget, as the adapters, CLIs and benchmarks pass it around. */
export type ReducerSpec =
  | { kind: "none" }
  | { kind: "visionzip"; dominant: number; contextual: number }
  | { kind: "visionzip-adaptive"; coverage: number; min: number; max: number; contextual: number }
  | { kind: "pool"; stride: number }
  | { kind: "regionpack"; scale: number };

/** Per-turn timings every adapter reports (milliseconds, token counts). */
export interface TurnTimings {
  encodeMs: number;
  reduceMs: number;
  projectMs: number;
  prefillMs: number;
  ttftMs: number;
  visualTokens: number;
  evaluatedTokens: number;
  reusedTokens: number;
}

/** What a chat turn reports about each image it encoded (overlays draw provenance over the patch grid). */
export interface TurnImage {
  width: number;
  height: number;
  grid: { rows: number; cols: number };
  clsIndex: number | null;
  provenance: TokenProvenance[];
}

/** Options of a chat turn with images, the same in every adapter (`Image` is the adapter's image input type). */
export interface VisionPromptOptions<Image> {
  images?: Image[];
  maxTokens?: number;
  /** 0 is greedy. */
  temperature?: number;
  seed?: number;
  onTextChunk?: (text: string) => void;
  signal?: AbortSignal;
}
