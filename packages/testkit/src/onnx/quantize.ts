// The dtype variants transformers.js model repos ship next to the float32 graphs, produced the way
// transformers.js' scripts/quantize.py produces them (see MODELS.md for the sources):
//  - fp16 ("_fp16"): float16.convert_float_to_float16(keep_io_types=True): every float initializer
//    becomes float16 (clamped to +-1e4 and away from zero by 1e-7, as that script does), float graph
//    inputs get a Cast to float16 (`<input>_fp16`), float outputs a Cast back (`<output>_fp16` ->
//    `<output>`), and Cast-to-float nodes (on its op block list) are followed by a Cast to float16.
//  - q4 ("_q4"): onnxruntime's MatMul4BitsQuantizer (block_size 32, symmetric, QOperator format): every
//    MatMul whose B is a 2-D float initializer becomes com.microsoft MatMulNBits(A, B_Q4, B_scales) with
//    K, N, bits=4, block_size; B_Q4 is uint8 [N, K/32, 16] (two 4-bit values a byte, low nibble first,
//    zero point 8), B_scales float [N * K/32]. Gather (embeddings) and Conv stay float32.
//  - q8 ("_quantized"): onnxruntime's dynamic ONNXQuantizer (IntegerOps, MatMulConstBOnly, per-tensor, no
//    reduce_range): MatMul with a constant B -> DynamicQuantizeLinear(A) + MatMulInteger + Cast + Mul(A_scale *
//    B_scale); Conv -> DynamicQuantizeLinear + ConvInteger + Cast + Mul (+ Add of the bias); Gather of a constant
//    table -> Gather of the quantized table + DequantizeLinear. Weights are uint8 (asymmetric) when the graph has a
//    Conv, else int8 (symmetric, -127..127), as transformers.js' quantize.py chooses.
import { f16ToF32, f32ToF16 } from "../gguf/numeric.js";
import type * as OnnxTypes from "onnx-proto";
import { FLOAT, FLOAT16, INT64, INT8, MS_DOMAIN, onnx, type OnnxModel, tensor, UINT8 } from "./graph.js";

type Node = OnnxTypes.onnx.INodeProto;
type Tensor = OnnxTypes.onnx.ITensorProto;

export type OnnxDtype = "fp32" | "fp16" | "q4" | "q8";
/** File suffix transformers.js appends per dtype (its utils/dtypes.js). */
export const DTYPE_SUFFIX: Record<OnnxDtype, string> = { fp32: "", fp16: "_fp16", q4: "_q4", q8: "_quantized" };

/** The float values of a float32 or float16 initializer (copied: raw data may be an unaligned view, e.g. a decoded Buffer). */
export function tensorFloats(t: Tensor): Float32Array {
  const copy = (raw: Uint8Array) => new Uint8Array(raw).buffer; // a fresh buffer of exactly these bytes
  if (t.dataType === FLOAT) {
    if (t.rawData?.length) return new Float32Array(copy(t.rawData));
    return Float32Array.from(t.floatData ?? []);
  }
  if (t.dataType === FLOAT16 && t.rawData?.length) {
    const bits = new Uint16Array(copy(t.rawData));
    const out = new Float32Array(bits.length);
    for (let i = 0; i < bits.length; i++) out[i] = f16ToF32(bits[i]);
    return out;
  }
  throw new Error(`tensorFloats: unsupported tensor type ${t.dataType}`);
}

const MIN_POSITIVE = 1e-7;
const MAX_FINITE = 1e4;

/** float32 -> float16 bits the way float16.py's convert_np_to_float16 clamps before converting. */
function toHalfBits(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    let v = values[i];
    if (v > 0 && v < MIN_POSITIVE) v = MIN_POSITIVE;
    else if (v < 0 && v > -MIN_POSITIVE) v = -MIN_POSITIVE;
    else if (v > MAX_FINITE && v < Infinity) v = MAX_FINITE;
    else if (v < -MAX_FINITE && v > -Infinity) v = -MAX_FINITE;
    out[i] = f32ToF16(v);
  }
  return out;
}

function halfTensor(t: Tensor): Tensor {
  const dims = (t.dims ?? []).map(Number);
  return tensor(t.name ?? "", FLOAT16, dims, toHalfBits(tensorFloats(t)));
}

function castNode(name: string, input: string, output: string, to: number): Node {
  return onnx.NodeProto.create({ name, opType: "Cast", input: [input], output: [output], attribute: [{ name: "to", type: onnx.AttributeProto.AttributeType.INT, i: to }] });
}

