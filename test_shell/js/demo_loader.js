// The demo's model loader: what Transformers.js does with `useCrossOriginStorage` (SPEC §9).
// For a Hub file it takes the hash from the Git LFS pointer (`/raw/` instead of `/resolve/`);
// files without a pointer (the Wasm runtime) carry their hash in the loader's manifest. Then
// COS read → on a miss, download and write with origins: "*". Files the manifest gives an
// `integrity` (the demo's --fetch-integration mode) go through fetch's COS integration instead.
globalThis.cosLoadModels = async function (files) {
  const started = Date.now();
  const stats = { network: 0, cos: 0, files: [] };
  for (const file of files) {
    if (file.integrity) {
      // A file without a pointer whose SRI value the page embeds: the fetch integration
      // (SPEC §11) looks it up in COS, or downloads and stores it, in one call.
      const response = await fetch(file.url, { integrity: file.integrity, crossOriginStorage: "*" });
      const bytes = (await response.arrayBuffer()).byteLength;
      if (globalThis.__demo_progress) globalThis.__demo_progress(file.name, bytes, file.size);
      stats.files.push({ name: file.name, size: bytes, source: "fetch" });
      continue;
    }
    let hash = file.sha256;
    if (!hash) {
      const pointer = await (await fetch(file.url.replace("/resolve/", "/raw/"))).text();
      stats.network += new TextEncoder().encode(pointer).byteLength;
      const match = /oid sha256:([0-9a-f]{64})/.exec(pointer);
      if (!match) throw new Error(`no LFS pointer for ${file.url}`);
      hash = match[1];
    }
    const dict = { algorithm: "SHA-256", value: hash };
    let source = "cos";
    let bytes = 0;
    try {
      const handle = await navigator.crossOriginStorage.getFileHandle(dict);
      const stored = await handle.getFile();
      const response = new Response(stored, { headers: { "Content-Length": String(stored.size) } });
      bytes = (await response.arrayBuffer()).byteLength;
      stats.cos += bytes;
    } catch (miss) {
      // Any rejection of a read means "go to the network".
      source = "network";
      const response = await fetch(file.url);
      if (!response.ok) throw new Error(`HTTP ${response.status} for ${file.url}`);
      const handle = await navigator.crossOriginStorage.getFileHandle(dict, { create: true, origins: "*" });
      const writable = await handle.createWritable();
      const reader = response.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        await writable.write(value);
        bytes += value.byteLength;
        if (globalThis.__demo_progress) globalThis.__demo_progress(file.name, bytes, file.size);
      }
      await writable.close();
      stats.network += bytes;
    }
    stats.files.push({ name: file.name, size: bytes, source });
  }
  stats.ms = Date.now() - started;
  return stats;
};
