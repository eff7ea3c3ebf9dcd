// Module resolve hook (node:module register): resolves one bare specifier to a file URL. The Vulkan
// test uses it so node-llama-cpp's import("@node-llama-cpp/linux-x64-vulkan") finds the prebuilt
// kept in LeanVision's cache instead of node_modules.
let mapping = { specifier: null, url: null };

export function initialize(data) {
  mapping = data;
}

export async function resolve(specifier, context, nextResolve) {
  if (specifier === mapping.specifier) return { url: mapping.url, shortCircuit: true, format: "module" };
  return nextResolve(specifier, context);
}
