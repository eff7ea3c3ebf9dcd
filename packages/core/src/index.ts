export type {
  VisionFeatures,
  TileShape,
  ImageFeatures,
  ReducedTokens,
  ReducedImage,
  TokenKind,
  TokenProvenance,
  TileTokenProvenance,
  ReducerSpec,
  BuiltinReducerSpec,
  NoneSpec,
  VisionZipSpec,
  AdaptiveVisionZipSpec,
  PoolSpec,
  RegionPackSpec,
  TokenPackerSpec
} from "./types.js";
export type {
  RawRgbImage,
  ImageInput,
  ReducerInput,
  ImageTimings,
  EncodedImage,
  TurnImage,
  TurnTimings,
  VisionTurn,
  VisionPromptOptions,
  VisionChat,
  VisionChatOptions,
  VisionRuntime
} from "./contract.js";
export { DEFAULT_MAX_TOKENS } from "./contract.js";
export { LeanVisionError, type LeanVisionErrorCode, type CoreErrorCode } from "./errors.js";
export {
  registerReducer,
  unregisterReducer,
  reducerDefinition,
  registeredReducers,
  reducerNeeds,
  specHelp,
  type ReducerDefinition,
  type EncoderNeeds
} from "./registry.js";
export { reduce, reduceImage, concatTiles, countReduced, toReducerSpec, parseReducerSpec, formatReducerSpec, SPEC_HELP } from "./reduce.js";
export { ADAPTIVE_DEFAULT_MIN, ADAPTIVE_DEFAULT_MAX } from "./reducers/index.js";
export {
  visionZip,
  visionZipAdaptive,
  visionZipAdaptiveImage,
  visionZipNextOrder,
  type VisionZipOptions,
  type AdaptiveVisionZipOptions
} from "./visionzip.js";
export { poolTokens, type PoolOptions } from "./pool.js";
export { regionPack, type RegionPackOptions } from "./regionpack.js";
export {
  tokenPacker,
  tokenPackerRows,
  checkMultiLevel,
  type TokenPackerRowsOptions,
  type TokenPackerInput,
  type TokenPackerOptions,
  type TokenPackerWeights,
  type StateDictTensor
} from "./tokenpacker.js";
export { keepMask, tileKeepMasks, MASK_MERGED_OR_DROPPED, MASK_KEPT, MASK_CONTEXTUAL_TARGET } from "./mask.js";
export { turnImage } from "./turn.js";
export { REDUCER_PRESETS, DEFAULT_REDUCER, BENCH_REDUCERS, presetsFor, type ReducerPreset } from "./presets.js";
export { median } from "./stats.js";