function castTarget(n: Node): number | undefined {
  const to = n.attribute?.find((a) => a.name === "to");
  return to ? Number(to.i) : undefined;
}

function elemType(v: OnnxTypes.onnx.IValueInfoProto): number | undefined {
  return v.type?.tensorType?.elemType ?? undefined;
}

/** float32 model -> the `_fp16` variant (inputs and outputs stay float32). */
export function toFp16(model: OnnxModel): OnnxModel {
  const g = model.graph!;
  const nodes: Node[] = [];
  const renameInput = new Map<string, string>();
  for (const input of g.input ?? []) {
    if (elemType(input) !== FLOAT) continue;
    const casted = `${input.name}_fp16`;
    nodes.push(castNode(casted, input.name!, casted, FLOAT16));
    renameInput.set(input.name!, casted);
  }
  const floatOutputs = new Set((g.output ?? []).filter((o) => elemType(o) === FLOAT).map((o) => o.name!));
  const internal = (name: string) => renameInput.get(name) ?? (floatOutputs.has(name) ? `${name}_fp16` : name);
  for (const n of g.node ?? []) {
    const input = (n.input ?? []).map(internal);
    const output = (n.output ?? []).map(internal);
    const attribute = (n.attribute ?? []).map((a) =>
      a.t && a.t.dataType === FLOAT ? onnx.AttributeProto.create({ ...a, t: halfTensor(a.t) }) : a
    );
    if (n.opType === "Cast" && castTarget(n) === FLOAT) {
      // Cast is on float16.py's op block list: it keeps its float32 result and a Cast to float16 follows.
      const fp32 = `${output[0]}_fp32`;
      nodes.push(onnx.NodeProto.create({ ...n, input, output: [fp32], attribute }));
      nodes.push(castNode(`${n.name}_output_cast0`, fp32, output[0], FLOAT16));
    } else {
      nodes.push(onnx.NodeProto.create({ ...n, input, output, attribute }));
    }
  }
  for (const name of floatOutputs) nodes.push(castNode(`${name}_fp16_input_cast0`, `${name}_fp16`, name, FLOAT));
  return onnx.ModelProto.create({
    ...model,
    graph: onnx.GraphProto.create({
      ...g,
      node: nodes,
      initializer: (g.initializer ?? []).map((t) => (t.dataType === FLOAT ? halfTensor(t) : t))
    })
  });
}

/**
 * Symmetric blockwise int4 quantization of B [K x N] (row-major) along K, as MLAS' MlasQuantizeBlockwise
 * does for MatMulNBits: per column and block, scale = (value of largest magnitude) / -8, q = round(w / scale) + 8
 * clamped to 0..15, so w ~ (q - 8) * scale. Returns B_Q4 [N][K/bs][bs/2] and scales [N * K/bs].
 */
export function quantizeBlockwise4(b: Float32Array, K: number, N: number, blockSize = 32): { packed: Uint8Array; scales: Float32Array } {
  const blocks = Math.ceil(K / blockSize);
  const blob = blockSize / 2;
  const packed = new Uint8Array(N * blocks * blob);
  const scales = new Float32Array(N * blocks);
  const q = new Uint8Array(blockSize);
  for (let n = 0; n < N; n++) {
    for (let kb = 0; kb < blocks; kb++) {
      let absMax = 0;
      let signedMax = 0;
      for (let i = 0; i < blockSize; i++) {
        const k = kb * blockSize + i;
        const v = k < K ? b[k * N + n] : 0;
        if (Math.abs(v) > absMax) {
          absMax = Math.abs(v);
          signedMax = v;
        }
      }
      const scale = Math.fround(signedMax / -8);
      const inv = scale !== 0 ? 1 / scale : 0;
      for (let i = 0; i < blockSize; i++) {
        const k = kb * blockSize + i;
        const v = k < K ? b[k * N + n] : 0;
        q[i] = Math.min(15, Math.max(0, Math.round(v * inv) + 8));
      }
      scales[n * blocks + kb] = scale;
      const base = (n * blocks + kb) * blob;
      for (let j = 0; j < blob; j++) packed[base + j] = q[2 * j] | (q[2 * j + 1] << 4);
    }
  }
  return { packed, scales };
}

/** The weights MatMulNBits computes with: (q - 8) * scale, back as B [K x N]. */
export function dequantizeBlockwise4(packed: Uint8Array, scales: Float32Array, K: number, N: number, blockSize = 32): Float32Array {
  const blocks = Math.ceil(K / blockSize);
  const blob = blockSize / 2;
  const out = new Float32Array(K * N);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const kb = Math.floor(k / blockSize);
      const i = k % blockSize;
      const byte = packed[(n * blocks + kb) * blob + (i >> 1)];
      const q = i & 1 ? byte >> 4 : byte & 15;
      out[k * N + n] = (q - 8) * scales[n * blocks + kb];
    }
  }
  return out;
}

