// Image inputs the adapter accepts, decoded by LeanVision's one decoder (@leanvision/image: sharp, a
// pixel limit, SVG without file access, EXIF orientation not applied, as in the llama adapter), then
// handed to the processor as a transformers.js RawImage.
import { LeanVisionError } from "@leanvision/core";
import { decodeImage, DEFAULT_MAX_PIXELS, type DecodeImageOptions, type ImageInput as DecodableInput } from "@leanvision/image";
import { RawImage } from "@huggingface/transformers";

/** A file path, an encoded image (JPEG, PNG, WebP, GIF, TIFF, AVIF, SVG), raw packed RGB, or a transformers.js RawImage. */
export type ImageInput = DecodableInput | { data: Uint8Array | Uint8ClampedArray; width: number; height: number } | RawImage;

export interface LoadImageOptions {
  /** Refuse images of more pixels than this with IMAGE_TOO_LARGE (default 50 megapixels; Infinity = off). */
  maxPixels?: DecodeImageOptions["maxPixels"];
}

export async function loadImage(input: ImageInput, options: LoadImageOptions = {}): Promise<RawImage> {
  if (input instanceof RawImage) {
    const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
    if (input.width * input.height > maxPixels) {
      throw new LeanVisionError("IMAGE_TOO_LARGE", `the image is ${input.width}×${input.height}, over the limit of ${maxPixels} pixels (maxPixels)`);
    }
    return input;
  }
  const { data, width, height } = await decodeImage(input as DecodableInput, { maxPixels: options.maxPixels });
  return new RawImage(new Uint8ClampedArray(data.buffer, data.byteOffset, data.length), width, height, 3);
}
