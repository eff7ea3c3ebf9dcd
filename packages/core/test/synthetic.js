// Seeded synthetic feature-layer outputs, shared by the tests (test/*.test.ts) and the reducer
// benchmark (bench/reducers.bench.js). Plain JavaScript so the benchmark runs it without a build.

/** Seeded uniform [0, 1) (mulberry32). */
export function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Roughly normal values (a sum of three uniforms), times `scale`. */
export function randomArray(length, rand, scale = 1) {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = (rand() + rand() + rand() - 1.5) * 2 * scale;
  return out;
}

/**
 * One image's feature layer: a rows x cols patch grid plus CLS first, last (llama.cpp's order) or
 * none (SigLIP); softmax attention per head and query, random hidden states and head-averaged keys.
 */
export function syntheticFeatures({ rows, cols, dim, heads = 2, keyDim = 16, cls = "last" }, seed) {
  const rand = random(seed);
  const numTokens = rows * cols + (cls === null ? 0 : 1);
  const attention = randomArray(heads * numTokens * numTokens, rand, 3);
  for (let row = 0; row < heads * numTokens; row++) {
    const r = attention.subarray(row * numTokens, (row + 1) * numTokens);
    let sum = 0;
    for (let j = 0; j < numTokens; j++) sum += r[j] = Math.exp(r[j]);
    for (let j = 0; j < numTokens; j++) r[j] /= sum;
  }
  return {
    hidden: randomArray(numTokens * dim, rand),
    numTokens,
    dim,
    grid: { rows, cols },
    clsIndex: cls === "first" ? 0 : cls === "last" ? numTokens - 1 : null,
    attention,
    heads,
    keys: randomArray(numTokens * keyDim, rand),
    keyDim
  };
}
