// The demo end to end on the tiny model, scripted (no terminal attached).
import { describe, it, expect } from "vitest";
import { PassThrough } from "node:stream";
import { runDemo } from "../demo.js";

function collect() {
  const stream = new PassThrough();
  let text = "";
  stream.on("data", (d) => (text += d));
  return { stream, text: () => text };
}

describe("pnpm demo", () => {
  it("runs scripted turns with and without LeanVision and prints the side-by-side table", async () => {
    const out = collect();
    const err = collect();
    const rows = await runDemo(["--profile", "tiny", "--turns", "2", "--max-tokens", "4", "--threads", "1"], {
      input: new PassThrough(),
      output: out.stream,
      errorOutput: err.stream,
      interactive: false
    });
    const text = out.text();
    expect(text).toContain("synthetic");
    expect(text).toContain("answers are noise");
    expect(text).toContain("--model");
    expect(text).toContain("you> What is in this picture?");

    expect(rows).toHaveLength(2);
    const [one, two] = rows;
    expect(one.without.visualTokens).toBe(576);
    expect(one.with.visualTokens).toBe(64);
    expect(one.with.evaluatedTokens).toBe(one.without.evaluatedTokens - (576 - 64));
    // Turn 2 re-uses everything from turn 1 in both chats.
    expect(two.without.reusedTokens).toBeGreaterThanOrEqual(one.without.evaluatedTokens);
    expect(two.with.reusedTokens).toBeGreaterThanOrEqual(one.with.evaluatedTokens);
    expect(two.with.evaluatedTokens).toBe(two.without.evaluatedTokens);

    // The output ends with the summary table: header + 2 lines per turn.
    const summary = text.trimEnd().split("\n").slice(-5);
    expect(summary[0]).toMatch(/^turn\s+visual tokens\s+evaluated\s+reused\s+vision ms\s+prefill ms\s+TTFT ms\s+prefill speed-up\s+TTFT speed-up$/);
    expect(summary[1]).toMatch(/^\s*1\s+without LeanVision\s+576\s/);
    expect(summary[2]).toMatch(/with visionzip\S*\s+64\s.*\s\d+\.\d\dx\s+\d+\.\d\dx$/);
    expect(summary[3]).toMatch(/^\s*2\s+without LeanVision\s/);
  });
});
