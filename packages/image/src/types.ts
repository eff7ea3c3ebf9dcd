// The image types every LeanVision adapter takes. They live here until @leanvision/core owns them;
// keep this file free of imports so it can move as it is.

/** Decoded pixels: width * height * 3 bytes, row-major, packed RGB (no alpha, no padding). */
export interface RawRgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/**
 * What an adapter accepts as an image: a file path, the bytes of an encoded image (JPEG, PNG, WebP,
 * GIF, TIFF, AVIF/HEIF, SVG), or pixels already decoded to packed RGB.
 */
export type ImageInput = string | Uint8Array | RawRgbImage;
