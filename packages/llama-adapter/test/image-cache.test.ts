// The image cache: a repeat of the same pixels with the same reducer is not encoded again, gives the
// same embeddings, is shared by the sessions of one vision model, and never exceeds its byte bound.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { sampleImagePath } from "@leanvision/testkit";
import type { EncodedImage } from "@leanvision/core";
import { ImageCache } from "../src/image-cache.js";
import { VisionChatSession } from "../src/chat-session.js";
import { useTinyVision } from "./support/tiny-vision.js";

const tiny = useTinyVision(1);
const image = sampleImagePath();

describe("image cache", () => {
  it("a hit skips the encoder and gives identical embeddings; another reducer or other pixels miss", async () => {
    tiny.vision.imageCache.clear();
    const first = await tiny.vision.encodeImage(image, "visionzip:54+10", { cache: true });
    expect(first.fromCache).toBe(false);
    const again = await tiny.vision.encodeImage(readFileSync(image), "visionzip:54+10", { cache: true }); // same pixels, other input form
    expect(again.fromCache).toBe(true);
    expect(again.embeddings).toEqual(first.embeddings);
    expect(again.reduced.provenance).toEqual(first.reduced.provenance);
    expect(again.timings.reduceMs + again.timings.projectMs).toBe(0);
    expect((await tiny.vision.encodeImage(image, "pool:2", { cache: true })).fromCache).toBe(false);
    const raw = { data: new Uint8Array(32 * 32 * 3).fill(7), width: 32, height: 32 };
    expect((await tiny.vision.encodeImage(raw, "visionzip:54+10", { cache: true })).fromCache).toBe(false);
    raw.data[0] = 8;
    expect((await tiny.vision.encodeImage(raw, "visionzip:54+10", { cache: true })).fromCache).toBe(false);
    // Without { cache: true } (direct calls) the encoder always runs, attention scores included.
    const direct = await tiny.vision.encodeImage(image, "visionzip:54+10");
    expect(direct.fromCache).toBe(false);
    expect(direct.features.tiles[0].attentionScores).toBeDefined();
  });

  it("a new chat about the same photo pays only prefill: the turn record says it was a hit", async () => {
    tiny.vision.imageCache.clear();
    const turns = [];
    for (let i = 0; i < 2; i++) {
      const context = await tiny.model.createContext({ contextSize: 1024, threads: 1 });
      const session = new VisionChatSession({ contextSequence: context.getSequence(), vision: tiny.vision, reducer: "visionzip:54+10" });
      await session.prompt("What is this?", { images: [image], maxTokens: 1 });
      turns.push(session.lastTurn!);
      await session.dispose();
      await context.dispose();
    }
    expect(turns.map((t) => t.imageCache)).toEqual([{ hits: 0, misses: 1 }, { hits: 1, misses: 0 }]);
    expect(turns[1].visualTokens).toBe(64);
    expect(turns[1].reduceMs + turns[1].projectMs).toBe(0);
  });

  it("never holds more than its byte bound, evicting the least recently used", () => {
    const fake = (kB: number): EncodedImage =>
      ({
        embeddings: new Float32Array(kB * 256),
        reduced: { hidden: new Float32Array(0), provenance: [], numTokens: 0, dim: 1, tiles: [] },
        features: { tiles: [{ hidden: new Float32Array(0), numTokens: 0, dim: 1, grid: { rows: 0, cols: 0 }, clsIndex: null, attention: new Float32Array(1e6) }], tileGrid: { rows: 0, cols: 0 }, width: 1, height: 1 }
      }) as unknown as EncodedImage;
    const cache = new ImageCache(10 * 1024);
    for (let i = 0; i < 40; i++) {
      cache.get("k0"); // keeps k0 the most recently used
      cache.set(`k${i}`, fake(3));
      expect(cache.bytes).toBeLessThanOrEqual(10 * 1024);
    }
    expect(cache.get("k0")).toBeDefined();
    expect(cache.get("k1")).toBeUndefined();
    expect(cache.size).toBe(3);
    cache.set("huge", fake(11)); // larger than the bound: not stored
    expect(cache.get("huge")).toBeUndefined();
    expect(cache.get("k0")!.features.tiles[0].attention).toBeUndefined(); // attention is not kept
  });
});
