export * from "./gguf/index.js";
export * from "./onnx/index.js";
