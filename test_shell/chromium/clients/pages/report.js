// SPDX-License-Identifier: MIT OR Apache-2.0
// The contract between a client page and the runner: when the page is done it prints exactly one
//   console.log("cos-client-report " + JSON.stringify({client, version, ready_ms, inference, note, error}))
// client/version: what the page loaded; ready_ms: from the user's click on the page (its "load
// model" button: a page sharing files with other sites starts on a user activation, since a
// '*' write is recorded only after one) to the model (or the cache step) ready; inference: a short fingerprint of the output, or null; note: what the page
// did not do (e.g. "cache step only"); error: null, or the message of what failed.

export const params = new URLSearchParams(location.search);
let started = performance.now();
let reported = false;

/** Resolves on the user's first click in the page: the application starts then. */
export const loadClicked = new Promise((resolve) =>
  addEventListener("click", () => {
    started = performance.now();
    resolve();
  }, { once: true }),
);

/** Milliseconds since the page started (the click), rounded. */
export function elapsed() {
  return Math.round(performance.now() - started);
}

/** Prints the report (only the first call counts). */
export function report({ client, version, ready_ms = null, inference = null, note = null, error = null }) {
  if (reported) return;
  reported = true;
  const line = "cos-client-report " + JSON.stringify({ client, version, ready_ms, inference, note, error });
  console.log(line);
  document.body.dataset.report = line;
}

/** Reports anything that escapes the page's own handling, so the runner never waits in vain. */
export function reportUncaught(client, version) {
  const fail = (message) => report({ client, version, error: String(message) });
  addEventListener("error", (event) => fail(event.message));
  addEventListener("unhandledrejection", (event) => fail(event.reason?.stack ?? event.reason));
}

/** `error.message`, or what there is. */
export function message(error) {
  return String(error?.message ?? error);
}
