// Embedding injection into node-llama-cpp's own context: decoding the token-embedding rows of some
// tokens must be indistinguishable from evaluating those tokens.
import { open } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { getLlama, GgmlType, readGgufFileInfo } from "node-llama-cpp";
import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";
import { ensureLlavaGguf } from "@leanvision/testkit";
import { createInjectedImage, PLACEHOLDER_BASE, SequenceInjector, withContextLock } from "../src/injection.js";
import { loadNativeBinding } from "../src/native-binding.js";
import type { DecodeEmbeddings } from "../src/injection.js";
import { greedy } from "./support/greedy.js";

let llama: Llama;
let model: LlamaModel;
let modelPath: string;
let decodeEmbeddings: DecodeEmbeddings;

beforeAll(async () => {
  llama = await getLlama({ gpu: false });
  modelPath = (await ensureLlavaGguf("tiny")).modelPath;
  model = await llama.loadModel({ modelPath });
  decodeEmbeddings = loadNativeBinding().decodeEmbeddings!;
});

afterAll(async () => {
  await model?.dispose();
});

/** Rows of the language model's token_embd for `tokens` ([tokens.length x nEmbd]), read from the GGUF. */
async function tokenEmbeddingRows(tokens: Token[]): Promise<{ rows: Float32Array; nEmbd: number }> {
  const info = await readGgufFileInfo(modelPath, { readTensorInfo: true, logWarnings: false });
  const tensor = info.fullTensorInfo?.find((t) => t.name === "token_embd.weight");
  if (tensor == null) throw new Error("the model has no token_embd.weight");
  const nEmbd = Number(tensor.dimensions[0]);
  const decodeRow = rowDecoders[tensor.ggmlType as keyof typeof rowDecoders];
  if (decodeRow == null) throw new Error(`token_embd.weight is ${GgmlType[tensor.ggmlType]}; this test reads f32, f16 or q8_0`);
  const rowBytes = decodeRow.bytes(nEmbd);
  const rows = new Float32Array(tokens.length * nEmbd);
  const file = await open(modelPath, "r");
  try {
    for (const [i, token] of tokens.entries()) {
      const bytes = Buffer.alloc(rowBytes);
      await file.read(bytes, 0, rowBytes, Number(tensor.fileOffset) + token * rowBytes);
      rows.set(decodeRow.decode(bytes, nEmbd), i * nEmbd);
    }
  } finally {
    await file.close();
  }
  return { rows, nEmbd };
}

/** ggml row layouts (ggml/src/ggml-common.h): q8_0 is blocks of an f16 scale and 32 int8 values. */
const rowDecoders = {
  [GgmlType.F32]: { bytes: (n: number) => n * 4, decode: (b: Buffer, n: number) => Float32Array.from({ length: n }, (_, j) => b.readFloatLE(j * 4)) },
  [GgmlType.F16]: { bytes: (n: number) => n * 2, decode: (b: Buffer, n: number) => Float32Array.from({ length: n }, (_, j) => f16ToF32(b.readUInt16LE(j * 2))) },
  [GgmlType.Q8_0]: {
    bytes: (n: number) => (n / 32) * 34,
    decode: (b: Buffer, n: number) =>
      Float32Array.from({ length: n }, (_, j) => {
        const block = Math.floor(j / 32) * 34;
        return f16ToF32(b.readUInt16LE(block)) * b.readInt8(block + 2 + (j % 32));
      })
  }
};

function f16ToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}


