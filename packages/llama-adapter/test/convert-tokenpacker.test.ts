// scripts/convert-tokenpacker.py on synthetic checkpoints in the official release format (what
// sunshine-lwt/TokenPacker-* holds: config.json, fp16 shards pytorch_model-0000N-of-00002.bin and
// pytorch_model.bin.index.json, the projector under model.mm_projector.*), plus the other layouts it
// reads (safetensors in bf16, a stage-1 mm_projector.bin). The projector file must hold exactly the
// checkpoint's tensors (values, PyTorch shapes reversed) and the layout the llama adapter checks.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CONVERTER_SCRIPT,
  convertTokenPacker,
  findPython,
  readProjectorStateDict,
  TOKENPACKER_PROFILES,
  writeTokenPackerCheckpoint
} from "@leanvision/testkit";
import { readGgufHeader } from "../src/gguf.js";
import { inspectProjectorFile } from "../src/projector-file.js";
import { expectCode } from "./support/errors.js";

const profile = TOKENPACKER_PROFILES["tiny-tokenpacker"];
let tmp: string;

beforeAll(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), "leanvision-convert-"));
});
afterAll(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** The checkpoint's projector tensors as torch loads them (float32 values, PyTorch shapes). */
function torchStateDict(checkpoint: string): Record<string, { data: Float32Array; shape: number[] }> {
  const out = path.join(tmp, `dump-${path.basename(checkpoint)}.bin`);
  const code = `
import glob, json, os, sys, torch
state = {}
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.bin"))):
    state.update(torch.load(f, map_location="cpu"))
names = sorted(k for k in state if "mm_projector." in k)
with open(sys.argv[2], "wb") as fh:
    for k in names:
        fh.write(state[k].float().contiguous().numpy().tobytes())
print(json.dumps([[k.split("mm_projector.", 1)[1], list(state[k].shape)] for k in names]))
`;
  const r = spawnSync(findPython(["torch"]), ["-c", code, checkpoint, out], { encoding: "utf8" });
  expect(r.status, r.stderr).toBe(0);
  const names = JSON.parse(r.stdout) as Array<[string, number[]]>;
  const bytes = readFileSync(out);
  const all = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
  const dict: Record<string, { data: Float32Array; shape: number[] }> = {};
  let offset = 0;
  for (const [name, shape] of names) {
    const n = shape.reduce((a, b) => a * b, 1);
    dict[name] = { data: all.slice(offset, offset + n), shape };
    offset += n;
  }
  return dict;
}

function runConverter(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(findPython(["numpy"]), [CONVERTER_SCRIPT, ...args], { encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("convert-tokenpacker.py", () => {
  it("round-trips a sharded fp16 .bin checkpoint with its index: every projector tensor, exactly", () => {
    const checkpoint = path.join(tmp, "TokenPacker-tiny-144token");
    writeTokenPackerCheckpoint(profile, checkpoint, 2);
    const index = JSON.parse(readFileSync(path.join(checkpoint, "pytorch_model.bin.index.json"), "utf8"));
    const shards = new Set(Object.entries(index.weight_map).filter(([k]) => k.startsWith("model.mm_projector.")).map(([, f]) => f));
    expect(shards.size).toBe(2); // the projector is split over both shards, as the reader must handle

    const file = path.join(tmp, "tiny.gguf");
    expect(convertTokenPacker(profile, checkpoint, file)).toContain("TokenPacker: scale 2 (144 tokens from 24x24), width 128, 2 heads");
    const expected = torchStateDict(checkpoint);
    const actual = readProjectorStateDict(file);
    expect(Object.keys(actual).sort()).toEqual(Object.keys(expected).sort());
    expect(Object.keys(actual)).toHaveLength(23);
    for (const [name, t] of Object.entries(expected)) {
      expect(actual[name].shape, name).toEqual(t.shape);
      expect(Array.from(actual[name].data), name).toEqual(Array.from(t.data));
    }
    // fp16 matrices stay F16, vectors are F32.
    const header = readGgufHeader(file);
    expect(header.tensors.get("k_proj_1.0.weight")!.type).toBe(1);
    expect(header.tensors.get("k_proj_1.0.weight")!.shape).toEqual([512, 128]);
    expect(header.tensors.get("ln_q_1.weight")!.type).toBe(0);
    expect(inspectProjectorFile(file)).toMatchObject({
      type: "tokenpacker", inputDim: 128, outputDim: 256, scaleFactor: 2, heads: 2, gridSize: 24, featureLayer: 3,
      multiLevelLayers: [1, 2, 2, 3], multiLevelDim: 512, embedDim: 128, kvHidden: 128, mlpHidden: 256, rowDim: 128 + 4 * 512
    });
    expect(inspectProjectorFile(file).eps).toBeCloseTo(1e-6, 12);

    // --outtype bf16 (the faster kind on AVX-512 BF16 CPUs) rounds the matrices to bf16, to nearest.
    const bf16 = path.join(tmp, "tiny-bf16.gguf");
    convertTokenPacker(profile, checkpoint, bf16, ["--outtype", "bf16"]);
    expect(readGgufHeader(bf16).tensors.get("mlp.2.weight")!.type).toBe(30);
    const rounded = readProjectorStateDict(bf16)["mlp.2.weight"].data;
    const exact = expected["mlp.2.weight"].data;
    for (let i = 0; i < exact.length; i++) expect(Math.abs(rounded[i] - exact[i])).toBeLessThanOrEqual(Math.abs(exact[i]) * 2 ** -8);
  });

  it("reads bf16 safetensors shards (kept as BF16) and a stage-1 mm_projector.bin (scale from the name)", () => {
    const st = path.join(tmp, "TokenPacker-st-144token");
    writeTokenPackerCheckpoint(profile, st, 2, ["--safetensors", "--dtype", "bfloat16"]);
    const stFile = path.join(tmp, "st.gguf");
    convertTokenPacker(profile, st, stFile);
    expect(readGgufHeader(stFile).tensors.get("mlp.2.weight")!.type).toBe(30);
    const bin = path.join(tmp, "TokenPacker-bin-144token");
    writeTokenPackerCheckpoint(profile, bin, 2, ["--dtype", "bfloat16"]);
    const binFile = path.join(tmp, "bin.gguf");
    convertTokenPacker(profile, bin, binFile);
    // The same seed in both formats: the same values.
    const a = readProjectorStateDict(stFile);
    const b = readProjectorStateDict(binFile);
    for (const name of Object.keys(b)) expect(Array.from(a[name].data), name).toEqual(Array.from(b[name].data));

    const stage1 = path.join(tmp, "TokenPacker-stage1-64token");
    writeTokenPackerCheckpoint(profile, stage1, 3, ["--single"]);
    const stage1File = path.join(tmp, "stage1.gguf");
    expect(convertTokenPacker(profile, path.join(stage1, "mm_projector.bin"), stage1File)).toContain("scale 3 (64 tokens");
  });

  it("says what is wrong instead of writing a bad file", async () => {
    const checkpoint = path.join(tmp, "TokenPacker-tiny-144token");
    const levels = runConverter([checkpoint, "-o", path.join(tmp, "x.gguf"), "--heads", "2", "--levels", "1,2,3", "--feature-layer", "3"]);
    expect(levels.status).toBe(2);
    expect(levels.stderr).toContain("k_proj_1.0 reads 512 multi-level values per patch, but 3 levels x 128 = 384");
    // Without --heads: the official width // 128 (1 at this width; 8 for CLIP-L's 1024).
    const heads = runConverter([checkpoint, "-o", path.join(tmp, "x.gguf"), "--levels", "1,2,2,3", "--feature-layer", "3"]);
    expect(heads.stdout).toContain("width 128, 1 heads");
    const odd = runConverter([checkpoint, "-o", path.join(tmp, "x.gguf"), "--heads", "3", "--levels", "1,2,2,3", "--feature-layer", "3"]);
    expect(odd.stderr).toContain("pass --heads (a divisor of 128");

    const nameless = path.join(tmp, "projector-only");
    writeTokenPackerCheckpoint(profile, nameless, 2, ["--single"]);
    const scale = runConverter([path.join(nameless, "mm_projector.bin"), "-o", path.join(tmp, "x.gguf"), "--heads", "2", "--levels", "1,2,2,3"]);
    expect(scale.stderr).toContain("pass --scale-factor");

    // --onnx (the transformers adapter's projector file) is TokenPacker's only; one output at least.
    const mlp = path.join(tmp, "llava-mlp");
    writeTokenPackerCheckpoint(profile, mlp, 2, ["--projector", "mlp"]);
    const mlpOnnx = runConverter([mlp, "--onnx", path.join(tmp, "x.onnx")]);
    expect(mlpOnnx.status).toBe(2);
    expect(mlpOnnx.stderr).toContain("--onnx writes TokenPacker projectors");
    const none = runConverter([checkpoint, "--heads", "2", "--levels", "1,2,2,3", "--feature-layer", "3"]);
    expect(none.status).toBe(2);
    expect(none.stderr).toContain("--onnx tokenpacker.onnx");

    writeFileSync(path.join(tmp, "not-a-checkpoint.bin"), "hello");
    expect(runConverter([path.join(tmp, "not-a-checkpoint.bin"), "-o", path.join(tmp, "x.gguf")]).stderr).toContain("not a torch zip checkpoint");

    // A projector file with a tensor of the wrong shape is refused by the adapter's check.
    const file = path.join(tmp, "tiny.gguf");
    const bytes = readFileSync(file);
    const broken = path.join(tmp, "broken.gguf");
    const at = bytes.indexOf(Buffer.from("leanvision.projector.head_count"));
    const copy = Buffer.from(bytes);
    copy.writeUInt32LE(3, at + "leanvision.projector.head_count".length + 4); // after the u32 type tag
    writeFileSync(broken, copy);
    expect((await expectCode(() => inspectProjectorFile(broken), "INVALID_MODEL")).message).toContain("head_count 3 does not divide");
  });
});
