import { describe, expect, it } from "vitest";
import { formatBytes, progressBar } from "../src/gguf/index.js";

function captureStream(isTTY: boolean) {
  const chunks: string[] = [];
  const stream = { isTTY, write: (s: string) => (chunks.push(s), true) } as unknown as NodeJS.WriteStream;
  return { stream, text: () => chunks.join("") };
}

describe("progressBar", () => {
  it("prints one line per tenth without a TTY, ending at 100%", () => {
    const out = captureStream(false);
    const report = progressBar("writing x", { stream: out.stream });
    for (let done = 0; done <= 1000; done += 5) report(done * 1024 * 1024, 1000 * 1024 * 1024);
    const lines = out.text().trim().split("\n");
    expect(lines.length).toBe(11);
    expect(lines[0]).toBe("writing x: 0% (0 KiB / 1000.0 MiB)");
    expect(lines[10]).toMatch(/^writing x: 100% \(1000\.0 MiB \/ 1000\.0 MiB\) in \d+\.\d s$/);
  });

  it("redraws one bar in place on a TTY and ends the line when done", () => {
    const out = captureStream(true);
    const report = progressBar("writing y", { stream: out.stream, unit: "steps" });
    report(0, 4);
    report(4, 4);
    expect(out.text()).toMatch(/^\rwriting y \[-{30}\]   0% 0 \/ 4\rwriting y \[#{30}\] 100% 4 \/ 4 in \d+\.\d s\n$/);
  });

  it("shows only the percentage with unit none (the examples do not know what is counted)", () => {
    const out = captureStream(false);
    const report = progressBar("writing z", { stream: out.stream, unit: "none" });
    report(0, 3);
    report(3, 3);
    expect(out.text()).toMatch(/^writing z: 0%\nwriting z: 100% in \d+\.\d s\n$/);
  });

  it("formats sizes in KiB, MiB and GiB", () => {
    expect(formatBytes(512 * 1024)).toBe("512 KiB");
    expect(formatBytes(3.5 * 1024 * 1024)).toBe("3.5 MiB");
    expect(formatBytes(3.53 * 1024 ** 3)).toBe("3.53 GiB");
  });
});
