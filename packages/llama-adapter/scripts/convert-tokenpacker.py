#!/usr/bin/env python3
"""Converts a TokenPacker checkpoint's projector (or a LLaVA `mlp` projector) into a LeanVision
projector file: GGUF, read by @leanvision/llama-adapter's loadVisionModel({ ..., projectorPath }).

    python3 convert-tokenpacker.py CHECKPOINT -o tokenpacker.gguf \
        [--mmproj mmproj-model-f16.gguf --mmproj-out mmproj-tokenpacker.gguf]
    python3 convert-tokenpacker.py CHECKPOINT --onnx tokenpacker.onnx    (for @leanvision/transformers-adapter)

CHECKPOINT is what the official training code saves (CircleRadon/TokenPacker, released as
sunshine-lwt/TokenPacker-* on Hugging Face):
  - a model folder: config.json plus pytorch_model.bin.index.json and its shards
    (pytorch_model-00001-of-00002.bin, ...), or model.safetensors(.index.json), or one
    pytorch_model.bin / model.safetensors;
  - or one file: mm_projector.bin (a stage-1 run saves only the projector), a .bin or .safetensors.
Only the tensors under `model.mm_projector.` are read, and only from the shards that hold them.

Needs Python 3 and numpy only (Debian: apt-get install python3-numpy). torch is not needed: the
.bin shards are zip files holding a pickle; they are read lazily, without torch and without
loading the language model's weights (a 7B shard is 4-10 GB).

What the checkpoint does not say is taken from the official code (llava/model/multimodal_encoder/
clip_encoder.py, multimodal_projector/builder.py) unless given:
  --levels 12,16,22,23   CLIP hidden states concatenated into the multi-level features (hard-coded there)
  --vision-layers 24     layers of the vision tower (CLIP ViT-L/14-336); with config.json's
                         mm_vision_select_layer (-2) it gives the feature layer, hidden state 23
  --grid 24              patch grid side the projector reshapes to (raw_grid=24: 336 px / 14)
  --heads E/128          heads of clip_attn (num_heads = 1024 // 128 = 8)
  --scale-factor         config.json's scale_factor; else from a folder name "...-<N>token"
                         (144 -> 2, 64 -> 3, 36 -> 4 on the 24x24 grid)
  --outtype auto         matrices as the checkpoint stores them (fp16 -> F16, bf16 -> BF16, else F32);
                         vectors (biases, LayerNorms) always F32. f32 / f16 / bf16 force one type
                         (bf16: ~1.5x faster on CPUs with AVX-512 BF16; ggml then rounds activations
                         to bf16 too: about 1e-2 relative error instead of 1e-3).

--mmproj / --mmproj-out: TokenPacker reads CLIP hidden state 23 (and 12, 16, 22); a LLaVA-1.5 mmproj
of the same frozen tower (block_count 23, no clip.vision.feature_layer) makes llama.cpp run only up to
hidden state 22. This writes a copy with clip.vision.feature_layer = [23] (tensors unchanged).

The file (keys under leanvision.projector.*, tensors by their official state-dict names, shapes in
ggml order) is described in packages/llama-adapter/README.md, "Projector files".

--onnx PATH (TokenPacker only; with or without -o): the same projector as an ONNX graph for
@leanvision/transformers-adapter's withLeanVision({ ..., projectorPath }) / openVisionRuntime. Input
`tokenpacker_rows` [rows, c + s*s*4c] (core's tokenPackerRows: the region's point query, then its s*s
patches' multi-level states), output `image_features` [rows, LM width]; the same math as core's
tokenPacker() and the ggml graph; float32 weights whatever --outtype says (onnxruntime's CPU kernels run
float32); the leanvision.projector.* keys as the model's metadata_props (strings). Written by hand
(protobuf wire format, opset 17), so the onnx package is not needed either.
"""
import argparse
import collections
import json
import os
import pickle
import re
import struct
import sys
import zipfile

import numpy as np

CONVERTER_VERSION = 1
PREFIXES = ("model.mm_projector.", "mm_projector.")

TOKENPACKER_KEYS = [
    "q_proj_1.weight",
    "k_proj_1.0.weight", "k_proj_1.0.bias", "k_proj_1.2.weight", "k_proj_1.2.bias",
    "v_proj_1.0.weight", "v_proj_1.0.bias", "v_proj_1.2.weight", "v_proj_1.2.bias",
    "ln_q_1.weight", "ln_q_1.bias", "ln_k_1.weight", "ln_k_1.bias", "ln_v_1.weight", "ln_v_1.bias",
    "clip_attn.in_proj_weight", "clip_attn.in_proj_bias", "clip_attn.out_proj.weight", "clip_attn.out_proj.bias",
    "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias",
]
MLP_KEYS = {"0.weight": "mm.0.weight", "0.bias": "mm.0.bias", "2.weight": "mm.2.weight", "2.bias": "mm.2.bias"}


