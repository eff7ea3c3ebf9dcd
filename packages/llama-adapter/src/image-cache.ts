// An in-memory cache of encoded images: the same pixels with the same reducer are encoded once per
// vision model (its mmproj is fixed), whichever session asks. Bounded in bytes, least recently used
// evicted first.
import { createHash } from "node:crypto";
import type { EncodedImage, RawRgbImage } from "@leanvision/core";

/** Default bound: a few hundred reduced 7B images, or ~25 unreduced ones. */
export const DEFAULT_IMAGE_CACHE_BYTES = 256 * 1024 * 1024;

export class ImageCache {
  private readonly entries = new Map<string, { image: EncodedImage; bytes: number }>();
  private total = 0;

  constructor(readonly maxBytes: number) {}

  /** Content key: the decoded pixels and the reducer's text form. */
  static key(rgb: RawRgbImage, reducer: string): string {
    return createHash("sha256").update(`${rgb.width}x${rgb.height}:${reducer}\0`).update(rgb.data).digest("base64url");
  }

  get bytes(): number {
    return this.total;
  }

  get size(): number {
    return this.entries.size;
  }

  get(key: string): EncodedImage | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key); // most recently used last
    this.entries.set(key, entry);
    return entry.image;
  }

  /** Stores an encoded image without its attention and keys (only the encode needs those). */
  set(key: string, image: EncodedImage): void {
    const stored: EncodedImage = {
      ...image,
      features: { ...image.features, tiles: image.features.tiles.map(({ attention, attentionScores, heads, keys, keyDim, ...tile }) => tile) }
    };
    const bytes = sizeOf(stored);
    if (bytes > this.maxBytes) return;
    this.delete(key);
    this.entries.set(key, { image: stored, bytes });
    this.total += bytes;
    for (const [oldest] of this.entries) {
      if (this.total <= this.maxBytes) break;
      this.delete(oldest);
    }
  }

  clear(): void {
    this.entries.clear();
    this.total = 0;
  }

  private delete(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    this.total -= entry.bytes;
  }
}

/** Bytes held by an encoded image's arrays (provenance counted at its source indices). */
function sizeOf(image: EncodedImage): number {
  let bytes = image.embeddings.byteLength + image.reduced.hidden.byteLength;
  for (const tile of image.features.tiles) bytes += tile.hidden.byteLength;
  for (const p of image.reduced.provenance) bytes += p.sources.byteLength + 32;
  return bytes;
}
