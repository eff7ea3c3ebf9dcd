// A small builder for ONNX graphs on onnx-proto (the ONNX protobuf schema compiled by protobufjs).
// Node and tensor names follow what torch.onnx exports look like (`/scope/Op`, `/scope/Op_output_0`),
// so tools written against downloaded exports see the same shapes of graph.
import onnxProto from "onnx-proto";
import { Prng } from "../gguf/numeric.js";

export const { onnx } = onnxProto;
export type OnnxModel = InstanceType<typeof onnx.ModelProto>;

export const FLOAT = onnx.TensorProto.DataType.FLOAT;
export const FLOAT16 = onnx.TensorProto.DataType.FLOAT16;
export const UINT8 = onnx.TensorProto.DataType.UINT8;
export const INT8 = onnx.TensorProto.DataType.INT8;
export const INT64 = onnx.TensorProto.DataType.INT64;
export const BOOL = onnx.TensorProto.DataType.BOOL;
/** onnxruntime's contrib operators (MatMulNBits, ...). */
export const MS_DOMAIN = "com.microsoft";

/** Deterministic uniform weights (the GGUF factory's mulberry32), so a profile always produces the same files. */
export class Rng extends Prng {
  next(): number {
    return this.nextU32() / 4294967296;
  }
  /** Uniform with the given standard deviation, centred on `mean`. */
  fill(out: Float32Array, std: number, mean = 0): Float32Array {
    const half = std * Math.sqrt(3);
    for (let i = 0; i < out.length; i++) out[i] = mean + (this.next() * 2 - 1) * half;
    return out;
  }
}

type Dim = number | string;
export type AttrValue = number | number[] | string | { floats: number[] } | { tensor: InstanceType<typeof onnx.TensorProto> };

function valueInfo(name: string, elemType: number, dims: Dim[] | null) {
  return onnx.ValueInfoProto.create({
    name,
    type: {
      tensorType: {
        elemType,
        shape: dims ? { dim: dims.map((d) => (typeof d === "number" ? { dimValue: d } : { dimParam: d })) } : undefined
      }
    }
  });
}

export function tensor(name: string, dataType: number, dims: number[], data: Float32Array | BigInt64Array | Uint8Array | Uint16Array) {
  return onnx.TensorProto.create({
    name,
    dataType,
    dims,
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  });
}

export function attribute(name: string, value: AttrValue) {
  const A = onnx.AttributeProto.AttributeType;
  if (typeof value === "string") return { name, type: A.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: A.INTS, ints: value };
  if (typeof value === "number") {
    return Number.isInteger(value) ? { name, type: A.INT, i: value } : { name, type: A.FLOAT, f: value };
  }
  if ("floats" in value) return { name, type: A.FLOATS, floats: value.floats };
  return { name, type: A.TENSOR, t: value.tensor };
}

export class GraphBuilder {
  readonly nodes: Array<ReturnType<typeof onnx.NodeProto.create>> = [];
  readonly initializers: Array<ReturnType<typeof onnx.TensorProto.create>> = [];
  readonly inputs: Array<ReturnType<typeof onnx.ValueInfoProto.create>> = [];
  readonly outputs: Array<ReturnType<typeof onnx.ValueInfoProto.create>> = [];
  private scopes: string[] = [];
  private nameCounts = new Map<string, number>();
  private constCount = 0;
  /** Parameter count, for the profile documentation. */
  parameters = 0;

  constructor(readonly rng: Rng) {}