describe("decodeEmbeddings", () => {
  let context: LlamaContext;
  let prompt: Token[];

  beforeAll(async () => {
    // A batch size smaller than the injected span, so the native side has to chunk it. One thread:
    // on a shared machine, ggml's thread barriers make tiny models orders of magnitude slower.
    context = await model.createContext({ contextSize: 256, batchSize: 4, sequences: 2, threads: 1 });
    prompt = [model.tokens.bos!, ...model.tokenize("The quick brown fox jumps over the lazy dog, and then it runs away")];
  });

  afterAll(async () => {
    await context?.dispose();
  });

  it("gives the same greedy continuation as evaluating the tokens whose embedding rows it decodes", async () => {
    const sequence = context.getSequence();
    const expected = await greedy(sequence, prompt, 12);

    await sequence.clearHistory();
    const injected = prompt.slice(3, 13);
    const { rows, nEmbd } = await tokenEmbeddingRows(injected);
    const image = createInjectedImage(rows, nEmbd);
    const injector = new SequenceInjector(sequence, decodeEmbeddings);
    injector.register(image);
    const placeholders = injected.map((_, i) => (image.firstToken + i) as Token);
    const withPlaceholders = [...prompt.slice(0, 3), ...placeholders, ...prompt.slice(13)];

    expect(await greedy(sequence, withPlaceholders, 12)).toEqual(expected);
    // The placeholders are recorded like evaluated tokens, at the positions the embeddings went to.
    expect(sequence.contextTokens.slice(0, withPlaceholders.length)).toEqual(withPlaceholders);
    expect(sequence.nextTokenIndex).toBe(withPlaceholders.length + 11);

    injector.detach();
    await sequence.dispose();
  });

  it("validates every argument before decoding, and the sequence keeps working", async () => {
    const sequence = context.getSequence();
    await sequence.evaluateWithoutGeneratingNewTokens(prompt.slice(0, 4));
    const sequenceId = (sequence as unknown as { _sequenceId: number })._sequenceId;
    const ctx = (context as unknown as { _ctx: object })._ctx;
    const { rows, nEmbd } = await tokenEmbeddingRows(prompt.slice(4, 6));
    const at = sequence.nextTokenIndex;

    const call = (overrides: Partial<{ ctx: object; seq: number; pos: number; embd: Float32Array; n: number; dim: number; batch: number }>) => () =>
      decodeEmbeddings(
        overrides.ctx ?? ctx,
        overrides.seq ?? sequenceId,
        overrides.pos ?? at,
        overrides.embd ?? rows,
        overrides.n ?? 2,
        overrides.dim ?? nEmbd,
        overrides.batch ?? 4
      );
    expect(call({ ctx: model as object })).toThrow(/not a node-llama-cpp context/);
    expect(call({ seq: 7 })).toThrow(/sequenceId 7 is out of range/);
    expect(call({ dim: nEmbd + 1, embd: new Float32Array(2 * (nEmbd + 1)) })).toThrow(/input embedding size is/);
    expect(call({ n: 3 })).toThrow(/expected nTokens \* nEmbd/);
    expect(call({ pos: at - 1 })).toThrow(/not the sequence's next position/);
    expect(call({ pos: at + 1 })).toThrow(/not the sequence's next position/);
    expect(call({ batch: 5 })).toThrow(/batchSize must be between 1 and the context's batch size 4/);
    expect(call({ pos: 250, n: 10, embd: new Float32Array(10 * nEmbd) })).toThrow(/do not fit in the context of 256 tokens/);
    const withNaN = rows.slice();
    withNaN[nEmbd + 3] = Number.NaN;
    expect(call({ embd: withNaN })).toThrow(/non-finite value at row 1, column 3/);

    // Nothing was written: the sequence continues from where it was.
    expect(sequence.nextTokenIndex).toBe(at);
    expect((await greedy(sequence, prompt.slice(4, 8), 3)).length).toBe(3);
    await sequence.dispose();
  });

  it("injection holds node-llama-cpp's own context lock: no other decode runs meanwhile", async () => {
    const sequence = context.getSequence();
    const done = await withContextLock(context, async () => {
      const evaluation = sequence.evaluateWithoutGeneratingNewTokens(prompt.slice(0, 5)).then(() => "decoded");
      const waited = new Promise((resolve) => setTimeout(() => resolve("blocked"), 500));
      const first = await Promise.race([evaluation, waited]);
      expect(sequence.nextTokenIndex).toBe(0);
      return { first, evaluation };
    });
    expect(done.first).toBe("blocked");
    expect(await done.evaluation).toBe("decoded");
    expect(sequence.nextTokenIndex).toBe(5);
    await sequence.dispose();
  });

  it("a placeholder that reaches llama.cpp as a token is rejected, never evaluated as text", async () => {
    const sequence = context.getSequence(); // no injector attached
    await expect(greedy(sequence, [model.tokens.bos!, PLACEHOLDER_BASE as Token, ...prompt.slice(1, 3)], 1)).rejects.toThrow();
    await sequence.dispose();
  });
});
