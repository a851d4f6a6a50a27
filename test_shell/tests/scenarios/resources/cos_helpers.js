// Helpers scenarios run inside a frame with `frame.eval(helper, ...args)`. That call ships only
// the function's own source, so every helper is self-contained.

// Stores `content` with the getFileHandle `options` (plus `create`) and returns its hash.
// `content` is a string (stored as UTF-8) or `{ length, fill }` (that many bytes of `fill`).
async function storeContent(content, options) {
  const bytes =
    typeof content === "string" ? new TextEncoder().encode(content) : new Uint8Array(content.length).fill(content.fill);
  const digest = [...new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))].map((b) => b.toString(16).padStart(2, "0")).join("");
  const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: digest }, { ...options, create: true });
  const writable = await handle.createWritable();
  await writable.write(bytes);
  await writable.close();
  return digest;
}

// Reads an entry and returns its text.
async function readText(digest) {
  const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: digest });
  return await (await handle.getFile()).text();
}

// Reads an entry and returns its size in bytes.
async function readSize(digest) {
  const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: digest });
  return (await handle.getFile()).size;
}

// Looks an entry up without reading it; returns the handle's name.
async function lookup(digest) {
  const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: digest });
  return handle.name;
}
