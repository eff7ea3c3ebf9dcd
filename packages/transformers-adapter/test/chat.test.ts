// TransformersVisionChat: turn 2 reuses the reduced image from the KV cache, the reuse is exact, and
// bad inputs fail with typed errors while the conversation stays as it was.
import { RawImage } from "@huggingface/transformers";
import { LeanVisionError, parseReducerSpec } from "@leanvision/core";
import { readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadImage, TransformersVisionChat, withLeanVision, type LeanVisionLlava } from "../src/index.js";
import { caught, generateFrom, loadTiny, testPicture, testPng, type Loaded } from "./helpers.js";

let tiny: Loaded;
let lean: LeanVisionLlava;
let png: string;

beforeAll(async () => {
  tiny = await loadTiny();
  lean = await withLeanVision({ ...tiny, modelPath: tiny.dir, reducer: { kind: "visionzip", dominant: 54, contextual: 10 } });
  png = await testPng(320, 240, 1);
});
afterAll(async () => {
  await lean?.dispose();
});

function snapshot(chat: TransformersVisionChat) {
  return { turns: structuredClone(chat.turns), history: chat.getChatHistory(), ids: chat.tokenIds };
}

describe("TransformersVisionChat", () => {
  it("turn 2 reuses the image from past_key_values and runs only its own new tokens", async () => {
    const chat = new TransformersVisionChat({ lean, systemPrompt: "A chat between a curious user and an assistant." });
    const chunks: string[] = [];
    const first = await chat.prompt("What is in this picture?", { images: [png], maxTokens: 6, onTextChunk: (t) => chunks.push(t) });
    expect(chunks.join("").trim()).toBe(first);
    const t1 = chat.lastTurn!;
    const afterTurn1 = chat.tokenIds;
    expect(t1.turn).toBe(1);
    expect(parseReducerSpec(t1.reducer)).toEqual({ kind: "visionzip", dominant: 54, contextual: 10 });
    expect(t1.visualTokens).toBe(64);
    expect(t1.reusedTokens).toBe(0);
    expect(t1.evaluatedTokens).toBe(afterTurn1.length - 6); // the whole prompt, 64 image tokens included
    expect(afterTurn1.filter((t) => t === 32000n)).toHaveLength(64);
    expect(t1.images).toHaveLength(1);
    expect(t1.images[0]).toMatchObject({ width: 320, height: 240, tiles: [{ grid: { rows: 16, cols: 16 }, clsIndex: 0 }] });
    expect(t1.images[0].provenance).toHaveLength(64);
    expect(t1.encodeMs).toBeGreaterThan(0);
    expect(t1.prefillMs).toBeGreaterThan(0);
    expect(t1.ttftMs).toBeGreaterThanOrEqual(t1.prefillMs);

    await chat.prompt("Tell me more.", { maxTokens: 5 });
    const t2 = chat.lastTurn!;
    expect(t2.turn).toBe(2);
    expect(t2.visualTokens).toBe(0);
    expect(t2.encodeMs + t2.reduceMs + t2.projectMs).toBe(0);
    // Everything before the last generated token of turn 1 comes from the cache, image included.
    expect(t2.reusedTokens).toBe(afterTurn1.length - 1);
    const turn2Input = t2.reusedTokens + t2.evaluatedTokens;
    expect(t2.evaluatedTokens).toBeLessThan(20);
    expect(chat.tokenIds.length).toBe(turn2Input + 5);
    expect(chat.getChatHistory().map((h) => h.type)).toEqual(["system", "user", "model", "user", "model"]);
  });

  it("the reused cache gives exactly the continuation a full recompute of the conversation gives", async () => {
    const chat = new TransformersVisionChat({ lean });
    await chat.prompt("Describe it.", { images: [png], maxTokens: 4 });
    const reply2 = await chat.prompt("And the colours?", { maxTokens: 6 });
    const t2 = chat.lastTurn!;
    const all = chat.tokenIds;
    const promptIds = all.slice(0, t2.reusedTokens + t2.evaluatedTokens);

    // From scratch: no cache, the same tokens, the image encoded again with the same reducer.
    const { pixel_values } = await tiny.processor._call(await loadImage(png), "USER: <image>\n x");
    const recomputed = await generateFrom(tiny.model, promptIds, pixel_values, 6);
    expect(recomputed).toEqual(all.slice(promptIds.length));
    expect(tiny.processor.tokenizer.decode(recomputed, { skip_special_tokens: true }).trim()).toBe(reply2);
  });

  it("bad inputs fail with typed errors and leave the conversation intact", async () => {
    const chat = new TransformersVisionChat({ lean });
    await chat.prompt("Hello", { images: [png], maxTokens: 3 });
    const before = snapshot(chat);
    const corrupt = path.join(os.tmpdir(), `lv-corrupt-${process.pid}.jpg`);
    writeFileSync(corrupt, Buffer.from("this is not a jpeg"));

    const cases: Array<[string, () => Promise<unknown>, string]> = [
      ["corrupt file", () => chat.prompt("?", { images: [corrupt] }), "IMAGE_DECODE"],
      ["corrupt buffer", () => chat.prompt("?", { images: [new Uint8Array([0xff, 0xd8, 1, 2, 3])] }), "IMAGE_DECODE"],
      ["missing file", () => chat.prompt("?", { images: ["/nonexistent/picture.png"] }), "INVALID_INPUT"],
      ["a directory", () => chat.prompt("?", { images: [os.tmpdir()] }), "INVALID_INPUT"],
      ["raw pixels of the wrong size", () => chat.prompt("?", { images: [{ data: new Uint8Array(10), width: 4, height: 4 }] }), "INVALID_INPUT"],
      ["non-string text", () => chat.prompt(42 as never), "INVALID_INPUT"],
      ["bad maxTokens", () => chat.prompt("?", { maxTokens: 0 }), "INVALID_INPUT"]
    ];
    for (const [name, run, code] of cases) {
      const err = await caught(run);
      expect(err, name).toBeInstanceOf(LeanVisionError);
      expect(err.code, name).toBe(code);
      expect(snapshot(chat), name).toEqual(before);
    }

    // A budget larger than the image's 256 patches.
    const err = await caught(() => chat.prompt("?", { images: [png], reducer: { kind: "visionzip", dominant: 300, contextual: 10 } }));
    expect(err).toBeInstanceOf(LeanVisionError);
    expect(snapshot(chat)).toEqual(before);

    // The conversation goes on, from the same cache, after all of that.
    await chat.prompt("Still there?", { maxTokens: 3 });
    expect(chat.lastTurn!.turn).toBe(2);
    expect(chat.lastTurn!.reusedTokens).toBe(before.ids.length - 1);
  });

  it("accepts raw RGB pixels and encoded buffers, and a new image in a later turn", async () => {
    const chat = new TransformersVisionChat({ lean });
    await chat.prompt("First.", { images: [testPicture(200, 150, 0)], maxTokens: 2 });
    await chat.prompt("Second picture.", { images: [readFileSync(png)], maxTokens: 2 });
    const t2 = chat.lastTurn!;
    expect(t2.visualTokens).toBe(64);
    expect(t2.reusedTokens).toBeGreaterThan(64);
    expect(t2.evaluatedTokens).toBeGreaterThan(64);
    expect(chat.tokenIds.filter((t) => t === 32000n)).toHaveLength(128);
  });

  it("maxPixels refuses larger images (files, buffers, raw pixels and RawImage) with IMAGE_TOO_LARGE", async () => {
    const chat = new TransformersVisionChat({ lean, maxPixels: 320 * 240 - 1 });
    const raw = testPicture(320, 240, 0);
    for (const image of [png, readFileSync(png), raw, new RawImage(new Uint8ClampedArray(raw.data), 320, 240, 3)]) {
      const err = await caught(() => chat.prompt("?", { images: [image], maxTokens: 1 }));
      expect(err.code).toBe("IMAGE_TOO_LARGE");
    }
    expect(chat.turns).toHaveLength(0);
    const roomy = new TransformersVisionChat({ lean, maxPixels: 320 * 240 });
    await roomy.prompt("?", { images: [png], maxTokens: 1 });
    expect(roomy.lastTurn!.images[0]).toMatchObject({ width: 320, height: 240 });
  });

  it("a disposed chat, or a chat over a disposed model, throws DISPOSED", async () => {
    const chat = new TransformersVisionChat({ lean });
    await chat.dispose();
    expect((await caught(() => chat.prompt("hi"))).code).toBe("DISPOSED");

    const other = await loadTiny();
    const otherLean = await withLeanVision({ ...other, modelPath: other.dir });
    const live = new TransformersVisionChat({ lean: otherLean });
    await otherLean.dispose();
    expect((await caught(() => live.prompt("hi"))).code).toBe("DISPOSED");
  });

  it("stops at an abort signal and keeps the conversation", async () => {
    const chat = new TransformersVisionChat({ lean });
    const controller = new AbortController();
    controller.abort();
    const err = await caught(() => chat.prompt("hi", { signal: controller.signal }));
    expect(err.code).toBe("ABORTED");
    expect(chat.turns).toHaveLength(0);
  });
});
