// The runtime contract, through both adapters, as the examples use it: a reducer defined here (no
// package source touched) runs in node-llama-cpp and transformers.js alike, counts before prefill
// match what is prefilled, and chats sharing one runtime keep their own reducers.
import { afterAll, describe, expect, it } from "vitest";
import {
  countReduced,
  formatReducerSpec,
  parseReducerSpec,
  registerReducer,
  unregisterReducer,
  type ReducedTokens,
  type ReducerDefinition,
  type VisionFeatures,
  type VisionRuntime
} from "@leanvision/core";
import { sampleImagePath } from "@leanvision/testkit";
import { openRuntime } from "../runtime.js";

/** Keeps the `keep` patches the CLS query (or, without CLS, all queries) attends to least: a reducer only a test would want. */
type LeastSpec = { kind: "least-attended"; keep: number };
const calls: string[] = [];
const leastAttended: ReducerDefinition<LeastSpec> = {
  kind: "least-attended",
  params: ["keep"],
  short: {
    head: "least-attended",
    syntax: "least-attended:K",
    parse: (body) => (/^\d+$/.test(body) ? { kind: "least-attended", keep: Number(body) } : undefined)
  },
  help: "least-attended:K (test reducer)",
  format: (s) => `least-attended:${s.keep}`,
  needs: () => ({ attention: true, keys: false }),
  count: (tile, s) => Math.min(s.keep, tile.numTokens - (tile.clsIndex === null ? 0 : 1)),
  reduce(tile: VisionFeatures, s): ReducedTokens {
    // A runtime gives the whole attention, or (transformers: computed in the graph) the per-token scores.
    calls.push(`${tile.numTokens}:${tile.attention ? "attention" : tile.attentionScores ? "scores" : "none"}`);
    const n = tile.numTokens;
    const score = (t: number) => {
      if (!tile.attention) return tile.attentionScores![t];
      let sum = 0;
      for (let h = 0; h < tile.heads!; h++) {
        if (tile.clsIndex !== null) sum += tile.attention![(h * n + tile.clsIndex) * n + t];
        else for (let q = 0; q < n; q++) sum += tile.attention![(h * n + q) * n + t];
      }
      return sum;
    };
    const patches = [...Array(n).keys()].filter((t) => t !== tile.clsIndex);
    const kept = patches.sort((a, b) => score(a) - score(b) || a - b).slice(0, s.keep).sort((a, b) => a - b);
    const hidden = new Float32Array(kept.length * tile.dim);
    kept.forEach((t, i) => hidden.set(tile.hidden.subarray(t * tile.dim, (t + 1) * tile.dim), i * tile.dim));
    return { hidden, numTokens: kept.length, dim: tile.dim, provenance: kept.map((t) => ({ kind: "patch", sources: Int32Array.of(t) })) };
  }
};

const image = sampleImagePath();
const runtimes: VisionRuntime[] = [];
afterAll(async () => {
  unregisterReducer("least-attended");
  for (const rt of runtimes) await rt.dispose();
});

describe.each([
  ["llama", "tiny"],
  ["transformers", "tiny"]
])("%s runtime (%s profile)", (runtime, profile) => {
  let rt: VisionRuntime;
  const open = async () => {
    if (!rt) {
      rt = await openRuntime({ runtime, profile, threads: 1 });
      runtimes.push(rt);
    }
    if (!parseReducerSpecSafe("least-attended:7")) registerReducer(leastAttended);
    return rt;
  };

  it("runs a reducer defined in the test, with the capture it asks for", async () => {
    const rt = await open();
    calls.length = 0;
    const chat = await rt.createChat({ reducer: "least-attended:7" });
    await chat.prompt("What is this?", { images: [image], maxTokens: 2 });
    expect(chat.lastTurn).toMatchObject({ reducer: "least-attended:7", visualTokens: 7 });
    expect(chat.lastTurn!.images[0].provenance).toHaveLength(7);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatch(/:(attention|scores)$/);
    expect(await rt.countTokens(image, "least-attended:7")).toBe(7);
    await chat.dispose();
  });

  it("counts an image's embeddings before prefill exactly as many as are prefilled", async () => {
    const rt = await open();
    for (const reducer of ["none", "visionzip:54+10", "pool:2", "visionzip:auto:0.6+4"]) {
      const counted = await rt.countTokens(image, reducer);
      const encoded = await rt.encodeImage(image, reducer);
      const chat = await rt.createChat({ reducer });
      await chat.prompt("What is this?", { images: [image], maxTokens: 1 });
      expect({ reducer, counted, encoded: encoded.numTokens }).toEqual({ reducer, counted: chat.lastTurn!.visualTokens, encoded: counted });
      expect(encoded.embeddings.length).toBe(counted * encoded.nEmbd);
      await chat.dispose();
    }
  });

  it("describes its encoder tile, which the reducer counts agree with", async () => {
    const rt = await open();
    // tiny: CLIP with CLS; GGUF 336/14 (24x24, llama.cpp appends CLS last), ONNX 224/14 (16x16, CLS first).
    const side = runtime === "llama" ? 24 : 16;
    expect(rt.tile).toEqual({ numTokens: side * side + 1, grid: { rows: side, cols: side }, clsIndex: runtime === "llama" ? side * side : 0 });
    expect(countReduced([rt.tile], parseReducerSpec("pool:2"))).toBe(await rt.countTokens(image, "pool:2"));
  });

  it("two chats sharing the runtime, with different reducers, each get their own, also per prompt", async () => {
    const rt = await open();
    const zipped = await rt.createChat({ reducer: "visionzip:54+10" });
    const pooled = await rt.createChat({ reducer: "pool:2" });
    await Promise.all([
      zipped.prompt("One?", { images: [image], maxTokens: 1 }),
      pooled.prompt("Two?", { images: [image], maxTokens: 1 }),
      zipped.prompt("Three?", { images: [image], maxTokens: 1, reducer: "visionzip:27+5" })
    ]);
    expect(zipped.turns.map((t) => [t.reducer, t.visualTokens])).toEqual([["visionzip:54+10", 64], ["visionzip:27+5", 32]]);
    expect(pooled.turns.map((t) => [t.reducer, t.visualTokens])).toEqual([[formatReducerSpec({ kind: "pool", stride: 2 }), pooled.turns[0].visualTokens]]);
    expect(pooled.turns[0].visualTokens).toBe(await rt.countTokens(image, "pool:2"));
    expect(zipped.reducer).toEqual({ kind: "visionzip", dominant: 54, contextual: 10 });
    await zipped.dispose();
    await pooled.dispose();
  });
});

describe.each(["llama", "transformers"])("%s runtime disposal", (runtime) => {
  it("dispose() twice is one disposal; a chat after it is DISPOSED", async () => {
    const rt = await openRuntime({ runtime, profile: "tiny", threads: 1 });
    const chat = await rt.createChat({ reducer: "visionzip:54+10" });
    await Promise.all([rt.dispose(), rt.dispose()]);
    await rt.dispose();
    await expect(rt.createChat()).rejects.toMatchObject({ code: "DISPOSED" });
    await expect(chat.prompt("Still there?", { images: [image], maxTokens: 1 })).rejects.toMatchObject({ code: "DISPOSED" });
  });
});

function parseReducerSpecSafe(text: string) {
  try {
    return parseReducerSpec(text);
  } catch {
    return undefined;
  }
}
