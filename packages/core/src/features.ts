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

/** Throws MISSING_ATTENTION unless the feature layer's attention (or the scores computed from it) is present. */
export function checkAttention(f: VisionFeatures, reducer: string): asserts f is VisionFeatures & (
  | { attention: Float32Array; heads: number }
  | { attention: undefined; attentionScores: Float32Array }
) {
  const expected = (f.heads ?? 0) * f.numTokens * f.numTokens;
  if (f.attention instanceof Float32Array && isCount(f.heads) && f.attention.length === expected) return;
  if (f.attention === undefined && f.attentionScores instanceof Float32Array && f.attentionScores.length === f.numTokens) return;
  throw new LeanVisionError(
    "MISSING_ATTENTION",
    `${reducer} needs the feature layer's attention: set attention ([heads x numTokens x numTokens] ` +
      `softmax probabilities, captured with the encoder's flash attention disabled) and heads, or attentionScores ([numTokens], see VisionFeatures).`
  );
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
 * checkFeatures, then a grid reducer's size option (pooling's stride, region packing's scale): an
 * integer in [1, limit(rows, cols)] of the patch grid.
 */
export function checkGridOption(
  f: VisionFeatures,
  reducer: string,
  name: string,
  value: unknown,
  limit: (rows: number, cols: number) => number
): number {
  checkFeatures(f, reducer);
  return checkInteger(reducer, name, value, 1, limit(f.grid.rows, f.grid.cols));
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

/** A one-token provenance source list (new + store beats Int32Array.of by 2-3x). */
export function single(t: number): Int32Array {
  const sources = new Int32Array(1);
  sources[0] = t;
  return sources;
}

/** Token index of patch `p` (grid position, row-major): patches are every token but CLS. */
export function patchToken(p: number, clsIndex: number | null): number {
  // `| 0` tells the JIT the result is a 32-bit integer, so the row offsets built from it stay
  // integers in the hot loops (1.5x faster region packing than leaving it a generic number).
  return (clsIndex !== null && p >= clsIndex ? p + 1 : p) | 0;
}

/**
 * True when a[start..end) holds no NaN or ±Infinity. x*0 is ±0 for every finite x and NaN
 * otherwise, so four running sums stay zero exactly when everything is finite.
 */
export function allFinite(a: Float32Array | Float64Array, start: number, end: number): boolean {
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  let i = start;
  for (; i + 4 <= end; i += 4) {
    s0 += a[i] * 0;
    s1 += a[i + 1] * 0;
    s2 += a[i + 2] * 0;
    s3 += a[i + 3] * 0;
  }
  for (; i < end; i++) s0 += a[i] * 0;
  return s0 + s1 + s2 + s3 === 0;
}

const describeValue = (v: number) => (Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");

/** NON_FINITE for a bad value in one of the feature layer's inputs. */
export function nonFiniteError(
  reducer: string,
  input: "hidden" | "attention" | "keys",
  value: number,
  where: string
): LeanVisionError {
  const fix =
    input === "attention"
      ? "the captured attention probabilities are broken (an fp16 overflow in the encoder, or a buffer read before it was written)"
      : "the vision encoder produced broken features (an fp16 overflow, bad weights, or a buffer read before it was written)";
  return new LeanVisionError(
    "NON_FINITE",
    `${reducer}: ${input} holds ${describeValue(value)} at ${where}; ${fix}. ` +
      `Run the encoder in fp32 or check its weights and the image preprocessing, and capture the features again: ` +
      `no reducer output is meaningful with non-finite inputs.`
  );
}

/**
 * Throws NON_FINITE unless every value of the output rows is finite. Every output row is built
 * from the input hidden rows it covers, so a NaN or ±Infinity among the hidden states of tokens
 * that reach the output shows up here; the error names the first such input token.
 */
export function checkOutputFinite(f: VisionFeatures, out: ReducedTokens, reducer: string): void {
  if (!allFinite(out.hidden, 0, out.hidden.length)) throwNonFiniteOutput(f, out, reducer);
}

/** NON_FINITE for output rows known to hold a NaN or ±Infinity, naming the input token behind it. */
export function throwNonFiniteOutput(f: VisionFeatures, out: ReducedTokens, reducer: string): never {
  const { hidden, dim } = out;
  for (let row = 0; row < out.numTokens; row++) {
    if (allFinite(hidden, row * dim, (row + 1) * dim)) continue;
    for (const t of out.provenance[row].sources) throwIfHiddenNonFinite(f, t, reducer);
    break;
  }
  // Not in the covered rows themselves (e.g. a zero-weight bilinear tap next to them): any token.
  for (let t = 0; t < f.numTokens; t++) throwIfHiddenNonFinite(f, t, reducer);
  throw new LeanVisionError(
    "NON_FINITE",
    `${reducer}: the output overflowed float32 although the hidden states are finite; ` +
      `the hidden states are far too large (check the encoder's feature layer and its scaling).`
  );
}

function throwIfHiddenNonFinite(f: VisionFeatures, t: number, reducer: string): void {
  const { hidden, dim } = f;
  if (allFinite(hidden, t * dim, (t + 1) * dim)) return;
  for (let d = 0; d < dim; d++) {
    const v = hidden[t * dim + d];
    if (!Number.isFinite(v)) throw nonFiniteError(reducer, "hidden", v, `token ${t}, dim ${d}`);
  }
}

/** NON_FINITE naming the first bad value of token t's key (or its overflowing squared length). */
export function keyNonFiniteError(f: VisionFeatures & { keys: Float32Array; keyDim: number }, t: number, reducer: string): LeanVisionError {
  for (let d = 0; d < f.keyDim; d++) {
    const v = f.keys[t * f.keyDim + d];
    if (!Number.isFinite(v)) return nonFiniteError(reducer, "keys", v, `token ${t}, dim ${d}`);
  }
  return nonFiniteError(reducer, "keys", Infinity, `token ${t} (its squared length overflows)`);
}
