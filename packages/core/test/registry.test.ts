// The reducer registry and multi-tile images: a reducer is one definition; reduce, reduceImage, the
// text form and the capture decisions all read it.
import { afterEach, describe, expect, it } from "vitest";
import {
  countReduced,
  formatReducerSpec,
  parseReducerSpec,
  reduce,
  reduceImage,
  reducerNeeds,
  registerReducer,
  registeredReducers,
  specHelp,
  tileKeepMasks,
  unregisterReducer,
  visionZip,
  type ImageFeatures,
  type ReducerDefinition,
  type ReducerSpec
} from "../src/index.js";
import { expectError, gridFeatures, loadGolden, toFeatures } from "./helpers.js";

type FirstSpec = { kind: "first-k"; k: number };
const firstK: ReducerDefinition<FirstSpec> = {
  kind: "first-k",
  params: ["k"],
  short: { head: "first-k", syntax: "first-k:K", parse: (b) => (/^\d+$/.test(b) ? { kind: "first-k", k: +b } : undefined) },
  help: "first-k:K (the first K tokens)",
  format: (s) => `first-k:${s.k}`,
  needs: () => ({ attention: false, keys: false }),
  count: (tile, s) => Math.min(s.k, tile.numTokens),
  reduce: (tile, s) => {
    const k = Math.min(s.k, tile.numTokens);
    return {
      hidden: tile.hidden.slice(0, k * tile.dim),
      numTokens: k,
      dim: tile.dim,
      provenance: Array.from({ length: k }, (_, t) => ({ kind: "patch" as const, sources: Int32Array.of(t) }))
    };
  }
};

afterEach(() => {
  unregisterReducer("first-k");
});

describe("registry", () => {
  it("lists the built-in reducers and what each needs from the encoder", () => {
    expect(registeredReducers().map((d) => d.kind)).toEqual(["none", "visionzip", "visionzip-adaptive", "pool", "regionpack", "tokenpacker"]);
    expect(reducerNeeds({ kind: "none" })).toEqual({ attention: false, keys: false, stock: true });
    expect(reducerNeeds(parseReducerSpec("visionzip:54+10"))).toEqual({ attention: true, keys: true });
    expect(reducerNeeds(parseReducerSpec("visionzip:54+0"))).toEqual({ attention: true, keys: false });
    expect(reducerNeeds(parseReducerSpec("pool:2"))).toEqual({ attention: false, keys: false });
    expect(reducerNeeds(parseReducerSpec("tokenpacker"))).toEqual({ attention: false, keys: false, multiLevel: true });
  });

  it("a registered reducer gets its text form, reduce, count and help without touching core", () => {
    registerReducer(firstK);
    const spec = parseReducerSpec("first-k:3");
    expect(spec).toEqual({ kind: "first-k", k: 3 });
    expect(parseReducerSpec("first-k:k=3")).toEqual(spec);
    expect(formatReducerSpec(spec)).toBe("first-k:3");
    const f = gridFeatures(2, 3, 4);
    expect(reduce(f, spec).numTokens).toBe(3);
    expect(countReduced([f], spec)).toBe(3);
    expect(specHelp()).toContain("first-k:K");
    expectError(() => parseReducerSpec("first-k:three"), "INVALID_SPEC");
  });

  it("refuses a duplicate kind, a bad kind and a definition without its functions", () => {
    expectError(() => registerReducer({ ...firstK, kind: "visionzip" } as never), "INVALID_SPEC");
    expectError(() => registerReducer({ ...firstK, kind: "Has Spaces" } as never), "INVALID_SPEC");
    expectError(() => registerReducer({ ...firstK, reduce: undefined } as never), "INVALID_SPEC");
    expectError(() => reduce(gridFeatures(2, 2, 1), { kind: "first-k", k: 1 } as ReducerSpec), "INVALID_SPEC");
  });
});

describe("multi-tile images", () => {
  const tile = () => toFeatures(loadGolden().visionzip[1].features); // CLS + 6x6 grid
  const image = (tiles: number, rows: number, cols: number): ImageFeatures => ({
    tiles: Array.from({ length: tiles }, tile),
    tileGrid: { rows, cols },
    width: 672,
    height: 336
  });

  it("a single-tile image is the one-tile case: the same tokens as the tile's own reduction", () => {
    const spec = { kind: "visionzip", dominant: 10, contextual: 5 };
    const one = reduceImage(image(1, 0, 0), spec);
    const direct = visionZip(tile(), { dominant: 10, contextual: 5 });
    expect(one.hidden).toEqual(direct.hidden);
    expect(one.provenance.every((p) => p.tile === 0)).toBe(true);
    expect(one.tiles).toHaveLength(1);
  });

  it("reduces every tile on its own, in tile order unless the reducer orders tiles itself, each provenance entry naming its tile", () => {
    const pooled = reduceImage(image(3, 1, 2), parseReducerSpec("pool:3"));
    expect(pooled.provenance.map((p) => p.tile)).toEqual([...Array(4).fill(0), ...Array(4).fill(1), ...Array(4).fill(2)]);
    expect(pooled.hidden.subarray(4 * pooled.dim, 8 * pooled.dim)).toEqual(pooled.tiles[1].hidden);
    // VisionZip orders a NeXT image's tiles itself (test/visionzip-next.test.ts): the overview first, whole.
    const out = reduceImage(image(3, 1, 2), parseReducerSpec("visionzip:10+5"));
    expect(out.numTokens).toBe(45);
    expect(out.provenance.slice(0, 15).every((p) => p.tile === 0)).toBe(true);
    expect(out.provenance.filter((p) => p.tile === 2)).toHaveLength(15);
    expect(countReduced(image(3, 1, 2).tiles, parseReducerSpec("visionzip:10+5"))).toBe(45);
    expect(countReduced(image(3, 1, 2).tiles, parseReducerSpec("visionzip:auto:0.5+5"))).toBeNull();
    const masks = tileKeepMasks(out.provenance, image(3, 1, 2).tiles);
    expect(masks).toHaveLength(3);
    expect(masks.every((m) => m.length === 36 && m.filter((v) => v === 2).length === 5)).toBe(true);
  });

  it("rejects tiles that do not match the tile grid", () => {
    expectError(() => reduceImage(image(2, 1, 2), { kind: "none" }), "INVALID_FEATURES");
    expectError(() => reduceImage({ ...image(1, 0, 0), tiles: [] }, { kind: "none" }), "INVALID_FEATURES");
  });
});
