// mtmd's LLaVA-1.6 tiling, ported to TypeScript (src/anyres.ts): the tiles of an image are known from
// its size before it is encoded. test/next.test.ts checks the same layouts against mtmd itself.
import { describe, expect, it } from "vitest";
import { anyresLayout, selectBestResolution } from "../src/anyres.js";

const PINPOINTS: Array<[number, number]> = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]];

describe("selectBestResolution (mtmd's select_best_resolution)", () => {
  it.each([
    // [width, height, best]: the most pixels kept, then the least canvas wasted, then the first candidate.
    [640, 488, [672, 672]], // the sample photo: 672x512 of it fits 672x672
    [700, 400, [672, 672]],
    [448, 336, [672, 336]], // 448x336 fits 672x336 whole; 672x672 wastes more
    [1000, 200, [1008, 336]],
    [200, 1000, [336, 1008]],
    [400, 900, [336, 1008]],
    [2000, 1000, [672, 336]], // 672x336, 672x672 and 1008x336 all keep 672x336 of it; 672x336 wastes nothing
    [10, 5000, [336, 1008]],
  ] as const)("%i x %i → %j", (w, h, best) => {
    expect(selectBestResolution(w, h, PINPOINTS)).toEqual(best);
  });

  it("ties on kept pixels and waste go to the first candidate", () => {
    expect(selectBestResolution(100, 100, [[336, 336], [336, 336]])).toEqual([336, 336]);
    expect(selectBestResolution(672, 672, [[672, 672], [1344, 1344]])).toEqual([672, 672]); // same pixels kept, less wasted
  });
});

describe("anyresLayout", () => {
  it("no tiles within image_size on both sides, or without pinpoints", () => {
    expect(anyresLayout(336, 336, 336, PINPOINTS).tileGrid).toEqual({ rows: 0, cols: 0 });
    expect(anyresLayout(64, 48, 336, PINPOINTS).tileGrid).toEqual({ rows: 0, cols: 0 });
    expect(anyresLayout(1000, 1000, 336, []).tileGrid).toEqual({ rows: 0, cols: 0 });
  });

  it("the best candidate's grid of image_size tiles otherwise", () => {
    expect(anyresLayout(337, 336, 336, PINPOINTS)).toEqual({ tileGrid: { rows: 1, cols: 2 }, canvas: { width: 672, height: 336 } });
    expect(anyresLayout(640, 488, 336, PINPOINTS).tileGrid).toEqual({ rows: 2, cols: 2 });
    expect(anyresLayout(1000, 200, 336, PINPOINTS).tileGrid).toEqual({ rows: 1, cols: 3 });
    expect(anyresLayout(200, 1000, 336, PINPOINTS).tileGrid).toEqual({ rows: 3, cols: 1 });
  });
});
