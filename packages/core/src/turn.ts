import type { EncodedImage, TurnImage } from "./contract.js";

/** What a turn record keeps of an encoded image: sizes, tile shapes and provenance (no tensors). */
export function turnImage({ width, height, features, reduced }: Pick<EncodedImage, "width" | "height" | "features" | "reduced">): TurnImage {
  return {
    width,
    height,
    tiles: features.tiles.map(({ numTokens, grid, clsIndex }) => ({ numTokens, grid, clsIndex })),
    tileGrid: features.tileGrid,
    provenance: reduced.provenance
  };
}
