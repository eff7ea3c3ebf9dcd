// VisionZip on LLaVA-NeXT images (overview + high-resolution tiles): the official NeXT order, held
// to a line-by-line port of VisionZip's restore_image_features_sorted, and the image-wide adaptive budget.
import { describe, expect, it } from "vitest";
import {
  countReduced,
  parseReducerSpec,
  reduceImage,
  visionZip,
  visionZipAdaptive,
  visionZipAdaptiveImage,
  type ImageFeatures,
  type ReducedTokens,
  type VisionFeatures
} from "../src/index.js";
import { syntheticFeatures } from "./helpers.js";

const GRID = 6; // 6x6 patches per tile (24x24 in CLIP-L/336), CLS last as in llama.cpp's graph

function nextImage(rows: number, cols: number, seed = 1): ImageFeatures {
  const tiles = Array.from({ length: 1 + rows * cols }, (_, i) => syntheticFeatures({ rows: GRID, cols: GRID, dim: 8 }, seed * 100 + i));
  return { tiles, tileGrid: { rows, cols }, width: 336 * cols, height: 336 * rows };
}

/**
 * VisionZip's own NeXT path, step by step as in visionzip/llava_arch.py: each tile's output is
 * [CLS, dominant patches ascending, contextual] (HF order) with keep_idx = [0, dominant token indices];
 * the overview goes first whole; the high-resolution tiles' dominant patches are scattered into
 * [tiles, P] by the sorted keep_idx - 1, viewed [h, w, g, g], permuted to [h, g, w, g], masked in
 * raster order; then tiles' CLS (row 0), then their last num_extra rows (the contextual tokens).
 */
function officialOrder(image: ImageFeatures, reduced: ReducedTokens[]): Float32Array {
  const dim = reduced[0].dim;
  const row = (t: ReducedTokens, r: number) => Array.from(t.hidden.subarray(r * dim, (r + 1) * dim));
  const out: number[][] = [];
  for (let r = 0; r < reduced[0].numTokens; r++) out.push(row(reduced[0], r)); // base_image_feature
  const { rows: height, cols: width } = image.tileGrid;
  const hi = reduced.slice(1);
  const numKeep = hi[0].provenance.filter((p) => p.kind !== "contextual").length;
  const numExtra = hi[0].numTokens - numKeep;
  const P = GRID * GRID;
  // restored_features[mask] = image_feature[:, 1:num_keep]: per tile, the sorted kept patch positions get the dominant rows in order.
  const restored: Array<Array<number[] | null>> = hi.map((t, i) => {
    const f = image.tiles[i + 1];
    const keep = t.provenance.filter((p) => p.kind === "dominant").map((p) => (p.sources[0] > f.clsIndex! ? p.sources[0] - 1 : p.sources[0]) + 1);
    const sorted = [0, ...keep].sort((a, b) => a - b).slice(1).map((k) => k - 1);
    const grid: Array<number[] | null> = new Array(P).fill(null);
    sorted.forEach((patch, j) => (grid[patch] = row(t, 1 + j)));
    return grid;
  });
  // view(height, width, g, g).permute(0, 2, 1, 3) → [height*g, width*g], then the mask in raster order.
  for (let h = 0; h < height; h++)
    for (let y = 0; y < GRID; y++)
      for (let w = 0; w < width; w++)
        for (let x = 0; x < GRID; x++) {
          const v = restored[h * width + w][y * GRID + x];
          if (v) out.push(v);
        }
  for (const t of hi) out.push(row(t, 0)); // cls_img_feature_merge
  for (const t of hi) for (let r = t.numTokens - numExtra; r < t.numTokens; r++) out.push(row(t, r)); // raw_img_feature_merge
  return Float32Array.from(out.flat());
}

