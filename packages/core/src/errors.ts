/** Error codes thrown by @leanvision/core. Other packages add their own codes. */
export type CoreErrorCode =
  | "INVALID_FEATURES"
  | "MISSING_ATTENTION"
  | "MISSING_KEYS"
  | "INVALID_OPTIONS"
  | "INVALID_SPEC"
  | "INVALID_INPUT"
  | "MISSING_WEIGHT"
  | "BAD_WEIGHT_SHAPE"
  | "NON_FINITE";

/**
 * The one error type LeanVision throws for bad input or an unusable setup.
 * `code` is stable and machine-readable; the message says what to do about it.
 */
export class LeanVisionError<Code extends string = string> extends Error {
  readonly code: Code;

  constructor(code: Code, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "LeanVisionError";
    this.code = code;
  }
}
