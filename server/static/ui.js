// Page chrome: messages, the help and token dialogs, keyboard shortcuts.

import { describeError } from "./errors.js";

const $ = (id) => document.getElementById(id);

/** Messages in the corner: errors stay until dismissed, notes go after a few seconds. */
export class Messages {
  constructor(root) {
    this.root = root;
    this.byKey = new Map();
  }

  /** Show a note; replaces an earlier one with the same key. */
  info(text, { key = null, timeout = 4000 } = {}) {
    return this.#show({ title: null, text, kind: "info", key, timeout, actions: [] });
  }

  /**
   * Show an error as describeError words it. handlers: { restart, retry, token } callbacks for
   * the error's action. Returns the message element.
   */
  error(err, { ttlSec = null, handlers = {}, key = null } = {}) {
    const { title, text, action } = describeError(err, { ttlSec });
    const labels = { restart: "Restart session", retry: "Try again", token: "Enter token" };
    const actions = action && handlers[action] ? [{ label: labels[action], run: handlers[action] }] : [];
    const el = this.#show({ title, text, kind: "error", key: key ?? action ?? title, timeout: 0, actions });
    el.dataset.code = err?.code ?? "";
    return el;
  }

  clear(key) {
    this.byKey.get(key)?.remove();
    this.byKey.delete(key);
  }

  #show({ title, text, kind, key, timeout, actions }) {
    if (key) this.clear(key);
    const el = document.createElement("div");
    el.className = `message ${kind}`;
    el.setAttribute("role", kind === "error" ? "alert" : "status");
    if (title) {
      const strong = document.createElement("strong");
      strong.textContent = title;
      el.append(strong);
    }
    const p = document.createElement("span");
    p.textContent = text;
    el.append(p);
    const row = document.createElement("div");
    row.className = "row";
    for (const { label, run } of actions) {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "primary";
      b.textContent = label;
      b.addEventListener("click", () => {
        el.remove();
        run();
      });
      row.append(b);
    }
    const close = document.createElement("button");
    close.type = "button";
    close.textContent = "Dismiss";
    close.addEventListener("click", () => el.remove());
    row.append(close);
    el.append(row);
    this.root.append(el);
    if (key) this.byKey.set(key, el);
    if (timeout) setTimeout(() => el.remove(), timeout);
    return el;
  }
}

/** Ask for the API token; resolves with it (or "" when dismissed). */
export function askToken() {
  const dialog = $("token-dialog");
  const input = $("token-input");
  input.value = "";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok" ? input.value : ""), {
      once: true,
    });
    dialog.showModal();
  });
}

export function toggleHelp() {
  const dialog = $("help");
  if (dialog.open) dialog.close();
  else dialog.showModal();
}

function typing(target) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
  if (target.tagName !== "INPUT") return false;
  return !["radio", "checkbox", "range", "button", "color", "file"].includes(target.type);
}

/**
 * Install the shortcuts. keys maps a key name ("n", "ArrowLeft", "shift+ArrowLeft", " ",
 * "ctrl+z", "?") to a callback. Ignored while typing or while a dialog is open.
 */
export function installShortcuts(keys) {
  document.addEventListener("keydown", (e) => {
    if (e.defaultPrevented || typing(e.target) || document.querySelector("dialog[open]")) return;
    if (e.altKey) return;
    // Space and Enter keep activating the focused control.
    const control = e.target instanceof HTMLElement && e.target.matches("button, a, [role=button], input[type=checkbox], input[type=radio]");
    if (control && (e.key === " " || e.key === "Enter")) return;
    // Arrows move within a radio group, as everywhere else.
    if (e.target instanceof HTMLInputElement && e.target.type === "radio" && e.key.startsWith("Arrow")) return;
    const name = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const mod = e.ctrlKey || e.metaKey ? "ctrl+" : "";
    const candidates = [
      `${mod}${e.shiftKey && e.key.length > 1 ? "shift+" : ""}${name}`,
      e.key, // "?" arrives shifted
    ];
    for (const c of candidates) {
      const run = keys[c];
      if (run) {
        // Arrows on a focused range input are for us too: one frame per press either way.
        e.preventDefault();
        run(e);
        return;
      }
    }
  });
}
