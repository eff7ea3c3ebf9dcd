// VisionChatSession on real node-llama-cpp contexts with the testkit's synthetic LLaVA models.
import { readFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getLlama } from "node-llama-cpp";
import type { Llama, LlamaContext, LlamaModel, Token } from "node-llama-cpp";
import { formatReducerSpec, LeanVisionError } from "@leanvision/core";
import { ensureLlavaGguf, sampleImagePath } from "@leanvision/testkit";
import { VisionChatSession } from "../src/chat-session.js";
import { isPlaceholderToken } from "../src/injection.js";
import { loadVisionModel } from "../src/vision-model.js";
import type { LlamaVisionModel } from "../src/vision-model.js";

// One thread everywhere: these models are tiny, and on a shared machine ggml's thread barriers
// would make them orders of magnitude slower.
const THREADS = 1;
const VISIONZIP_64 = { kind: "visionzip", dominant: 54, contextual: 10 } as const;

let llama: Llama;
let image: string;

beforeAll(async () => {
  llama = await getLlama({ gpu: false });
  image = sampleImagePath();
});

function placeholdersIn(tokens: readonly Token[]): Token[] {
  return tokens.filter(isPlaceholderToken);
}

async function expectLeanVisionError(promise: Promise<unknown>, code: string): Promise<LeanVisionError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e
  );
  expect(error).toBeInstanceOf(LeanVisionError);
  expect((error as LeanVisionError).code).toBe(code);
  return error as LeanVisionError;
}

