import { describe, it, expect } from "vitest";
import { mtmdArgs } from "../mtmd-anchor.js";

// The anchor's log is read by the testkit's parseMtmdLog (packages/testkit/test/mtmd-log.test.ts).
describe("mtmdArgs", () => {
  it("asks for one token on a single turn, with threads and a chat template when given", () => {
    const args = mtmdArgs({ modelPath: "m.gguf", mmprojPath: "p.gguf", image: "i.jpg", prompt: "Describe.", threads: 2, chatTemplate: "vicuna" });
    expect(args).toEqual(["-m", "m.gguf", "--mmproj", "p.gguf", "--image", "i.jpg", "-p", "Describe.", "-n", "1", "--temp", "0", "-c", "4096", "-lv", "4", "-t", "2", "--chat-template", "vicuna"]);
    expect(mtmdArgs({ modelPath: "m", mmprojPath: "p", image: "i", prompt: "q" })).not.toContain("-t");
  });
});
