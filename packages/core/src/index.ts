export type {
  VisionFeatures,
  ReducedTokens,
  TokenKind,
  TokenProvenance,
  ReducerSpec,
  TurnTimings,
  TurnImage,
  VisionPromptOptions
} from "./types.js";
export { LeanVisionError, type CoreErrorCode } from "./errors.js";
export { visionZip, visionZipAdaptive, type VisionZipOptions, type AdaptiveVisionZipOptions } from "./visionzip.js";
export { poolTokens, type PoolOptions } from "./pool.js";
export { regionPack, type RegionPackOptions } from "./regionpack.js";
export {
  tokenPacker,
  type TokenPackerInput,
  type TokenPackerOptions,
  type TokenPackerWeights,
  type StateDictTensor
} from "./tokenpacker.js";
export { reduce, parseReducerSpec, formatReducerSpec } from "./reduce.js";
export { keepMask, MASK_MERGED_OR_DROPPED, MASK_KEPT, MASK_CONTEXTUAL_TARGET } from "./mask.js";
export { ADAPTIVE_DEFAULT_MIN, ADAPTIVE_DEFAULT_MAX, SPEC_HELP } from "./reduce.js";
