// Error messages a person can act on, for every code the service returns. Pure: no DOM.
//
//   import { ApiError, describeError } from "./errors.js";
//   const { title, text, action } = describeError(err, { ttlSec: 900 });
//
// action is one of "restart" (the session expired: start a new one and replay the clicks),
// "retry", "token" (ask for the API token) or null.

export class ApiError extends Error {
  /** code: the service's code (BAD_USER_INPUT, NOT_FOUND, BUSY, LIMIT_EXCEEDED, ...). */
  constructor(code, message, { status = 0, operation = "" } = {}) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
    this.operation = operation;
  }
}

/** The service's error code for an HTTP status, when a body did not say. */
export function codeForStatus(status) {
  return (
    {
      400: "BAD_USER_INPUT",
      401: "UNAUTHENTICATED",
      403: "FORBIDDEN",
      404: "NOT_FOUND",
      405: "METHOD_NOT_ALLOWED",
      409: "SESSION_BUSY",
      413: "LIMIT_EXCEEDED",
      415: "BAD_USER_INPUT",
      503: "BUSY",
    }[status] ?? "INTERNAL"
  );
}

/** An ApiError from a JSON body: GraphQL {errors: [...]} or the plain {error: {code, message}}. */
export function errorFromBody(body, status = 200, operation = "") {
  const first = body?.errors?.[0];
  if (first) {
    const code = first.extensions?.code ?? (status >= 400 ? codeForStatus(status) : "INTERNAL");
    return new ApiError(code, String(first.message ?? "request failed"), { status, operation });
  }
  if (body?.error) {
    const code = body.error.code ?? codeForStatus(status);
    return new ApiError(String(code), String(body.error.message ?? "request failed"), {
      status,
      operation,
    });
  }
  return new ApiError(codeForStatus(status), `HTTP ${status}`, { status, operation });
}

/** True when err says the session is gone (expired, closed, or the server restarted). */
export function isSessionGone(err) {
  // The store says "no session '…' (it may have expired or been closed)" or "session '…' expired";
  // "no object 3 in this session" is about an object.
  return err?.code === "NOT_FOUND" && /\bno session\b|\bsession\b.*\bexpired\b/i.test(err.message ?? "");
}

/** "the file is too big" -> "The file is too big." */
export function sentence(text) {
  const t = String(text).trim();
  if (!t) return t;
  return t[0].toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".");
}

function minutes(sec) {
  const m = Math.round(sec / 60);
  return m === 1 ? "1 minute" : `${m} minutes`;
}

/** { title, text, action } to show for an error (an ApiError, a codec error or anything). */
export function describeError(err, { ttlSec = null } = {}) {
  const message = String(err?.message ?? err ?? "unknown error");
  if (isSessionGone(err)) {
    const idle = ttlSec ? ` after ${minutes(ttlSec)} without activity` : "";
    return {
      title: "Session expired",
      text:
        `The server closed this session${idle} (or it restarted). ` +
        "Your clicks are kept: restart the session to replay them.",
      action: "restart",
    };
  }
  switch (err?.code) {
    case "BUSY": {
      const freed = ttlSec ? `, or by themselves after ${minutes(ttlSec)} without activity` : "";
      return {
        title: "The server is busy",
        text: `${sentence(message)} Sessions are freed when their page closes${freed}.`,
        action: "retry",
      };
    }
    case "SESSION_BUSY":
      return { title: "Still tracking", text: sentence(message), action: "retry" };
    case "CANCELLED":
      return { title: "Cancelled", text: sentence(message), action: null };
    case "LIMIT_EXCEEDED":
      return { title: "Over the server's limit", text: sentence(message), action: null };
    case "UNAUTHENTICATED":
      return {
        title: "Access token needed",
        text: "This service asks for an API token. Enter it to continue.",
        action: "token",
      };
    case "FORBIDDEN":
      return { title: "Not allowed", text: sentence(message), action: null };
    case "BAD_USER_INPUT":
      return { title: "Not accepted", text: sentence(message), action: null };
    case "NOT_FOUND":
      return { title: "Not found", text: sentence(message), action: null };
    case "NETWORK":
      return {
        title: "Cannot reach the service",
        text: "The request did not get an answer. Check that the service is running.",
        action: "retry",
      };
    case "BAD_MATTE":
      return { title: "Could not read a matte", text: sentence(message), action: null };
    case "INTERNAL":
      return {
        title: "Server error",
        text: "Something went wrong on the server; the details are in its log.",
        action: "retry",
      };
    default:
      return { title: "Something went wrong", text: sentence(message), action: null };
  }
}
