// Debian's chromium for the browser test: installed with apt when missing.
import { existsSync } from "node:fs";
import { aptInstall } from "@leanvision/testkit";

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
  try {
    aptInstall(["chromium"]);
  } catch (error) {
    throw new Error(`could not install Debian's chromium; install it and re-run: ${(error as Error).message}`);
  }
  if (!existsSync(CHROMIUM_PATH)) throw new Error(`apt-get installed chromium but ${CHROMIUM_PATH} is missing`);
  return CHROMIUM_PATH;
}
