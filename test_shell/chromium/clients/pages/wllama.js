// SPDX-License-Identifier: MIT OR Apache-2.0
// What an application using wllama does before inference: download the model through its
// ModelManager, which caches it with Cross-Origin Storage when the API is there (the hash comes
// from the Hub's Git LFS pointer; chunks go to `writable.write` as they arrive), then open the
// cached file. Running it needs a real model, so this page runs the download-and-cache step only.
import { elapsed, message, params, report, reportUncaught } from "./report.js";

const client = "wllama";
const version = params.get("version") ?? "3.13.0";
reportUncaught(client, version);

const url = "https://huggingface.co/cos-test/tiny-gguf/resolve/main/tiny-q4_0.gguf";

try {
  const { ModelManager } = await import(`https://cdn.jsdelivr.net/npm/@wllama/wllama@${version}/esm/index.js`);
  const manager = new ModelManager();
  const model = await manager.downloadModel(url);
  const blobs = await model.open();
  const bytes = blobs.reduce((sum, blob) => sum + blob.size, 0);
  const head = new Uint8Array(await blobs[0].slice(0, 4).arrayBuffer());
  if (String.fromCharCode(...head) !== "GGUF") throw new Error("the cached model does not start with GGUF");
  report({
    client,
    version,
    ready_ms: elapsed(),
    inference: null,
    note: `cache step only (${bytes} bytes cached and read back)`,
  });
} catch (error) {
  report({ client, version, note: "cache step only", error: message(error) });
}
