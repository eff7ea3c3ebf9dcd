// The progress bar of the project (the testkit's model writers, its CLI and the examples): a
// redrawn bar on a TTY, an occasional line otherwise (so CI logs get a few percentages instead of
// thousands of carriage returns).

export type ProgressCallback = (done: number, total: number) => void;

/**
 * `unit` says how to print done/total: as byte sizes (the default), as plain step counts, or not at
 * all ("none": only the percentage, for callers that do not know what is being counted).
 */
export function progressBar(
  label: string,
  opts: { unit?: "bytes" | "steps" | "none"; stream?: Pick<NodeJS.WriteStream, "isTTY" | "write"> } = {}
): ProgressCallback {
  const stream = opts.stream ?? process.stderr;
  const format = opts.unit === "steps" ? String : formatBytes;
  const counts = (done: number, total: number) => (opts.unit === "none" ? "" : `${format(done)} / ${format(total)}`);
  const started = Date.now();
  let lastDraw = 0;
  let lastTenth = -1;
  return (done, total) => {
    const fraction = total > 0 ? Math.min(1, done / total) : 1;
    const finished = done >= total;
    const sizes = counts(done, total);
    if (stream.isTTY) {
      const now = Date.now();
      if (!finished && now - lastDraw < 100) return;
      lastDraw = now;
      const width = 30;
      const filled = Math.round(fraction * width);
      const bar = "#".repeat(filled) + "-".repeat(width - filled);
      stream.write(`\r${label} [${bar}] ${(fraction * 100).toFixed(0).padStart(3)}%${sizes && ` ${sizes}`}`);
      if (finished) stream.write(` in ${((now - started) / 1000).toFixed(1)} s\n`);
    } else {
      const tenth = Math.floor(fraction * 10);
      if (tenth === lastTenth) return;
      lastTenth = tenth;
      stream.write(`${label}: ${tenth * 10}%${sizes && ` (${sizes})`}${finished ? ` in ${((Date.now() - started) / 1000).toFixed(1)} s` : ""}\n`);
    }
  };
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1 << 30) return `${(bytes / (1 << 30)).toFixed(2)} GiB`;
  if (bytes >= 1 << 20) return `${(bytes / (1 << 20)).toFixed(1)} MiB`;
  return `${(bytes / 1024).toFixed(0)} KiB`;
}
