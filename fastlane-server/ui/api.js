// The public HTTP API, as the UI calls it: JSON in and out, the caller's
// credentials on every request, and a sign-in prompt when the server asks
// for them. Credentials live in this tab's sessionStorage only.

const KEY = "fastlane.credentials";

/// An answer other than 2xx: `status`, the API's `error` text, and the
/// request `field` at fault when the server named one.
export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `the server answered ${status}`);
    this.status = status;
    this.field = body && body.field ? body.field : null;
  }
}

function credentials() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || "null");
  } catch {
    return null;
  }
}

function authorization() {
  const saved = credentials();
  if (!saved) return null;
  if (saved.token) return "Bearer " + saved.token;
  if (saved.user) return "Basic " + btoa(unescape(encodeURIComponent(saved.user + ":" + saved.password)));
  return null;
}

/// Forgets the credentials of this tab.
export function signOut() {
  sessionStorage.removeItem(KEY);
}

let signingIn = null;

/// Asks for credentials (once for every request waiting on them).
function signIn(why) {
  if (signingIn) return signingIn;
  const dialog = document.getElementById("login");
  const form = document.getElementById("login-form");
  document.getElementById("login-why").textContent = why;
  document.getElementById("login-error").textContent = "";
  // Esc would close the dialog with every request still waiting on it.
  dialog.oncancel = (event) => event.preventDefault();
  signingIn = new Promise((resolve) => {
    form.onsubmit = (event) => {
      event.preventDefault();
      const token = form.token.value.trim();
      const user = form.user.value;
      if (!token && !user) {
        document.getElementById("login-error").textContent = "Give a token, or a user name and password.";
        return;
      }
      sessionStorage.setItem(KEY, JSON.stringify(token ? { token } : { user, password: form.password.value }));
      form.reset();
      dialog.close();
      signingIn = null;
      resolve();
    };
  });
  dialog.showModal();
  document.getElementById("login-token").focus();
  return signingIn;
}

/// Calls `path` (`/tasks/…`) with `method`, sending `body` as JSON; answers
/// the parsed JSON, or text for `text: true`. Throws an `ApiError`.
export async function call(path, { method = "GET", body, text = false } = {}) {
  for (;;) {
    const headers = { Accept: text ? "text/plain" : "application/json" };
    const auth = authorization();
    if (auth) headers.Authorization = auth;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      // The UI sends its own Authorization; a browser's remembered Basic
      // credentials (and its own prompt on a 401) stay out of it.
      credentials: "omit",
    });
    if (response.status === 401) {
      const answer = await response.json().catch(() => null);
      signOut();
      await signIn(auth ? "Those credentials were refused. " + (answer ? answer.error : "") : "This server asks for credentials.");
      continue;
    }
    if (!response.ok) {
      throw new ApiError(response.status, await response.json().catch(() => null));
    }
    if (text) return { text: await response.text(), headers: response.headers };
    return response.status === 204 ? null : response.json();
  }
}

/// The subprotocols to open a WebSocket with: the credentials, when signed
/// in (a browser cannot set headers on a WebSocket), and `fastlane`, which
/// the server answers with.
export function socketProtocols() {
  const auth = authorization();
  if (!auth) return [];
  const encoded = encodeURIComponent(auth).replace(/[!'()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
  return ["fastlane", "fastlane.authorization." + encoded];
}

/// `/a/b` with each segment percent-encoded.
export function path(...segments) {
  return "/" + segments.map((s) => encodeURIComponent(s)).join("/");
}