  input(name: string, elemType: number, dims: Dim[]): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  output(name: string, elemType: number, dims: Dim[]): void {
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  /** Runs `body` with node names prefixed by `/scope` (nested scopes join). */
  scope<T>(name: string, body: () => T): T {
    this.scopes.push(name);
    try {
      return body();
    } finally {
      this.scopes.pop();
    }
  }

  /** A named float parameter: random with `std` (around `mean`), or given values. */
  param(name: string, shape: number[], init: { std: number; mean?: number } | Float32Array): string {
    const size = shape.reduce((a, b) => a * b, 1);
    const data = init instanceof Float32Array ? init : this.rng.fill(new Float32Array(size), init.std, init.mean ?? 0);
    if (data.length !== size) throw new Error(`param ${name}: ${data.length} values for shape [${shape}]`);
    this.initializers.push(tensor(name, FLOAT, shape, data));
    this.parameters += size;
    return name;
  }

  constFloat(values: number[] | Float32Array, shape: number[] = [values.length]): string {
    const name = `onnx::Const_${this.constCount++}`;
    this.initializers.push(tensor(name, FLOAT, shape, Float32Array.from(values)));
    return name;
  }

  constInt64(values: number[], shape: number[] = [values.length]): string {
    const name = `onnx::ConstI64_${this.constCount++}`;
    this.initializers.push(tensor(name, INT64, shape, BigInt64Array.from(values.map(BigInt))));
    return name;
  }

  /** Adds a node and returns its output names (torch-export style `<node>_output_<i>`). */
  opN(opType: string, inputs: string[], outputs: number, attrs: Record<string, AttrValue> = {}): string[] {
    const base = `/${[...this.scopes, opType].join("/")}`.replace(/^\/+/, "/");
    const seen = this.nameCounts.get(base) ?? 0;
    this.nameCounts.set(base, seen + 1);
    const name = seen === 0 ? base : `${base}_${seen}`;
    const outs = Array.from({ length: outputs }, (_, i) => `${name}_output_${i}`);
    this.nodes.push(
      onnx.NodeProto.create({
        name,
        opType,
        input: inputs,
        output: outs,
        attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v))
      })
    );
    return outs;
  }

  op(opType: string, inputs: string[], attrs: Record<string, AttrValue> = {}): string {
    return this.opN(opType, inputs, 1, attrs)[0];
  }

  /** Renames a value everywhere it is produced or consumed (used to give graph outputs their public names). */
  rename(from: string, to: string): string {
    for (const node of this.nodes) {
      node.output = node.output.map((o) => (o === from ? to : o));
      node.input = node.input.map((i) => (i === from ? to : i));
    }
    return to;
  }

  // Building blocks, written the way torch.onnx (opset 14) exports them.

  /** std defaults to 1/sqrt(inDim), so activations keep their scale through random layers at any width. */
  linear(x: string, weightName: string, inDim: number, outDim: number, bias: boolean, std = 1 / Math.sqrt(inDim)): string {
    // PyTorch stores [out, in]; exports transpose once into the initializer, then MatMul + Add.
    const w = this.param(`${weightName}.weight_T`, [inDim, outDim], { std });
    const y = this.op("MatMul", [x, w]);
    return bias ? this.op("Add", [this.param(`${weightName}.bias`, [outDim], { std: 0.02 }), y]) : y;
  }

  layerNorm(x: string, prefix: string, dim: number, eps = 1e-5): string {
    const mean = this.op("ReduceMean", [x], { axes: [-1] });
    const centred = this.op("Sub", [x, mean]);
    const variance = this.op("ReduceMean", [this.op("Pow", [centred, this.constFloat([2], [])])], { axes: [-1] });
    const std = this.op("Sqrt", [this.op("Add", [variance, this.constFloat([eps], [])])]);
    const normed = this.op("Div", [centred, std]);
    const scaled = this.op("Mul", [normed, this.param(`${prefix}.weight`, [dim], { std: 0.1, mean: 1 })]);
    return this.op("Add", [scaled, this.param(`${prefix}.bias`, [dim], { std: 0.02 })]);
  }

  rmsNorm(x: string, prefix: string, dim: number, eps = 1e-5): string {
    const meanSquare = this.op("ReduceMean", [this.op("Pow", [x, this.constFloat([2], [])])], { axes: [-1] });
    const inv = this.op("Reciprocal", [this.op("Sqrt", [this.op("Add", [meanSquare, this.constFloat([eps], [])])])]);
    return this.op("Mul", [this.param(`${prefix}.weight`, [dim], { std: 0.1, mean: 1 }), this.op("Mul", [x, inv])]);
  }

  /** Exact GELU: x * 0.5 * (1 + erf(x / sqrt 2)). */
  gelu(x: string): string {
    const erf = this.op("Erf", [this.op("Div", [x, this.constFloat([Math.SQRT2], [])])]);
    const onePlus = this.op("Add", [erf, this.constFloat([1], [])]);
    return this.op("Mul", [this.op("Mul", [x, onePlus]), this.constFloat([0.5], [])]);
  }

  /** CLIP's quick_gelu: x * sigmoid(1.702 x). */
  quickGelu(x: string): string {
    return this.op("Mul", [x, this.op("Sigmoid", [this.op("Mul", [x, this.constFloat([1.702], [])])])]);
  }

  /** Exact GELU's tanh approximation (gelu_pytorch_tanh), as torch exports it before opset 20. */
  geluTanh(x: string): string {
    const cube = this.op("Mul", [this.op("Pow", [x, this.constFloat([3], [])]), this.constFloat([0.044715], [])]);
    const inner = this.op("Mul", [this.op("Add", [x, cube]), this.constFloat([Math.sqrt(2 / Math.PI)], [])]);
    const onePlus = this.op("Add", [this.op("Tanh", [inner]), this.constFloat([1], [])]);
    return this.op("Mul", [this.op("Mul", [x, this.constFloat([0.5], [])]), onePlus]);
  }

  /** The model as an (unencoded) ModelProto, for the dtype converters in quantize.ts. */
  toModel(graphName: string, opset = 14, producer = "leanvision-testkit"): OnnxModel {
    return onnx.ModelProto.create({
      irVersion: 8,
      producerName: producer,
      opsetImport: [{ domain: "", version: opset }],
      graph: {
        name: graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs
      }
    });
  }

  toBytes(graphName: string, opset = 14, producer = "leanvision-testkit"): Uint8Array {
    return onnx.ModelProto.encode(this.toModel(graphName, opset, producer)).finish();
  }
}
