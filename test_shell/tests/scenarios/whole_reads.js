// META: script=resources/cos_helpers.js
// Whole reads of a large entry arrive as a private mapping of the service's sealed copy, filled
// and hashed by the first (ARCHITECTURE.md, "Integrity on read"); over the ipc-channel link they
// are streamed. Each read returns the entry's bytes, and a page writing into the ArrayBuffer it got
// changes neither the entry nor what the next read, its own or another page's, returns.

async function storeLarge(length) {
  const bytes = internals.generatedBytes(length, 7);
  const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const digest = hex(await crypto.subtle.digest("SHA-256", bytes));
  const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: digest }, { create: true });
  const writable = await handle.createWritable();
  await writable.write(bytes);
  await writable.close();
  return digest;
}

// Reads the entry `times` times through arrayBuffer(); each time checks its digest, then
// scribbles over the buffer it got. Returns the digests seen.
async function readAndScribble(digest, times) {
  const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
  const seen = [];
  for (let i = 0; i < times; i++) {
    const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: digest });
    const buffer = await (await handle.getFile()).arrayBuffer();
    seen.push(hex(await crypto.subtle.digest("SHA-256", buffer)));
    const view = new Uint8Array(buffer);
    for (let at = 0; at < view.length; at += 4096) view[at] ^= 0xff;
    view.fill(0x42, 0, 1 << 16);
  }
  const handle = await navigator.crossOriginStorage.getFileHandle({ algorithm: "SHA-256", value: digest });
  const text = await (await handle.getFile()).slice(0, 4).arrayBuffer();
  seen.push(new Uint8Array(text).join(","));
  return seen;
}

promise_test(async () => {
  const length = 12 * 1024 * 1024 + 123;
  const page = (await shell.open("https://reads.example/")).frame;
  const digest = await page.eval(storeLarge, length);
  const seen = await page.eval(readAndScribble, digest, 3);
  assert_array_equals(seen.slice(0, 3), [digest, digest, digest], "every whole read returns the entry's bytes");
  const first = await page.eval(() => [...internals.generatedBytes(4, 7)].join(","));
  assert_equals(seen[3], first, "a ranged read after the scribbles sees the stored bytes");
  // Another page of the site reads the same copy.
  const other = (await shell.open("https://www.reads.example/")).frame;
  const again = await other.eval(readAndScribble, digest, 2);
  assert_array_equals(again.slice(0, 2), [digest, digest], "another page reads the entry's bytes");
}, "whole reads return the entry's bytes, and writes into a returned buffer stay private");
