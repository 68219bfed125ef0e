// The page's behaviour, a separate file so that the Content-Security-Policy can forbid
// every inline script.
"use strict";

const $ = (id) => document.getElementById(id);
let pictures = {}; // object URLs of the current photo's overlay and mask, by view
let current = null; // the photo being shown; a newer choice makes older answers stale

async function segment(file, format) {
  const body = new FormData();
  body.append("image", file);
  let response;
  try {
    response = await fetch(`/segment?format=${format}`, { method: "POST", body });
  } catch {
    throw new Error("The service could not be reached.");
  }
  if (!response.ok) {
    // Every client mistake carries the API's own sentence; anything else gets its status.
    const answer = await response.json().catch(() => null);
    throw new Error(answer?.error ?? `The service answered ${response.status}.`);
  }
  return format === "json" ? response.json() : URL.createObjectURL(await response.blob());
}

function showError(message) {
  $("result").hidden = true;
  $("status").textContent = "";
  $("error").textContent = message;
  $("error").hidden = false;
}

function showAnswer(answer, seconds) {
  const verdict = $("verdict");
  const comparison = answer.defective ? ">=" : "<";
  verdict.textContent =
    `${answer.defective ? "Defective" : "No defect found"}: ` +
    `score ${answer.score.toFixed(2)} ${comparison} threshold ${answer.decision_threshold.toFixed(2)}`;
  verdict.className = answer.defective ? "defective" : "clean";
  const rows = answer.regions.map((region, index) => {
    const row = document.createElement("tr");
    const cells = [index + 1, region.class ?? "defect", region.x, region.y, region.width,
      region.height, region.area, region.mean_probability.toFixed(3)];
    for (const value of cells) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.append(cell);
    }
    return row;
  });
  $("regions").tBodies[0].replaceChildren(...rows);
  $("regions").hidden = rows.length === 0;
  const timings = answer.timings_ms;
  $("timing").textContent =
    `${answer.width} x ${answer.height} px, answered in ${Math.round(seconds * 1000)} ms ` +
    `(server ${timings.total.toFixed(0)} ms, of which inference ${timings.inference.toFixed(0)} ms).`;
  $("error").hidden = true;
  $("result").hidden = false;
}

async function showView() {
  const view = document.querySelector("input[name=view]:checked").value;
  const file = current;
  try {
    pictures[view] ??= await segment(file, view);
  } catch (error) {
    if (file === current) showError(error.message);
    return;
  }
  if (file !== current) return;
  $("picture").src = pictures[view];
  $("picture").alt = view === "mask"
    ? "The defect mask: white where the model found a defect"
    : "The photo with its defects tinted red, outlined and numbered";
  $("status").textContent = `${file.name}: ${view} shown.`;
}

async function analyse(file) {
  current = file;
  for (const url of Object.values(pictures)) URL.revokeObjectURL(url);
  pictures = {};
  $("error").hidden = true;
  $("status").textContent = `Analysing ${file.name}...`;
  const started = performance.now();
  let answer;
  try {
    answer = await segment(file, "json");
  } catch (error) {
    if (file === current) showError(error.message);
    return;
  }
  if (file !== current) return;
  showAnswer(answer, (performance.now() - started) / 1000);
  await showView();
}

$("file").addEventListener("change", (event) => {
  if (event.target.files.length) analyse(event.target.files[0]);
});
for (const radio of document.querySelectorAll("input[name=view]")) {
  radio.addEventListener("change", () => { if (current) showView(); });
}
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files.length) analyse(event.dataTransfer.files[0]);
});
