export * from "./gguf/index.js";
export * from "./onnx/index.js";
export { aptInstall } from "./apt.js";
export { relativeError, worstElementError } from "./compare.js";
