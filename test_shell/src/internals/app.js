'use strict';
// Keeps the view current: the server announces changes to the store over server-sent events,
// and the view's fragment (same origin, the page's own cookie) replaces the old one. The
// fragment is the server's own escaped markup.
const view = document.getElementById('view');
if (view && view.dataset.fragment) {
  const events = new EventSource('/events');
  let busy = false;
  events.addEventListener('change', async () => {
    if (busy) return;
    busy = true;
    try {
      const response = await fetch(view.dataset.fragment, { credentials: 'same-origin' });
      if (response.ok) {
        view.innerHTML = await response.text();
        const root = document.documentElement;
        root.dataset.updates = String(Number(root.dataset.updates || 0) + 1);
      }
    } finally {
      busy = false;
    }
  });
}
