import { LeanVisionError } from "./errors.js";
import { allFinite, checkGridOption, checkInteger, nonFiniteError, patchToken, TokenWriter } from "./features.js";
import { bilinearResize, geluInPlace, layerNormInPlace, linear, softmaxInPlace } from "./math.js";
import { checkRegionGrid, regionPatches } from "./regionpack.js";
import type { ReducedTokens, VisionFeatures } from "./types.js";

export interface TokenPackerInput {
  /** [P x c] patch features of the feature layer (no CLS), row-major over the grid. */
  patches: Float32Array;
  /** [P x 4c] multi-level features: CLIP-L hidden states 12, 16, 22 and 23 of each patch, concatenated. */
  multiLevel: Float32Array;
  grid: { rows: number; cols: number };
}

/** One tensor of the official state dict; `shape` in PyTorch order (Linear: [out, in]). */
export interface StateDictTensor {
  data: Float32Array;
  shape: readonly number[];
}

/** The official TokenPacker projector's state dict, keyed by its own names (`q_proj_1.weight`, …). */
export type TokenPackerWeights = Readonly<Record<string, StateDictTensor>>;

export interface TokenPackerOptions {
  /** Side of the patch region packed into each output token (official: 2). */
  scaleFactor: number;
  /** Heads of `clip_attn` (official: 1024 / 128 = 8). */
  numHeads: number;
}

const LAYER_NORM_EPS = 1e-6;

/**
 * Forward pass of the official trained TokenPacker projector. Returns tokens in the language
 * model's embedding space, one per scaleFactor x scaleFactor region, row-major; provenance
 * sources are patch-grid positions.
 */
export function tokenPacker(input: TokenPackerInput, weights: TokenPackerWeights, options: TokenPackerOptions): ReducedTokens {
  const w = new WeightReader(weights);
  const [embed, patchDim] = w.shape("q_proj_1.weight", 2);
  const [kvHidden, multiDim] = w.shape("k_proj_1.0.weight", 2);
  const [hidden] = w.shape("mlp.0.weight", 2);
  const [outDim] = w.shape("mlp.2.weight", 2);

  const { rows, cols } = checkInput(input, patchDim, multiDim);
  const scale = checkInteger("tokenPacker", "scaleFactor", options?.scaleFactor, 1, Math.min(rows, cols));
  const heads = checkInteger("tokenPacker", "numHeads", options.numHeads, 1, embed);
  if (embed % heads !== 0) {
    throw new LeanVisionError("INVALID_OPTIONS", `tokenPacker: numHeads ${heads} must divide the embedding size ${embed}`);
  }
  const regions = checkRegionGrid("tokenPacker", rows, cols, scale);
  const patches = rows * cols;
  const numQueries = regions.rows * regions.cols;

  // Point queries: bilinear downsample → q_proj_1 (no bias) → LayerNorm.
  const points = bilinearResize(input.patches, patchDim, rows, cols, regions.rows, regions.cols, (r, c) => r * cols + c);
  const query = linear(points, numQueries, patchDim, w.get("q_proj_1.weight", [embed, patchDim]), embed);
  layerNormInPlace(query, numQueries, embed, w.get("ln_q_1.weight", [embed]), w.get("ln_q_1.bias", [embed]), LAYER_NORM_EPS);

  // Keys and values: Linear → GELU → Linear → LayerNorm over the multi-level features.
  const project = (branch: "k" | "v"): Float32Array => {
    const first = `${branch}_proj_1.0`;
    const second = `${branch}_proj_1.2`;
    const mid = linear(input.multiLevel, patches, multiDim, w.get(`${first}.weight`, [kvHidden, multiDim]), kvHidden, w.get(`${first}.bias`, [kvHidden]));
    geluInPlace(mid);
    const x = linear(mid, patches, kvHidden, w.get(`${second}.weight`, [embed, kvHidden]), embed, w.get(`${second}.bias`, [embed]));
    const norm = `ln_${branch}_1`;
    layerNormInPlace(x, patches, embed, w.get(`${norm}.weight`, [embed]), w.get(`${norm}.bias`, [embed]), LAYER_NORM_EPS);
    return x;
  };

  // nn.MultiheadAttention: in_proj splits into q, k, v projections of `embed` rows each.
  const inWeight = w.get("clip_attn.in_proj_weight", [3 * embed, embed]);
  const inBias = w.get("clip_attn.in_proj_bias", [3 * embed]);
  const inProjection = (x: Float32Array, rows: number, i: number): Float32Array =>
    linear(x, rows, embed, inWeight.subarray(i * embed * embed, (i + 1) * embed * embed), embed, inBias.subarray(i * embed, (i + 1) * embed));
  const q = inProjection(query, numQueries, 0);
  const k = inProjection(project("k"), patches, 1);
  const v = inProjection(project("v"), patches, 2);

  // Each query attends only over the patches of its own region.
  const headDim = embed / heads;
  const invSqrtHeadDim = 1 / Math.sqrt(headDim);
  const attended = new Float32Array(numQueries * embed);
  const probs = new Float64Array(scale * scale);
  const sources: Int32Array[] = [];
  for (let i = 0; i < regions.rows; i++) {
    for (let j = 0; j < regions.cols; j++) {
      const region = regionPatches(i, j, scale, cols);
      sources.push(Int32Array.from(region));
      const qi = (i * regions.cols + j) * embed;
      for (let h = 0; h < heads; h++) {
        const off = h * headDim;
        region.forEach((p, n) => {
          let s = 0;
          for (let d = 0; d < headDim; d++) s += q[qi + off + d] * k[p * embed + off + d];
          probs[n] = s * invSqrtHeadDim;
        });
        softmaxInPlace(probs, region.length);
        for (let d = 0; d < headDim; d++) {
          let s = 0;
          region.forEach((p, n) => (s += probs[n] * v[p * embed + off + d]));
          attended[qi + off + d] = s;
        }
      }
    }
  }

  const attn = linear(attended, numQueries, embed, w.get("clip_attn.out_proj.weight", [embed, embed]), embed, w.get("clip_attn.out_proj.bias", [embed]));
  const mid = linear(attn, numQueries, embed, w.get("mlp.0.weight", [hidden, embed]), hidden, w.get("mlp.0.bias", [hidden]));
  geluInPlace(mid);
  const tokens = linear(mid, numQueries, hidden, w.get("mlp.2.weight", [outDim, hidden]), outDim, w.get("mlp.2.bias", [outDim]));

  const out = new TokenWriter(numQueries, outDim);
  sources.forEach((s, n) => out.push("packed", s).set(tokens.subarray(n * outDim, (n + 1) * outDim)));
  return out.finish();
}

