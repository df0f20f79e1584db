// The markers over the frame (an SVG in frame pixels): each object's points and box, a label
// for each mask prompt (applied from a prompts file, not drawn), and a box being dragged.

const SVG = "http://www.w3.org/2000/svg";

/** Draw frame's markers into svg. view: { frame, objects: [{id, colour}], active, prompts, rubber: {box, colour} | null }. */
export function drawFrameMarkers(svg, session, { frame, objects, active, prompts, rubber = null }) {
  const s = session;
  svg.replaceChildren();
  if (!s) return;
  svg.setAttribute("viewBox", `0 0 ${s.width} ${s.height}`);
  const unit = Math.max(s.width, s.height) / 100;
  const add = (name, attrs) => {
    const el = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    svg.append(el);
    return el;
  };
  const rect = (b, colour, dashed) =>
    add("rect", {
      x: Math.min(b[0], b[2]) * s.width,
      y: Math.min(b[1], b[3]) * s.height,
      width: Math.abs(b[2] - b[0]) * s.width,
      height: Math.abs(b[3] - b[1]) * s.height,
      fill: "none",
      stroke: colour,
      "stroke-width": unit * 0.4,
      "stroke-dasharray": dashed ? `${unit} ${unit}` : "none",
    });
  let labels = 0;
  for (const obj of objects) {
    const { points, box: b } = prompts.get(frame, obj.id);
    if (b) rect(b, obj.colour, false).classList.add("box");
    for (const [x, y, label] of points) {
      const cx = x * s.width;
      const cy = y * s.height;
      const r = unit * (obj.id === active ? 1.3 : 1);
      add("circle", { cx, cy, r, fill: label ? obj.colour : "#111", stroke: label ? "#fff" : obj.colour, "stroke-width": unit * 0.35 })
        .classList.add(label ? "positive" : "negative");
      const h = r * 0.55;
      add("line", { x1: cx - h, y1: cy, x2: cx + h, y2: cy, stroke: label ? "#000" : "#fff", "stroke-width": unit * 0.3 });
      if (label) add("line", { x1: cx, y1: cy - h, x2: cx, y2: cy + h, stroke: "#000", "stroke-width": unit * 0.3 });
    }
    if (prompts.hasMask(frame, obj.id)) {
      // Top left, one line per object: the mask is in use; a click here replaces it.
      labels += 1;
      const text = add("text", {
        x: unit * 1.5,
        y: unit * 4 * labels,
        fill: obj.colour,
        stroke: "#000",
        "stroke-width": unit * 0.25,
        "paint-order": "stroke",
        "font-size": unit * 3,
        "font-family": "sans-serif",
        "data-object-id": obj.id,
      });
      text.classList.add("mask-prompt");
      text.textContent = `Object ${obj.id + 1}: mask prompt (a click or Clear frame replaces it)`;
    }
  }
  if (rubber) rect(rubber.box, rubber.colour, true);
}
