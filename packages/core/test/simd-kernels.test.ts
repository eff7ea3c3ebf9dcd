// The SIMD kernels' source (kernels/simd-kernels.ts, written with the builder in kernels/wasm.ts):
// the module it assembles, and each kernel against plain float32 arithmetic.
import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { KERNELS, simdModuleBytes } from "../src/kernels/simd-kernels.js";
import { Code, assemble, func } from "../src/kernels/wasm.js";
import { simd, type SimdKernels } from "../src/simd.js";
import { random } from "./helpers.js";

describe("the kernels' module", () => {
  it("is the reviewed one: change this hash only together with a deliberate kernel change", () => {
    // The same 1,306 bytes the hand-assembled opcode lists produced before the builder existed.
    const bytes = simdModuleBytes();
    expect(bytes.length).toBe(1306);
    expect(createHash("sha256").update(bytes).digest("hex")).toBe("237307dedb56d3a00e8936a97cb352c6c8ae7302c4c869310fb1f5a56662e424");
  });

  it("validates, and exports every kernel plus the memory", () => {
    const bytes = simdModuleBytes();
    expect(WebAssembly.validate(bytes)).toBe(true);
    const exports = WebAssembly.Module.exports(new WebAssembly.Module(bytes)).map((e) => `${e.name}:${e.kind}`);
    expect(exports).toEqual([...Object.keys(KERNELS).map((k) => `${k}:function`), "memory:memory"]);
  });
});

describe("the builder", () => {
  it("encodes immediates as LEB128 (signed for i32.const) and f32 constants little-endian", () => {
    const code = new Code().i32_const(16).i32_const(64).i32_const(-1).i32_const(300).f32_const(1).br_if(1);
    expect(code.bytes).toEqual([0x41, 16, 0x41, 0xc0, 0x00, 0x41, 0x7f, 0x41, 0xac, 0x02, 0x43, 0, 0, 0x80, 0x3f, 0x0d, 1]);
    expect(new Code().f32x4_add().i32x4_all_true().bytes).toEqual([0xfd, 0xe4, 0x01, 0xfd, 0xa3, 0x01]);
  });

  it("numbers parameters then locals in declaration order, and groups locals by runs of one type", () => {
    let seen: number[] = [];
    const f = func({ params: { x: "i32", y: "f32" }, locals: { i: "i32", j: "i32", v: "v128" } }, (_, v) => {
      seen = [v.x.index, v.y.index, v.i.index, v.j.index, v.v.index];
    });
    expect(seen).toEqual([0, 1, 2, 3, 4]);
    expect(f.locals).toEqual(["i32", "i32", "v128"]);
  });

  it("assembles a module that runs", () => {
    const add = func({ params: { a: "i32", b: "i32" }, locals: {}, result: "i32" }, (w, v) => w.local_get(v.a).local_get(v.b).i32_add());
    const bytes = assemble({ add });
    const { exports } = new WebAssembly.Instance(new WebAssembly.Module(bytes)) as unknown as { exports: { add(a: number, b: number): number } };
    expect(exports.add(40, 2)).toBe(42);
  });
});

describe("each kernel", () => {
  const k = simd() as SimdKernels;
  const n = 12; // floats per row: three vectors
  const rows = 6;
  const rand = random(5);
  const mem = () => new Float32Array(k.memory.buffer);
  /** Rows 0..5 of random floats at float offset row * n; returns byte offsets. */
  function setup(): { at: (row: number) => number; row: (r: number) => Float32Array } {
    const m = mem();
    for (let i = 0; i < rows * n; i++) m[i] = rand() * 4 - 2;
    return { at: (r) => r * n * 4, row: (r) => m.slice(r * n, (r + 1) * n) };
  }
  const f32 = Math.fround;
  const out = (row: number) => mem().slice(row * n, (row + 1) * n);

  it("sum4, acc4, acc1 and axpy", () => {
    const { at, row } = setup();
    const [a, b, c, e] = [row(0), row(1), row(2), row(3)];
    k.sum4(at(5), at(0), at(1), at(2), at(3), n * 4, 0.25);
    expect(out(5)).toEqual(Float32Array.from(a, (_, d) => f32(f32(f32(a[d] + b[d]) + f32(c[d] + e[d])) * 0.25)));
    const before = row(4);
    k.acc4(at(4), at(0), at(1), at(2), at(3), n * 4);
    expect(out(4)).toEqual(Float32Array.from(a, (_, d) => f32(before[d] + f32(f32(a[d] + b[d]) + f32(c[d] + e[d])))));
    const acc = row(4);
    k.acc1(at(4), at(0), n * 4);
    expect(out(4)).toEqual(Float32Array.from(a, (_, d) => f32(acc[d] + a[d])));
    k.axpy(at(5), at(0), at(1), n * 4, 3);
    expect(out(5)).toEqual(Float32Array.from(a, (_, d) => f32(a[d] + f32(b[d] * 3))));
  });

  it("wsum4 and logits4", () => {
    const { at, row } = setup();
    const [a, b, c, e] = [row(0), row(1), row(2), row(3)];
    const w = [0.1, 0.2, 0.3, 0.4].map(f32);
    const q = Float32Array.from(a, (_, d) => f32(f32(f32(f32(w[0] * a[d]) + f32(w[1] * b[d])) + f32(w[2] * c[d])) + f32(w[3] * e[d])));
    k.wsum4(at(5), at(0), at(1), at(2), at(3), n * 4, w[0], w[1], w[2], w[3]);
    expect(out(5)).toEqual(q);
    k.logits4(at(0), at(1), at(2), at(3), n * 4, w[0], w[1], w[2], w[3], at(4));
    const logits = mem().slice(4 * n, 4 * n + 4);
    [a, b, c, e].forEach((x, j) => {
      let s = 0;
      for (let d = 0; d < n; d++) s += q[d] * x[d];
      expect(logits[j]).toBeCloseTo(s, 5);
    });
  });

  it("dots and norms", () => {
    const { at, row } = setup();
    k.dots(at(0), at(1), 3, n * 4, at(5));
    k.norms(at(1), 3, n * 4, at(5) + 16);
    const res = mem().slice(5 * n, 5 * n + 7);
    for (let j = 0; j < 3; j++) {
      const [x, u] = [row(0), row(1 + j)];
      let dot = 0, norm = 0;
      for (let d = 0; d < n; d++) (dot += x[d] * u[d]), (norm += u[d] * u[d]);
      expect(res[j]).toBeCloseTo(dot, 5);
      expect(res[4 + j]).toBeCloseTo(norm, 5);
    }
  });

  it("finite", () => {
    const { at } = setup();
    expect(k.finite(at(0), rows * n * 4)).toBe(1);
    for (const bad of [NaN, Infinity, -Infinity]) {
      mem()[2 * n + 7] = bad;
      expect(k.finite(at(0), rows * n * 4)).toBe(0);
      expect(k.finite(at(0), 2 * n * 4)).toBe(1); // only the rows before it
    }
  });
});
