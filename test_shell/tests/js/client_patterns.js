// The call sequences of the other real clients (SPEC §9), used by tests/demo.rs. Each loader
// takes the demo manifest and returns {network, cos, ms} like cosLoadModels.

async function pointerHash(file, stats) {
  if (file.sha256) return file.sha256;
  const pointer = await (await fetch(file.url.replace("/resolve/", "/raw/"))).text();
  stats.network += new TextEncoder().encode(pointer).byteLength;
  return /oid sha256:([0-9a-f]{64})/.exec(pointer)[1];
}

// WebLLM (cacheBackend: "cross-origin"): match → else fetch → put → match again.
globalThis.webLlmLoad = async function (files) {
  const started = Date.now();
  const stats = { network: 0, cos: 0 };
  const match = async (hash) => {
    try {
      const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: hash });
      return await handle.getFile();
    } catch (error) {
      return undefined;
    }
  };
  for (const file of files) {
    const hash = await pointerHash(file, stats);
    let blob = await match(hash);
    if (blob) {
      stats.cos += (await blob.arrayBuffer()).byteLength;
      continue;
    }
    const response = await fetch(file.url);
    const body = await response.blob();
    stats.network += body.size;
    const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: hash }, { create: true, origins: "*" });
    const writable = await handle.createWritable();
    await writable.write(body);
    await writable.close();
    blob = await match(hash);
    if (!blob) throw new Error("failed to hydrate");
  }
  stats.ms = Date.now() - started;
  return stats;
};

// wllama: probe the size through COS; on a miss stream the download chunk by chunk, abort on error.
globalThis.wllamaLoad = async function (files) {
  const started = Date.now();
  const stats = { network: 0, cos: 0 };
  for (const file of files) {
    const hash = await pointerHash(file, stats);
    const dict = { algorithm: "SHA-256", value: hash };
    try {
      const size = (await (await navigator.crossOriginStorage.getFileHandle(dict)).getFile()).size;
      stats.cos += size;
      continue;
    } catch (miss) {}
    const response = await fetch(file.url);
    const writable = await (await navigator.crossOriginStorage.getFileHandle(dict, { create: true, origins: "*" })).createWritable();
    try {
      const reader = response.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        await writable.write(value);
        stats.network += value.byteLength;
      }
      await writable.close();
    } catch (error) {
      await writable.abort();
      throw error;
    }
  }
  stats.ms = Date.now() - started;
  return stats;
};
