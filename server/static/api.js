// The service's API as the page uses it: GraphQL, the upload, the propagation stream, limits.
// Every failure is thrown as an ApiError with the service's code (or "NETWORK").

import { ApiError, errorFromBody } from "./errors.js";
import { LineSplitter } from "./util.js";

const TOKEN_KEY = "sam2-matting-token";
let token = globalThis.sessionStorage?.getItem(TOKEN_KEY) ?? "";

export function setToken(value) {
  token = value.trim();
  if (token) globalThis.sessionStorage?.setItem(TOKEN_KEY, token);
  else globalThis.sessionStorage?.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  return token ? { ...extra, Authorization: `Bearer ${token}` } : extra;
}

/**
 * A media URL (Video.url, posterUrl, an export's url) as a same-origin path: the page is
 * served by the service, and a same-origin <video> never taints the canvas it is drawn on.
 * With a token, it rides in the query string (a <video> cannot send headers).
 */
export function mediaUrl(url) {
  const u = new URL(url, globalThis.location?.href ?? "file:///");
  if (token) u.searchParams.set("access_token", token);
  return u.pathname + u.search;
}

async function readJson(response, operation) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new ApiError("INTERNAL", `unexpected answer (HTTP ${response.status})`, {
      status: response.status,
      operation,
    });
  }
}

async function send(url, init, operation) {
  try {
    return await fetch(url, init);
  } catch (err) {
    if (err?.name === "AbortError") throw err;
    throw new ApiError("NETWORK", `cannot reach the service (${err?.message ?? err})`, { operation });
  }
}

/** Run a GraphQL document; returns data, or throws the first error as an ApiError. */
export async function gql(query, variables = {}, { keepalive = false } = {}) {
  const operation = /(?:query|mutation)\s+(\w+)/.exec(query)?.[1] ?? "";
  const response = await send(
    "/graphql",
    {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", Accept: "application/json" }),
      body: JSON.stringify({ query, variables }),
      keepalive,
    },
    operation,
  );
  const body = await readJson(response, operation);
  if (!response.ok || body.errors?.length || !body.data) {
    throw errorFromBody(body, response.status, operation);
  }
  return body.data;
}

/** GET /api/limits: upload limits, session settings, export formats and features. */
export async function getLimits() {
  const response = await send("/api/limits", { headers: headers() }, "limits");
  const body = await readJson(response, "limits");
  if (!response.ok) throw errorFromBody(body, response.status, "limits");
  return body;
}

const VIDEO_FIELDS = "id path url posterUrl width height frameCount fps duration";
const UPLOAD = `mutation UploadVideoAsync($file: Upload!) { uploadVideoAsync(file: $file) {
  id state progress errorCode error video { ${VIDEO_FIELDS} } } }`;
const UPLOAD_JOB = `query UploadJob($id: String!) { uploadJob(id: $id) {
  id state progress errorCode error video { ${VIDEO_FIELDS} } } }`;
const POLL_MS = 250;

/**
 * Upload a file (graphql-multipart-request-spec) with uploadVideoAsync, then follow the
 * server's transcode. onProgress(sent, total) follows the bytes; onSent() fires when they are
 * all sent; onTranscode(fraction, state) follows the job (queued, transcoding).
 * Returns { promise (the Video), abort }; abort stops the upload or the polling.
 */
export function uploadVideo(file, { onProgress = () => {}, onSent = () => {}, onTranscode = () => {} } = {}) {
  let aborted = false;
  let abortSend = () => {};
  const follow = async (job) => {
    for (;;) {
      if (aborted) throw new DOMException("upload cancelled", "AbortError");
      if (job.state === "done") return job.video;
      if (job.state === "failed") {
        throw new ApiError(job.errorCode ?? "INTERNAL", job.error ?? "the upload failed", { operation: "upload" });
      }
      onTranscode(job.progress, job.state);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
      job = (await gql(UPLOAD_JOB, { id: job.id })).uploadJob;
    }
  };
  const sent = sendUpload(file, onProgress, onSent, (abort) => (abortSend = abort));
  const promise = sent.then(follow);
  return {
    promise,
    abort: () => {
      aborted = true;
      abortSend();
    },
  };
}

function sendUpload(file, onProgress, onSent, setAbort) {
  const xhr = new XMLHttpRequest();
  setAbort(() => xhr.abort());
  return new Promise((resolve, reject) => {
    const form = new FormData();
    form.append("operations", JSON.stringify({ query: UPLOAD, variables: { file: null } }));
    form.append("map", JSON.stringify({ 0: ["variables.file"] }));
    form.append("0", file, file.name);
    xhr.open("POST", "/graphql");
    if (token) xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.upload.onload = () => onSent();
    xhr.onerror = () => reject(new ApiError("NETWORK", "the upload was interrupted", { operation: "upload" }));
    xhr.onabort = () => reject(new DOMException("upload cancelled", "AbortError"));
    xhr.onload = () => {
      let body;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        reject(new ApiError("INTERNAL", `unexpected answer (HTTP ${xhr.status})`, { status: xhr.status }));
        return;
      }
      if (xhr.status >= 400 || body.errors?.length || !body.data) {
        reject(errorFromBody(body, xhr.status, "upload"));
      } else {
        resolve(body.data.uploadVideoAsync);
      }
    };
    xhr.send(form);
  });
}

/**
 * POST /propagate_in_video as NDJSON; yields each line's object ({type: "frame" | "end" |
 * "error", ...}). Errors before the stream (HTTP 4xx) are thrown as ApiError.
 */
export async function* propagateStream(body, { signal } = {}) {
  const response = await send(
    "/propagate_in_video",
    {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", Accept: "application/x-ndjson" }),
      body: JSON.stringify(body),
      signal,
    },
    "propagate",
  );
  if (!response.ok) throw errorFromBody(await readJson(response, "propagate"), response.status, "propagate");
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const lines = new LineSplitter();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      const batch = done ? lines.push(decoder.decode()).concat(lines.flush()) : lines.push(decoder.decode(value, { stream: true }));
      for (const line of batch) yield JSON.parse(line);
      if (done) return;
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** GET an image (a session's still preview) as a Blob; a 4xx/5xx is thrown as an ApiError. */
export async function getImage(url, { signal } = {}) {
  const response = await send(url, { headers: headers({ Accept: "image/png" }), signal }, "preview");
  if (!response.ok) throw errorFromBody(await readJson(response, "preview"), response.status, "preview");
  return response.blob();
}

const CLOSE = `mutation CloseSession($input: CloseSessionInput!) { closeSession(input: $input) { success } }`;

/** Close a session; keepalive lets the request outlive the page (tab closing). */
export function closeSession(sessionId, { keepalive = false } = {}) {
  return gql(CLOSE, { input: { sessionId } }, { keepalive });
}
