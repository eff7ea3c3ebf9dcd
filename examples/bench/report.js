// Turns a benchmark result into the console table, the markdown report and the SVG chart.
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, basename } from "node:path";

const COLUMNS = [
  ["reducer", "reducer"],
  ["visual", "visualTokens"],
  ["turn", "turn"],
  ["evaluated", "evaluatedTokens"],
  ["reused", "reusedTokens"],
  ["encode ms", "encodeMs"],
  ["reduce ms", "reduceMs"],
  ["project ms", "projectMs"],
  ["prefill ms", "prefillMs"],
  ["TTFT ms", "ttftMs"],
  ["tokens vs none", "tokenRatio"],
  ["prefill vs none", "speedup"]
];

/**
 * One row per reducer and turn, with the turn's prefill speed-up over "none" on the same turn and
 * the ratio of evaluated tokens (none / this): the speed-up prefill would have if it scaled with tokens.
 */
export function tableRows(bench) {
  const none = bench.results.find((r) => r.reducer === "none");
  const rows = [];
  for (const result of bench.results) {
    for (const turn of result.turns) {
      const base = none?.turns.find((t) => t.turn === turn.turn);
      rows.push({
        reducer: result.reducer,
        visualTokens: result.visualTokens,
        ...turn,
        tokenRatio: base && turn.evaluatedTokens > 0 ? base.evaluatedTokens / turn.evaluatedTokens : null,
        speedup: base && turn.prefillMs > 0 ? base.prefillMs / turn.prefillMs : null
      });
    }
  }
  return rows;
}

