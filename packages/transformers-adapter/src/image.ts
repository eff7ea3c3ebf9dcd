// Image inputs the adapter accepts, decoded the way transformers.js decodes them (sharp, in Node).
import { LeanVisionError } from "@leanvision/core";
import { RawImage } from "@huggingface/transformers";
import { readFile } from "node:fs/promises";

/** A file path, an encoded image (any format sharp reads), raw RGB pixels, or a transformers.js RawImage. */
export type ImageInput = string | Uint8Array | { data: Uint8Array | Uint8ClampedArray; width: number; height: number } | RawImage;

export async function loadImage(input: ImageInput): Promise<RawImage> {
  if (input instanceof RawImage) return input;
  if (typeof input === "string") {
    let bytes: Buffer;
    try {
      bytes = await readFile(input);
    } catch (cause) {
      throw new LeanVisionError("IMAGE_DECODE", `cannot read image file ${input}: ${(cause as Error).message}`, { cause });
    }
    return decode(bytes, input);
  }
  if (input instanceof Uint8Array) return decode(input, `a ${input.byteLength}-byte buffer`);
  if (input && typeof input === "object" && "data" in input) {
    const { data, width, height } = input;
    if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || data?.length !== width * height * 3) {
      throw new LeanVisionError(
        "INVALID_INPUT",
        `raw images need { data, width, height } with width*height*3 RGB bytes; got ${data?.length} bytes for ${width}x${height}`
      );
    }
    return new RawImage(new Uint8ClampedArray(data), width, height, 3);
  }
  throw new LeanVisionError("INVALID_INPUT", "an image must be a file path, a Buffer/Uint8Array of an encoded image, or { data, width, height } raw RGB");
}

async function decode(bytes: Uint8Array, what: string): Promise<RawImage> {
  try {
    return await RawImage.fromBlob(new Blob([bytes]));
  } catch (cause) {
    throw new LeanVisionError("IMAGE_DECODE", `cannot decode ${what} as an image (${(cause as Error).message}); pass a JPEG, PNG, WebP, GIF, AVIF or TIFF`, { cause });
  }
}
