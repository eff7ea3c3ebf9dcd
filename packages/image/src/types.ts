// The image types every LeanVision adapter takes are core's runtime contract types.
export type { ImageInput, RawRgbImage } from "@leanvision/core";
