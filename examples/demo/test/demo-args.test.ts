// The demo's command line and its comparison table: no model needed.
import { describe, it, expect } from "vitest";
import { LeanVisionError } from "@leanvision/core";
import { parseDemoArgs, formatComparison } from "../demo.js";

describe("pnpm demo options and table", () => {
  it("defaults to the small profile and VisionZip 54+10; rejects bad options with INVALID_INPUT", () => {
    expect(parseDemoArgs([])).toMatchObject({ runtime: "llama", profile: "small", reducer: { kind: "visionzip", dominant: 54, contextual: 10 }, turns: 3 });
    expect(parseDemoArgs(["--runtime", "transformers"])).toMatchObject({ profile: "tiny" });
    expect(() => parseDemoArgs(["--model", "x.gguf"])).toThrow(LeanVisionError);
    expect(() => parseDemoArgs(["--turns", "-1"])).toThrow(/--turns/);
  });

  it("formats speed-ups from the measured numbers", () => {
    const t = (visualTokens: number, prefillMs: number, ttftMs: number) => ({
      visualTokens, evaluatedTokens: visualTokens + 20, reusedTokens: 0, prefillMs, ttftMs, encodeMs: 0, reduceMs: 0, projectMs: 0
    });
    const table = formatComparison([{ turn: 1, question: "q", without: t(576, 400, 500), with: t(64, 80, 200) }], "visionzip:54+10");
    expect(table.split("\n")[2]).toMatch(/with visionzip:54\+10\s+64\s+84\s+0\s+0\.0\s+80\.0\s+200\.0\s+5\.00x\s+2\.50x$/);
  });
});
