// The chat page: picks an image, streams answers from /api/chat, shows timings and the kept tokens.
const $ = (id) => document.getElementById(id);
const view = $("view");
const context2d = view.getContext("2d");
const tilesView = $("tiles-view"); // LLaVA-NeXT: the high-resolution tiles, each with its own grid
const tilesContext = tilesView.getContext("2d");
// llava-1.5 pads an image to a square with this colour before resizing; the grid lives on that square.
const PAD_COLOUR = "rgb(122, 116, 104)";
// Overlay mask values (core's keepMask).
const MERGED_OR_DROPPED = 0, KEPT = 1, CONTEXTUAL_TARGET = 2;

let conversation = crypto.randomUUID();
let picture = null; // the ImageBitmap on screen
let pendingImage = null; // base64 of a newly picked image, sent with the next turn
let lastImage = null; // base64 of the image on screen, re-sent when a new chat starts
let overlay = null;

loadBudgets();

$("file").addEventListener("change", () => $("file").files[0] && pickImage($("file").files[0]));
$("drop").addEventListener("dragover", (e) => {
  e.preventDefault();
  $("drop").classList.add("over");
});
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => {
  e.preventDefault();
  $("drop").classList.remove("over");
  const file = e.dataTransfer.files[0];
  if (file) pickImage(file);
});
$("new-chat").addEventListener("click", () => {
  endChat(conversation); // frees its context on the server
  conversation = crypto.randomUUID();
  pendingImage = lastImage;
  $("messages").replaceChildren();
  $("timings").tBodies[0].replaceChildren();
  note("New chat.");
});
// Leaving the page ends its chat too (keepalive: the request outlives the page).
addEventListener("pagehide", () => endChat(conversation));
$("ask").addEventListener("submit", (e) => {
  e.preventDefault();
  send();
});

async function loadBudgets() {
  const budgets = await (await fetch("/api/budgets")).json();
  $("budget").replaceChildren(...budgets.map(({ label, value }) => new Option(label, value)));
}

async function pickImage(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  picture = await createImageBitmap(file);
  pendingImage = lastImage = toBase64(bytes);
  overlay = null;
  $("drop-hint").hidden = true;
  draw();
  drawTiles();
  note(`Image: ${file.name} (${picture.width}×${picture.height}); it is sent with the next question.`);
}

async function send() {
  const text = $("question").value.trim();
  if (!text) return;
  $("question").value = "";
  $("send").disabled = true;
  addMessage("user", text);
  $("status").textContent = "thinking…";
  try {
    const result = await ask(text);
    // The server frees chats that sat idle or that made room for newer ones: start over with the image.
    if (result === "NO_CONVERSATION" && lastImage) {
      note("The server had closed this chat to free memory; starting over with the image.");
      $("timings").tBodies[0].replaceChildren();
      pendingImage = lastImage;
      await ask(text);
    }
  } catch (error) {
    addMessage("error", String(error.message ?? error));
  } finally {
    $("status").textContent = "";
    $("send").disabled = false;
  }
}

/** One turn; returns the error code the server streamed, if any (errors are shown, except NO_CONVERSATION). */
async function ask(text) {
  const answer = addMessage("assistant", "");
  const response = await fetch("/api/chat", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ conversation, text, image: pendingImage, leanVision: $("lean").checked, budget: $("budget").value })
  });
  if (!response.ok) {
    answer.remove();
    const { code, message } = await response.json().catch(() => ({ code: response.status, message: response.statusText }));
    throw new Error(`${code}: ${message}`);
  }
  let failed = null;
  for await (const { event, data } of readEvents(response)) {
    if (event === "chunk") answer.textContent += data.text;
    if (event === "turn") {
      pendingImage = null; // the server has it now
      showTurn(data);
    }
    if (event === "error") {
      answer.remove();
      failed = data.code;
      if (data.code !== "NO_CONVERSATION" || !lastImage) addMessage("error", `${data.code}: ${data.message}`);
    }
  }
  return failed;
}

function endChat(id) {
  fetch("/api/end-chat", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ conversation: id }),
    keepalive: true
  }).catch(() => {}); // nothing to do if the server is gone
}

