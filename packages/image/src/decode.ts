// One image decoder for both adapters: any ImageInput → packed RGB, the way llama.cpp's own loader
// (stb_image, 3 channels) sees an image: alpha dropped, sRGB, EXIF orientation not applied.
//
// Hostile input is expected. Three rules keep it cheap and contained:
// - the pixel count is read from the header (sharp metadata) and refused before anything is decoded,
//   with sharp's own limitInputPixels as the backstop;
// - files are read into memory here and sharp only ever sees bytes. libvips then has no file name and
//   librsvg no base URL, and librsvg loads no external resource without one: an SVG cannot pull in
//   files next to it (<image href="secret.png">, <use href="other.svg#x">, XInclude, CSS @import);
// - with `fit`, the image is decoded straight to at most that size where the format allows
//   (JPEG DCT scaling, WebP, SVG rendering scale), and streamed through the resize otherwise.
import { constants } from "node:fs";
import { open } from "node:fs/promises";
import sharp from "sharp";
import { LeanVisionError } from "@leanvision/core";
import type { ImageInput, RawRgbImage } from "./types.js";

/** Codes decodeImage throws (as LeanVisionError). */
export type ImageErrorCode = "IMAGE_DECODE" | "IMAGE_TOO_LARGE" | "INVALID_INPUT" | "INVALID_OPTIONS";

/**
 * 50 megapixels: every camera photo up to 8160×6120 fits, and a vision encoder needs at most a few
 * megapixels (LLaVA-1.5: 336×336; LLaVA-NeXT: up to 672×1344 in tiles).
 */
export const DEFAULT_MAX_PIXELS = 50_000_000;

export interface DecodeImageOptions {
  /**
   * Refuse images of more pixels than this (width × height of the source, read from its header
   * before any pixel is decoded) with IMAGE_TOO_LARGE. Default DEFAULT_MAX_PIXELS (50 megapixels);
   * `Infinity` turns the limit off.
   */
  maxPixels?: number;
  /**
   * Decode to at most this size, aspect ratio kept, never enlarged. Where the format allows (JPEG,
   * WebP, SVG) the image is decoded at the smaller size directly; other formats are streamed through
   * the resize, so memory stays small either way. Leave it out for the full-size image.
   */
  fit?: { width: number; height: number };
}

/** Bytes per pixel of the largest uncompressed layout a file within the pixel limit can need (16-bit RGBA). */
const MAX_BYTES_PER_PIXEL = 8;
/** Headroom for metadata (EXIF, ICC, XMP, thumbnails) on top of that. */
const FILE_SLACK_BYTES = 64 * 1024 * 1024;
/** How much of a large file is read first to look at its header. */
const HEADER_PREFIX_BYTES = 1024 * 1024;

/**
 * Decodes any supported input to packed RGB (width * height * 3 bytes, row-major).
 * Errors are LeanVisionError: IMAGE_DECODE (not an image, corrupt or truncated), INVALID_INPUT (not
 * an image input, a raw object that does not add up, a file that cannot be read), IMAGE_TOO_LARGE
 * (over `maxPixels`), INVALID_OPTIONS.
 */
export async function decodeImage(input: ImageInput, options: DecodeImageOptions = {}): Promise<RawRgbImage> {
  const maxPixels = checkMaxPixels(options?.maxPixels);
  const fit = checkFit(options?.fit);

  if (input != null && typeof input === "object" && !(input instanceof Uint8Array)) return fromRaw(input, maxPixels, fit);

  let bytes: Uint8Array;
  let what: string;
  if (typeof input === "string") {
    bytes = await readImageFile(input, maxPixels);
    what = input;
  } else if (input instanceof Uint8Array) {
    bytes = input;
    what = `the ${input.length}-byte buffer`;
  } else {
    throw notAnImageInput();
  }
  if (bytes.length === 0) throw new LeanVisionError("IMAGE_DECODE", typeof input === "string" ? `image file ${input} is empty` : "the image buffer is empty");

  // The header first: how many pixels would a decode produce?
  let width: number | undefined;
  let height: number | undefined;
  try {
    ({ width, height } = await sharp(bytes, { limitInputPixels: false }).metadata());
  } catch (err) {
    throw decodeError(what, err);
  }
  if (!width || !height) throw decodeError(what, new Error("the header gives no image size"));
  checkPixels(width, height, maxPixels);

  try {
    let pipeline = sharp(bytes, {
      // The backstop, should a decoder see a different size than its header said.
      limitInputPixels: Number.isFinite(maxPixels) ? maxPixels : false,
      failOn: "warning"
    });
    if (fit) pipeline = pipeline.resize({ width: fit.width, height: fit.height, fit: "inside", withoutEnlargement: true, fastShrinkOnLoad: true });
    // No .rotate()/autoOrient: like stb_image, EXIF orientation is not applied.
    const { data, info } = await pipeline.toColourspace("srgb").removeAlpha().raw().toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
  } catch (err) {
    if (/exceeds pixel limit/i.test((err as Error)?.message ?? "")) {
      throw new LeanVisionError("IMAGE_TOO_LARGE", `${what} decodes to more than ${megapixels(maxPixels)} megapixels; ${RAISE_HINT}`, { cause: err });
    }
    throw decodeError(what, err);
  }
}

const RAISE_HINT = "shrink it first, or raise the limit with the maxPixels option (Infinity turns it off)";

