// LLaVA-1.6 (NeXT) any-resolution tiling as llama.cpp's mtmd does it (tools/mtmd/mtmd-image.cpp,
// mtmd_image_preprocessor_llava_uhd::get_slice_instructions and select_best_resolution), so the
// tiles of an image are known from its size before anything is encoded. See ARCHITECTURE.md
// "LLaVA-NeXT (1.6) as llama.cpp's mtmd runs it".

/** The high-resolution tile grid mtmd cuts an image into; { rows: 0, cols: 0 } when it is the overview alone. */
export interface AnyresLayout {
  tileGrid: { rows: number; cols: number };
  /** The canvas the high-resolution tiles are cut from ({ width: 0, height: 0 } without tiles). */
  canvas: { width: number; height: number };
}

/**
 * mtmd's select_best_resolution: the candidate that keeps the most of the image's pixels when the
 * image is fitted into it (scale = min of the two side ratios, in float32 as in C++, sides
 * truncated), ties to the least wasted area, then to the first candidate.
 */
export function selectBestResolution(width: number, height: number, candidates: ReadonlyArray<readonly [number, number]>): [number, number] {
  let best: [number, number] = [0, 0];
  let maxEffective = 0;
  let minWasted = Number.MAX_SAFE_INTEGER;
  const f = Math.fround;
  for (const [cw, ch] of candidates) {
    // float scale = min((float)cw / w, (float)ch / h); (int)(w * scale), (int)(h * scale)
    const scale = Math.min(f(cw / width), f(ch / height));
    const tw = Math.trunc(f(width * scale));
    const th = Math.trunc(f(height * scale));
    const effective = Math.min(tw * th, width * height);
    const wasted = cw * ch - effective;
    if (effective > maxEffective || (effective === maxEffective && wasted < minWasted)) {
      maxEffective = effective;
      minWasted = wasted;
      best = [cw, ch];
    }
  }
  return best;
}

/**
 * How mtmd tiles an image of this size for an mmproj with these pinpoints: no tiles when the image
 * fits in `imageSize` on both sides (or there are no pinpoints), else the best candidate's grid of
 * `imageSize` tiles.
 */
export function anyresLayout(width: number, height: number, imageSize: number, pinpoints: ReadonlyArray<readonly [number, number]>): AnyresLayout {
  if (pinpoints.length === 0 || (width <= imageSize && height <= imageSize)) {
    return { tileGrid: { rows: 0, cols: 0 }, canvas: { width: 0, height: 0 } };
  }
  const [cw, ch] = selectBestResolution(width, height, pinpoints);
  // Candidates are whole tiles (src/mmproj.ts checks it); mtmd steps through the canvas by imageSize.
  return { tileGrid: { rows: Math.ceil(ch / imageSize), cols: Math.ceil(cw / imageSize) }, canvas: { width: cw, height: ch } };
}
