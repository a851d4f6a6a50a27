// Shared helpers for the COS tests (the shell loads them with `// META: script=`).
async function sha256Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

async function hashOf(bytes) {
  return { algorithm: "SHA-256", value: await sha256Hex(bytes) };
}

function uniqueBytes(label) {
  return new TextEncoder().encode(`${label} ${crypto.randomUUID()}`);
}

async function storeBytes(bytes, options = {}) {
  const handle = await navigator.crossOriginStorage.getFileHandle(await hashOf(bytes), { ...options, create: true });
  const writable = await handle.createWritable();
  await writable.write(bytes);
  await writable.close();
  return handle;
}