class ConvertError(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Reading checkpoints


class _BF16:
    """numpy has no bfloat16: read the raw 16 bits and widen them to float32."""


Weight = collections.namedtuple("Weight", "array stored")  # stored: "f16", "bf16" or "f32" (what the checkpoint held)


_STORAGE_DTYPES = {
    "HalfStorage": np.float16, "FloatStorage": np.float32, "DoubleStorage": np.float64,
    "BFloat16Storage": _BF16, "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name):
        if name not in _STORAGE_DTYPES:
            raise ConvertError(f"unsupported torch storage type {name}")
        self.dtype = _STORAGE_DTYPES[name]


class _LazyTensor:
    """A tensor of a torch zip checkpoint, read from its storage record only when asked."""

    def __init__(self, archive, record, dtype, offset, size, stride):
        self.archive, self.record, self.dtype = archive, record, dtype
        self.offset, self.shape, self.stride = offset, tuple(size), tuple(stride)

    def load(self):
        raw = self.archive.read(self.record)
        base = np.frombuffer(raw, dtype=np.uint16 if self.dtype is _BF16 else self.dtype)
        item = base.itemsize
        view = np.lib.stride_tricks.as_strided(base[self.offset:], shape=self.shape,
                                               strides=[s * item for s in self.stride]) if self.shape else base[self.offset:self.offset + 1].reshape(())
        out = np.array(view, copy=True)
        if self.dtype is _BF16:
            return Weight((out.astype(np.uint32) << 16).view(np.float32), "bf16")
        return Weight(out, "f16" if self.dtype is np.float16 else "f32")


def _rebuild_tensor(storage, offset, size, stride, *_rest):
    archive, record, dtype = storage
    return _LazyTensor(archive, record, dtype, offset, size, stride)


def read_torch_zip(path, wanted):
    """{name: ndarray} of the tensors whose name `wanted` accepts, from a torch.save zip file."""
    if not zipfile.is_zipfile(path):
        raise ConvertError(f"{path} is not a torch zip checkpoint (torch >= 1.6 format); re-save it with torch.save")
    archive = zipfile.ZipFile(path)
    pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
    if len(pickles) != 1:
        raise ConvertError(f"{path}: expected one data.pkl in the zip, found {len(pickles)}")
    prefix = pickles[0][: -len("data.pkl")]

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "collections" and name == "OrderedDict":
                return collections.OrderedDict
            if module == "torch._utils" and name == "_rebuild_tensor_v2":
                return _rebuild_tensor
            if module == "torch._utils" and name == "_rebuild_parameter":
                return lambda data, *_: data
            if module == "torch" and name.endswith("Storage"):
                return _StorageType(name)
            raise ConvertError(f"{path}: the pickle asks for {module}.{name}; only state dicts of tensors are read")

        def persistent_load(self, pid):
            if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
                raise ConvertError(f"{path}: unexpected persistent id {pid!r}")
            _, storage_type, key, _location, _numel = pid
            return (archive, f"{prefix}data/{key}", storage_type.dtype)

    with archive.open(pickles[0]) as f:
        state = Unpickler(f).load()
    if not isinstance(state, dict):
        raise ConvertError(f"{path} does not hold a state dict")
    return {name: t.load() for name, t in state.items() if wanted(name) and isinstance(t, _LazyTensor)}


_SAFETENSORS_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "BF16": _BF16,
                       "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path, wanted):
    out = {}
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        for name, info in header.items():
            if name == "__metadata__" or not wanted(name):
                continue
            dtype = _SAFETENSORS_DTYPES.get(info["dtype"])
            if dtype is None:
                raise ConvertError(f"{path}: tensor {name} has unsupported dtype {info['dtype']}")
            begin, end = info["data_offsets"]
            f.seek(8 + n + begin)
            raw = f.read(end - begin)
            arr = np.frombuffer(raw, dtype=np.uint16 if dtype is _BF16 else dtype).reshape(info["shape"]).copy()
            if dtype is _BF16:
                out[name] = Weight((arr.astype(np.uint32) << 16).view(np.float32), "bf16")
            else:
                out[name] = Weight(arr, "f16" if dtype is np.float16 else "f32")
    return out


def read_weights_file(path, wanted):
    return read_safetensors(path, wanted) if path.endswith(".safetensors") else read_torch_zip(path, wanted)


def is_projector_key(name):
    return name.startswith(PREFIXES)


def read_projector(checkpoint):
    """(state dict under the projector prefix, config dict or {}, source description)."""
    if os.path.isfile(checkpoint):
        config_path = os.path.join(os.path.dirname(checkpoint), "config.json")
        files = [checkpoint]
    elif os.path.isdir(checkpoint):
        config_path = os.path.join(checkpoint, "config.json")
        files = None
        for index_name in ("pytorch_model.bin.index.json", "model.safetensors.index.json"):
            index_path = os.path.join(checkpoint, index_name)
            if os.path.exists(index_path):
                with open(index_path) as f:
                    weight_map = json.load(f)["weight_map"]
                files = sorted({os.path.join(checkpoint, shard) for name, shard in weight_map.items() if is_projector_key(name)})
                if not files:
                    raise ConvertError(f"{index_path} maps no tensor under model.mm_projector.; is this a LLaVA / TokenPacker checkpoint?")
                break
        if files is None:
            for single in ("pytorch_model.bin", "model.safetensors", "mm_projector.bin"):
                if os.path.exists(os.path.join(checkpoint, single)):
                    files = [os.path.join(checkpoint, single)]
                    break
        if files is None:
            raise ConvertError(f"{checkpoint} has no pytorch_model.bin(.index.json), model.safetensors(.index.json) or mm_projector.bin")
    else:
        raise ConvertError(f"{checkpoint}: no such file or folder")
    config = {}
    if os.path.exists(config_path):
        with open(config_path) as f:
            config = json.load(f)
    state = {}
    for path in files:
        if not os.path.exists(path):
            raise ConvertError(f"{path} is missing (the index names it)")
        for name, arr in read_weights_file(path, is_projector_key).items():
            state[name[len(next(p for p in PREFIXES if name.startswith(p))):]] = arr
    if not state:
        raise ConvertError(f"no tensor under model.mm_projector. in {', '.join(files)}")
    return state, config, files


# ---------------------------------------------------------------------------------------------
# Writing GGUF (ggml/docs/gguf.md, version 3)

GGUF_UINT32, GGUF_INT32, GGUF_FLOAT32, GGUF_STRING, GGUF_ARRAY = 4, 5, 6, 8, 9
GGML_F32, GGML_F16, GGML_BF16 = 0, 1, 30
ALIGNMENT = 32


def _string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(vtype, value):
    if vtype == GGUF_UINT32:
        return struct.pack("<I", value)
    if vtype == GGUF_INT32:
        return struct.pack("<i", value)
    if vtype == GGUF_FLOAT32:
        return struct.pack("<f", value)
    if vtype == GGUF_STRING:
        return _string(value)
    if vtype == GGUF_ARRAY:
        item_type, items = value
        return struct.pack("<IQ", item_type, len(items)) + b"".join(_value(item_type, v) for v in items)
    raise ValueError(vtype)


def write_gguf(path, metadata, tensors):
    """metadata: [(key, type, value)]; tensors: [(name, ndarray in PyTorch shape order, ggml type)]."""
    header = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata)))
    for key, vtype, value in metadata:
        header += _string(key) + struct.pack("<I", vtype) + _value(vtype, value)
    blobs, offset = [], 0
    for name, arr, gtype in tensors:
        if gtype == GGML_BF16:  # round to nearest even (exact for values that came from bf16)
            bits = np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32).astype(np.uint64)
            data = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16).tobytes()
        else:
            data = np.ascontiguousarray(arr, dtype=np.float16 if gtype == GGML_F16 else np.float32).tobytes()
        dims = list(reversed(arr.shape))  # ggml order: ne[0] is the contiguous dimension
        header += _string(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        header += struct.pack("<IQ", gtype, offset)
        blobs.append(data)
        offset += len(data) + (-len(data)) % ALIGNMENT
    header += b"\0" * ((-len(header)) % ALIGNMENT)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(header)
        for data in blobs:
            f.write(data)
            f.write(b"\0" * ((-len(data)) % ALIGNMENT))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# An mmproj copy that runs the CLIP tower deep enough for TokenPacker

_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _skip_value(buf, pos, vtype):
    if vtype in _SCALAR_SIZES:
        return pos + _SCALAR_SIZES[vtype]
    if vtype == GGUF_STRING:
        (n,) = struct.unpack_from("<Q", buf, pos)
        return pos + 8 + n
    if vtype == GGUF_ARRAY:
        item_type, count = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        if item_type in _SCALAR_SIZES:
            return pos + count * _SCALAR_SIZES[item_type]
        for _ in range(count):
            pos = _skip_value(buf, pos, item_type)
        return pos
    raise ConvertError(f"unknown GGUF value type {vtype}")


def set_feature_layer(mmproj_in, mmproj_out, feature_layer):
    """Copies an mmproj with clip.vision.feature_layer = [feature_layer]: llama.cpp's llava graph then
    runs the tower up to hidden state `feature_layer` (without the key it runs block_count - 1 layers:
    hidden state 22 of a LLaVA-1.5 mmproj, which holds 23 blocks)."""
    with open(mmproj_in, "rb") as f:
        head = f.read(16 << 20)
    if head[:4] != b"GGUF":
        raise ConvertError(f"{mmproj_in} is not a GGUF file")
    _version, n_tensors, n_kv = struct.unpack_from("<IQQ", head, 4)
    pos, kvs, alignment, block_count, arch = 24, [], ALIGNMENT, None, None
    for _ in range(n_kv):
        start = pos
        (n,) = struct.unpack_from("<Q", head, pos)
        key = head[pos + 8:pos + 8 + n].decode()
        pos += 8 + n
        (vtype,) = struct.unpack_from("<I", head, pos)
        value_at = pos + 4
        pos = _skip_value(head, value_at, vtype)
        if key == "general.alignment":
            (alignment,) = struct.unpack_from("<I", head, value_at)
        if key == "clip.vision.block_count":
            (block_count,) = struct.unpack_from("<I", head, value_at)
        if key == "general.architecture":
            arch = head[value_at + 8:pos].decode()
        if key != "clip.vision.feature_layer":
            kvs.append(head[start:pos])
    if arch != "clip":
        raise ConvertError(f"{mmproj_in} is not an mmproj (general.architecture {arch!r})")
    if block_count is None or block_count < feature_layer:
        raise ConvertError(f"{mmproj_in} has {block_count} encoder blocks; hidden state {feature_layer} needs at least {feature_layer}")
    infos_start = pos
    for _ in range(n_tensors):
        (n,) = struct.unpack_from("<Q", head, pos)
        pos += 8 + n
        (n_dims,) = struct.unpack_from("<I", head, pos)
        pos += 4 + 8 * n_dims + 4 + 8
    infos = head[infos_start:pos]
    data_start = pos + (-pos) % alignment
    kvs.append(_string("clip.vision.feature_layer") + struct.pack("<I", GGUF_ARRAY) + _value(GGUF_ARRAY, (GGUF_INT32, [feature_layer])))
    header = b"GGUF" + struct.pack("<IQQ", 3, n_tensors, len(kvs)) + b"".join(kvs) + infos
    header += b"\0" * ((-len(header)) % alignment)
    tmp = f"{mmproj_out}.tmp-{os.getpid()}"
    with open(mmproj_in, "rb") as src, open(tmp, "wb") as dst:
        dst.write(header)
        src.seek(data_start)
        while True:
            chunk = src.read(16 << 20)
            if not chunk:
                break
            dst.write(chunk)
    os.replace(tmp, mmproj_out)
    return block_count


# ---------------------------------------------------------------------------------------------
# Writing ONNX (onnx/onnx.proto, protobuf wire format by hand: numpy is the only dependency)

ONNX_FLOAT, ONNX_INT64 = 1, 7
ONNX_OPSET, ONNX_IR_VERSION = 17, 8
ONNX_INPUT, ONNX_OUTPUT = "tokenpacker_rows", "image_features"


def _varint(n):
    n &= (1 << 64) - 1  # int64 fields: two's complement
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _pb_int(field, v):
    return _varint(field << 3) + _varint(v)


def _pb_bytes(field, b):
    return _varint(field << 3 | 2) + _varint(len(b)) + b


def _pb_str(field, s):
    return _pb_bytes(field, s.encode("utf-8"))


def _pb_float(field, f):
    return _varint(field << 3 | 5) + struct.pack("<f", f)


def _onnx_tensor(name, arr):
    """TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian)."""
    dtype = ONNX_FLOAT if arr.dtype == np.float32 else ONNX_INT64
    raw = np.ascontiguousarray(arr, dtype="<f4" if dtype == ONNX_FLOAT else "<i8").tobytes()
    return b"".join(_pb_int(1, d) for d in arr.shape) + _pb_int(2, dtype) + _pb_str(8, name) + _pb_bytes(9, raw)


def _onnx_attribute(name, value):
    """AttributeProto: name (1), f (2), i (3), ints (8), type (20: FLOAT 1, INT 2, INTS 7)."""
    if isinstance(value, float):
        return _pb_str(1, name) + _pb_float(2, value) + _pb_int(20, 1)
    if isinstance(value, int):
        return _pb_str(1, name) + _pb_int(3, value) + _pb_int(20, 2)
    return _pb_str(1, name) + b"".join(_pb_int(8, v) for v in value) + _pb_int(20, 7)


def _onnx_value_info(name, dims):
    """ValueInfoProto of a float tensor: name (1), type (2) = TypeProto.tensor_type (1) = elem_type (1), shape (2)."""
    shape = b"".join(_pb_bytes(1, _pb_int(1, d) if isinstance(d, int) else _pb_str(2, d)) for d in dims)
    return _pb_str(1, name) + _pb_bytes(2, _pb_bytes(1, _pb_int(1, ONNX_FLOAT) + _pb_bytes(2, shape)))


class OnnxGraph:
    """Nodes and initializers of one graph, named the way torch.onnx exports name them."""

    def __init__(self):
        self.nodes, self.initializers, self._count = [], [], 0

    def weight(self, name, arr):
        self.initializers.append(_onnx_tensor(name, arr))
        return name

    def const(self, values, dtype=np.int64, shape=None):
        name = f"onnx::Const_{len(self.initializers)}"
        arr = np.array(values, dtype=dtype)
        return self.weight(name, arr.reshape(shape) if shape is not None else arr)

    def op(self, op_type, inputs, output=None, **attrs):
        name = f"/{op_type}_{self._count}"
        self._count += 1
        out = output or f"{name}_output_0"
        node = b"".join(_pb_str(1, i) for i in inputs) + _pb_str(2, out) + _pb_str(3, name) + _pb_str(4, op_type)
        node += b"".join(_pb_bytes(5, _onnx_attribute(k, v)) for k, v in attrs.items())
        self.nodes.append(node)
        return out

    def model(self, graph_name, inputs, outputs, metadata, doc):
        graph = b"".join(_pb_bytes(1, n) for n in self.nodes) + _pb_str(2, graph_name)
        graph += b"".join(_pb_bytes(5, t) for t in self.initializers)
        graph += b"".join(_pb_bytes(11, _onnx_value_info(*i)) for i in inputs)
        graph += b"".join(_pb_bytes(12, _onnx_value_info(*o)) for o in outputs)
        model = _pb_int(1, ONNX_IR_VERSION) + _pb_str(2, "leanvision-convert-tokenpacker") + _pb_str(3, str(CONVERTER_VERSION))
        model += _pb_str(6, doc) + _pb_bytes(7, graph) + _pb_bytes(8, _pb_int(2, ONNX_OPSET))
        model += b"".join(_pb_bytes(14, _pb_str(1, k) + _pb_str(2, v)) for k, v in metadata)
        return model


def tokenpacker_onnx(state, layout):
    """TokenPacker's forward on the reducer's rows (core tokenPackerRows): [R, c + s2*m] -> [R, out_dim].
    Weights keep their official names and PyTorch layout ([out, in], Gemm transB=1); clip_attn's in_proj
    is split into its q, k and v thirds (nn.MultiheadAttention's own split)."""
    c, m, e, heads, s2, eps = layout["c"], layout["m"], layout["embed"], layout["heads"], layout["scale"] ** 2, layout["eps"]
    d = e // heads
    g = OnnxGraph()
    w = lambda name: g.weight(name, state[name].astype(np.float32))

    def linear(x, prefix, bias=True):
        return g.op("Gemm", [x, w(f"{prefix}.weight")] + ([w(f"{prefix}.bias")] if bias else []), transB=1)

    def gelu(x):  # exact GELU, as nn.GELU(): x * 0.5 * (1 + erf(x / sqrt 2))
        erf = g.op("Erf", [g.op("Div", [x, g.const(np.sqrt(2.0), np.float32)])])
        return g.op("Mul", [g.op("Mul", [x, g.const(0.5, np.float32)]), g.op("Add", [erf, g.const(1.0, np.float32)])])

    def layer_norm(x, prefix):
        return g.op("LayerNormalization", [x, w(f"{prefix}.weight"), w(f"{prefix}.bias")], axis=-1, epsilon=float(eps))

    rows = ONNX_INPUT
    point = g.op("Slice", [rows, g.const([0]), g.const([c]), g.const([1])])
    multi = g.op("Reshape", [g.op("Slice", [rows, g.const([c]), g.const([c + s2 * m]), g.const([1])]), g.const([-1, m])])

    query = layer_norm(linear(point, "q_proj_1", bias=False), "ln_q_1")                      # [R, E]
    def branch(b):
        hidden = gelu(linear(multi, f"{b}_proj_1.0"))
        return layer_norm(linear(hidden, f"{b}_proj_1.2"), f"ln_{b}_1")                       # [R*s2, E]
    key, value = branch("k"), branch("v")

    in_w, in_b = state["clip_attn.in_proj_weight"].astype(np.float32), state["clip_attn.in_proj_bias"].astype(np.float32)
    def in_proj(x, i, part):
        wi = g.weight(f"clip_attn.in_proj_weight.{part}", in_w[i * e:(i + 1) * e])
        bi = g.weight(f"clip_attn.in_proj_bias.{part}", in_b[i * e:(i + 1) * e])
        return g.op("Gemm", [x, wi, bi], transB=1)
    q = g.op("Reshape", [in_proj(query, 0, "q"), g.const([-1, heads, 1, d])])                                   # [R, H, 1, d]
    k = g.op("Transpose", [g.op("Reshape", [in_proj(key, 1, "k"), g.const([-1, s2, heads, d])])], perm=[0, 2, 3, 1])  # [R, H, d, s2]
    v = g.op("Transpose", [g.op("Reshape", [in_proj(value, 2, "v"), g.const([-1, s2, heads, d])])], perm=[0, 2, 1, 3])  # [R, H, s2, d]
    # Each query attends over its own region's s2 keys only.
    scores = g.op("Mul", [g.op("MatMul", [q, k]), g.const(1.0 / np.sqrt(d), np.float32)])
    attended = g.op("Reshape", [g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v]), g.const([-1, e])])   # heads concatenated
    attended = linear(attended, "clip_attn.out_proj")
    hidden = gelu(linear(attended, "mlp.0"))
    g.op("Gemm", [hidden, w("mlp.2.weight"), w("mlp.2.bias")], output=ONNX_OUTPUT, transB=1)
    return g