/** float32 model -> the `_q4` variant. */
export function toQ4(model: OnnxModel, blockSize = 32): OnnxModel {
  const g = model.graph!;
  const inits = new Map((g.initializer ?? []).map((t) => [t.name ?? "", t]));
  const added: Tensor[] = [];
  const done = new Set<string>();
  const nodes = (g.node ?? []).map((n) => {
    const weight = n.opType === "MatMul" && !n.domain ? inits.get(n.input?.[1] ?? "") : undefined;
    if (!weight || weight.dataType !== FLOAT || weight.dims?.length !== 2) return n;
    const [K, N] = weight.dims.map(Number);
    const name = weight.name!;
    if (!done.has(name)) {
      const { packed, scales } = quantizeBlockwise4(tensorFloats(weight), K, N, blockSize);
      added.push(tensor(`${name}_Q4`, UINT8, [N, Math.ceil(K / blockSize), blockSize / 2], packed));
      added.push(tensor(`${name}_scales`, FLOAT, [scales.length], scales));
      done.add(name);
    }
    const A = onnx.AttributeProto.AttributeType;
    return onnx.NodeProto.create({
      name: n.name ? `${n.name}_Q4` : "",
      opType: "MatMulNBits",
      domain: MS_DOMAIN,
      input: [n.input![0], `${name}_Q4`, `${name}_scales`],
      output: [n.output![0]],
      attribute: [
        { name: "K", type: A.INT, i: K },
        { name: "N", type: A.INT, i: N },
        { name: "bits", type: A.INT, i: 4 },
        { name: "block_size", type: A.INT, i: blockSize }
      ]
    });
  });
  const used = new Set(nodes.flatMap((n) => n.input ?? []));
  const initializer = [...(g.initializer ?? []).filter((t) => used.has(t.name ?? "")), ...added];
  const opsetImport = [...(model.opsetImport ?? []).filter((o) => o.domain !== MS_DOMAIN), { domain: MS_DOMAIN, version: 1 }];
  return onnx.ModelProto.create({ ...model, opsetImport, graph: onnx.GraphProto.create({ ...g, node: nodes, initializer }) });
}

/** numpy's rounding (half to even), which onnxruntime's Python quantizer uses. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d !== 0.5) return d < 0.5 ? f : f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** 8-bit weight quantization as onnxruntime's quantize_data: per tensor, int8 symmetric or uint8 asymmetric. */
export function quantize8(values: Float32Array, unsigned: boolean): { q: Uint8Array; scale: number; zeroPoint: number } {
  let min = 0;
  let max = 0;
  for (const v of values) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  let scale: number;
  let zeroPoint: number;
  let qmin: number;
  let qmax: number;
  if (unsigned) {
    [qmin, qmax] = [0, 255];
    scale = Math.fround((max - min) / 255) || 1;
    zeroPoint = roundHalfEven(qmin - min / scale);
  } else {
    [qmin, qmax] = [-127, 127];
    scale = Math.fround(Math.max(Math.abs(min), Math.abs(max)) / 127) || 1;
    zeroPoint = 0;
  }
  const q = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = Math.min(qmax, Math.max(qmin, roundHalfEven(values[i] / scale) + zeroPoint));
    q[i] = v & 0xff; // int8 as its two's-complement byte
  }
  return { q, scale, zeroPoint };
}

