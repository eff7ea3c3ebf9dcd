import { describe, expect, it } from "vitest";
import {
  formatReducerSpec,
  parseReducerSpec,
  poolTokens,
  reduce,
  regionPack,
  visionZip,
  visionZipAdaptive,
  type ReducerSpec
} from "../src/index.js";
import { expectError, loadGolden, toFeatures } from "./helpers.js";

const f = () => toFeatures(loadGolden().visionzip[1].features); // CLS + 6x6 grid

describe("reduce", () => {
  it("none passes every patch through in grid order and drops CLS, as LLaVA does", () => {
    const features = f();
    const out = reduce(features, { kind: "none" });
    expect(out.numTokens).toBe(36);
    expect(out.provenance.every((p, i) => p.kind === "patch" && p.sources[0] === i + 1)).toBe(true);
    expect(Array.from(out.hidden)).toEqual(Array.from(features.hidden.subarray(features.dim)));
  });

  it("runs the reducer each spec names", () => {
    const features = f();
    expect(reduce(features, { kind: "visionzip", dominant: 10, contextual: 5 })).toEqual(visionZip(features, { dominant: 10, contextual: 5 }));
    const adaptive = { coverage: 0.5, min: 4, max: 20, contextual: 3 };
    expect(reduce(features, { kind: "visionzip-adaptive", ...adaptive })).toEqual(visionZipAdaptive(features, adaptive));
    expect(reduce(features, { kind: "pool", stride: 2 })).toEqual(poolTokens(features, { stride: 2 }));
    expect(reduce(features, { kind: "regionpack", scale: 3 })).toEqual(regionPack(features, { scale: 3 }));
  });

  it("rejects an unknown spec", () => {
    expectError(() => reduce(f(), { kind: "zip" } as unknown as ReducerSpec), "INVALID_SPEC");
    expectError(() => reduce(f(), undefined as unknown as ReducerSpec), "INVALID_SPEC");
  });
});

describe("parseReducerSpec / formatReducerSpec", () => {
  it.each([
    ["none", { kind: "none" }],
    ["visionzip:dominant=54,contextual=10", { kind: "visionzip", dominant: 54, contextual: 10 }],
    [
      "visionzip-adaptive:coverage=0.9,min=32,max=160,contextual=10",
      { kind: "visionzip-adaptive", coverage: 0.9, min: 32, max: 160, contextual: 10 }
    ],
    ["pool:stride=2", { kind: "pool", stride: 2 }],
    ["regionpack:scale=2", { kind: "regionpack", scale: 2 }]
  ])("%s", (text, spec) => {
    expect(parseReducerSpec(text)).toEqual(spec);
    expect(formatReducerSpec(spec as ReducerSpec)).toBe(text);
  });

  it("accepts parameters in any order with spaces", () => {
    expect(parseReducerSpec(" visionzip: contextual = 20, dominant=108 ")).toEqual({ kind: "visionzip", dominant: 108, contextual: 20 });
  });

  it.each([
    ["zip:dominant=1", /unknown kind "zip"/],
    ["pool:size=2", /no parameter "size"/],
    ["visionzip:dominant=54", /missing contextual/],
    ["pool:stride=two", /"stride" needs a number/],
    ["pool:stride=", /"stride" needs a number/],
    ["pool:stride=2,stride=3", /given twice/],
    ["none:stride=2", /no parameter "stride"/]
  ])("rejects %s, saying how to write one", (text, why) => {
    const message = expectError(() => parseReducerSpec(text), "INVALID_SPEC");
    expect(message).toMatch(why);
    expect(message).toContain("visionzip:dominant=54,contextual=10");
  });
});
