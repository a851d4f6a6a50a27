// The steps `test_shell bench` times in a page, the way pages call Cross-Origin Storage.
// Every timing is `performance.now()` around the calls only: test data is made (natively, by
// `internals.generatedBytes`) and hashed before the clock starts, as a page would know its model's
// hash from a manifest. `internals` is the shell's helper object for its own pages.
(() => {
  const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
  const dict = (hash) => ({ algorithm: "SHA-256", value: hash });
  const prepared = new Map();

  globalThis.cosBench = {
    // Makes `length` bytes from `seed` under `name`; answers their SHA-256.
    async prepare(name, length, seed) {
      const bytes = internals.generatedBytes(length, seed);
      const hash = hex(await crypto.subtle.digest("SHA-256", bytes));
      prepared.set(name, { bytes, hash });
      return hash;
    },

    // getFileHandle(create) → createWritable → write(bytes) → close (verified, durable); ms.
    async store(name) {
      const { bytes, hash } = prepared.get(name);
      const started = performance.now();
      const handle = await navigator.crossOriginStorage.getFileHandle(dict(hash), { create: true });
      const writable = await handle.createWritable();
      await writable.write(bytes);
      await writable.close();
      const ms = performance.now() - started;
      prepared.delete(name);
      return ms;
    },

    // A file of `times` copies of the prepared `name`, whose whole hash is `hash`; ms.
    async storeRepeated(name, times, hash) {
      const { bytes } = prepared.get(name);
      const started = performance.now();
      const handle = await navigator.crossOriginStorage.getFileHandle(dict(hash), { create: true });
      const writable = await handle.createWritable();
      for (let i = 0; i < times; i++) await writable.write(bytes);
      await writable.close();
      const ms = performance.now() - started;
      prepared.delete(name);
      return ms;
    },

    // getFileHandle → getFile → arrayBuffer; ms. Fails unless `size` bytes arrive. With `touch`,
    // the timing also reads one byte of every 4 KiB page of the buffer (a mapped buffer's pages
    // are only faulted in when touched).
    async read(hash, size, touch = false) {
      const started = performance.now();
      const handle = await navigator.crossOriginStorage.getFileHandle(dict(hash));
      const file = await handle.getFile();
      const buffer = await file.arrayBuffer();
      let sum = 0;
      if (touch) {
        const view = new Uint8Array(buffer);
        for (let at = 0; at < view.length; at += 4096) sum += view[at];
      }
      const ms = performance.now() - started;
      globalThis.cosBenchSink = sum;
      if (buffer.byteLength !== size) throw new Error(`read ${buffer.byteLength} bytes, expected ${size}`);
      return ms;
    },

    // `n` sequential getFileHandle calls; each one's ms. `hit` says which outcome is expected.
    async lookups(hash, n, hit) {
      const samples = [];
      for (let i = 0; i < n; i++) {
        const started = performance.now();
        let found = true;
        try {
          await navigator.crossOriginStorage.getFileHandle(dict(hash));
        } catch (error) {
          if (error.name !== "NotFoundError") throw error;
          found = false;
        }
        samples.push(performance.now() - started);
        if (found !== hit) throw new Error(`lookup ${i}: expected a ${hit ? "hit" : "miss"}`);
      }
      return samples;
    },

    // getFileHandle hits for `ms` milliseconds; how many completed.
    async lookupsFor(hash, ms) {
      const until = performance.now() + ms;
      let count = 0;
      while (performance.now() < until) {
        await navigator.crossOriginStorage.getFileHandle(dict(hash));
        count++;
      }
      return count;
    },
  };
})();
