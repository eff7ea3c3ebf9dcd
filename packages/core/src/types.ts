// Core data model (see ARCHITECTURE.md at the repository root): what a vision encoder's feature
// layer gives a reducer, and what a reducer gives back, for one tile and for a whole image.

/** Output of a vision encoder's feature layer for one tile, before the projector. */
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
  /**
   * [numTokens] what VisionZip ranks by, when the runtime computes it instead of handing over the
   * whole attention: with CLS, the CLS query's attention to each token summed over heads; without
   * CLS, the attention each token receives summed (or averaged) over heads and queries. Any positive
   * common scale. Used when `attention` is absent.
   */
  attentionScores?: Float32Array;
  /** [numTokens x keyDim] keys of the feature layer, averaged over heads. */
  keys?: Float32Array;
  keyDim?: number;
  /**
   * [numTokens x multiLevelDim] hidden states of several encoder layers, concatenated per token, for
   * a multi-level projector (TokenPacker: CLIP-L hidden states 12, 16, 22 and 23). Which layers is the
   * projector's choice; the runtime captures them when a reducer's needs ask for `multiLevel`.
   */
  multiLevel?: Float32Array;
  multiLevelDim?: number;
}

/** The geometry of a tile, known before it is encoded (enough to count a reducer's output). */
export type TileShape = Pick<VisionFeatures, "numTokens" | "grid" | "clsIndex">;

/**
 * An image's features: one tile for LLaVA-1.5, an overview plus high-resolution tiles for
 * LLaVA-NeXT. tiles[0] is the whole image (the overview); the high-resolution tiles follow,
 * row-major over `tileGrid` ({ rows: 0, cols: 0 } when there are none).
 */
export interface ImageFeatures {
  tiles: VisionFeatures[];
  tileGrid: { rows: number; cols: number };
  /** The original image size in pixels. */
  width: number;
  height: number;
}

export type TokenKind = "cls" | "dominant" | "contextual" | "pooled" | "packed" | "patch";

export interface TokenProvenance {
  kind: TokenKind;
  /** Input token indices this output token covers (ascending). */
  sources: Int32Array;
}

/** Provenance of one output token of an image: which tile it comes from. */
export interface TileTokenProvenance extends TokenProvenance {
  /** Index into ImageFeatures.tiles. */
  tile: number;
}

/** A reducer's output for one tile. */
export interface ReducedTokens {
  /** [numTokens x dim], row-major. */
  hidden: Float32Array;
  numTokens: number;
  dim: number;
  /** One entry per output token, in output order. */
  provenance: TokenProvenance[];
  /** Set by the adaptive VisionZip budget: the dominant count it chose for this tile. */
  chosenDominant?: number;
}

/** A reducer's output for a whole image: the rows the projector gets, in the order it gets them. */
export interface ReducedImage {
  /** [numTokens x dim], row-major. */
  hidden: Float32Array;
  numTokens: number;
  dim: number;
  /** One entry per output row, in output order. */
  provenance: TileTokenProvenance[];
  /** Each tile's own reduction, in tile order (its rows may be interleaved in `hidden`). */
  tiles: ReducedTokens[];
}

/** A reducer and its budget. `kind` names a registered reducer (see registry.ts); the rest are its parameters. */
export type ReducerSpec = { readonly kind: string; readonly [param: string]: unknown };

/** The built-in reducers' specs. */
export type NoneSpec = { kind: "none" };
export type VisionZipSpec = { kind: "visionzip"; dominant: number; contextual: number };
export type AdaptiveVisionZipSpec = { kind: "visionzip-adaptive"; coverage: number; min: number; max: number; contextual: number };
export type PoolSpec = { kind: "pool"; stride: number };
export type RegionPackSpec = { kind: "regionpack"; scale: number };
export type TokenPackerSpec = { kind: "tokenpacker"; scale: number };
export type BuiltinReducerSpec = NoneSpec | VisionZipSpec | AdaptiveVisionZipSpec | PoolSpec | RegionPackSpec | TokenPackerSpec;
