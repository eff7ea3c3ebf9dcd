import type { VisionFeatures } from "../src/index.js";

export function random(seed: number): () => number;
export function randomArray(length: number, rand: () => number, scale?: number): Float32Array;
export function syntheticFeatures(
  shape: { rows: number; cols: number; dim: number; heads?: number; keyDim?: number; cls?: "first" | "last" | null },
  seed: number
): VisionFeatures & { attention: Float32Array; heads: number; keys: Float32Array; keyDim: number };
