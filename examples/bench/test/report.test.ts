import { describe, it, expect } from "vitest";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { medianTurns } from "../stats.js";
import { formatTable, renderMarkdown, renderSvg, tableRows, writeBenchOutputs, niceTicks } from "../report.js";

const turn = (turn: number, evaluatedTokens: number, prefillMs: number, ttftMs: number, reusedTokens = 0) => ({
  turn, evaluatedTokens, reusedTokens, encodeMs: 50, reduceMs: 2, projectMs: 3, prefillMs, ttftMs
});

const bench = {
  runtime: "llama",
  profile: "tiny",
  model: { modelPath: "/m.gguf", mmprojPath: "/p.gguf" },
  textTokens: 9,
  results: [
    { reducer: "none", visualTokens: 576, turns: [turn(1, 600, 400, 460), turn(2, 12, 10, 15, 610)] },
    { reducer: "visionzip:54+10", visualTokens: 64, turns: [turn(1, 88, 80, 140), turn(2, 12, 8, 12, 98)] }
  ]
};
const anchor = { tool: "llama-mtmd-cli", visualTokens: 576, promptTokens: 610, encodeMs: 55, imageDecodeMs: 380, prefillMs: 420, ttftMs: 475, runs: 3 };

describe("medianTurns", () => {
  it("summarises each turn field over runs independently", () => {
    const runs = [
      [turn(1, 600, 400, 450), turn(2, 12, 9, 14, 610)],
      [turn(1, 600, 300, 500), turn(2, 12, 30, 40, 610)],
      [turn(1, 600, 350, 470), turn(2, 12, 11, 13, 610)]
    ];
    const turns = medianTurns(runs);
    expect(turns).toHaveLength(2);
    expect(turns[0]).toMatchObject({ turn: 1, evaluatedTokens: 600, prefillMs: 350, ttftMs: 470, reusedTokens: 0 });
    expect(turns[1]).toMatchObject({ turn: 2, prefillMs: 11, ttftMs: 14, reusedTokens: 610 });
    expect(() => medianTurns([[turn(1, 1, 1, 1)], []])).toThrow(/different turn counts/);
  });
});

