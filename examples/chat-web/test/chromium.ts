// Debian's chromium for the browser test: installed with apt when missing.
import { existsSync } from "node:fs";
import { execFileSync } from "node:child_process";

export const CHROMIUM_PATH = "/usr/bin/chromium";

// No GPU, no sandbox (containers run as root), and nothing that phones home.
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync"
];

export function ensureChromium(): string {
  if (existsSync(CHROMIUM_PATH)) return CHROMIUM_PATH;
  const asRoot = process.getuid?.() === 0 ? [] : ["sudo", "-n"];
  const run = (cmd: string[]) => {
    const [file, ...args] = [...asRoot, ...cmd];
    execFileSync(file, args, { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  };
  try {
    run(["apt-get", "update"]);
    run(["apt-get", "install", "-y", "chromium"]);
  } catch (error) {
    throw new Error(`could not install Debian's chromium (apt-get install -y chromium); install it and re-run: ${(error as Error).message}`);
  }
  if (!existsSync(CHROMIUM_PATH)) throw new Error(`apt-get installed chromium but ${CHROMIUM_PATH} is missing`);
  return CHROMIUM_PATH;
}