describe("VisionChatSession (tiny: CLIP with CLS)", () => {
  let model: LlamaModel;
  let vision: LlamaVisionModel;

  beforeAll(async () => {
    const { modelPath, mmprojPath } = await ensureLlavaGguf("tiny");
    model = await llama.loadModel({ modelPath });
    vision = await loadVisionModel({ llama, model, mmprojPath, threads: THREADS });
  });

  afterAll(async () => {
    vision?.dispose();
    await model?.dispose();
  });

  async function newSession(contextSize: number, systemPrompt?: string): Promise<{ context: LlamaContext; session: VisionChatSession }> {
    const context = await model.createContext({ contextSize, threads: THREADS });
    const session = new VisionChatSession({ contextSequence: context.getSequence(), vision, reducer: VISIONZIP_64, systemPrompt });
    return { context, session };
  }

  it("prefills exactly 64 visual embeddings for visionzip 54+10, answers, and reuses the image on turn 2", async () => {
    const { context, session } = await newSession(1024);
    const chunks: string[] = [];
    const answer = await session.prompt("What is in this picture?", { images: [image], maxTokens: 6, onTextChunk: (c) => chunks.push(c) });

    expect(typeof answer).toBe("string");
    expect(chunks.join("")).toBe(answer);
    const turn1 = session.lastTurn!;
    expect(turn1).toMatchObject({ turn: 1, reducer: formatReducerSpec(VISIONZIP_64), visualTokens: 64, injectedTokens: 64, reusedTokens: 0 });
    const placeholders = placeholdersIn(session.sequence.contextTokens);
    expect(placeholders).toHaveLength(64);
    expect(new Set(placeholders).size).toBe(64);
    // Turn 1 evaluated the whole prompt: the 64 embeddings plus the text around them.
    expect(turn1.evaluatedTokens).toBeGreaterThan(64);
    expect(placeholdersIn(session.sequence.contextTokens.slice(0, turn1.evaluatedTokens))).toHaveLength(64);
    expect(turn1.images).toHaveLength(1);
    expect(turn1.images[0]).toMatchObject({ tiles: [{ grid: { rows: 24, cols: 24 }, clsIndex: 576 }], tileGrid: { rows: 0, cols: 0 } });
    expect(turn1.images[0].provenance.every((p) => p.tile === 0)).toBe(true);
    const kinds = turn1.images[0].provenance.map((p) => p.kind);
    expect(kinds.filter((k) => k === "cls")).toHaveLength(1);
    expect(kinds.filter((k) => k === "dominant")).toHaveLength(53);
    expect(kinds.filter((k) => k === "contextual")).toHaveLength(10);
    expect(session.getChatHistory().at(-1)).toMatchObject({ type: "model" });

    const imageEnd = session.sequence.contextTokens.lastIndexOf(placeholders.at(-1)!) + 1;
    await session.prompt("And what colors does it have?", { maxTokens: 4 });
    const turn2 = session.lastTurn!;
    expect(turn2).toMatchObject({ turn: 2, visualTokens: 0, injectedTokens: 0, images: [] });
    // The image's KV cache is reused; only text after it is evaluated.
    expect(turn2.reusedTokens).toBeGreaterThanOrEqual(imageEnd);
    expect(turn2.evaluatedTokens).toBeLessThan(session.sequence.nextTokenIndex - imageEnd);
    expect(placeholdersIn(session.sequence.contextTokens)).toEqual(placeholders);
    expect(session.turns.map((t) => t.turn)).toEqual([1, 2]);

    session.dispose();
    await context.dispose();
  });

  it("re-injects the image when the history before it changes or the KV cache before it is erased", async () => {
    const { context, session } = await newSession(1024, "You are a helpful assistant.");
    await session.prompt("Describe the image.", { images: [image], maxTokens: 3 });
    const placeholders = placeholdersIn(session.sequence.contextTokens);

    // A different system prompt: the tokens differ before the image, so it must be evaluated again.
    const history = session.getChatHistory();
    session.setChatHistory([{ type: "system", text: "You are a terse assistant." }, ...history.filter((item) => item.type !== "system")]);
    await session.prompt("Describe it again.", { maxTokens: 3 });
    expect(session.lastTurn).toMatchObject({ visualTokens: 0, injectedTokens: 64 });
    expect(placeholdersIn(session.sequence.contextTokens)).toEqual(placeholders);

    // Erasing KV cells before the image: node-llama-cpp re-evaluates from there, the image included.
    await session.sequence.eraseContextTokenRanges([{ start: 1, end: 3 }]);
    await session.prompt("One more time.", { maxTokens: 3 });
    expect(session.lastTurn).toMatchObject({ injectedTokens: 64, reusedTokens: 1 });
    expect(placeholdersIn(session.sequence.contextTokens)).toEqual(placeholders);

    session.dispose();
    await context.dispose();
  });

  it("one session per sequence at a time; after dispose the sequence can take a new one", async () => {
    const context = await model.createContext({ contextSize: 512, threads: THREADS });
    const sequence = context.getSequence();
    const first = new VisionChatSession({ contextSequence: sequence, vision });
    expect(() => new VisionChatSession({ contextSequence: sequence, vision })).toThrow(LeanVisionError);
    first.dispose();
    const second = new VisionChatSession({ contextSequence: sequence, vision, reducer: VISIONZIP_64 });
    await second.prompt("Hi", { images: [image], maxTokens: 2 });
    expect(second.lastTurn?.injectedTokens).toBe(64);
    second.dispose();
    await context.dispose();
  });

  it("takes several images in one message, each with its own placeholder span", async () => {
    const { context, session } = await newSession(1024);
    await session.prompt("Compare these two.", { images: [image, await readFile(image)], maxTokens: 2 });
    expect(session.lastTurn).toMatchObject({ visualTokens: 128, injectedTokens: 128 });
    expect(session.lastTurn!.images).toHaveLength(2);
    const placeholders = placeholdersIn(session.sequence.contextTokens);
    expect(new Set(placeholders).size).toBe(128);
    session.dispose();
    await context.dispose();
  });

  it("a context shift drops an image whole, never part of it, and the chat goes on", async () => {
    const { context, session } = await newSession(256, "Be brief.");
    await session.prompt("Look at this.", { images: [image], maxTokens: 20 });
    let shifted = false;
    for (let turn = 0; turn < 8 && !shifted; turn++) {
      await session.prompt(`Tell me more, part ${turn}.`, { maxTokens: 40 });
      shifted = placeholdersIn(session.sequence.contextTokens).length === 0;
    }
    expect(shifted).toBe(true);
    // The full history is kept by the session; only the context window lost the oldest turn.
    expect(session.getChatHistory().filter((item) => item.type === "user")).toHaveLength(session.turns.length);
    await session.prompt("Still there?", { maxTokens: 2 });
    expect(placeholdersIn(session.sequence.contextTokens)).toHaveLength(0);
    session.dispose();
    await context.dispose();
  });

  it("with reducer none prefills all 576 patch embeddings, as LLaVA does", async () => {
    const { context, session } = await newSession(1024);
    await session.prompt("What is this?", { images: [image], maxTokens: 2, reducer: { kind: "none" } });
    expect(session.lastTurn).toMatchObject({ reducer: "none", visualTokens: 576, injectedTokens: 576 });
    expect(placeholdersIn(session.sequence.contextTokens)).toHaveLength(576);
    session.dispose();
    await context.dispose();
  });

  describe("bad input gives a typed error and leaves the chat and the sequence as they were", () => {
    let context: LlamaContext;
    let session: VisionChatSession;
    let historyBefore: unknown;
    let tokensBefore: Token[];

    beforeAll(async () => {
      ({ context, session } = await newSession(256));
      await session.prompt("Hello!", { images: [image], maxTokens: 2 });
    });

    afterAll(async () => {
      session?.dispose();
      await context?.dispose();
    });

    function snapshot(): void {
      historyBefore = session.getChatHistory();
      tokensBefore = session.sequence.contextTokens;
    }

    async function expectUnchangedAndUsable(): Promise<void> {
      expect(session.getChatHistory()).toEqual(historyBefore);
      expect(session.sequence.contextTokens).toEqual(tokensBefore);
      await session.prompt("Still there?", { maxTokens: 2 });
      expect(session.lastTurn?.injectedTokens).toBe(0);
    }

    it("a corrupt image → IMAGE_DECODE", async () => {
      snapshot();
      const jpeg = await readFile(image);
      await expectLeanVisionError(session.prompt("What is this?", { images: [jpeg.subarray(0, 200)] }), "IMAGE_DECODE");
      await expectUnchangedAndUsable();
    });

    it("an image that cannot fit the context → CONTEXT_OVERFLOW, before anything is written", async () => {
      snapshot();
      // 576 visual tokens in a 256-token context
      const error = await expectLeanVisionError(session.prompt("What is this?", { images: [image], reducer: "none" }), "CONTEXT_OVERFLOW");
      expect(error.message).toMatch(/576 of them visual/);
      await expectUnchangedAndUsable();
    });

    it("a reducer budget over the token count → the core's error", async () => {
      snapshot();
      const error = await session.prompt("What is this?", { images: [image], reducer: { kind: "visionzip", dominant: 600, contextual: 10 } }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(LeanVisionError);
      await expectUnchangedAndUsable();
    });

    it("a history with an image marker from another process, or a cut one → a typed error, never text", async () => {
      const { context: other, session: restored } = await newSession(512);
      const foreign = "\uE000lv00000000:1073741824:64\uE001\nWhat is this?";
      restored.setChatHistory([{ type: "user", text: foreign }, { type: "model", response: ["A cat."] }]);
      await expectLeanVisionError(restored.prompt("And now?", { maxTokens: 1 }), "INVALID_INPUT");
      restored.setChatHistory([{ type: "user", text: "\uE000lv0000:10737\nWhat is this?" }, { type: "model", response: ["A cat."] }]);
      await expectLeanVisionError(restored.prompt("And now?", { maxTokens: 1 }), "CONTEXT_OVERFLOW");
      restored.setChatHistory([]);
      await restored.prompt("Hello", { maxTokens: 1 });
      restored.dispose();
      await other.dispose();
    });

    it("a disposed session → DISPOSED", async () => {
      const { context: other, session: disposed } = await newSession(256);
      disposed.dispose();
      await expectLeanVisionError(disposed.prompt("Hi", { images: [image] }), "DISPOSED");
      expect(() => disposed.getChatHistory()).toThrow(LeanVisionError);
      await other.dispose();
    });
  });
});

describe("VisionChatSession (tiny-siglip: no CLS token)", () => {
  let model: LlamaModel;
  let vision: LlamaVisionModel;

  beforeAll(async () => {
    const { modelPath, mmprojPath } = await ensureLlavaGguf("tiny-siglip");
    model = await llama.loadModel({ modelPath });
    vision = await loadVisionModel({ llama, model, mmprojPath, threads: THREADS });
  });

  afterAll(async () => {
    vision?.dispose();
    await model?.dispose();
  });

  it("chats with a CLS-less mmproj: 54 dominant + 10 contextual visual tokens, reused on turn 2", async () => {
    const context = await model.createContext({ contextSize: 1024, threads: THREADS });
    const session = new VisionChatSession({ contextSequence: context.getSequence(), vision, reducer: VISIONZIP_64 });
    await session.prompt("What is in this picture?", { images: [image], maxTokens: 4 });
    const turn1 = session.lastTurn!;
    expect(turn1).toMatchObject({ visualTokens: 64, injectedTokens: 64 });
    expect(turn1.images[0].tiles[0].clsIndex).toBeNull();
    const kinds = turn1.images[0].provenance.map((p) => p.kind);
    expect(kinds.filter((k) => k === "dominant")).toHaveLength(54);
    expect(kinds.filter((k) => k === "contextual")).toHaveLength(10);

    await session.prompt("Anything else?", { maxTokens: 2 });
    expect(session.lastTurn).toMatchObject({ visualTokens: 0, injectedTokens: 0 });
    session.dispose();
    await context.dispose();
  });
});
