export function nodeLlamaCppDir(): string;
export function nodeLlamaCppVersion(): string;
export function bundledLlamaCommit(): string;
export function ensureLlamaSource(): string;
