// LLaVA-1.6 (NeXT) on the synthetic tiny-next pair (CLIP 336/14 with CLS, LLaVA-1.6 pinpoints): every
// tile mtmd makes is encoded, `none` is mtmd's own output, VisionZip follows its NeXT order, and the
// chat counts, fits and reuses NeXT images like single-tile ones.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getLlama } from "node-llama-cpp";
import type { Llama, LlamaContext, LlamaModel } from "node-llama-cpp";
import { ensureLlavaGguf, sampleImagePath } from "@leanvision/testkit";
import { VisionChatSession } from "../src/chat-session.js";
import { isPlaceholderToken } from "../src/injection.js";
import { decodeImage } from "@leanvision/image";
import { loadVisionModel, type LlamaVisionModel } from "../src/vision-model.js";
import { expectCode } from "./support/errors.js";

// One thread: tiny models on a shared machine.
const THREADS = 1;

let llama: Llama;
let model: LlamaModel;
let vision: LlamaVisionModel;
const photo = sampleImagePath(); // 640x488: the overview plus a 2x2 grid (the 672x672 pinpoint)

/** Raw RGB of any size (a gradient with some texture). */
function rawImage(width: number, height: number) {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i++) data[i] = (((i / 3) % width) * 3 + Math.floor(i / 3 / width) * 5 + (i % 3) * 70 + ((i * 37) % 23)) % 256;
  return { width, height, data };
}

beforeAll(async () => {
  llama = await getLlama({ gpu: false, build: "never" });
  const pair = await ensureLlavaGguf("tiny-next");
  model = await llama.loadModel({ modelPath: pair.modelPath });
  vision = await loadVisionModel({ llama, model, mmprojPath: pair.mmprojPath, threads: THREADS });
});

afterAll(async () => {
  vision?.dispose();
  await model?.dispose();
});

describe("the vision stage on tiny-next", () => {
  it("none: exactly mtmd's own embeddings (count, order, values), tiles in mtmd's order, no newline rows", async () => {
    const stock = await vision.encodeImageStock(photo);
    const ours = await vision.encodeImage(photo, "none");
    expect(stock.numTokens).toBe(5 * 576);
    expect(ours.numTokens).toBe(stock.numTokens);
    expect(ours.features.tileGrid).toEqual({ rows: 2, cols: 2 });
    expect(ours.features.tiles).toHaveLength(5);
    let worst = 0;
    for (let i = 0; i < stock.embeddings.length; i++) worst = Math.max(worst, Math.abs(ours.embeddings[i] - stock.embeddings[i]));
    expect(worst).toBeLessThan(1e-4);
    // mtmd's order: the four high-resolution tiles row-major, then the overview (tile 0 of ImageFeatures).
    const tileOfRow = (r: number) => ours.reduced.provenance[r].tile;
    expect([0, 576, 1152, 1728, 2304].map(tileOfRow)).toEqual([1, 2, 3, 4, 0]);
  });

  it("predicts mtmd's tiles from the image size (tileShapes / countTokens before any encode)", async () => {
    for (const [w, h, tiles] of [
      [300, 200, 1], // within 336: the overview alone
      [448, 336, 3], // 672x336: 1x2
      [1000, 200, 4] // 1008x336: 1x3
    ] as const) {
      const image = rawImage(w, h);
      expect(vision.tileShapes(image)).toHaveLength(tiles);
      const out = await vision.encodeImage(image, "pool:4");
      expect(out.features.tiles).toHaveLength(tiles);
      expect(out.numTokens).toBe(36 * tiles);
      expect(await vision.countTokens(image, "none")).toBe(576 * tiles);
    }
  });

  it("visionzip:54+10 gives 64 per tile in VisionZip's NeXT order; pooling and region packing go per tile", async () => {
    const out = await vision.encodeImage(photo, "visionzip:54+10");
    expect(out.numTokens).toBe(320);
    expect(out.embeddings.length).toBe(320 * vision.nEmbd);
    expect(out.reduced.tiles.map((t) => t.numTokens)).toEqual([64, 64, 64, 64, 64]);
    // Overview first (64), then 4 x 53 high-resolution dominant patches, 4 CLS, 4 x 10 contextual.
    const kinds = out.reduced.provenance.map((p) => (p.tile === 0 ? "ov" : p.kind));
    expect(kinds).toEqual([...Array(64).fill("ov"), ...Array(212).fill("dominant"), ...Array(4).fill("cls"), ...Array(40).fill("contextual")]);
    expect(await vision.countTokens(photo, "visionzip:54+10")).toBe(320);
    expect((await vision.encodeImage(photo, "regionpack:2")).numTokens).toBe(5 * 144);
  });
});

