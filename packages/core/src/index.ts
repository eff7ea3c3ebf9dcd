export type {
  VisionFeatures,
  ReducedTokens,
  TokenKind,
  TokenProvenance,
  ReducerSpec,
  TurnTimings
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
