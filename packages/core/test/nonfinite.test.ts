import { describe, expect, it } from "vitest";
import { poolTokens, reduce, regionPack, visionZip, visionZipAdaptive, type VisionFeatures } from "../src/index.js";
import { expectError, gridFeatures, loadGolden, toFeatures } from "./helpers.js";

/** CLS at token 0 plus a 6x6 grid, with attention and keys (the golden VisionZip case). */
const golden = (): VisionFeatures => toFeatures(loadGolden().visionzip[1].features);
const sourcesOf = (out: { provenance: { sources: Int32Array }[] }) => out.provenance.map((p) => Array.from(p.sources));

describe("NaN and Infinity in the inputs throw NON_FINITE, naming the input and the token", () => {
  it("NaN in the hidden state of a kept (dominant) token", () => {
    const f = golden();
    const kept = visionZip(f, { dominant: 10, contextual: 5 }).provenance[3].sources[0];
    f.hidden[kept * f.dim + 2] = NaN;
    const message = expectError(() => visionZip(f, { dominant: 10, contextual: 5 }), "NON_FINITE");
    expect(message).toContain(`hidden holds NaN at token ${kept}, dim 2`);
    expect(message).toMatch(/fp32/); // says what to do
  });

  it("Infinity in the hidden state of a token merged into a contextual token", () => {
    const f = golden();
    const out = visionZip(f, { dominant: 10, contextual: 5 });
    const contextual = out.provenance.find((p) => p.kind === "contextual" && p.sources.length > 2)!;
    const member = contextual.sources[contextual.sources.length - 1];
    f.hidden[member * f.dim] = -Infinity;
    expect(expectError(() => visionZip(f, { dominant: 10, contextual: 5 }), "NON_FINITE")).toContain(`hidden holds -Infinity at token ${member}, dim 0`);
  });

  it("ignores a bad hidden state that no output token reads", () => {
    const f = golden();
    const out = visionZip(f, { dominant: 10, contextual: 0 });
    const covered = new Set(sourcesOf(out).flat());
    const dropped = Array.from({ length: f.numTokens }, (_, t) => t).find((t) => !covered.has(t))!;
    f.hidden[dropped * f.dim] = NaN;
    expect(visionZip(f, { dominant: 10, contextual: 0 }).hidden).toEqual(out.hidden);
  });

  it("Infinity in the CLS row of the attention", () => {
    const f = golden();
    const n = f.numTokens;
    f.attention![(1 * n + 0) * n + 7] = Infinity; // head 1, query CLS (token 0), key token 7
    const message = expectError(() => visionZip(f, { dominant: 10, contextual: 5 }), "NON_FINITE");
    expect(message).toContain("attention holds Infinity at head 1, query token 0, key token 7");
    expectError(() => visionZipAdaptive(f, { coverage: 0.5, min: 2, max: 20, contextual: 0 }), "NON_FINITE");
  });

  it("NaN anywhere in the attention when scoring without CLS (every query counts)", () => {
    const f = gridFeatures(3, 3, 2);
    f.heads = 2;
    f.attention = new Float32Array(2 * 81).fill(1 / 9);
    f.attention[(1 * 9 + 5) * 9 + 4] = NaN; // head 1, query 5, key 4
    expect(expectError(() => visionZip(f, { dominant: 3, contextual: 0 }), "NON_FINITE")).toContain(
      "attention holds NaN at head 1, query token 5, key token 4"
    );
  });

  it("NaN in the key of a remaining token (a target or a member)", () => {
    for (const which of ["target", "member"] as const) {
      const f = golden();
      const out = visionZip(f, { dominant: 10, contextual: 5 });
      const contextual = out.provenance.filter((p) => p.kind === "contextual");
      // The first contextual token's first source is the first remaining token: a target.
      const t = which === "target" ? contextual[0].sources[0] : contextual.find((p) => p.sources.length > 1)!.sources[1];
      const d = f.keyDim! - 1;
      f.keys![t * f.keyDim! + d] = NaN;
      expect(expectError(() => visionZip(f, { dominant: 10, contextual: 5 }), "NON_FINITE")).toContain(`keys holds NaN at token ${t}, dim ${d}`);
    }
  });

  it("keys are not read (nor checked) without contextual tokens", () => {
    const f = golden();
    f.keys!.fill(NaN);
    expect(visionZip(f, { dominant: 10, contextual: 0 }).numTokens).toBe(10);
  });

  it("NaN or Infinity in a hidden state reaching a pooled, packed or passed-through token", () => {
    const f = golden(); // CLS first: patch p is token p + 1
    f.hidden[20 * f.dim + 1] = Infinity;
    expect(expectError(() => poolTokens(f, { stride: 2 }), "NON_FINITE")).toContain("hidden holds Infinity at token 20, dim 1");
    expect(expectError(() => regionPack(f, { scale: 2 }), "NON_FINITE")).toContain("hidden holds Infinity at token 20, dim 1");
    expect(expectError(() => regionPack(f, { scale: 3 }), "NON_FINITE")).toContain("hidden holds Infinity at token 20, dim 1");
    expect(expectError(() => regionPack(f, { scale: 1 }), "NON_FINITE")).toContain("hidden holds Infinity at token 20, dim 1");
    expect(expectError(() => reduce(f, { kind: "none" }), "NON_FINITE")).toContain("hidden holds Infinity at token 20, dim 1");
  });

  it("a bad CLS hidden state only matters where CLS is kept", () => {
    const f = golden();
    f.hidden[0] = NaN; // CLS
    expect(reduce(f, { kind: "none" }).numTokens).toBe(36);
    expect(poolTokens(f, { stride: 3 }).numTokens).toBe(4);
    expect(expectError(() => visionZip(f, { dominant: 5, contextual: 0 }), "NON_FINITE")).toContain("at token 0, dim 0");
  });
});
