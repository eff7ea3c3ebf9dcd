import { LeanVisionError } from "./errors.js";
import type { ReducedTokens, TokenKind, TokenProvenance, VisionFeatures } from "./types.js";

const isCount = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;

/** Throws INVALID_FEATURES unless `f` is a consistent VisionFeatures. */
export function checkFeatures(f: VisionFeatures, reducer: string): void {
  const fail = (why: string): never => {
    throw new LeanVisionError("INVALID_FEATURES", `${reducer}: ${why}`);
  };
  if (typeof f !== "object" || f === null) fail("expected a VisionFeatures object");
  if (!isCount(f.numTokens) || !isCount(f.dim)) {
    fail(`numTokens and dim must be positive integers (got ${f.numTokens}, ${f.dim})`);
  }
  if (!(f.hidden instanceof Float32Array) || f.hidden.length !== f.numTokens * f.dim) {
    fail(`hidden must be a Float32Array of numTokens x dim = ${f.numTokens * f.dim} values`);
  }
  if (f.clsIndex !== null && !(Number.isInteger(f.clsIndex) && f.clsIndex >= 0 && f.clsIndex < f.numTokens)) {
    fail(`clsIndex must be null or a token index in [0, ${f.numTokens}) (got ${f.clsIndex})`);
  }
  const patches = f.numTokens - (f.clsIndex === null ? 0 : 1);
  if (!f.grid || !isCount(f.grid.rows) || !isCount(f.grid.cols) || f.grid.rows * f.grid.cols !== patches) {
    fail(
      `grid ${f.grid?.rows}x${f.grid?.cols} must hold exactly the ${patches} patch tokens ` +
        `(numTokens ${f.numTokens}${f.clsIndex === null ? "" : " minus the CLS token"})`
    );
  }
}

/** Throws MISSING_ATTENTION unless the feature layer's attention probabilities are present. */
export function checkAttention(f: VisionFeatures, reducer: string): asserts f is VisionFeatures & {
  attention: Float32Array;
  heads: number;
} {
  const expected = (f.heads ?? 0) * f.numTokens * f.numTokens;
  if (!(f.attention instanceof Float32Array) || !isCount(f.heads) || f.attention.length !== expected) {
    throw new LeanVisionError(
      "MISSING_ATTENTION",
      `${reducer} needs the feature layer's attention: set attention ([heads x numTokens x numTokens] ` +
        `softmax probabilities) and heads. Capture it with the encoder's flash attention disabled.`
    );
  }
}

/** Throws MISSING_KEYS unless the feature layer's head-averaged keys are present. */
export function checkKeys(f: VisionFeatures, reducer: string): asserts f is VisionFeatures & {
  keys: Float32Array;
  keyDim: number;
} {
  if (!(f.keys instanceof Float32Array) || !isCount(f.keyDim) || f.keys.length !== f.numTokens * f.keyDim) {
    throw new LeanVisionError(
      "MISSING_KEYS",
      `${reducer} needs the feature layer's keys for contextual tokens: set keys ` +
        `([numTokens x keyDim], averaged over heads) and keyDim, or pass contextual: 0.`
    );
  }
}

/** Throws INVALID_OPTIONS unless `value` is an integer in [min, max]. */
export function checkInteger(reducer: string, name: string, value: unknown, min: number, max: number): number {
  if (!Number.isInteger(value) || (value as number) < min || (value as number) > max) {
    throw new LeanVisionError(
      "INVALID_OPTIONS",
      `${reducer}: ${name} must be an integer in [${min}, ${max}] for this input (got ${String(value)})`
    );
  }
  return value as number;
}

/**
 * Token indices of the patches, in grid (row-major) order: every token but the CLS one.
 * Ascending, so a window or region listed row by row lists ascending token indices too.
 */
export function patchTokenIndices(f: VisionFeatures): Int32Array {
  const out = new Int32Array(f.numTokens - (f.clsIndex === null ? 0 : 1));
  let p = 0;
  for (let t = 0; t < f.numTokens; t++) if (t !== f.clsIndex) out[p++] = t;
  return out;
}

/** Collects output tokens row by row, with their provenance. */
export class TokenWriter {
  readonly hidden: Float32Array;
  readonly provenance: TokenProvenance[] = [];

  constructor(
    readonly capacity: number,
    readonly dim: number
  ) {
    this.hidden = new Float32Array(capacity * dim);
  }

  /** The next output row, to be filled by the caller. */
  push(kind: TokenKind, sources: Int32Array): Float32Array {
    const row = this.provenance.length;
    this.provenance.push({ kind, sources });
    return this.hidden.subarray(row * this.dim, (row + 1) * this.dim);
  }

  /** Appends an input token unchanged. */
  copy(kind: TokenKind, f: VisionFeatures, token: number): void {
    this.push(kind, Int32Array.of(token)).set(f.hidden.subarray(token * f.dim, (token + 1) * f.dim));
  }

  finish(): ReducedTokens {
    const numTokens = this.provenance.length;
    return {
      hidden: numTokens === this.capacity ? this.hidden : this.hidden.slice(0, numTokens * this.dim),
      numTokens,
      dim: this.dim,
      provenance: this.provenance
    };
  }
}