describe("chat on tiny-next", () => {
  /** Runs `body` with a fresh chat over its own context, disposed afterwards. */
  async function inChat(contextSize: number, reducer: string, body: (session: VisionChatSession) => Promise<void>, pipeline = false): Promise<void> {
    const context: LlamaContext = await model.createContext({ contextSize, threads: THREADS });
    const session = new VisionChatSession({ contextSequence: context.getSequence(), vision, reducer, pipeline });
    try {
      await body(session);
    } finally {
      await session.dispose();
      await context.dispose();
    }
  }

  it("54+10: answers with 320 visual tokens (= countTokens), turn 2 evaluates only the new text", async () => {
    await inChat(2048, "visionzip:54+10", async (session) => {
      const answer = await session.prompt("What is in this picture?", { images: [photo], maxTokens: 4 });
      expect(typeof answer).toBe("string");
      const turn1 = session.lastTurn!;
      expect(turn1).toMatchObject({ visualTokens: 320, injectedTokens: 320, reusedTokens: 0 });
      expect(turn1.images[0]).toMatchObject({ tileGrid: { rows: 2, cols: 2 } });
      expect(turn1.images[0].tiles).toHaveLength(5);
      expect(session.sequence.contextTokens.filter(isPlaceholderToken)).toHaveLength(await vision.countTokens(photo, "visionzip:54+10"));

      const before = session.sequence.nextTokenIndex;
      const question = "And the colors?";
      await session.prompt(question, { maxTokens: 3 });
      const turn2 = session.lastTurn!;
      expect(turn2).toMatchObject({ visualTokens: 0, injectedTokens: 0 });
      expect(turn2.reusedTokens).toBeGreaterThanOrEqual(before - 1);
      // Only the new message (its chat-template framing included) is evaluated.
      expect(turn2.evaluatedTokens).toBeLessThan(model.tokenize(question).length + 16);
    });
  });

  it("none: the 2,880 tokens prefilled are what countTokens said", async () => {
    await inChat(4096, "none", async (session) => {
      await session.prompt("Describe it.", { images: [photo], maxTokens: 2 });
      expect(session.lastTurn).toMatchObject({ visualTokens: 2880, injectedTokens: 2880 });
      expect(await vision.countTokens(photo, "none")).toBe(2880);
    });
  });

  it("a NeXT image over the context: CONTEXT_OVERFLOW before anything is encoded or written, the chat intact", async () => {
    await inChat(2048, "visionzip:54+10", async (session) => {
      await session.prompt("Hello.", { maxTokens: 2 });
      const history = JSON.stringify(session.getChatHistory());
      const tokens = [...session.sequence.contextTokens];
      const encode = vision.encodeImage.bind(vision);
      let encodes = 0;
      vision.encodeImage = (...args) => {
        encodes++;
        return encode(...args);
      };
      try {
        const err = await expectCode(session.prompt("Describe it.", { images: [photo], reducer: "none", maxTokens: 2 }), "CONTEXT_OVERFLOW");
        expect(err.message).toMatch(/2880 of them visual/);
      } finally {
        vision.encodeImage = encode;
      }
      expect(encodes).toBe(0);
      expect(JSON.stringify(session.getChatHistory())).toBe(history);
      expect(session.sequence.contextTokens).toEqual(tokens);
      // The chat goes on; the same image fits with VisionZip.
      await session.prompt("Describe it.", { images: [photo], maxTokens: 2 });
      expect(session.lastTurn).toMatchObject({ visualTokens: 320 });
    });
  });

  it("pipelined prefill: the same tokens, embeddings and answer as encoding first, rows injected tile by tile", async () => {
    for (const reducer of ["none", "visionzip:54+10"]) {
      const runs: Array<{ answer: string; tokens: number[]; injected: number }> = [];
      for (const pipeline of [false, true]) {
        vision.imageCache.clear(); // both runs encode
        await inChat(4096, reducer, async (session) => {
          const answer = await session.prompt("Describe it.", { images: [photo], maxTokens: 3, temperature: 0 });
          runs.push({ answer, tokens: [...session.sequence.contextTokens].map((t) => (isPlaceholderToken(t) ? -1 : t)), injected: session.lastTurn!.injectedTokens });
          expect(session.lastTurn!.visualTokens).toBe(await vision.countTokens(photo, reducer));
        }, pipeline);
      }
      expect(runs[1]).toEqual(runs[0]);
    }
  });

  it("streamImage: the count first, then rows final in order while later tiles encode", async () => {
    const stream = await vision.streamImage(photo, "none");
    expect(stream.numTokens).toBe(2880);
    await stream.waitFor(1);
    const first = stream.ready;
    expect(first % 576).toBe(0); // whole tiles, mtmd's order
    const encoded = await stream.done;
    expect(stream.ready).toBe(2880);
    expect(encoded.embeddings).toBe(stream.embeddings);
    const zip = await vision.streamImage(photo, "visionzip:54+10");
    await zip.waitFor(1);
    expect(zip.ready === 64 || zip.ready === 320).toBe(true); // the overview's 64 lead, the rest come with the last tile
    await zip.done;
  });

  it("predictTokens: exact from the image size for fixed budgets, null for adaptive ones", async () => {
    const rgb = await decodeImage(photo);
    expect(vision.predictTokens(rgb, { kind: "visionzip", dominant: 54, contextual: 10 })).toBe(320);
    expect(vision.predictTokens(rgb, { kind: "visionzip-adaptive", coverage: 0.9, min: 16, max: 192, contextual: 10 })).toBeNull();
  });
});
