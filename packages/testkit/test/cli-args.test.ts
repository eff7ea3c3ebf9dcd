// `pnpm --filter @leanvision/testkit make`'s command line (node:util parseArgs).
import path from "node:path";
import { describe, expect, it } from "vitest";
import { LeanVisionError } from "@leanvision/core";
import { parseMakeArgs } from "../src/cli-args.js";

const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return e instanceof LeanVisionError ? e.code : String(e);
  }
  return "no error";
};

describe("parseMakeArgs", () => {
  it("reads profiles, flags and numbers in any order", () => {
    expect(parseMakeArgs(["tiny", "--check", "small", "--threads", "2", "--runs=5", "--onnx"])).toEqual({
      profiles: ["tiny", "small"],
      out: undefined,
      onnx: true,
      check: true,
      bench: false,
      threads: 2,
      runs: 5
    });
  });

  it("resolves --out against the caller's folder and ignores pnpm's leading --", () => {
    expect(parseMakeArgs(["--", "tiny", "--out", "cache"]).out).toBe(path.resolve(process.env.INIT_CWD ?? process.cwd(), "cache"));
  });

  it("treats --help / -h as no profiles (the usage is printed)", () => {
    expect(parseMakeArgs(["tiny", "-h"]).profiles).toEqual([]);
    expect(parseMakeArgs([]).profiles).toEqual([]);
  });

  it("rejects unknown options, missing values and bad counts with INVALID_INPUT and the usage", () => {
    expect(codeOf(() => parseMakeArgs(["--nope"]))).toBe("INVALID_INPUT");
    expect(codeOf(() => parseMakeArgs(["tiny", "--out"]))).toBe("INVALID_INPUT");
    expect(codeOf(() => parseMakeArgs(["--threads", "0"]))).toBe("INVALID_INPUT");
    expect(codeOf(() => parseMakeArgs(["--runs", "1.5"]))).toBe("INVALID_INPUT");
    expect(() => parseMakeArgs(["--nope"])).toThrow(/Usage: pnpm --filter @leanvision\/testkit make/);
  });
});
