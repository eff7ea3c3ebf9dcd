// withLeanVision's visionThreads: the split vision sessions are created with onnxruntime's
// intraOpNumThreads; a bad value is INVALID_INPUT before anything is installed.
import { afterEach, describe, expect, it } from "vitest";
import { withLeanVision, type LeanVisionLlava } from "../src/index.js";
import { caught, loadTiny } from "./helpers.js";

let lean: LeanVisionLlava | undefined;
afterEach(async () => {
  await lean?.dispose();
  lean = undefined;
});

describe("visionThreads", () => {
  it("creates both split sessions with intraOpNumThreads", async () => {
    const tiny = await loadTiny();
    const Session = tiny.model.sessions.vision_encoder.constructor as unknown as { create: (...args: unknown[]) => Promise<unknown> };
    const create = Session.create;
    const seen: unknown[] = [];
    Session.create = (path: unknown, options: unknown) => (seen.push(options), create.call(Session, path, options));
    try {
      lean = await withLeanVision({ ...tiny, modelPath: tiny.dir, visionThreads: 1 });
    } finally {
      Session.create = create;
    }
    expect(seen).toEqual([{ intraOpNumThreads: 1 }, { intraOpNumThreads: 1 }]);
  });

  it.each([0, 1.5, -2, Number.NaN])("refuses visionThreads %s", async (visionThreads) => {
    const tiny = await loadTiny();
    const err = await caught(withLeanVision({ ...tiny, modelPath: tiny.dir, visionThreads }));
    expect(err.code).toBe("INVALID_INPUT");
    expect(err.message).toMatch(/visionThreads/);
  });
});
