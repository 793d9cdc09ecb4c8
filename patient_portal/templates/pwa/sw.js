// CARE-SSc service worker, version {{ version }}.
// Only content-hashed static files are cached (cache-first: their name changes when they do),
// plus the offline pages, fetched without cookies. Pages, htmx fragments and form posts always
// go to the network, so nothing about a participant is ever stored by the browser.
"use strict";

const PREFIX = "care-ssc-";
const CACHE = PREFIX + {{ version|tojson }};
const OFFLINE_PAGES = {{ offline_pages|tojson }};
const PRECACHE = {{ precache|tojson }};
const DEFAULT_LANGUAGE = {{ default_language|tojson }};
const ICON = {{ icon|tojson }};
// /static/<path>/<name>.<12 hex digits>.<extension>, as patient_portal.assets names them.
const HASHED_STATIC = /^\/static\/(?:[\w.-]+\/)*[\w.-]+\.[0-9a-f]{12}\.[A-Za-z0-9]+$/;

// The language of the last page shown, sent by pwa.js; lost when the browser stops the worker,
// then the browser's language decides.
let pageLanguage = null;

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) =>
        cache.addAll(
          [...Object.values(OFFLINE_PAGES), ...PRECACHE].map(
            (url) => new Request(url, { credentials: "omit", cache: "no-store" }),
          ),
        ),
      )
      // A new deploy takes over at once: pages are never cached, so nothing stale can show.
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    (async () => {
      const names = await caches.keys();
      await Promise.all(
        names.filter((name) => name.startsWith(PREFIX) && name !== CACHE).map((name) => caches.delete(name)),
      );
      if (self.registration.navigationPreload) {
        await self.registration.navigationPreload.enable();
      }
      await self.clients.claim();
    })(),
  );
});

self.addEventListener("message", (event) => {
  const language = event.data && event.data.language;
  if (Object.hasOwn(OFFLINE_PAGES, language)) {
    pageLanguage = language;
  }
});

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") {
    return;
  }
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) {
    return;
  }
  if (HASHED_STATIC.test(url.pathname) && !url.search && !request.headers.has("Range")) {
    event.respondWith(cacheFirst(request));
  } else if (request.mode === "navigate") {
    event.respondWith(networkOrOfflinePage(event));
  }
  // Anything else (htmx fragments, other requests) is left to the browser: network only.
});

async function cacheFirst(request) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(request, { ignoreVary: true });
  if (cached) {
    return cached;
  }
  const response = await fetch(request);
  if (response.ok && response.type === "basic") {
    await cache.put(request, response.clone());
  }
  return response;
}

async function networkOrOfflinePage(event) {
  try {
    const preloaded = await event.preloadResponse;
    return preloaded || (await fetch(event.request));
  } catch (error) {
    const page = await caches.match(OFFLINE_PAGES[offlineLanguage()], { ignoreVary: true });
    return page || Response.error();
  }
}

function offlineLanguage() {
  if (pageLanguage) {
    return pageLanguage;
  }
  const browser = (self.navigator.language || "").slice(0, 2);
  return Object.hasOwn(OFFLINE_PAGES, browser) ? browser : DEFAULT_LANGUAGE;
}

// Reminders (patient_portal/reminders): the server sends a neutral text (when and where, never
// anything about health) and the page it is about; the worker shows it and keeps nothing.
self.addEventListener("push", (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch (error) {
    data = {};
  }
  const title = typeof data.title === "string" && data.title ? data.title : "CARE-SSc";
  event.waitUntil(
    self.registration.showNotification(title, {
      body: typeof data.body === "string" ? data.body : "",
      tag: typeof data.tag === "string" ? data.tag : "care-ssc",
      lang: typeof data.lang === "string" ? data.lang : "",
      icon: ICON,
      badge: ICON,
      data: { url: portalPath(data.url) },
    }),
  );
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = new URL(portalPath(event.notification.data && event.notification.data.url), self.location.origin).href;
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
      const open = windows.find((client) => new URL(client.url).origin === self.location.origin);
      if (open) {
        // An open portal tab goes to the page; focusing it may be refused without a tap.
        const shown = await open.navigate(target).catch(() => null);
        await (shown || open).focus().catch(() => null);
        return;
      }
      await self.clients.openWindow(target);
    })(),
  );
});

// Only a path on the portal may be opened from a notification.
function portalPath(url) {
  return typeof url === "string" && url.startsWith("/") && !url.startsWith("//") ? url : "/home";
}
