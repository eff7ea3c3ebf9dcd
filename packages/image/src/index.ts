export type { ImageInput, RawRgbImage } from "./types.js";
export { decodeImage, DEFAULT_MAX_PIXELS, type DecodeImageOptions, type ImageErrorCode } from "./decode.js";