function checkInput(input: TokenPackerInput, patchDim: number, multiDim: number) {
  const fail = (why: string): never => {
    throw new LeanVisionError("INVALID_INPUT", `tokenPacker: ${why}`);
  };
  const grid = input?.grid;
  if (!grid || !Number.isInteger(grid.rows) || !Number.isInteger(grid.cols) || grid.rows < 1 || grid.cols < 1) {
    fail("input.grid must have positive integer rows and cols");
  }
  const patches = grid.rows * grid.cols;
  if (!(input.patches instanceof Float32Array) || input.patches.length !== patches * patchDim) {
    fail(`input.patches must be a Float32Array of ${patches} patches x ${patchDim} (q_proj_1's input size)`);
  }
  if (!(input.multiLevel instanceof Float32Array) || input.multiLevel.length !== patches * multiDim) {
    fail(`input.multiLevel must be a Float32Array of ${patches} patches x ${multiDim} (k_proj_1.0's input size)`);
  }
  return grid;
}

/** Looks tensors up by state-dict name and checks their shapes. */
class WeightReader {
  constructor(private readonly weights: TokenPackerWeights) {
    if (typeof weights !== "object" || weights === null) {
      throw new LeanVisionError("MISSING_WEIGHT", "tokenPacker: weights must be the projector's state dict ({ name: { data, shape } })");
    }
  }

  private tensor(name: string): StateDictTensor {
    const t = this.weights[name];
    if (!t || !(t.data instanceof Float32Array) || !Array.isArray(t.shape)) {
      throw new LeanVisionError(
        "MISSING_WEIGHT",
        `tokenPacker: weight "${name}" is missing or not { data: Float32Array, shape: number[] }; ` +
          `pass the official TokenPacker projector state dict (names without the "mm_projector." prefix)`
      );
    }
    return t;
  }

  /** The shape of `name`, which must have `rank` dimensions. */
  shape(name: string, rank: number): readonly number[] {
    const { shape } = this.tensor(name);
    if (shape.length !== rank) {
      throw new LeanVisionError("BAD_WEIGHT_SHAPE", `tokenPacker: weight "${name}" has shape [${shape}], expected ${rank} dimensions`);
    }
    return shape;
  }

  /** The data of `name`, which must have exactly `shape`. */
  get(name: string, shape: number[]): Float32Array {
    const t = this.tensor(name);
    const size = shape.reduce((a, b) => a * b, 1);
    if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i]) || t.data.length !== size) {
      throw new LeanVisionError(
        "BAD_WEIGHT_SHAPE",
        `tokenPacker: weight "${name}" has shape [${t.shape}] (${t.data.length} values), expected [${shape}]`
      );
    }
    return t.data;
  }
}

