// SPDX-License-Identifier: MIT OR Apache-2.0
// What an application using Transformers.js with Cross-Origin Storage does: import the browser
// bundle from the CDN, opt in to COS, point the runtime at onnxruntime-web on the CDN, run two
// pipelines on a Hub model, and use them.
import { elapsed, loadClicked, message, params, report, reportUncaught } from "./report.js";

const client = "transformers.js";
const version = params.get("version") ?? "4.3.2";
const model = params.get("model") ?? "cos-test/tiny-bert";
// The onnxruntime-web build each Transformers.js version depends on (its package.json pins it).
const ORT = {
  "4.3.2": "1.31.0-dev.20260914-8d85527a0",
  "4.2.0": "1.26.0-dev.20260416-b7804b056c",
};
reportUncaught(client, version);

const round = (x) => Math.round(x * 1e4) / 1e4;

await loadClicked;
try {
  if (!(version in ORT)) throw new Error(`no onnxruntime-web known for Transformers.js ${version}`);
  const { pipeline, env } = await import(
    `https://cdn.jsdelivr.net/npm/@huggingface/transformers@${version}/dist/transformers.min.js`
  );
  env.experimental_useCrossOriginStorage = true;
  env.allowLocalModels = false;
  const ort = `https://cdn.jsdelivr.net/npm/onnxruntime-web@${ORT[version]}/dist/`;
  env.backends.onnx.wasm.wasmPaths = {
    mjs: `${ort}ort-wasm-simd-threaded.asyncify.mjs`,
    wasm: `${ort}ort-wasm-simd-threaded.asyncify.wasm`,
  };
  const extractor = await pipeline("feature-extraction", model, { dtype: "fp32" });
  const classifier = await pipeline("text-classification", model, { dtype: "fp32" });
  const ready_ms = elapsed();
  const features = await extractor("hello cross origin storage", { pooling: "mean" });
  const [label] = await classifier("this movie was great");
  report({
    client,
    version,
    ready_ms,
    inference: {
      features: { dims: features.dims, first: Array.from(features.data.slice(0, 4), round) },
      classification: { label: label.label, score: round(label.score) },
    },
    note: "crossOriginStorage" in navigator ? null : "navigator.crossOriginStorage is missing: the library used its own cache",
  });
} catch (error) {
  report({ client, version, error: message(error) });
}
