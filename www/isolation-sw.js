// Cross-origin isolation where the host sends no headers for it (a plain static server): this
// service worker adds Cross-Origin-Opener-Policy and Cross-Origin-Embedder-Policy to the app's
// own responses, which gives the page shared memory and so the all-cores module. It caches
// nothing: every request still goes to the network. Served from the site's root (Trunk copies it
// there) so that its scope covers the page; main.js registers it.
self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (new URL(request.url).origin !== self.location.origin) return;
  event.respondWith(fetch(request).then((response) => {
    // Opaque and error responses pass as they are.
    if (response.status === 0) return response;
    const headers = new Headers(response.headers);
    headers.set('Cross-Origin-Opener-Policy', 'same-origin');
    headers.set('Cross-Origin-Embedder-Policy', 'require-corp');
    return new Response(response.body, { status: response.status, statusText: response.statusText, headers });
  }));
});
