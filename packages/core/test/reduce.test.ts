import { describe, expect, it } from "vitest";
import {
  ADAPTIVE_DEFAULT_MAX,
  ADAPTIVE_DEFAULT_MIN,
  formatReducerSpec,
  parseReducerSpec,
  poolTokens,
  reduce,
  regionPack,
  SPEC_HELP,
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
    ["visionzip:54+10", { kind: "visionzip", dominant: 54, contextual: 10 }],
    ["visionzip:108+20", { kind: "visionzip", dominant: 108, contextual: 20 }],
    ["visionzip:auto:0.9+10:32-160", { kind: "visionzip-adaptive", coverage: 0.9, min: 32, max: 160, contextual: 10 }],
    ["pool:2", { kind: "pool", stride: 2 }],
    ["regionpack:3", { kind: "regionpack", scale: 3 }]
  ])("short form %s reads and writes back", (text, spec) => {
    expect(parseReducerSpec(text)).toEqual(spec);
    expect(formatReducerSpec(spec as ReducerSpec)).toBe(text);
  });

  it("reads the issue's command line", () => {
    const list = "none,visionzip:54+10,visionzip:108+20,pool:2,regionpack:2".split(",");
    const specs = list.map(parseReducerSpec);
    expect(specs.map((s) => s.kind)).toEqual(["none", "visionzip", "visionzip", "pool", "regionpack"]);
    expect(specs.map(formatReducerSpec)).toEqual(list);
  });

  it("visionzip:auto:COVERAGE+C takes the documented default bounds", () => {
    expect([ADAPTIVE_DEFAULT_MIN, ADAPTIVE_DEFAULT_MAX]).toEqual([16, 192]);
    expect(parseReducerSpec("visionzip:auto:0.95+10")).toEqual({ kind: "visionzip-adaptive", coverage: 0.95, min: 16, max: 192, contextual: 10 });
    expect(formatReducerSpec(parseReducerSpec("visionzip:auto:0.95+10"))).toBe("visionzip:auto:0.95+10:16-192");
    expect(SPEC_HELP).toContain("16-192");
  });

  it.each([
    ["visionzip:dominant=54,contextual=10", { kind: "visionzip", dominant: 54, contextual: 10 }, "visionzip:54+10"],
    [
      "visionzip-adaptive:coverage=0.9,min=32,max=160,contextual=10",
      { kind: "visionzip-adaptive", coverage: 0.9, min: 32, max: 160, contextual: 10 },
      "visionzip:auto:0.9+10:32-160"
    ],
    ["pool:stride=2", { kind: "pool", stride: 2 }, "pool:2"],
    ["regionpack:scale=2", { kind: "regionpack", scale: 2 }, "regionpack:2"]
  ])("long form %s still reads; it writes back short", (text, spec, short) => {
    expect(parseReducerSpec(text)).toEqual(spec);
    expect(formatReducerSpec(spec as ReducerSpec)).toBe(short);
  });

  it("accepts parameters in any order with spaces", () => {
    expect(parseReducerSpec(" visionzip: contextual = 20, dominant=108 ")).toEqual({ kind: "visionzip", dominant: 108, contextual: 20 });
    expect(parseReducerSpec(" visionzip: 108 + 20 ")).toEqual({ kind: "visionzip", dominant: 108, contextual: 20 });
  });

  it("round-trips any number, so the reducer (not the parser) judges the budget", () => {
    for (const spec of [
      { kind: "visionzip", dominant: 2.5, contextual: 0 },
      { kind: "pool", stride: -1 },
      { kind: "regionpack", scale: 1e21 },
      { kind: "visionzip-adaptive", coverage: 1.5e-7, min: -3, max: -1, contextual: 4 }
    ] as ReducerSpec[]) {
      expect(parseReducerSpec(formatReducerSpec(spec))).toEqual(spec);
    }
    expectError(() => reduce(f(), parseReducerSpec("pool:-1")), "INVALID_OPTIONS");
    expectError(() => parseReducerSpec(formatReducerSpec({ kind: "pool", stride: NaN })), "INVALID_SPEC");
  });

  it.each([
    ["zip:dominant=1", /unknown kind "zip"/],
    ["pool:size=2", /no parameter "size"/],
    ["visionzip:dominant=54", /missing contextual/],
    ["pool:stride=two", /"stride" needs a number/],
    ["pool:stride=", /"stride" needs a number/],
    ["pool:stride=2,stride=3", /given twice/],
    ["none:stride=2", /no parameter "stride"/],
    ["none:2", /"none" takes no short form/],
    ["visionzip:54", /expected visionzip:D\+C/],
    ["visionzip:54+", /expected visionzip:D\+C/],
    ["visionzip:54+ten", /expected visionzip:D\+C/],
    ["visionzip:auto:0.9", /expected visionzip:auto:COVERAGE\+C\[:MIN-MAX\]/],
    ["visionzip:auto:0.9+10:32", /expected visionzip:auto:COVERAGE\+C\[:MIN-MAX\]/],
    ["visionzip-adaptive:0.9+10", /"visionzip-adaptive" takes no short form/],
    ["pool:2x2", /expected pool:S/],
    ["regionpack:two", /expected regionpack:S/]
  ])("rejects %s, saying how to write one", (text, why) => {
    const message = expectError(() => parseReducerSpec(text), "INVALID_SPEC");
    expect(message).toMatch(why);
    expect(message).toContain("visionzip:54+10");
    expect(message).toContain("visionzip:auto:0.9+10");
  });
});
