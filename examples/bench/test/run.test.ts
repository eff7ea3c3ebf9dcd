// The benchmark runner on the tiny model: the JSON shape, medians and KV reuse across turns.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { sampleImagePath } from "@leanvision/testkit";
import { openRuntime } from "../../lib/runtime.js";
import { runBenchmark } from "../run.js";

let rt: Awaited<ReturnType<typeof openRuntime>>;

beforeAll(async () => {
  rt = await openRuntime({ runtime: "llama", profile: "tiny", threads: 1, imageCacheBytes: 0 });
});

afterAll(async () => {
  await rt?.dispose();
});

describe("runBenchmark (llama, tiny)", () => {
  it("runs every reducer over fresh conversations and reports per-turn medians", async () => {
    const progress: string[] = [];
    const bench = await runBenchmark(rt, {
      reducers: [{ kind: "none" }, { kind: "visionzip", dominant: 54, contextual: 10 }, { kind: "pool", stride: 2 }],
      image: sampleImagePath(),
      turns: 2,
      runs: 2,
      maxTokens: 2,
      onRun: ({ reducer, run }: { reducer: string; run: number }) => progress.push(`${reducer}#${run}`)
    });
    expect(progress).toEqual(["none#1", "none#2", "visionzip:54+10#1", "visionzip:54+10#2", "pool:2#1", "pool:2#2"]);
    expect(Object.keys(bench)).toEqual(["runtime", "profile", "model", "textTokens", "results"]);
    expect(bench).toMatchObject({ runtime: "llama", profile: "tiny" });
    expect(bench.textTokens).toBeGreaterThan(3);
    expect(bench.results.map((r) => [r.reducer, r.visualTokens])).toEqual([["none", 576], ["visionzip:54+10", 64], ["pool:2", 144]]);
    for (const result of bench.results) {
      const [one, two] = result.turns;
      expect(one).toMatchObject({ turn: 1, reusedTokens: 0 });
      expect(one.evaluatedTokens).toBeGreaterThan(result.visualTokens);
      expect(one.encodeMs).toBeGreaterThan(0);
      expect(one.prefillMs).toBeGreaterThan(0);
      expect(one.ttftMs).toBeGreaterThanOrEqual(one.prefillMs);
      // Turn 2 carries no image: nothing encoded, turn 1 (image included) reused from the KV cache.
      expect(two).toMatchObject({ turn: 2, encodeMs: 0 });
      expect(two.reusedTokens).toBeGreaterThanOrEqual(one.evaluatedTokens);
      expect(two.evaluatedTokens).toBeLessThan(one.evaluatedTokens);
    }
    // Fewer visual tokens, fewer tokens evaluated in turn 1: exactly the difference in image tokens.
    const [none, zip] = bench.results;
    expect(none.turns[0].evaluatedTokens - zip.turns[0].evaluatedTokens).toBe(576 - 64);
  });
});
