// Shared by the fetch-integration scenarios (harness realm and, through frame.eval, pages).

// `sha256-<base64>` of bytes or a string, as a page embeds it in `integrity`.
async function sri(content) {
  const bytes = typeof content === "string" ? new TextEncoder().encode(content) : content;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return "sha256-" + btoa(String.fromCharCode(...digest));
}

// Runs in a page: fetches and reports the response's shape and body (as text).
async function fetched(url, init) {
  const response = await fetch(url, init);
  const text = await response.text();
  return {
    status: response.status,
    ok: response.ok,
    type: response.type,
    url: response.url,
    redirected: response.redirected,
    contentType: response.headers.get("content-type"),
    contentLength: response.headers.get("content-length"),
    text,
  };
}

// Runs in a page: whether getFileHandle finds the entry of `text` (the page's own view).
async function visible(text) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text)));
  const value = [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
  try {
    await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value });
    return true;
  } catch (error) {
    if (error.name === "NotFoundError") return false;
    throw error;
  }
}
