// Lifecycle holes (issue 14): disposing the context or the model during a prompt, aborting, and an
// answer that runs into the end of the context. Each ends typed, and the chat is left consistent.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getLlama } from "node-llama-cpp";
import type { Llama, LlamaModel, Token } from "node-llama-cpp";
import { LeanVisionError } from "@leanvision/core";
import { ensureLlavaGguf, sampleImagePath } from "@leanvision/testkit";
import { VisionChatSession } from "../src/chat-session.js";
import { isPlaceholderToken } from "../src/injection.js";
import { loadVisionModel, type LlamaVisionModel } from "../src/vision-model.js";

const THREADS = 1;
let llama: Llama;
let pair: { modelPath: string; mmprojPath: string };
let model: LlamaModel;
let vision: LlamaVisionModel;
const image = sampleImagePath();

beforeAll(async () => {
  llama = await getLlama({ gpu: false, build: "never" });
  pair = await ensureLlavaGguf("tiny");
  model = await llama.loadModel({ modelPath: pair.modelPath });
  vision = await loadVisionModel({ llama, model, mmprojPath: pair.mmprojPath, threads: THREADS });
});

afterAll(async () => {
  vision?.dispose();
  await model?.dispose();
});

async function failure(promise: Promise<unknown>): Promise<LeanVisionError> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(LeanVisionError);
  return error as LeanVisionError;
}

const placeholders = (tokens: readonly Token[]) => tokens.filter(isPlaceholderToken).length;

describe("lifecycle", () => {
  it("the context disposed while the answer streams → DISPOSED", async () => {
    const context = await model.createContext({ contextSize: 1024, threads: THREADS });
    const session = new VisionChatSession({ contextSequence: context.getSequence(), vision, reducer: "visionzip:54+10" });
    const error = await failure(session.prompt("Hi", { images: [image], maxTokens: 50, onTextChunk: () => void context.dispose() }));
    expect(error.code).toBe("DISPOSED");
    await session.dispose();
  });

  it("the model disposed while the answer streams → DISPOSED; its vision model then refuses to encode", async () => {
    const other = await llama.loadModel({ modelPath: pair.modelPath });
    const otherVision = await loadVisionModel({ llama, model: other, mmprojPath: pair.mmprojPath, threads: THREADS });
    const context = await other.createContext({ contextSize: 1024, threads: THREADS });
    const session = new VisionChatSession({ contextSequence: context.getSequence(), vision: otherVision, reducer: "pool:2" });
    const error = await failure(session.prompt("Hi", { images: [image], maxTokens: 50, onTextChunk: () => void other.dispose() }));
    expect(error.code).toBe("DISPOSED");
    expect((await failure(otherVision.encodeImage(image))).code).toBe("DISPOSED");
    otherVision.dispose();
  });

  it("an abort → ABORTED, between images or while answering, and the chat goes on as before", async () => {
    const context = await model.createContext({ contextSize: 2048, threads: THREADS });
    const session = new VisionChatSession({ contextSequence: context.getSequence(), vision, reducer: "visionzip:54+10" });
    await session.prompt("Hello", { maxTokens: 2 });
    const history = session.getChatHistory();
    const tokens = session.sequence.contextTokens;

    // Aborted while the first of two images encodes: the second is never encoded, nothing is written.
    const early = new AbortController();
    setTimeout(() => early.abort(), 20);
    const encodesBefore = vision.imageCache.size;
    expect((await failure(session.prompt("Compare.", { images: [image, { data: new Uint8Array(48 * 3), width: 16, height: 3 }], signal: early.signal }))).code).toBe("ABORTED");
    expect(vision.imageCache.size).toBeLessThanOrEqual(encodesBefore + 1);
    expect(session.getChatHistory()).toEqual(history);
    expect(session.sequence.contextTokens).toEqual(tokens);

    // Aborted while answering.
    const late = new AbortController();
    expect((await failure(session.prompt("Describe it.", { images: [image], maxTokens: 100, signal: late.signal, onTextChunk: () => late.abort() }))).code).toBe("ABORTED");
    expect(session.getChatHistory()).toEqual(history);

    await session.prompt("Still there?", { maxTokens: 2 });
    expect(session.turns).toHaveLength(2);
    await session.dispose();
    await context.dispose();
  });

  it("an answer that reaches the end of the context stops there (contextFull): the image is never shifted out", async () => {
    // 576 visual tokens in a 768-token context, maxTokens 200: the answer has ~150 tokens of room.
    const context = await model.createContext({ contextSize: 768, threads: THREADS });
    const session = new VisionChatSession({ contextSequence: context.getSequence(), vision, reducer: "none" });
    await session.prompt("Describe every detail.", { images: [image], maxTokens: 200 });
    const turn = session.lastTurn!;
    expect(turn.visualTokens).toBe(576);
    expect(turn.stopReason).toBe("contextFull"); // the synthetic model never emits its end token (checked: greedy, random weights)
    expect(placeholders(session.sequence.contextTokens)).toBe(576);
    expect(session.sequence.nextTokenIndex).toBeLessThanOrEqual(768);

    // With room to spare the reason is the request's own limit.
    const roomy = await model.createContext({ contextSize: 2048, threads: THREADS });
    const other = new VisionChatSession({ contextSequence: roomy.getSequence(), vision, reducer: "none" });
    await other.prompt("Describe every detail.", { images: [image], maxTokens: 3 });
    expect(other.lastTurn!.stopReason).toBe("maxTokens");
    await other.dispose();
    await roomy.dispose();
    await session.dispose();
    await context.dispose();
  });
});
