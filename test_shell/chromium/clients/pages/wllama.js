// SPDX-License-Identifier: MIT OR Apache-2.0
// What an application using wllama does before inference: download the model through its
// CacheManager, which caches it with Cross-Origin Storage when the API is there (the hash comes
// from the Hub's Git LFS pointer; chunks go to `writable.write` as they arrive), then open the
// cached file. ModelManager is not used: in 3.13.0 its post-download check lists the cache
// through OPFS only, which never holds a file stored in COS, so `downloadModel` fails with
// "Model file not found after download" after a successful COS download. Running the model
// needs a real one, so this page runs the download-and-cache step only.
import { elapsed, loadClicked, message, params, report, reportUncaught } from "./report.js";

const client = "wllama";
const version = params.get("version") ?? "3.13.0";
reportUncaught(client, version);

const url = "https://huggingface.co/cos-test/tiny-gguf/resolve/main/tiny-q4_0.gguf";

await loadClicked;
try {
  const { CacheManager } = await import(`https://cdn.jsdelivr.net/npm/@wllama/wllama@${version}/esm/index.js`);
  const cache = new CacheManager();
  await cache.download(url);
  const blob = await cache.open(url);
  if (!blob) throw new Error("the downloaded model is not in the cache");
  const bytes = blob.size;
  const head = new Uint8Array(await blob.slice(0, 4).arrayBuffer());
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
