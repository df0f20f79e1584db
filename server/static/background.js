// The composite background of the preview and the composite view: checker, colour or image.

const $ = (id) => document.getElementById(id);

export function initBackground(app) {
  const { els } = app;

  function setBackground(kind) {
    app.state.background.kind = kind;
    app.state.background.colour = els["bg-colour-input"].value;
    $(`bg-${kind}`).checked = true;
    if (kind === "image" && !app.state.background.image) els["bg-image-input"].click();
    app.scheduleRender();
  }

  async function loadBackgroundImage() {
    const file = els["bg-image-input"].files?.[0];
    if (!file) return;
    try {
      app.state.background.image = await createImageBitmap(file);
      setBackground("image");
    } catch {
      app.messages.error({ code: "BAD_USER_INPUT", message: `${file.name} is not an image this browser can read.` });
    }
  }

  for (const kind of ["checker", "colour", "image"]) {
    $(`bg-${kind}`).addEventListener("change", () => setBackground(kind));
  }
  els["bg-colour-input"].addEventListener("input", () => setBackground("colour"));
  els["bg-image-input"].addEventListener("change", loadBackgroundImage);
}