def write_onnx(path, graph, row_dim, out_dim, metadata, doc):
    def text(vtype, value):
        if vtype == GGUF_ARRAY:
            return ",".join(str(v) for v in value[1])
        return repr(float(value)) if vtype == GGUF_FLOAT32 else str(value)
    props = [(key, text(vtype, value)) for key, vtype, value in metadata]
    data = graph.model("leanvision_tokenpacker", [(ONNX_INPUT, ["num_rows", row_dim])], [(ONNX_OUTPUT, ["num_rows", out_dim])], props, doc)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Conversion


def shape_of(state, name):
    return tuple(state[name].shape)


def expect_shape(state, name, shape):
    if shape_of(state, name) != tuple(shape):
        raise ConvertError(f"mm_projector.{name} has shape {list(shape_of(state, name))}, expected {list(shape)}")


def scale_from_name(checkpoint, grid):
    """From "...-<N>token" in the folder's name (or a single file's folder's)."""
    path = os.path.normpath(checkpoint)
    names = [os.path.basename(path)] + ([os.path.basename(os.path.dirname(path))] if os.path.isfile(path) else [])
    m = next((m for m in (re.search(r"(\d+)token", n) for n in names) if m), None)
    if not m:
        return None
    tokens = int(m.group(1))
    for s in range(1, grid + 1):
        if grid % s == 0 and (grid // s) ** 2 == tokens:
            return s
    return None


def tokenpacker_file(state, config, args, checkpoint):
    missing = [k for k in TOKENPACKER_KEYS if k not in state]
    if missing:
        raise ConvertError(f"the TokenPacker projector lacks mm_projector.{', mm_projector.'.join(missing)}")
    extra = sorted(set(state) - set(TOKENPACKER_KEYS))
    if extra:
        raise ConvertError(f"unexpected projector tensors mm_projector.{', mm_projector.'.join(extra)}; not the official TokenPacker layout")
    embed, c = shape_of(state, "q_proj_1.weight")
    kv_hidden, multi = shape_of(state, "k_proj_1.0.weight")
    hidden, _ = shape_of(state, "mlp.0.weight")
    out_dim, _ = shape_of(state, "mlp.2.weight")
    for branch in ("k", "v"):
        expect_shape(state, f"{branch}_proj_1.0.weight", (kv_hidden, multi))
        expect_shape(state, f"{branch}_proj_1.0.bias", (kv_hidden,))
        expect_shape(state, f"{branch}_proj_1.2.weight", (embed, kv_hidden))
        expect_shape(state, f"{branch}_proj_1.2.bias", (embed,))
    for norm in ("q", "k", "v"):
        expect_shape(state, f"ln_{norm}_1.weight", (embed,))
        expect_shape(state, f"ln_{norm}_1.bias", (embed,))
    expect_shape(state, "clip_attn.in_proj_weight", (3 * embed, embed))
    expect_shape(state, "clip_attn.in_proj_bias", (3 * embed,))
    expect_shape(state, "clip_attn.out_proj.weight", (embed, embed))
    expect_shape(state, "clip_attn.out_proj.bias", (embed,))
    expect_shape(state, "mlp.0.weight", (hidden, embed))
    expect_shape(state, "mlp.0.bias", (hidden,))
    expect_shape(state, "mlp.2.weight", (out_dim, hidden))
    expect_shape(state, "mlp.2.bias", (out_dim,))

    levels = [int(v) for v in args.levels.split(",")]
    if multi != len(levels) * c:
        raise ConvertError(f"k_proj_1.0 reads {multi} multi-level values per patch, but {len(levels)} levels x {c} = {len(levels) * c}; pass --levels")
    heads = args.heads if args.heads is not None else (embed // 128 if embed % 128 == 0 else None)
    if heads is None or heads < 1 or embed % heads != 0:
        raise ConvertError(f"clip_attn has width {embed}; pass --heads (a divisor of {embed}; the official code uses width // 128)")
    grid = args.grid
    scale = args.scale_factor or config.get("scale_factor") or scale_from_name(checkpoint, grid)
    if not scale:
        raise ConvertError("the scale factor is unknown: config.json has no scale_factor; pass --scale-factor 2, 3 or 4")
    scale = int(scale)
    if grid % scale != 0:
        raise ConvertError(f"scale factor {scale} does not divide the {grid}x{grid} grid")
    select = config.get("mm_vision_select_layer", -2)
    feature_layer = args.feature_layer if args.feature_layer is not None else (select if select >= 0 else args.vision_layers + select + 1)
    if not all(1 <= l <= feature_layer for l in levels):
        raise ConvertError(f"multi-level layers {levels} must lie in [1, feature layer {feature_layer}]")
    lm_width = config.get("hidden_size")
    if lm_width is not None and lm_width != out_dim:
        raise ConvertError(f"mlp.2 projects to {out_dim} but config.json's hidden_size (the language model's width) is {lm_width}")
    declared = config.get("mm_projector_type")
    if declared not in (None, "tokenpacker"):
        print(f"note: config.json says mm_projector_type {declared!r}, but the weights are TokenPacker's "
              f"(the official builder builds TokenPacker whatever the type says)", file=sys.stderr)

    metadata = common_metadata("tokenpacker", checkpoint, config, c, out_dim) + [
        ("leanvision.projector.scale_factor", GGUF_UINT32, scale),
        ("leanvision.projector.head_count", GGUF_UINT32, heads),
        ("leanvision.projector.layer_norm_epsilon", GGUF_FLOAT32, 1e-6),
        ("leanvision.projector.grid_size", GGUF_UINT32, grid),
        ("leanvision.projector.feature_layer", GGUF_INT32, feature_layer),
        ("leanvision.projector.multi_level_layers", GGUF_ARRAY, (GGUF_INT32, levels)),
        ("leanvision.projector.multi_level_dim", GGUF_UINT32, multi),
    ]
    tensors = [(name, state[name]) for name in TOKENPACKER_KEYS]
    summary = f"TokenPacker: scale {scale} ({(grid // scale) ** 2} tokens from {grid}x{grid}), width {embed}, {heads} heads, levels {levels} -> {out_dim}"
    return metadata, tensors, summary


def mlp_file(state, config, args, checkpoint):
    if set(state) != set(MLP_KEYS):
        raise ConvertError(f"projector tensors {sorted(state)} are neither TokenPacker's nor LLaVA's mlp2x_gelu (0.weight, 0.bias, 2.weight, 2.bias)")
    hidden, c = shape_of(state, "0.weight")
    out_dim, _ = shape_of(state, "2.weight")
    expect_shape(state, "0.bias", (hidden,))
    expect_shape(state, "2.weight", (out_dim, hidden))
    expect_shape(state, "2.bias", (out_dim,))
    metadata = common_metadata("mlp", checkpoint, config, c, out_dim)
    tensors = [(MLP_KEYS[k], state[k]) for k in ("0.weight", "0.bias", "2.weight", "2.bias")]
    return metadata, tensors, f"mlp: {c} -> {hidden} -> GELU -> {out_dim}"


def common_metadata(ptype, checkpoint, config, input_dim, output_dim):
    name = os.path.basename(os.path.normpath(checkpoint))
    return [
        ("general.architecture", GGUF_STRING, "leanvision-projector"),
        ("general.name", GGUF_STRING, name),
        ("general.description", GGUF_STRING, f"LeanVision projector file ({ptype}) converted from {name}"),
        ("leanvision.projector.type", GGUF_STRING, ptype),
        ("leanvision.projector.input_dim", GGUF_UINT32, input_dim),
        ("leanvision.projector.output_dim", GGUF_UINT32, output_dim),
        ("leanvision.projector.converter_version", GGUF_UINT32, CONVERTER_VERSION),
        ("leanvision.projector.source_projector_type", GGUF_STRING, str(config.get("mm_projector_type", "unknown"))),
    ]


def metadata_value(metadata, key):
    return next(value for k, _vtype, value in metadata if k == key)


def convert(args):
    weights, config, files = read_projector(args.checkpoint)
    for name, w in weights.items():
        if not np.issubdtype(w.array.dtype, np.floating):
            raise ConvertError(f"mm_projector.{name} is {w.array.dtype}, not a float tensor")
    state = {name: w.array for name, w in weights.items()}
    stored = {name: w.stored for name, w in weights.items()}
    if "q_proj_1.weight" in state:
        metadata, tensors, summary = tokenpacker_file(state, config, args, args.checkpoint)
    else:
        metadata, tensors, summary = mlp_file(state, config, args, args.checkpoint)
    if args.onnx:
        if metadata_value(metadata, "leanvision.projector.type") != "tokenpacker":
            raise ConvertError("--onnx writes TokenPacker projectors; this checkpoint's projector is LLaVA's mlp")
        layout = {
            "c": metadata_value(metadata, "leanvision.projector.input_dim"),
            "m": metadata_value(metadata, "leanvision.projector.multi_level_dim"),
            "embed": state["q_proj_1.weight"].shape[0],
            "heads": metadata_value(metadata, "leanvision.projector.head_count"),
            "scale": metadata_value(metadata, "leanvision.projector.scale_factor"),
            "eps": metadata_value(metadata, "leanvision.projector.layer_norm_epsilon"),
        }
        for name, arr in tensors:
            if not np.all(np.isfinite(arr)):
                raise ConvertError(f"{name} holds NaN or infinite values")
        graph = tokenpacker_onnx(state, layout)
        row_dim = layout["c"] + layout["scale"] ** 2 * layout["m"]
        out_dim = metadata_value(metadata, "leanvision.projector.output_dim")
        write_onnx(args.onnx, graph, row_dim, out_dim, metadata, f"LeanVision TokenPacker projector (ONNX) converted from {os.path.basename(os.path.normpath(args.checkpoint))}")
    if not args.output:
        return summary, files
    source = {v: k for k, v in MLP_KEYS.items()}
    out = []
    for name, arr in tensors:
        arr = arr.astype(np.float32)
        if not np.all(np.isfinite(arr)):
            raise ConvertError(f"{name} holds NaN or infinite values")
        # Matrices: f16 when asked; auto keeps what the checkpoint stored (fp16 -> F16, bf16 -> BF16, both exact).
        gtype = GGML_F32
        kept = stored[source.get(name, name)]
        if arr.ndim == 2 and args.outtype == "bf16":
            gtype = GGML_BF16
        elif arr.ndim == 2 and args.outtype == "f16":
            if np.abs(arr).max() > 65504:
                raise ConvertError(f"{name} has values beyond f16's range; use --outtype f32")
            gtype = GGML_F16
        elif arr.ndim == 2 and args.outtype == "auto" and kept != "f32":
            gtype = GGML_F16 if kept == "f16" else GGML_BF16
        out.append((name, arr, gtype))
    write_gguf(args.output, metadata, out)
    return summary, files


def main(argv=None):
    p = argparse.ArgumentParser(description="TokenPacker / LLaVA mlp projector checkpoint -> LeanVision projector file (GGUF)")
    p.add_argument("checkpoint", help="model folder (config.json + shards + index) or one .bin / .safetensors file")
    p.add_argument("-o", "--output", help="projector file to write (.gguf), for @leanvision/llama-adapter")
    p.add_argument("--onnx", help="the TokenPacker projector as ONNX (.onnx), for @leanvision/transformers-adapter")
    p.add_argument("--scale-factor", type=int, help="region side (2, 3, 4); default: config.json's scale_factor")
    p.add_argument("--heads", type=int, help="heads of clip_attn (default: width // 128, as the official code)")
    p.add_argument("--levels", default="12,16,22,23", help="CLIP hidden states concatenated into the multi-level features")
    p.add_argument("--vision-layers", type=int, default=24, help="layers of the vision tower (CLIP ViT-L/14-336: 24)")
    p.add_argument("--feature-layer", type=int, help="hidden state of the patch features (default: from mm_vision_select_layer)")
    p.add_argument("--grid", type=int, default=24, help="patch grid side (official raw_grid: 24)")
    p.add_argument("--outtype", choices=("auto", "f16", "bf16", "f32"), default="auto",
                   help="type of the weight matrices (bf16: faster on CPUs with AVX-512 BF16, rounds fp16 weights)")
    p.add_argument("--mmproj", help="an mmproj of the same CLIP tower (e.g. LLaVA-1.5's mmproj-model-f16.gguf) to copy ...")
    p.add_argument("--mmproj-out", help="... into this file with clip.vision.feature_layer set to the projector's feature layer")
    args = p.parse_args(argv)
    if not args.output and not args.onnx:
        p.error("give -o tokenpacker.gguf (llama adapter), --onnx tokenpacker.onnx (transformers adapter), or both")
    if bool(args.mmproj) != bool(args.mmproj_out):
        p.error("--mmproj and --mmproj-out go together")
    try:
        summary, files = convert(args)
        if args.mmproj:
            feature_layer = args.feature_layer if args.feature_layer is not None else feature_layer_of(args)
            blocks = set_feature_layer(args.mmproj, args.mmproj_out, feature_layer)
            print(f"wrote {args.mmproj_out}: {os.path.basename(args.mmproj)} ({blocks} blocks) running up to hidden state {feature_layer}")
    except ConvertError as e:
        print(f"convert-tokenpacker: {e}", file=sys.stderr)
        return 2
    written = " and ".join(f for f in (args.output, args.onnx) if f)
    print(f"wrote {written}: {summary} (from {', '.join(os.path.basename(f) for f in files)})")
    return 0


def feature_layer_of(args):
    """The feature layer the projector file was written with (tokenpacker), else the tower's -2."""
    config_path = os.path.join(args.checkpoint if os.path.isdir(args.checkpoint) else os.path.dirname(args.checkpoint), "config.json")
    select = -2
    if os.path.exists(config_path):
        with open(config_path) as f:
            select = json.load(f).get("mm_vision_select_layer", -2)
    return select if select >= 0 else args.vision_layers + select + 1


if __name__ == "__main__":
    sys.exit(main())
