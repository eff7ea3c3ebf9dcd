// The runtime contract: what every adapter (node-llama-cpp, transformers.js) implements, and all
// that the examples use. Types only; the adapters hold the code.
import type { LeanVisionErrorCode } from "./errors.js";
import type { ImageFeatures, ReducedImage, ReducerSpec, TileShape, TileTokenProvenance } from "./types.js";

/** Packed RGB pixels, row-major, width * height * 3 bytes. */
export interface RawRgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** An image as users pass it: a file path, an encoded image (any format sharp reads), or raw RGB. */
export type ImageInput = string | Uint8Array | RawRgbImage;

/** A reducer as users pass it: a spec object or its text form ("visionzip:54+10"). */
export type ReducerInput = ReducerSpec | string;

/** Milliseconds spent on one image (or the sum over a turn's images). */
export interface ImageTimings {
  /** Image decode plus the vision encoder with what the reducer needs captured. */
  encodeMs: number;
  reduceMs: number;
  projectMs: number;
}

/** An image as the language model will see it. */
export interface EncodedImage {
  width: number;
  height: number;
  features: ImageFeatures;
  reduced: ReducedImage;
  /** [numTokens x nEmbd], the rows given to the language model (the runtime may add its own, e.g. newlines). */
  embeddings: Float32Array;
  numTokens: number;
  nEmbd: number;
  /** The reducer's text form. */
  reducer: string;
  timings: ImageTimings;
  /** True when the runtime's image cache served it (same pixels, same model, same reducer): nothing was encoded. */
  fromCache: boolean;
}

/** What a turn reports about each image it encoded (overlays draw provenance over each tile's patch grid). */
export interface TurnImage {
  width: number;
  height: number;
  tiles: TileShape[];
  tileGrid: { rows: number; cols: number };
  provenance: TileTokenProvenance[];
}

/** Per-turn timings (milliseconds) and token counts, the same in every runtime. */
export interface TurnTimings extends ImageTimings {
  prefillMs: number;
  ttftMs: number;
  visualTokens: number;
  /** Tokens run through the language model before the first answer token. */
  evaluatedTokens: number;
  /** Tokens taken from the KV cache of earlier turns. */
  reusedTokens: number;
}

/** One completed turn. */
export interface VisionTurn extends TurnTimings {
  turn: number;
  /** The reducer this turn's images went through (text form). */
  reducer: string;
  images: TurnImage[];
  /** This turn's images served by the runtime's image cache (not encoded again) and encoded. */
  imageCache: { hits: number; misses: number };
  /**
   * Why the answer ended: the model's end token, `maxTokens`, or `contextFull` (the answer took the
   * room this turn had left in the context: the turn, image included, is kept whole instead).
   */
  stopReason: "endOfTurn" | "maxTokens" | "contextFull";
}

/** Default `maxTokens` of a turn, in every runtime. */
export const DEFAULT_MAX_TOKENS = 256;

/** Options of one turn, the same in every runtime. */
export interface VisionPromptOptions {
  /** Images, placed before the text. */
  images?: ImageInput[];
  /** This turn's reducer (default: the chat's). */
  reducer?: ReducerInput;
  /** Default DEFAULT_MAX_TOKENS. */
  maxTokens?: number;
  /** 0 (the default) is greedy. */
  temperature?: number;
  seed?: number;
  onTextChunk?: (text: string) => void;
  signal?: AbortSignal;
}

/** A chat with images. Prompts queue: a second prompt waits for the first. */
export interface VisionChat {
  /** The chat's default reducer. */
  readonly reducer: ReducerSpec;
  prompt(text: string, options?: VisionPromptOptions): Promise<string>;
  readonly lastTurn: VisionTurn | undefined;
  readonly turns: readonly VisionTurn[];
  readonly disposed: boolean;
  dispose(): Promise<void>;
}

export interface VisionChatOptions {
  /** Default reducer of the chat's turns (default: none). */
  reducer?: ReducerInput;
  systemPrompt?: string;
}

/** A loaded vision-language model in one runtime; shared, immutable, used by any number of chats. */
export interface VisionRuntime {
  readonly runtime: string;
  /** What was loaded, for reports (model files, threads, binaries). */
  readonly description: Record<string, unknown>;
  /** One encoder tile (patch grid, CLS): what a reducer works on; presetsFor(tile) lists the reducers that fit it. */
  readonly tile: TileShape;
  /** Tokens of plain text (no template, no special tokens). */
  countTextTokens(text: string): number;
  /** How many embeddings an image takes with a reducer, without prefilling anything. */
  countTokens(image: ImageInput, reducer?: ReducerInput): Promise<number>;
  /** Encodes and reduces one image (no chat, no prefill). */
  encodeImage(image: ImageInput, reducer?: ReducerInput): Promise<EncodedImage>;
  createChat(options?: VisionChatOptions): Promise<VisionChat>;
  dispose(): Promise<void>;
}

/** Every error code LeanVision throws, in every package. */
export type { LeanVisionErrorCode };
