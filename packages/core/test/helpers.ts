import { readFileSync } from "node:fs";
import { expect } from "vitest";
import { LeanVisionError, type VisionFeatures } from "../src/index.js";

/** Every value within 1e-5 of the reference, relative for values above 1. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance = 1e-5): void {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  let at = -1;
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]) / Math.max(1, Math.abs(expected[i]));
    if (!(err <= worst)) [worst, at] = [err, i];
  }
  expect(worst, `worst error at index ${at}: ${actual[at]} vs ${expected[at]}`).toBeLessThanOrEqual(tolerance);
}

export { random, syntheticFeatures } from "./synthetic.js";

/** Patch-only features whose hidden state for token t is [t, t, ...] unless given. */
export function gridFeatures(rows: number, cols: number, dim: number, hidden?: Float32Array): VisionFeatures {
  const numTokens = rows * cols;
  return {
    hidden: hidden ?? Float32Array.from({ length: numTokens * dim }, (_, i) => Math.floor(i / dim)),
    numTokens,
    dim,
    grid: { rows, cols },
    clsIndex: null
  };
}

export type GoldenFeatures = Omit<VisionFeatures, "hidden" | "attention" | "keys"> & {
  hidden: number[];
  attention?: number[];
  keys?: number[];
};

/** Float32 typed arrays from the JSON fixture's plain number lists. */
export function toFeatures(g: GoldenFeatures): VisionFeatures {
  return {
    ...g,
    hidden: Float32Array.from(g.hidden),
    attention: g.attention && Float32Array.from(g.attention),
    keys: g.keys && Float32Array.from(g.keys)
  };
}

/**
 * The same features in llama.cpp's order: CLS (token 0 here) moved after the patches, rows of the
 * hidden states, keys and attention permuted to match. fromLlama maps a llama-order token back.
 */
export function toLlamaOrder(hf: VisionFeatures): { llama: VisionFeatures; fromLlama: (t: number) => number } {
  const n = hf.numTokens;
  const fromLlama = (t: number) => (t === n - 1 ? 0 : t + 1);
  const permuteRows = (x: Float32Array, width: number) => {
    const out = new Float32Array(x.length);
    for (let t = 0; t < n; t++) out.set(x.subarray(fromLlama(t) * width, (fromLlama(t) + 1) * width), t * width);
    return out;
  };
  const attention = new Float32Array(hf.attention!.length);
  for (let h = 0; h < hf.heads!; h++) {
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) attention[(h * n + i) * n + j] = hf.attention![(h * n + fromLlama(i)) * n + fromLlama(j)];
  }
  const llama = { ...hf, clsIndex: n - 1, hidden: permuteRows(hf.hidden, hf.dim), keys: permuteRows(hf.keys!, hf.keyDim!), attention };
  return { llama, fromLlama };
}

export function loadGolden(): any {
  return JSON.parse(readFileSync(new URL("./fixtures/golden.json", import.meta.url), "utf8"));
}

/** Runs fn and checks that it throws a LeanVisionError with this code; returns its message. */
export function expectError(fn: () => unknown, code: string): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(LeanVisionError);
    expect((e as LeanVisionError).code).toBe(code);
    return (e as Error).message;
  }
  throw new Error(`expected a LeanVisionError ${code}, but nothing was thrown`);
}