export interface TokenPackerRowsOptions {
  /** Side of the patch region packed into each output token; must divide both grid sides. */
  scale: number;
}

/**
 * The `tokenpacker` reducer: everything TokenPacker's trained projector reads, gathered per output
 * token, so that a runtime runs the projector row by row like any other (`[rows x rowDim]` in,
 * `[rows x LM width]` out). One row per scale x scale region, regions row-major:
 *
 *   [ point query (dim) | multi-level state of each of the region's s*s patches (s*s x multiLevelDim) ]
 *
 * The point query is the bilinear downsample of the feature layer's patch grid (PyTorch
 * `interpolate(mode="bilinear", align_corners=False)`); with a scale that divides the grid it reads
 * only the region's own patches, so each output token depends on its row alone. Patches within a
 * region are row-major (the official `divide_feature` order). `tokenPacker(input, weights)` on the
 * same features equals the projector applied to these rows. Provenance: kind "packed", sources =
 * the region's token indices.
 */
export function tokenPackerRows(f: VisionFeatures, options: TokenPackerRowsOptions): ReducedTokens {
  const scale = checkGridOption(f, "tokenpacker", "scale", options?.scale, Math.min);
  const { rows, cols } = f.grid;
  const regions = checkRegionGrid("tokenpacker", rows, cols, scale);
  const { multiLevel, multiLevelDim: m } = checkMultiLevel(f, "tokenpacker");
  const { dim, clsIndex } = f;
  const points = bilinearResize(f.hidden, dim, rows, cols, regions.rows, regions.cols, (r, c) => patchToken(r * cols + c, clsIndex));
  const rowDim = dim + scale * scale * m;
  const out = new TokenWriter(regions.rows * regions.cols, rowDim);
  for (let i = 0; i < regions.rows; i++) {
    for (let j = 0; j < regions.cols; j++) {
      const sources = Int32Array.from(regionPatches(i, j, scale, cols), (p) => patchToken(p, clsIndex));
      const row = out.push("packed", sources);
      const q = i * regions.cols + j;
      row.set(points.subarray(q * dim, (q + 1) * dim), 0);
      sources.forEach((t, n) => {
        if (!allFinite(multiLevel, t * m, (t + 1) * m)) throw nonFiniteMultiLevel(multiLevel, m, t);
        row.set(multiLevel.subarray(t * m, (t + 1) * m), dim + n * m);
      });
      if (!allFinite(row, 0, dim)) {
        for (const t of sources) {
          for (let d = 0; d < dim; d++) if (!Number.isFinite(f.hidden[t * dim + d])) throw nonFiniteError("tokenpacker", "hidden", f.hidden[t * dim + d], `token ${t}, dim ${d}`);
        }
      }
    }
  }
  return out.finish();
}

/** Throws MISSING_MULTILEVEL unless `f` carries multi-level hidden states for every token. */
export function checkMultiLevel(f: VisionFeatures, reducer: string): { multiLevel: Float32Array; multiLevelDim: number } {
  const { multiLevel, multiLevelDim } = f;
  if (!(multiLevel instanceof Float32Array) || !Number.isInteger(multiLevelDim) || multiLevelDim! < 1 || multiLevel.length !== f.numTokens * multiLevelDim!) {
    throw new LeanVisionError(
      "MISSING_MULTILEVEL",
      `${reducer} needs multi-level hidden states (multiLevel: [numTokens x multiLevelDim], several encoder layers concatenated per token, ` +
        `and multiLevelDim): TokenPacker reads CLIP hidden states 12, 16, 22 and 23. In the llama adapter, load the vision model ` +
        `with a TokenPacker projector file (loadVisionModel({ ..., projectorPath })), which names the layers to capture.`
    );
  }
  return { multiLevel, multiLevelDim: multiLevelDim! };
}

function nonFiniteMultiLevel(multiLevel: Float32Array, m: number, t: number): LeanVisionError {
  for (let d = 0; d < m; d++) {
    const v = multiLevel[t * m + d];
    if (!Number.isFinite(v)) {
      const e = nonFiniteError("tokenpacker", "hidden", v, `token ${t}, multi-level dim ${d}`);
      return new LeanVisionError("NON_FINITE", e.message.replace("hidden holds", "multiLevel holds"));
    }
  }
  return nonFiniteError("tokenpacker", "hidden", NaN, `token ${t}`);
}