/** float32 model -> the `_quantized` (q8) variant. */
export function toQ8(model: OnnxModel): OnnxModel {
  const g = model.graph!;
  const inits = new Map((g.initializer ?? []).map((t) => [t.name ?? "", t]));
  const unsigned = (g.node ?? []).some((n) => n.opType === "Conv");
  const wtype = unsigned ? UINT8 : INT8;
  const added: Tensor[] = [];
  const quantized = new Map<string, { q: string; scale: string; zp: string }>();
  const weight = (name: string) => {
    let w = quantized.get(name);
    if (!w) {
      const t = inits.get(name)!;
      const { q, scale, zeroPoint } = quantize8(tensorFloats(t), unsigned);
      w = { q: `${name}_quantized`, scale: `${name}_scale`, zp: `${name}_zero_point` };
      added.push(tensor(w.q, wtype, (t.dims ?? []).map(Number), q));
      added.push(tensor(w.scale, FLOAT, [], Float32Array.of(scale)));
      added.push(tensor(w.zp, wtype, [], Uint8Array.of(zeroPoint & 0xff)));
      quantized.set(name, w);
    }
    return w;
  };
  const isFloatConst = (name: string | undefined) => {
    const t = name ? inits.get(name) : undefined;
    return !!t && t.dataType === FLOAT;
  };
  const A = onnx.AttributeProto.AttributeType;
  const node = (name: string, opType: string, input: string[], output: string[], attribute: OnnxTypes.onnx.IAttributeProto[] = []) =>
    onnx.NodeProto.create({ name, opType, input, output, attribute });
  const nodes: Node[] = [];
  const dynamicQuant = new Map<string, [string, string, string]>();
  const quantizeInput = (x: string) => {
    let q = dynamicQuant.get(x);
    if (!q) {
      q = [`${x}_quantized`, `${x}_scale`, `${x}_zero_point`];
      nodes.push(node(`${x}_QuantizeLinear`, "DynamicQuantizeLinear", [x], q));
      dynamicQuant.set(x, q);
    }
    return q;
  };
  for (const n of g.node ?? []) {
    const [x, b, bias] = n.input ?? [];
    const out = n.output?.[0] ?? "";
    if (n.opType === "MatMul" && !n.domain && isFloatConst(b) && inits.get(b)!.dims?.length === 2) {
      const [xq, xs, xz] = quantizeInput(x);
      const w = weight(b);
      nodes.push(node(`${n.name}_quant`, "MatMulInteger", [xq, w.q, xz, w.zp], [`${out}_quantized`]));
      nodes.push(node(`${n.name}_quant_output_scale_mul`, "Mul", [xs, w.scale], [`${out}_quant_scales_mul`]));
      nodes.push(node(`${out}_quantized_cast`, "Cast", [`${out}_quantized`], [`${out}_quantized_cast_output`], [{ name: "to", type: A.INT, i: FLOAT }]));
      nodes.push(node(`${n.name}_quant_scales_mul`, "Mul", [`${out}_quantized_cast_output`, `${out}_quant_scales_mul`], [out]));
    } else if (n.opType === "Conv" && !n.domain && isFloatConst(b)) {
      const [xq, xs, xz] = quantizeInput(x);
      const w = weight(b);
      const scaled = bias ? `${out}_scaled` : out;
      nodes.push(node(`${n.name}_quant`, "ConvInteger", [xq, w.q, xz, w.zp], [`${out}_quantized`], n.attribute ?? []));
      nodes.push(node(`${n.name}_quant_output_scale_mul`, "Mul", [xs, w.scale], [`${out}_quant_scales_mul`]));
      nodes.push(node(`${out}_quantized_cast`, "Cast", [`${out}_quantized`], [`${out}_quantized_cast_output`], [{ name: "to", type: A.INT, i: FLOAT }]));
      nodes.push(node(`${n.name}_quant_scales_mul`, "Mul", [`${out}_quantized_cast_output`, `${out}_quant_scales_mul`], [scaled]));
      if (bias) {
        const channels = Number(inits.get(bias)?.dims?.[0] ?? 0);
        const shape = `${bias}_reshape_shape`;
        added.push(tensor(shape, INT64, [4], BigInt64Array.of(1n, BigInt(channels), 1n, 1n)));
        nodes.push(node(`${n.name}_bias_reshape`, "Reshape", [bias, shape], [`${bias}_reshaped`]));
        nodes.push(node(`${n.name}_bias_add`, "Add", [scaled, `${bias}_reshaped`], [out]));
      }
    } else if (n.opType === "Gather" && !n.domain && isFloatConst(x)) {
      const w = weight(x);
      nodes.push(node(`${n.name}_quant`, "Gather", [w.q, b], [`${out}_quantized`], n.attribute ?? []));
      nodes.push(node(`${n.name}_dequantize`, "DequantizeLinear", [`${out}_quantized`, w.scale, w.zp], [out]));
    } else {
      nodes.push(n);
    }
  }
  const used = new Set(nodes.flatMap((n) => n.input ?? []));
  const initializer = [...(g.initializer ?? []).filter((t) => used.has(t.name ?? "")), ...added];
  return onnx.ModelProto.create({ ...model, graph: onnx.GraphProto.create({ ...g, node: nodes, initializer }) });
}

/** The variant of a float32 model for a dtype. */
export function convertDtype(model: OnnxModel, dtype: OnnxDtype): OnnxModel {
  if (dtype === "fp16") return toFp16(model);
  if (dtype === "q4") return toQ4(model);
  if (dtype === "q8") return toQ8(model);
  return model;
}

export function encodeModel(model: OnnxModel): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}
