// Export: ask the server for a file (exportMatte), follow the job (exportJob) and download it.
//
// Documents are written with literal arguments so that they name no input type: the page
// works with whatever the schema calls them.

import { gql, mediaUrl } from "./api.js";
import { ApiError } from "./errors.js";
import { fraction } from "./util.js";

const JOB = "id status progress url";
const POLL_MS = 400;
const DONE = /^(done|succeeded|success|completed?|finished|ready)$/i;
const FAILED = /^(failed|error|cancell?ed|expired)$/i;
const FALLBACK_FORMATS = [
  { name: "png-zip", description: "zip of RGBA PNG frames (lossless)" },
  { name: "prores", description: "ProRes 4444 with alpha (editors)" },
  { name: "webm", description: "VP9 with alpha (web)" },
  { name: "alpha", description: "the matte as a grey video" },
  { name: "composite", description: "the video over a background colour" },
];

const literal = (value) => JSON.stringify(value); // a JSON string or number is a GraphQL literal

export function exportDocument({ sessionId, objectIds, format, background }) {
  const fields = [
    `sessionId: ${literal(sessionId)}`,
    `objectIds: [${objectIds.map((id) => literal(Number(id))).join(", ")}]`,
    `format: ${literal(format)}`,
  ];
  if (background) fields.push(`background: ${literal(background)}`);
  return `mutation ExportMatte { exportMatte(input: { ${fields.join(", ")} }) { ${JOB} } }`;
}

export function jobDocument(id) {
  return `query ExportJob { exportJob(id: ${literal(id)}) { ${JOB} } }`;
}

/** Why a job failed, from its error fields where the schema has them. */
async function failure(job) {
  const fallback = new ApiError("INTERNAL", `the export ${job.status}`);
  try {
    const { exportJob } = await gql(`query ExportJobError { exportJob(id: ${literal(job.id)}) { error errorCode } }`);
    return exportJob?.error ? new ApiError(exportJob.errorCode ?? "INTERNAL", exportJob.error) : fallback;
  } catch {
    return fallback; // a schema without those fields
  }
}

export function initExport(app) {
  const { els } = app;
  let available = false;
  let running = false;
  let formats = FALLBACK_FORMATS;

  function status(text, state) {
    els["export-status"].textContent = text;
    els["export-status"].dataset.state = state;
  }

  function setFormats(limits) {
    available = Boolean(limits?.features?.export);
    formats = limits?.export_formats?.length ? limits.export_formats : FALLBACK_FORMATS;
    const select = els["export-format"];
    select.replaceChildren(
      ...formats.map((f) => {
        const o = document.createElement("option");
        o.value = f.name;
        o.textContent = f.name;
        return o;
      }),
    );
    formatChanged();
    if (!available) status("Export is not available on this server yet.", "unavailable");
    app.updateControls();
  }

  function formatChanged() {
    const f = formats.find((x) => x.name === els["export-format"].value);
    els["export-format-help"].textContent = f?.description ?? "";
    els["export-bg-row"].hidden = f?.name !== "composite";
  }

  function refreshObjects() {
    const box = els["export-objects"];
    const checked = new Set([...box.querySelectorAll("input:checked")].map((i) => Number(i.value)));
    const first = box.childElementCount === 0;
    box.replaceChildren();
    for (const obj of app.editor.objects) {
      const label = document.createElement("label");
      label.className = "inline";
      const input = document.createElement("input");
      input.type = "checkbox";
      input.value = String(obj.id);
      input.checked = first || checked.has(obj.id) || !box.dataset.known?.split(",").includes(String(obj.id));
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = obj.colour;
      label.append(input, swatch, `Object ${obj.id + 1}`);
      box.append(label);
    }
    box.dataset.known = app.editor.objects.map((o) => o.id).join(",");
  }

  async function start() {
    const s = app.state.session;
    if (!available || running || !s || s.lost || app.propagation.running) return;
    const known = new Set(app.editor.serverObjectIds);
    const objectIds = [...els["export-objects"].querySelectorAll("input:checked")]
      .map((i) => Number(i.value))
      .filter((id) => known.has(id));
    if (!objectIds.length) {
      app.messages.error({ code: "BAD_USER_INPUT", message: "Choose at least one object that has clicks to export." });
      return;
    }
    const format = els["export-format"].value;
    const background = format === "composite" ? els["export-bg"].value : null;
    running = true;
    els.download.hidden = true;
    const bar = els["export-progress"];
    bar.hidden = false;
    bar.value = 0;
    status(`Exporting ${format}…`, "running");
    app.updateControls();
    try {
      let job = (await gql(exportDocument({ sessionId: s.id, objectIds, format, background }))).exportMatte;
      while (!DONE.test(job.status ?? "")) {
        if (FAILED.test(job.status ?? "")) throw await failure(job);
        bar.value = fraction(job.progress);
        status(`Exporting ${format}: ${Math.round(fraction(job.progress) * 100)} %`, "running");
        await new Promise((r) => setTimeout(r, POLL_MS));
        job = (await gql(jobDocument(job.id))).exportJob;
      }
      if (!job.url) throw new ApiError("INTERNAL", "the export finished without a file");
      bar.value = 1;
      const link = els.download;
      link.href = mediaUrl(job.url);
      const name = decodeURIComponent(new URL(job.url, location.href).pathname.split("/").pop() || `matte-${format}`);
      link.setAttribute("download", name);
      link.textContent = `Download ${name}`;
      link.hidden = false;
      status(`Ready: ${name}`, "done");
      link.click();
    } catch (err) {
      status("Export failed.", "error");
      app.fail(err);
    } finally {
      running = false;
      bar.hidden = els["export-status"].dataset.state !== "running";
      app.updateControls();
    }
  }

  els["export-format"].addEventListener("change", formatChanged);
  els.export.addEventListener("click", start);

  return {
    setFormats,
    refreshObjects,
    start,
    get available() {
      return available;
    },
    get running() {
      return running;
    },
  };
}