/** Fixed-width table for the terminal. */
export function formatTable(bench, anchor = null) {
  const rows = tableRows(bench).map((row) => COLUMNS.map(([, key]) => cell(row[key], key)));
  if (anchor) rows.push(anchorCells(anchor));
  const header = COLUMNS.map(([title]) => title);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

/** Markdown report: settings, the table, the stock llama.cpp anchor and the chart. */
export function renderMarkdown(bench, { anchor = null, chartFile = null, image = null, runs = null, threads = null } = {}) {
  const header = COLUMNS.map(([title]) => title);
  const rows = tableRows(bench).map((row) => COLUMNS.map(([, key]) => cell(row[key], key)));
  if (anchor) rows.push(anchorCells(anchor));
  const modelLine = bench.profile
    ? `synthetic \`${bench.profile}\` profile (random weights: timings are real, answers are noise)`
    : `\`${bench.model.modelPath}\``;
  const lines = [
    `# LeanVision prefill benchmark (${bench.runtime})`,
    "",
    `- Model: ${modelLine}`,
    ...(image ? [`- Image: \`${image}\``] : []),
    `- Text tokens in the first question: ${bench.textTokens} (no system prompt, as llama-mtmd-cli gets)`,
    ...(runs ? [`- Each number is the median of ${runs} runs, each in a fresh context; the image is sent in turn 1.`] : []),
    ...(threads ? [`- CPU threads: ${threads}${anchor ? " (LeanVision and llama-mtmd-cli alike)" : ""}`] : []),
    ...(bench.model?.binaries ? [`- Binaries: ${describeBinaries(bench.model.binaries)}`] : []),
    ...(bench.pipeline ? ["- Pipelined prefill: tiles encode while earlier tiles' embeddings prefill, the threads split between the two."] : []),
    "- *tokens vs none*: how many times fewer tokens the turn evaluates than without LeanVision; *prefill vs none*: how many times faster its prefill is.",
    "",
    `| ${header.join(" | ")} |`,
    `| ${header.map((_, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`,
    ...rows.map((r) => `| ${r.join(" | ")} |`)
  ];
  if (anchor) {
    lines.push(
      "",
      `The last row is stock llama.cpp: \`llama-mtmd-cli\` built from the same source node-llama-cpp ships ` +
        `(${anchor.commit ? `llama.cpp ${anchor.commit.slice(0, 12)}` : "bundled commit"}), on the same model and image with all ${anchor.visualTokens} visual tokens ` +
        `and one generated token. Its encode includes the projector; its prefill is llama.cpp's "prompt eval time" ` +
        `(text and image); its TTFT is encode + prefill.`
    );
  }
  if (chartFile) lines.push("", `![Prefill and TTFT per reducer, turn 1](${chartFile})`);
  return lines.join("\n") + "\n";
}

/** The llama runtime's binaries (description.binaries): which node-llama-cpp build, CPU variant, vision backend. */
export function describeBinaries({ buildType, binsDir, ggmlCpu = [], vision }) {
  const variant = ggmlCpu.length ? `, CPU variant ${ggmlCpu.join(", ")}` : "";
  // The vision graph on node-llama-cpp's prebuilt CPU library is 1.6-1.9x slower than on the opt-in one built here.
  const hint = buildType === "prebuilt" && /^node-llama-cpp/.test(vision ?? "") ? " (faster: build-native -- --vision-cpu)" : "";
  return `node-llama-cpp ${buildType} (\`${binsDir}\`${variant}); vision graph on ${vision}${hint}`;
}

/**
 * SVG bar chart of turn 1: prefill and TTFT per reducer (and the stock llama.cpp anchor), with
 * the ideal line: "none"'s prefill scaled by each reducer's share of evaluated tokens.
 */
export function renderSvg(bench, { anchor = null } = {}) {
  const none = bench.results.find((r) => r.reducer === "none")?.turns[0];
  const groups = bench.results.map((r) => ({
    label: r.reducer,
    sub: `${r.visualTokens} visual tokens`,
    prefill: r.turns[0].prefillMs,
    ttft: r.turns[0].ttftMs,
    ideal: none && none.evaluatedTokens > 0 ? (none.prefillMs * r.turns[0].evaluatedTokens) / none.evaluatedTokens : null
  }));
  if (anchor) {
    groups.push({ label: "llama-mtmd-cli", sub: `stock, ${anchor.visualTokens} tokens`, prefill: anchor.prefillMs, ttft: anchor.ttftMs, ideal: null });
  }

  const width = Math.max(640, 120 + groups.length * 120);
  const height = 420;
  const plot = { left: 70, right: width - 20, top: 50, bottom: height - 80 };
  const maxValue = Math.max(1, ...groups.flatMap((g) => [g.prefill, g.ttft, g.ideal ?? 0]));
  const ticks = niceTicks(maxValue);
  const top = ticks[ticks.length - 1];
  const y = (v) => plot.bottom - (v / top) * (plot.bottom - plot.top);
  const groupWidth = (plot.right - plot.left) / groups.length;
  const barWidth = Math.min(36, groupWidth / 3);

  const out = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="100%" height="100%" fill="white"/>`);
  out.push(`<text x="${plot.left}" y="22" font-size="14" font-weight="bold">${xml(`Turn 1 prefill and time to first token (${bench.runtime}, ${bench.profile ?? "custom model"})`)}</text>`);
  for (const t of ticks) {
    out.push(`<line x1="${plot.left}" x2="${plot.right}" y1="${fix(y(t))}" y2="${fix(y(t))}" stroke="#ddd"/>`);
    out.push(`<text x="${plot.left - 6}" y="${fix(y(t) + 4)}" text-anchor="end">${t}</text>`);
  }
  out.push(`<text transform="translate(16 ${(plot.top + plot.bottom) / 2}) rotate(-90)" text-anchor="middle">milliseconds (median)</text>`);
  groups.forEach((g, i) => {
    const cx = plot.left + groupWidth * (i + 0.5);
    out.push(bar(cx - barWidth, g.prefill, "#3b6fb6", `${g.label} prefill ${fmt(g.prefill)} ms`));
    out.push(bar(cx, g.ttft, "#e08a2c", `${g.label} TTFT ${fmt(g.ttft)} ms`));
    out.push(`<text x="${fix(cx)}" y="${plot.bottom + 16}" text-anchor="middle">${xml(g.label)}</text>`);
    out.push(`<text x="${fix(cx)}" y="${plot.bottom + 30}" text-anchor="middle" fill="#666">${xml(g.sub)}</text>`);
  });
  const idealPoints = groups
    .map((g, i) => (g.ideal == null ? null : [plot.left + groupWidth * (i + 0.5) - barWidth / 2, y(g.ideal)]))
    .filter(Boolean);
  if (idealPoints.length > 1) {
    out.push(`<polyline class="ideal" points="${idealPoints.map(([px, py]) => `${fix(px)},${fix(py)}`).join(" ")}" fill="none" stroke="#222" stroke-dasharray="5 4" stroke-width="1.5"/>`);
    for (const [px, py] of idealPoints) out.push(`<circle cx="${fix(px)}" cy="${fix(py)}" r="3" fill="#222"/>`);
  }
  out.push(`<line x1="${plot.left}" x2="${plot.right}" y1="${plot.bottom}" y2="${plot.bottom}" stroke="#333"/>`);
  const legendY = height - 24;
  out.push(`<rect x="${plot.left}" y="${legendY - 9}" width="12" height="10" fill="#3b6fb6"/><text x="${plot.left + 16}" y="${legendY}">prefill</text>`);
  out.push(`<rect x="${plot.left + 80}" y="${legendY - 9}" width="12" height="10" fill="#e08a2c"/><text x="${plot.left + 96}" y="${legendY}">time to first token</text>`);
  if (idealPoints.length > 1) {
    out.push(`<line x1="${plot.left + 230}" x2="${plot.left + 254}" y1="${legendY - 4}" y2="${legendY - 4}" stroke="#222" stroke-dasharray="5 4" stroke-width="1.5"/><text x="${plot.left + 260}" y="${legendY}">ideal: "none" prefill × token ratio</text>`);
  }
  out.push(`</svg>`);
  return out.join("\n") + "\n";

  function bar(x, value, colour, title) {
    const top = y(value);
    return `<rect x="${fix(x)}" y="${fix(top)}" width="${fix(barWidth)}" height="${fix(plot.bottom - top)}" fill="${colour}"><title>${xml(title)}</title></rect>`;
  }
}

/**
 * Writes the JSON and, next to it, <name>.md and <name>.svg. Returns the three paths.
 * The JSON has the benchmark shape plus, when it ran, the stock llama-mtmd-cli row as `anchor`
 * (visualTokens, promptTokens, encodeMs, prefillMs, ttftMs, ...); the settings go in the report.
 */
export function writeBenchOutputs(jsonPath, bench, { anchor = null, image = null, runs = null, threads = null } = {}) {
  mkdirSync(dirname(jsonPath) || ".", { recursive: true });
  const stem = jsonPath.replace(/\.json$/i, "");
  const markdownPath = `${stem}.md`;
  const svgPath = `${stem}.svg`;
  writeFileSync(jsonPath, JSON.stringify(anchor ? { ...bench, anchor } : bench, null, 2) + "\n");
  writeFileSync(svgPath, renderSvg(bench, { anchor }));
  writeFileSync(markdownPath, renderMarkdown(bench, { anchor, chartFile: basename(svgPath), image, runs, threads }));
  return { json: jsonPath, markdown: markdownPath, svg: svgPath };
}

/** Round tick values (1, 2 or 5 × 10^k) from 0 up to at least max. */
export function niceTicks(max, count = 5) {
  const rough = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= rough);
  const ticks = [];
  for (let v = 0; v < max + step; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function anchorCells(anchor) {
  return [
    "llama-mtmd-cli (stock)",
    String(anchor.visualTokens),
    "1",
    String(anchor.promptTokens),
    "0",
    fmt(anchor.encodeMs),
    "-",
    "(in encode)",
    fmt(anchor.prefillMs),
    fmt(anchor.ttftMs),
    "",
    ""
  ];
}

function cell(value, key) {
  if (value == null) return "";
  if (key === "speedup" || key === "tokenRatio") return `${value.toFixed(2)}x`;
  if (typeof value === "number") return key.endsWith("Ms") ? fmt(value) : String(value);
  return String(value);
}

function fmt(ms) {
  return ms >= 100 ? ms.toFixed(0) : ms.toFixed(1);
}

function fix(v) {
  return Number(v.toFixed(1));
}

function xml(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}
