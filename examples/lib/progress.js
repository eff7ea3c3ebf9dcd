// A one-line progress bar on stderr, for the first-run model writing.

/** Returns an onProgress(done, total) callback that draws `label [#####.....] 52%`. */
export function progressBar(label, stream = process.stderr) {
  let lastPercent = -1;
  return (done, total) => {
    const percent = total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 0;
    if (percent === lastPercent) return;
    const step = Math.floor(percent / 10) !== Math.floor(lastPercent / 10);
    lastPercent = percent;
    const filled = Math.round(percent / 4);
    const line = `${label} [${"#".repeat(filled)}${".".repeat(25 - filled)}] ${String(percent).padStart(3)}%`;
    if (stream.isTTY) stream.write(`\r${line}${percent >= 100 ? "\n" : ""}`);
    else if (step) stream.write(`${line}\n`); // logs get every 10%, not a carriage-return smear
  };
}