describe("report", () => {
  it("computes each turn's prefill speed-up over none, and the ratio of evaluated tokens it would scale with", () => {
    const rows = tableRows(bench);
    expect(rows.map((r) => r.speedup)).toEqual([1, 1, 5, 1.25]);
    expect(rows.map((r) => r.tokenRatio)).toEqual([1, 1, 600 / 88, 1]);
  });

  it("prints one table row per reducer and turn, plus the stock anchor", () => {
    const table = formatTable(bench, anchor).split("\n");
    expect(table[0]).toMatch(/^reducer\s+visual\s+turn\s+evaluated\s+reused/);
    expect(table).toHaveLength(2 + 4 + 1);
    expect(table[4]).toMatch(/^visionzip:54\+10\s+64\s+1\s+88\s+0\s.*\s80\.0\s+140\s+6\.82x\s+5\.00x$/);
    expect(table[6]).toMatch(/^llama-mtmd-cli \(stock\)\s+576\s+1\s+610\s+0\s/);
  });

  it("says which node-llama-cpp binaries and which vision backend the llama runtime measured", () => {
    const binaries = { buildType: "prebuilt", binsDir: "/nlc/bins/linux-x64", ggmlCpu: ["libggml-cpu-zen4.so"], vision: "leanvision-cpu (zen4)" };
    const md = renderMarkdown({ ...bench, model: { ...bench.model, binaries } });
    expect(md).toContain("- Binaries: node-llama-cpp prebuilt (`/nlc/bins/linux-x64`, CPU variant libggml-cpu-zen4.so); vision graph on leanvision-cpu (zen4)");
    expect(renderMarkdown(bench)).not.toContain("Binaries:");
  });

  it("writes a markdown table with the anchor row and a link to the chart", () => {
    const md = renderMarkdown(bench, { anchor, chartFile: "bench.svg", image: "/img.jpg", runs: 3 });
    const tableLines = md.split("\n").filter((l) => l.startsWith("|"));
    expect(tableLines).toHaveLength(2 + 4 + 1);
    expect(tableLines[4]).toBe("| visionzip:54+10 | 64 | 1 | 88 | 0 | 50.0 | 2.0 | 3.0 | 80.0 | 140 | 6.82x | 5.00x |");
    expect(tableLines[6]).toContain("llama-mtmd-cli (stock) | 576 | 1 | 610");
    expect(md).toContain("synthetic `tiny` profile");
    expect(md).toContain("median of 3 runs");
    expect(md).toContain("![Prefill and TTFT per reducer, turn 1](bench.svg)");
  });

  it("draws two bars per group and the ideal token-ratio line through none's prefill", () => {
    const svg = renderSvg(bench, { anchor });
    expect(svg.startsWith("<svg")).toBe(true);
    // 3 groups (none, visionzip, anchor) x (prefill, TTFT)
    expect(svg.match(/<rect [^>]*><title>/g)).toHaveLength(6);
    expect(svg).toContain("<title>visionzip:54+10 prefill 80.0 ms</title>");
    expect(svg).toContain("<title>llama-mtmd-cli TTFT 475 ms</title>");
    const points = svg.match(/class="ideal" points="([^"]+)"/)![1].split(" ").map((p) => p.split(",").map(Number));
    expect(points).toHaveLength(2);
    // ideal for visionzip = 400 * 88/600 ≈ 58.7 ms: its point sits lower (larger y) than none's 400 ms.
    const [[, yNone], [, yZip]] = points;
    const yAxisZero = Number(svg.match(/<line x1="70" x2="\d+(?:\.\d+)?" y1="(\d+(?:\.\d+)?)" y2="\1" stroke="#333"/)![1]);
    expect((yAxisZero - yZip) / (yAxisZero - yNone)).toBeCloseTo(88 / 600, 2);
  });

  it("leaves the ideal line out when there is no 'none' baseline", () => {
    const svg = renderSvg({ ...bench, results: bench.results.slice(1) });
    expect(svg).not.toContain('class="ideal"');
  });

  it("escapes labels for XML", () => {
    const svg = renderSvg({ ...bench, profile: "<x&y>" });
    expect(svg).toContain("&lt;x&amp;y&gt;");
  });

  it("writes the JSON in the benchmark shape plus the stock anchor, with .md and .svg beside it", () => {
    const dir = mkdtempSync(join(tmpdir(), "lv-bench-"));
    const paths = writeBenchOutputs(join(dir, "sub", "run.json"), bench, { anchor, runs: 3 });
    expect(paths).toEqual({ json: join(dir, "sub", "run.json"), markdown: join(dir, "sub", "run.md"), svg: join(dir, "sub", "run.svg") });
    const json = JSON.parse(readFileSync(paths.json, "utf8"));
    expect(Object.keys(json)).toEqual(["runtime", "profile", "model", "textTokens", "results", "anchor"]);
    expect(json.anchor).toMatchObject({ visualTokens: 576, promptTokens: 610, encodeMs: 55, prefillMs: 420, ttftMs: 475 });
    const without = JSON.parse(readFileSync(writeBenchOutputs(join(dir, "plain.json"), bench).json, "utf8"));
    expect(Object.keys(without)).toEqual(["runtime", "profile", "model", "textTokens", "results"]);
    expect(Object.keys(json.results[0])).toEqual(["reducer", "visualTokens", "turns"]);
    expect(Object.keys(json.results[0].turns[0])).toEqual([
      "turn", "evaluatedTokens", "reusedTokens", "encodeMs", "reduceMs", "projectMs", "prefillMs", "ttftMs"
    ]);
    expect(readFileSync(paths.markdown, "utf8")).toContain("](run.svg)");
    expect(readFileSync(paths.svg, "utf8")).toContain("</svg>");
  });

  it("picks round axis ticks that cover the maximum", () => {
    expect(niceTicks(460)).toEqual([0, 100, 200, 300, 400, 500]);
    expect(niceTicks(7.3)).toEqual([0, 2, 4, 6, 8]);
  });
});
