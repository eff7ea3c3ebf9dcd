/** Every code a LeanVisionError carries, in every package; the message says what to do. */
export type LeanVisionErrorCode =
  // reducers and their input
  | "INVALID_FEATURES"
  | "MISSING_ATTENTION"
  | "MISSING_KEYS"
  | "MISSING_MULTILEVEL"
  | "INVALID_OPTIONS"
  | "INVALID_SPEC"
  | "MISSING_WEIGHT"
  | "BAD_WEIGHT_SHAPE"
  | "NON_FINITE"
  // what users pass
  | "INVALID_INPUT"
  | "IMAGE_DECODE"
  | "IMAGE_TOO_LARGE"
  // models and runtimes
  | "INVALID_MODEL"
  | "MMPROJ_MISMATCH"
  | "UNSUPPORTED_MODEL"
  | "NATIVE_BUILD"
  | "ENCODE_FAILED"
  | "DECODE_FAILED"
  | "CONTEXT_OVERFLOW"
  | "DISPOSED"
  | "ABORTED"
  | "GRID_MISMATCH"
  // tooling (testkit, bench)
  | "NO_SPACE"
  | "MTMD_CLI_FAILED"
  | "MTMD_CLI_OUTPUT"
  | "CONVERTER_FAILED";

/** @deprecated the codes @leanvision/core itself throws; use LeanVisionErrorCode. */
export type CoreErrorCode = LeanVisionErrorCode;

/**
 * The one error type LeanVision throws for bad input or an unusable setup.
 * `code` is stable and machine-readable; the message says what to do about it.
 */
export class LeanVisionError<Code extends string = LeanVisionErrorCode> extends Error {
  readonly code: Code;

  constructor(code: Code, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "LeanVisionError";
    this.code = code;
  }
}
