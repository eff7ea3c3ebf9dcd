// The code blocks of the READMEs, made runnable against the synthetic models without changing the
// code: only file names are substituted.
//
// Rules the READMEs follow (so a snippet runs as written):
// - Every ```js (or ```javascript / ```mjs) block is a complete ES module: it imports what it uses and
//   defines every variable (no `features` or `dir` from nowhere). ```ts blocks and blocks in other
//   languages are not run. A block preceded by `<!-- snippet: skip <reason> -->` is not run.
// - Model files are string literals: "*.gguf" (the mmproj's name contains "mmproj"; any other .gguf
//   is the language model), images "*.jpg|jpeg|png|webp", and a transformers.js model folder is the
//   first argument of `from_pretrained(...)`, a string literal or a variable defined from one
//   (`const dir = "..."`). These are replaced by the synthetic `tiny` models (`tiny-onevision` / `tiny-nanollava`
//   for a OneVision / nanoLLaVA repo name) and llama.cpp's sample
//   image; nothing else is touched.
// - It finishes on its own on a small machine (the test allows 480 s on 2 shared cores): `maxTokens` on every prompt (a random model never
//   stops) and no more llama.cpp threads than cores (node-llama-cpp's default is at least 4).
import { readFileSync } from "node:fs";
import path from "node:path";

export interface Snippet {
  /** README path, relative to the repository. */
  readme: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  code: string;
  /** Reason from a `<!-- snippet: skip ... -->` comment. */
  skip?: string;
}

const RUNNABLE = new Set(["js", "javascript", "mjs"]);

export function extractSnippets(repoRoot: string, readme: string): Snippet[] {
  const lines = readFileSync(path.join(repoRoot, readme), "utf8").split("\n");
  const out: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w-]*)/.exec(lines[i]);
    if (!open) continue;
    const [, indent, fence, lang] = open;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      if (/^\s*(`{3,}|~{3,})\s*$/.test(lines[j]) && lines[j].trim().startsWith(fence)) break;
      body.push(lines[j].startsWith(indent) ? lines[j].slice(indent.length) : lines[j]);
    }
    if (RUNNABLE.has(lang.toLowerCase())) {
      let k = i - 1;
      while (k >= 0 && lines[k].trim() === "") k--;
      const skip = k >= 0 ? /<!--\s*snippet:\s*skip\s*(.*?)\s*-->/.exec(lines[k])?.[1] : undefined;
      out.push({ readme, line: i + 1, lang, code: body.join("\n") + "\n", skip: skip === undefined ? undefined : skip || "skipped" });
    }
    i = j;
  }
  return out;
}

export interface SnippetFiles {
  model: string;
  mmproj: string;
  image: string;
  onnxDir: string;
}

export interface PreparedSnippet {
  code: string;
  /** What was replaced, for messages: [original, replacement]. */
  substitutions: Array<[string, string]>;
  needsGguf: boolean;
  needsOnnx: boolean;
}

const STRING = /(["'`])((?:\\.|(?!\1)[^\\\n])*)\1/g;

/** Replaces the snippet's model and image file names by the synthetic ones (see the rules above). */
export function prepareSnippet(code: string, files: SnippetFiles): PreparedSnippet {
  const substitutions: Array<[string, string]> = [];
  const literal = (value: string, quote: string) => `${quote}${value.replace(/\\/g, "\\\\").replace(new RegExp(quote, "g"), `\\${quote}`)}${quote}`;
  let needsGguf = false;
  let needsOnnx = false;

  // transformers.js model folders: from_pretrained("dir") or from_pretrained(dir) with const dir = "..."
  const folderLiterals = new Set<string>();
  for (const m of code.matchAll(/from_pretrained\(\s*(?:([A-Za-z_$][\w$]*)|(["'`])([^"'`\n]*)\2)/g)) {
    if (m[3] !== undefined) folderLiterals.add(m[3]);
    else {
      const def = new RegExp(`(?:const|let|var)\\s+${m[1].replace(/\$/g, "\\$")}\\s*=\\s*(["'\`])([^"'\`\\n]*)\\1`).exec(code);
      if (def) folderLiterals.add(def[2]);
    }
  }

  const replaced = code.replace(STRING, (whole, quote: string, value: string) => {
    let target: string | undefined;
    if (/\.gguf$/i.test(value)) {
      target = /mmproj/i.test(value) ? files.mmproj : files.model;
      needsGguf = true;
    } else if (/\.(jpe?g|png|webp|gif|bmp)$/i.test(value)) {
      target = files.image;
    } else if (folderLiterals.has(value)) {
      target = files.onnxDir;
      needsOnnx = true;
    }
    if (target === undefined) return whole;
    substitutions.push([value, target]);
    return literal(target, quote);
  });
  return { code: replaced, substitutions, needsGguf, needsOnnx };
}
