// Debian packages the tests need (Chromium for the web app, Mesa's software Vulkan for the GPU path):
// installed with apt-get when missing, as root or through passwordless sudo.
import { execFileSync } from "node:child_process";

/** apt-get update + install -y; throws with the command in the message when it cannot. */
export function aptInstall(packages: string[]): void {
  const asRoot = process.getuid?.() === 0 ? [] : ["sudo", "-n"];
  const run = (cmd: string[]) => {
    const [file, ...args] = [...asRoot, ...cmd];
    execFileSync(file, args, { stdio: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
  };
  try {
    run(["apt-get", "update"]);
    run(["apt-get", "install", "-y", ...packages]);
  } catch (error) {
    throw new Error(`apt-get install -y ${packages.join(" ")} failed: ${(error as Error).message.split("\n")[0]}`, { cause: error });
  }
}
