// Upload: check the file against the server's limits in the page, send it with progress,
// then open it like a gallery video.

import { uploadVideo } from "./api.js";
import { checkUpload, formatBytes } from "./util.js";

/** What the browser can tell before uploading: duration and size, or {} when it cannot. */
function probe(file) {
  return new Promise((resolve) => {
    const v = document.createElement("video");
    const url = URL.createObjectURL(file);
    let settled = false;
    const done = (info) => {
      if (settled) return;
      settled = true;
      URL.revokeObjectURL(url);
      v.removeAttribute("src");
      resolve(info);
    };
    v.preload = "metadata";
    v.muted = true;
    v.onloadedmetadata = () => done({ duration: v.duration, width: v.videoWidth, height: v.videoHeight });
    v.onerror = () => done({});
    setTimeout(() => done({}), 3000);
    v.src = url;
  });
}

export function initUpload(app, openVideo) {
  const { els } = app;
  const status = els["upload-status"];
  const bar = els["upload-progress"];

  function refuse(file, problems) {
    status.textContent = "";
    els["upload-input"].value = ""; // choosing the same file again fires "change" again
    app.messages.error({ code: "LIMIT_EXCEEDED", message: `${file.name}: ${problems.join("; ")}.` });
  }

  async function upload(file) {
    const limits = app.state.limits;
    // The size first: a file over the limit is refused without reading it.
    let problems = checkUpload(limits, { size: file.size });
    if (problems.length) return refuse(file, problems);
    status.textContent = `Reading ${file.name}…`;
    problems = checkUpload(limits, { size: file.size, ...(await probe(file)) });
    if (problems.length) return refuse(file, problems);

    bar.hidden = false;
    bar.value = 0;
    els["upload-cancel"].hidden = false;
    status.textContent = `Uploading ${file.name}…`;
    const job = uploadVideo(file, {
      onProgress: (sent, total) => {
        bar.value = total ? sent / total : 0;
        status.textContent = `Uploading: ${formatBytes(sent)} of ${formatBytes(total)}`;
      },
      onSent: () => {
        bar.value = 0;
        status.textContent = "Preparing the video on the server…";
      },
      onTranscode: (fraction, state) => {
        bar.value = fraction;
        bar.dataset.phase = "transcode";
        status.textContent =
          state === "queued" ? "Waiting for the server…" : `Preparing the video: ${Math.round(fraction * 100)} %`;
      },
    });
    els["upload-cancel"].onclick = () => job.abort();
    try {
      const video = await job.promise;
      video.uploadName = file.name;
      app.state.videos = [...app.state.videos.filter((v) => v.path !== video.path), video];
      status.textContent = `Uploaded ${file.name}.`;
      await openVideo(video);
    } catch (err) {
      status.textContent = err?.name === "AbortError" ? "Upload cancelled." : "Upload failed.";
      app.setRetry(() => upload(file));
      app.fail(err);
    } finally {
      bar.hidden = true;
      delete bar.dataset.phase;
      els["upload-cancel"].hidden = true;
      els["upload-input"].value = "";
    }
  }

  els["upload-input"].addEventListener("change", () => {
    const file = els["upload-input"].files?.[0];
    if (file) upload(file);
  });
}
