// The examples' progress callback for the first-run model writing: the testkit's progress bar
// (the one of the project). It counts bytes for GGUF and steps for ONNX, so only the percentage is shown.
import { progressBar as testkitProgressBar } from "@leanvision/testkit/progress";

/** Returns an onProgress(done, total) callback that draws `label [#####-----] 52%` on `stream`. */
export function progressBar(label, stream = process.stderr) {
  return testkitProgressBar(label, { stream, unit: "none" });
}