function showTurn(turn) {
  const rows = $("timings").tBodies[0];
  if (turn.restarted && rows.rows.length > 0) {
    note(`Started over with ${turn.reducer}: a new reducer or image means new visual tokens.`);
  }
  const row = rows.insertRow();
  row.dataset.turn = String(turn.turn);
  const cells = [turn.turn, turn.reducer, turn.visualTokens, turn.evaluatedTokens, turn.reusedTokens,
    turn.encodeMs, turn.reduceMs, turn.projectMs, turn.prefillMs, turn.ttftMs];
  for (const value of cells) row.insertCell().textContent = typeof value === "number" && !Number.isInteger(value) ? value.toFixed(1) : String(value);
  if (turn.overlay) {
    overlay = turn.overlay;
    draw();
    const counts = [0, 0, 0];
    for (const v of overlay.mask) counts[v]++;
    $("overlay-info").textContent =
      `${overlay.reducer}: ${overlay.visualTokens} visual tokens from a ${overlay.rows}×${overlay.cols} patch grid — ` +
      `${counts[KEPT]} patches kept, ${counts[CONTEXTUAL_TARGET]} contextual, ${counts[MERGED_OR_DROPPED]} merged or dropped`;
    view.dataset.kept = String(counts[KEPT]);
    view.dataset.contextual = String(counts[CONTEXTUAL_TARGET]);
    view.dataset.mergedOrDropped = String(counts[MERGED_OR_DROPPED]);
    drawTiles();
  }
}

/** Kept patches per high-resolution tile (the overlay's tiles after the overview). */
function keptPerTile() {
  return (overlay?.tiles ?? []).slice(1).map((t) => t.mask.filter((v) => v === KEPT).length);
}

/**
 * LLaVA-NeXT: the picture fitted (aspect kept, centred) into the tile grid's canvas, as mtmd's
 * any-resolution preprocessing does, and each high-resolution tile's cells marked like the overview's.
 */
function drawTiles() {
  const grid = overlay?.tileGrid;
  const many = Boolean(picture && grid && grid.rows * grid.cols > 0 && overlay.tiles.length === 1 + grid.rows * grid.cols);
  tilesView.hidden = $("tiles-info").hidden = !many;
  if (!many) return;
  const side = Math.floor(336 / Math.max(grid.rows, grid.cols));
  tilesView.width = side * grid.cols;
  tilesView.height = side * grid.rows;
  fitPicture(tilesContext);
  overlay.tiles.slice(1).forEach((tile, i) => {
    const x0 = (i % grid.cols) * side;
    const y0 = Math.floor(i / grid.cols) * side;
    markCells(tilesContext, tile, x0, y0, side);
    tilesContext.strokeStyle = "white";
    tilesContext.lineWidth = 1;
    tilesContext.strokeRect(x0 + 0.5, y0 + 0.5, side - 1, side - 1);
  });
  const kept = keptPerTile();
  tilesView.dataset.tiles = String(kept.length);
  tilesView.dataset.grid = `${grid.rows}x${grid.cols}`;
  tilesView.dataset.keptPerTile = kept.join(",");
  $("tiles-info").textContent = `${grid.rows}×${grid.cols} high-resolution tiles: ${kept.join(", ")} patches kept`;
}

/** One tile's cells, drawn into the square (x0, y0, size): kept = blue, contextual = orange, merged or dropped = darkened. */
function markCells(ctx, { rows, cols, mask }, x0, y0, size) {
  const cw = size / cols;
  const ch = size / rows;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const kind = mask[r * cols + c];
      if (kind === MERGED_OR_DROPPED) {
        ctx.fillStyle = "rgba(0, 0, 0, 0.6)";
        ctx.fillRect(x0 + c * cw, y0 + r * ch, cw, ch);
      } else {
        ctx.strokeStyle = kind === KEPT ? "rgb(40, 100, 230)" : "rgb(240, 140, 20)";
        ctx.lineWidth = 2;
        ctx.strokeRect(x0 + c * cw + 1, y0 + r * ch + 1, cw - 2, ch - 2);
      }
    }
  }
}

/**
 * The picture letterboxed into the square, then each patch cell marked by what the reducer did with it:
 * kept = blue outline, contextual token (its target patch) = orange outline, merged or dropped = darkened.
 */
function draw() {
  fitPicture(context2d);
  if (picture && overlay) markCells(context2d, overlay, 0, 0, view.width);
}

/** The canvas padded, then the picture scaled to fit it (aspect kept) and centred, as the model's preprocessing pads. */
function fitPicture(ctx) {
  const { width, height } = ctx.canvas;
  ctx.fillStyle = PAD_COLOUR;
  ctx.fillRect(0, 0, width, height);
  if (!picture) return;
  const scale = Math.min(width / picture.width, height / picture.height);
  const w = picture.width * scale;
  const h = picture.height * scale;
  ctx.drawImage(picture, (width - w) / 2, (height - h) / 2, w, h);
}

/** Server-sent events from a POST response body. */
async function* readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  while (true) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? "message";
      const data = /^data: (.*)$/m.exec(block)?.[1];
      yield { event, data: data ? JSON.parse(data) : null };
    }
  }
}

function addMessage(kind, text) {
  const li = document.createElement("li");
  li.className = kind;
  li.textContent = text;
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
  return li;
}

function note(text) {
  addMessage("system", text);
}

function toBase64(bytes) {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}
