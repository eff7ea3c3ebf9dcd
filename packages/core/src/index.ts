export type {
  VisionFeatures,
  ReducedTokens,
  TokenKind,
  TokenProvenance,
  ReducerSpec,
  TurnTimings
} from "./types.js";
export { LeanVisionError, type CoreErrorCode } from "./errors.js";
