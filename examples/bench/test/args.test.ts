import { describe, it, expect } from "vitest";
import { LeanVisionError, formatReducerSpec } from "@leanvision/core";
import { parseBenchArgs, splitReducerList } from "../args.js";

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(LeanVisionError);
    return (error as LeanVisionError).code;
  }
  return undefined;
}

describe("parseBenchArgs", () => {
  it("defaults to the llama runtime, the tiny profile, the five reducers, 2 turns, 3 runs and the anchor", () => {
    const o = parseBenchArgs([]);
    expect(o).toMatchObject({ runtime: "llama", profile: "tiny", modelPath: null, turns: 2, runs: 3, maxTokens: 4, anchor: true, image: null });
    expect(o.reducers).toEqual([
      { kind: "none" },
      { kind: "visionzip", dominant: 54, contextual: 10 },
      { kind: "visionzip", dominant: 108, contextual: 20 },
      { kind: "pool", stride: 2 },
      { kind: "regionpack", scale: 2 }
    ]);
    expect(o.json).toBe("bench-results/bench-llama-tiny.json");
  });

  it("accepts pnpm's leading -- and real model files", () => {
    const reducers = `none,${formatReducerSpec({ kind: "pool", stride: 2 })}`;
    const o = parseBenchArgs(["--", "--model", "a.gguf", "--mmproj", "b.gguf", "--image", "x.png", "--reducers", reducers, "--runs", "1", "--json", "out/r.json"]);
    expect(o).toMatchObject({ profile: null, modelPath: "a.gguf", mmprojPath: "b.gguf", image: "x.png", runs: 1, json: "out/r.json" });
    expect(o.reducers).toEqual([{ kind: "none" }, { kind: "pool", stride: 2 }]);
  });

  it("takes the TokenPacker profiles, a bare tokenpacker reducer and real projector files", () => {
    const o = parseBenchArgs(["--profile", "small-tokenpacker", "--reducers", "none,tokenpacker"]);
    expect(o).toMatchObject({ profile: "small-tokenpacker", projectorPath: null });
    expect(o.reducers).toEqual([{ kind: "none" }, { kind: "tokenpacker", scale: 2 }]);
    expect(parseBenchArgs(["--model", "a.gguf", "--mmproj", "b.gguf", "--projector", "tp.gguf"])).toMatchObject({ projectorPath: "tp.gguf" });
    expect(codeOf(() => parseBenchArgs(["--profile", "tiny", "--projector", "tp.gguf"]))).toBe("INVALID_INPUT");
  });

  it("takes the NeXT profiles and --pipeline (its own default JSON name)", () => {
    expect(parseBenchArgs(["--profile", "small-next"])).toMatchObject({ profile: "small-next", pipeline: false, json: "bench-results/bench-llama-small-next.json" });
    expect(parseBenchArgs(["--profile", "llava-1.6-7b", "--pipeline"])).toMatchObject({ pipeline: true, json: "bench-results/bench-llama-llava-1.6-7b-pipeline.json" });
  });

  it("runs the transformers runtime without the llama.cpp anchor", () => {
    const o = parseBenchArgs(["--runtime", "transformers", "--profile", "llava-1.5-7b-shaped"]);
    expect(o).toMatchObject({ runtime: "transformers", profile: "llava-1.5-7b-shaped", anchor: false });
    const q4 = parseBenchArgs(["--runtime", "transformers", "--profile", "onevision-0.5b-shaped", "--dtype", "q4"]);
    expect(q4).toMatchObject({ profile: "onevision-0.5b-shaped", dtype: "q4", json: "bench-results/bench-transformers-onevision-0.5b-shaped-q4.json" });
    expect(codeOf(() => parseBenchArgs(["--dtype", "q4"]))).toBe("INVALID_INPUT"); // llama runtime
  });

  it("rejects bad input with INVALID_INPUT and says what to do", () => {
    expect(codeOf(() => parseBenchArgs(["--runtime", "onnx"]))).toBe("INVALID_INPUT");
    expect(codeOf(() => parseBenchArgs(["--reducers", " , "]))).toBe("INVALID_INPUT");
    expect(codeOf(() => parseBenchArgs(["--model", "a.gguf"]))).toBe("INVALID_INPUT");
    expect(codeOf(() => parseBenchArgs(["--profile", "tiny", "--model", "a", "--mmproj", "b"]))).toBe("INVALID_INPUT");
    expect(codeOf(() => parseBenchArgs(["--profile", "huge"]))).toBe("INVALID_INPUT");
    expect(codeOf(() => parseBenchArgs(["--runs", "0"]))).toBe("INVALID_INPUT");
    expect(codeOf(() => parseBenchArgs(["--turns", "two"]))).toBe("INVALID_INPUT");
    expect(codeOf(() => parseBenchArgs(["--reducers", "none, none"]))).toBe("INVALID_INPUT");
    expect(codeOf(() => parseBenchArgs(["--frobnicate"]))).toBe("INVALID_INPUT");
    expect(() => parseBenchArgs(["--model", "a.gguf"])).toThrow(/--mmproj/);
  });

  it("splits a reducer list on the commas between specs, not those inside one", () => {
    expect(splitReducerList("none,visionzip:54+10,pool:2")).toEqual(["none", "visionzip:54+10", "pool:2"]);
    expect(splitReducerList("none, visionzip:dominant=54,contextual=10 ,pool:stride=2")).toEqual([
      "none", "visionzip:dominant=54,contextual=10", "pool:stride=2"
    ]);
  });

  it("passes reducer-spec errors through from core", () => {
    expect(codeOf(() => parseBenchArgs(["--reducers", "visionzip:lots"]))).toMatch(/INVALID/);
  });
});