async function fromRaw(input: object, maxPixels: number, fit: DecodeImageOptions["fit"]): Promise<RawRgbImage> {
  const { data, width, height } = input as { data?: unknown; width?: number; height?: number };
  // Uint8ClampedArray (canvas ImageData, transformers.js RawImage) is read as the same bytes.
  const bytes = data instanceof Uint8ClampedArray ? new Uint8Array(data.buffer, data.byteOffset, data.length) : data;
  if (!(bytes instanceof Uint8Array) || !Number.isInteger(width) || !Number.isInteger(height) || width! < 1 || height! < 1) {
    throw new LeanVisionError("INVALID_INPUT", "a raw image must be { data: Uint8Array, width, height } with positive integer sizes");
  }
  const w = width!, h = height!;
  if (bytes.length !== w * h * 3) {
    throw new LeanVisionError("INVALID_INPUT", `raw RGB image ${w}x${h} needs ${w * h * 3} bytes (packed RGB), got ${bytes.length}`);
  }
  checkPixels(w, h, maxPixels);
  if (!fit || (w <= fit.width && h <= fit.height)) return { data: bytes, width: w, height: h };
  const { data: out, info } = await sharp(bytes, { raw: { width: w, height: h, channels: 3 }, limitInputPixels: false })
    .resize({ width: fit.width, height: fit.height, fit: "inside", withoutEnlargement: true })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(out.buffer, out.byteOffset, out.length), width: info.width, height: info.height };
}

/**
 * Reads a whole file, refusing anything but a regular file (a FIFO or /dev/zero would never end) and
 * files larger than any image within the pixel limit could be.
 */
async function readImageFile(path: string, maxPixels: number): Promise<Buffer> {
  if (path.length === 0) throw new LeanVisionError("INVALID_INPUT", "the image path is empty");
  let handle;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer. No effect on regular files.
    handle = await open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException)?.code;
    const why = code === "ENOENT" ? "not found" : code === "EACCES" || code === "EPERM" ? "not readable (permission denied)" : `cannot be opened (${code ?? (err as Error).message})`;
    throw new LeanVisionError("INVALID_INPUT", `image file ${why}: ${path}`, { cause: err });
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new LeanVisionError("INVALID_INPUT", `not a regular file: ${path}; pass an image file`);
    const maxBytes = Number.isFinite(maxPixels) ? maxPixels * MAX_BYTES_PER_PIXEL + FILE_SLACK_BYTES : Infinity;
    if (stats.size > maxBytes) {
      throw new LeanVisionError("IMAGE_TOO_LARGE", `image file ${path} is ${(stats.size / 2 ** 20).toFixed(0)} MiB, more than an image of ${megapixels(maxPixels)} megapixels needs; ${RAISE_HINT}`);
    }
    // A big file: its header alone may already say it is over the limit; then the rest is not read.
    if (stats.size > HEADER_PREFIX_BYTES && Number.isFinite(maxPixels)) {
      const prefix = Buffer.alloc(HEADER_PREFIX_BYTES);
      const { bytesRead } = await handle.read(prefix, 0, HEADER_PREFIX_BYTES, 0);
      const size = await sharp(prefix.subarray(0, bytesRead), { limitInputPixels: false }).metadata().then(
        ({ width, height }) => (width && height ? { width, height } : null),
        () => null // the header needs more than the prefix (or is not an image): decided after the full read
      );
      if (size) checkPixels(size.width, size.height, maxPixels);
    }
    try {
      return await handle.readFile();
    } catch (err) {
      if ((err as NodeJS.ErrnoException)?.code === "ERR_FS_FILE_TOO_LARGE") {
        throw new LeanVisionError("IMAGE_TOO_LARGE", `image file ${path} is too large to read into memory`, { cause: err });
      }
      throw new LeanVisionError("INVALID_INPUT", `cannot read image file ${path}: ${(err as Error).message}`, { cause: err });
    }
  } finally {
    await handle.close();
  }
}

function checkPixels(width: number, height: number, maxPixels: number) {
  if (width * height > maxPixels) {
    throw new LeanVisionError(
      "IMAGE_TOO_LARGE",
      `the image is ${width}×${height} (${megapixels(width * height)} megapixels), over the limit of ${megapixels(maxPixels)} megapixels; ${RAISE_HINT}`
    );
  }
}

function checkMaxPixels(value: unknown): number {
  if (value === undefined) return DEFAULT_MAX_PIXELS;
  if (value === Infinity || (typeof value === "number" && Number.isSafeInteger(value) && value >= 1)) return value;
  throw new LeanVisionError("INVALID_OPTIONS", `maxPixels must be a positive whole number or Infinity, got ${String(value)}`);
}

function checkFit(value: unknown): DecodeImageOptions["fit"] {
  if (value === undefined) return undefined;
  const { width, height } = (value ?? {}) as { width?: unknown; height?: unknown };
  if (!Number.isSafeInteger(width) || !Number.isSafeInteger(height) || (width as number) < 1 || (height as number) < 1) {
    throw new LeanVisionError("INVALID_OPTIONS", `fit must be { width, height } with positive whole numbers, got ${JSON.stringify(value)}`);
  }
  return { width: width as number, height: height as number };
}

function megapixels(pixels: number): string {
  const mp = pixels / 1e6;
  return mp >= 10 ? mp.toFixed(0) : mp >= 0.1 ? mp.toFixed(1) : mp.toPrecision(2);
}

function decodeError(what: string, err: unknown): LeanVisionError {
  return new LeanVisionError(
    "IMAGE_DECODE",
    `cannot decode ${what} as an image (${(err as Error)?.message ?? String(err)}); pass a JPEG, PNG, WebP, GIF, TIFF, AVIF or SVG image`,
    { cause: err }
  );
}

function notAnImageInput(): LeanVisionError {
  return new LeanVisionError("INVALID_INPUT", "an image must be a file path, a Buffer/Uint8Array of an encoded image, or { data, width, height } raw RGB");
}
