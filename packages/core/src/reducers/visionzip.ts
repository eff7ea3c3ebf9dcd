import type { ReducerDefinition } from "../registry.js";
import type { AdaptiveVisionZipSpec, VisionZipSpec } from "../types.js";
import { visionZip as run, visionZipAdaptive as runAdaptive, visionZipAdaptiveImage, visionZipNextOrder } from "../visionzip.js";
import { matchShort, NUM } from "./text.js";

/** VisionZip with a fixed budget per tile: `visionzip:D+C` (D dominant counting CLS, C contextual). */
export const visionZip: ReducerDefinition<VisionZipSpec> = {
  kind: "visionzip",
  params: ["dominant", "contextual"],
  short: {
    head: "visionzip",
    syntax: "visionzip:D+C",
    parse(body) {
      const m = matchShort(`(${NUM})\\+(${NUM})`, body);
      return m && { kind: "visionzip", dominant: +m[1], contextual: +m[2] };
    }
  },
  help: "visionzip:D+C (D dominant tokens counting CLS, C contextual, per tile, e.g. visionzip:54+10)",
  format: (s) => `visionzip:${s.dominant}+${s.contextual}`,
  needs: (s) => ({ attention: true, keys: s.contextual > 0 }),
  reduce: (tile, s) => run(tile, s),
  // Each tile reduced as a single image, then VisionZip's LLaVA-NeXT order (one tile: unchanged).
  reduceImage: (image, s) => visionZipNextOrder(image, image.tiles.map((tile) => run(tile, s))),
  leadsWithTile0: true,
  count(tile, s) {
    const valid = Number.isInteger(s.dominant) && s.dominant >= 1 && s.dominant <= tile.numTokens && Number.isInteger(s.contextual) && s.contextual >= 0;
    // CLS counts as dominant; with fewer tokens left than `contextual`, one contextual token each (as the official code).
    return valid ? s.dominant + Math.min(s.contextual, tile.numTokens - s.dominant) : null;
  }
};

/** Default bounds of the adaptive budget in the short form `visionzip:auto:COVERAGE+C`. */
export const ADAPTIVE_DEFAULT_MIN = 16;
export const ADAPTIVE_DEFAULT_MAX = 192;

/**
 * VisionZip with the dominant count chosen from the attention mass: `visionzip:auto:COVERAGE+C[:MIN-MAX]`
 * (per tile on a single tile; one image-wide budget spent unevenly over a NeXT image's tiles).
 */
export const visionZipAdaptive: ReducerDefinition<AdaptiveVisionZipSpec> = {
  kind: "visionzip-adaptive",
  params: ["coverage", "min", "max", "contextual"],
  short: {
    head: "visionzip",
    prefix: "auto:",
    syntax: "visionzip:auto:COVERAGE+C[:MIN-MAX]",
    parse(body) {
      const m = matchShort(`(${NUM})\\+(${NUM})(?::(${NUM})-(${NUM}))?`, body);
      return (
        m && {
          kind: "visionzip-adaptive",
          coverage: +m[1],
          min: m[3] === undefined ? ADAPTIVE_DEFAULT_MIN : +m[3],
          max: m[4] === undefined ? ADAPTIVE_DEFAULT_MAX : +m[4],
          contextual: +m[2]
        }
      );
    }
  },
  help:
    "visionzip:auto:COVERAGE+C[:MIN-MAX] (the dominant count per tile is the smallest reaching COVERAGE of the attention mass, " +
    `within MIN-MAX, default ${ADAPTIVE_DEFAULT_MIN}-${ADAPTIVE_DEFAULT_MAX}; e.g. visionzip:auto:0.9+10)`,
  format: (s) => `visionzip:auto:${s.coverage}+${s.contextual}:${s.min}-${s.max}`,
  needs: (s) => ({ attention: true, keys: s.contextual > 0 }),
  reduce: (tile, s) => runAdaptive(tile, s),
  // One budget over all tiles: see visionZipAdaptiveImage for the rule.
  reduceImage: (image, s) => visionZipAdaptiveImage(image, s),
  count: () => null // depends on the attention
};