describe("visionzip on a NeXT image (VisionZip's LLaVA-NeXT order)", () => {
  it.each([
    [1, 2],
    [2, 2],
    [1, 3]
  ])("%i x %i tiles: each tile reduced as a single image, in the official order", (rows, cols) => {
    const image = nextImage(rows, cols);
    const spec = parseReducerSpec("visionzip:9+3");
    const out = reduceImage(image, spec);
    const perTile = image.tiles.map((t) => visionZip(t, { dominant: 9, contextual: 3 }));
    expect(out.hidden).toEqual(officialOrder(image, perTile));
    expect(out.numTokens).toBe(12 * image.tiles.length);
    expect(countReduced(image.tiles, spec)).toBe(out.numTokens);
    // The overview first whole, then every high-resolution dominant patch, then CLS, then contextual.
    const kinds = out.provenance.map((p) => `${p.tile === 0 ? "ov" : "hi"}:${p.kind}`);
    const n = image.tiles.length - 1;
    expect(kinds).toEqual([
      ...perTile[0].provenance.map((p) => `ov:${p.kind}`),
      ...Array(8 * n).fill("hi:dominant"),
      ...Array(n).fill("hi:cls"),
      ...Array(3 * n).fill("hi:contextual")
    ]);
    expect(out.tiles.map((t) => t.numTokens)).toEqual(perTile.map((t) => t.numTokens));
  });

  it("the paper's totals on 5 tiles: 54+10 → 320, 108+20 → 640, 27+5 → 160 (per tile)", () => {
    const shapes = Array.from({ length: 5 }, () => ({ numTokens: 577, grid: { rows: 24, cols: 24 }, clsIndex: 576 }));
    expect(countReduced(shapes, parseReducerSpec("visionzip:54+10"))).toBe(320);
    expect(countReduced(shapes, parseReducerSpec("visionzip:108+20"))).toBe(640);
    expect(countReduced(shapes, parseReducerSpec("visionzip:27+5"))).toBe(160);
  });

  it("no contextual tokens means none (not the official [:, -0:], which repeats every token)", () => {
    const image = nextImage(1, 2);
    const out = reduceImage(image, parseReducerSpec("visionzip:9+0"));
    expect(out.numTokens).toBe(27);
    expect(out.provenance.some((p) => p.kind === "contextual")).toBe(false);
  });

  it("a single tile stays exactly the single-image reduction; pooling and region packing go tile by tile", () => {
    const image = nextImage(0, 0);
    const direct = visionZip(image.tiles[0], { dominant: 9, contextual: 3 });
    expect(reduceImage(image, parseReducerSpec("visionzip:9+3")).hidden).toEqual(direct.hidden);
    const pooled = reduceImage(nextImage(1, 2), parseReducerSpec("pool:2"));
    expect(pooled.provenance.map((p) => p.tile)).toEqual([...Array(9).fill(0), ...Array(9).fill(1), ...Array(9).fill(2)]);
    expect(reduceImage(nextImage(1, 2), parseReducerSpec("regionpack:3")).numTokens).toBe(12);
  });
});

/** A tile whose CLS attention is concentrated on `peaks` patches (sharp) or spread evenly (flat). */
function tileWithScores(seed: number, peaks: number | "flat"): VisionFeatures {
  const f = syntheticFeatures({ rows: GRID, cols: GRID, dim: 8 }, seed);
  const scores = new Float32Array(f.numTokens);
  for (let t = 0; t < f.numTokens; t++) {
    const jitter = 1 + ((t * 7919) % 13) / 1000; // distinct scores, no ties
    scores[t] = peaks === "flat" ? jitter : t < peaks ? 100 * jitter : 0.01 * jitter;
  }
  return { ...f, attention: undefined, heads: undefined, attentionScores: scores };
}

describe("visionzip:auto on a NeXT image (one budget over all tiles)", () => {
  const options = { coverage: 0.8, min: 2, max: 37, contextual: 2 };

  it("a single tile is exactly visionZipAdaptive", () => {
    const image = nextImage(0, 0, 3);
    const out = visionZipAdaptiveImage(image, options);
    const direct = visionZipAdaptive(image.tiles[0], options);
    expect(out.hidden).toEqual(direct.hidden);
    expect(out.tiles[0].chosenDominant).toBe(direct.chosenDominant);
  });

  it("spends more where attention is spread, fewer tokens than covering each tile alone, and reaches the coverage", () => {
    const tiles = [tileWithScores(1, 4), tileWithScores(2, "flat"), tileWithScores(3, 3)];
    const image: ImageFeatures = { tiles, tileGrid: { rows: 1, cols: 2 }, width: 672, height: 336 };
    const out = reduceImage(image, parseReducerSpec("visionzip:auto:0.8+2:2-37"));
    const chosen = out.tiles.map((t) => t.chosenDominant!);
    expect(chosen[1]).toBeGreaterThan(chosen[0]);
    expect(chosen[1]).toBeGreaterThan(chosen[2]);
    // Tile by tile, each would need 0.8 of its own mass; one budget over the image needs fewer tokens.
    const alone = tiles.map((t) => visionZipAdaptive(t, options).chosenDominant!);
    expect(chosen.reduce((a, b) => a + b)).toBeLessThan(alone.reduce((a, b) => a + b));
    // The kept patches cover 0.8 of the image's mass, each tile's mass counting 1.
    let covered = 0;
    out.tiles.forEach((t, i) => {
      const s = tiles[i].attentionScores!;
      const total = s.reduce((a, b) => a + b, 0) - s[tiles[i].clsIndex!];
      for (const p of t.provenance) if (p.kind === "dominant") covered += s[p.sources[0]] / total;
    });
    expect(covered).toBeGreaterThanOrEqual(0.8 * 3 - 1e-6);
    // In VisionZip's NeXT order, with contextual tokens per tile.
    expect(out.provenance.filter((p) => p.kind === "contextual")).toHaveLength(6);
    expect(out.provenance[0].tile).toBe(0);
  });

  it("clamps each tile's count to [min, max]", () => {
    const tiles = [tileWithScores(1, 1), tileWithScores(2, "flat"), tileWithScores(3, 1)];
    const image: ImageFeatures = { tiles, tileGrid: { rows: 1, cols: 2 }, width: 672, height: 336 };
    const out = visionZipAdaptiveImage(image, { coverage: 0.95, min: 5, max: 20, contextual: 0 });
    for (const t of out.tiles) expect(t.chosenDominant! >= 5 && t.chosenDominant! <= 20).toBe(true);
    expect(out.tiles[0].chosenDominant).toBe(5);
    expect(out.tiles[1].chosenDominant).toBe(20);
  });
});
