// The cleanGPT playground: streams a completion from /v1/completions (server-sent events) with each token's
// log-probability, and draws the prompt's attention from /v1/inspect. Plain browser JavaScript: no build step.
"use strict";

const $ = (id) => document.getElementById(id);
let modelName = null;
let controller = null;
let inspection = null;
let specialTokens = new Set();  // the tokenizer's end-of-text and padding tokens: shown, but not text

function headers() {
  const key = $("api-key").value.trim();
  return key ? { "Content-Type": "application/json", Authorization: `Bearer ${key}` }
             : { "Content-Type": "application/json" };
}

function showError(message) { $("error").textContent = message || ""; }

// The message of a refused request: the server answers OpenAI's error object, but a proxy in between may not
async function errorMessage(response) {
  const text = await response.text();
  try { return JSON.parse(text).error.message; } catch { return `${response.status} ${response.statusText}: ${text}`; }
}

// Forget the attention map of an earlier prompt, so that no stale map stands beside a new prompt's error
function clearInspection(note) {
  inspection = null;
  $("layer").replaceChildren();
  $("head").replaceChildren();
  $("attention").replaceChildren();
  $("attention-note").textContent = note || "";
}

async function loadModel() {
  const response = await fetch("v1/models", { headers: headers() });
  if (!response.ok) { showError(await errorMessage(response)); return; }
  const body = await response.json();
  modelName = body.data[0].id;
  $("model-name").textContent = `model: ${modelName}`;
  const info = await (await fetch("tokenizer_info", { headers: headers() })).json();
  specialTokens = new Set([info.eos_token, info.pad_token, info.bos_token].filter((token) => token));
}

// probability 1 -> green, 0 -> red, as a light background that keeps the text readable
function shade(probability) { return `hsl(${Math.round(120 * probability)}, 75%, 82%)`; }

function visible(text) { return JSON.stringify(text).slice(1, -1); }

function addToken(text, logprob, top) {
  const span = document.createElement("span");
  span.className = specialTokens.has(text) ? "token special" : "token";
  span.textContent = text;
  const probability = Math.exp(logprob);
  span.style.background = shade(probability);
  span.dataset.probability = probability.toFixed(4);
  const lines = [`${visible(text)}  p=${probability.toFixed(3)}`, "alternatives:"];
  for (const [token, value] of Object.entries(top || {}).sort((a, b) => b[1] - a[1])) {
    lines.push(`  ${visible(token).padEnd(8)} ${Math.exp(value).toFixed(3)}`);
  }
  span.dataset.tip = lines.join("\n");
  $("output").appendChild(span);
}

function showTip(event) {
  const tip = $("tooltip");
  const token = event.target.closest(".token");
  if (!token) { tip.hidden = true; return; }
  tip.textContent = token.dataset.tip;
  tip.style.left = `${event.clientX + 12}px`;
  tip.style.top = `${event.clientY + 12}px`;
  tip.hidden = false;
}

async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (data === "[DONE]") return;
      if (data) onData(JSON.parse(data));
    }
  }
}

async function generate() {
  showError("");
  const prompt = $("prompt").value;
  if (!prompt) { showError("type a prompt first"); return; }
  const output = $("output");
  output.textContent = "";
  const promptSpan = document.createElement("span");
  promptSpan.className = "prompt";
  promptSpan.textContent = prompt;
  output.appendChild(promptSpan);
  const body = {
    model: modelName, prompt, stream: true, logprobs: 5,
    max_tokens: Number($("max-tokens").value), temperature: Number($("temperature").value),
    top_p: Number($("top-p").value),
  };
  if ($("seed").value !== "") body.seed = Number($("seed").value);
  clearInspection();
  controller = new AbortController();
  $("generate").disabled = true;
  $("stop").disabled = false;
  $("status").textContent = "generating…";
  const started = performance.now();
  let count = 0;
  let finish = null;
  try {
    inspectPrompt(prompt).catch((error) => clearInspection(`No attention map: ${error}`));
    const response = await fetch("v1/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) {
      showError(await errorMessage(response));
      $("status").textContent = "refused";
      return;
    }
    await readEvents(response, (chunk) => {
      if (chunk.error) { showError(chunk.error.message); finish = "error"; return; }
      const choice = chunk.choices[0];
      const lp = choice.logprobs;
      for (let i = 0; lp && i < lp.tokens.length; i++) {
        addToken(lp.tokens[i], lp.token_logprobs[i], lp.top_logprobs[i]);
        count += 1;
      }
      if (choice.finish_reason) finish = choice.finish_reason;
    });
    const seconds = (performance.now() - started) / 1000;
    $("status").textContent = `${count} tokens in ${seconds.toFixed(2)} s (finish: ${finish})`;
  } catch (error) {
    $("status").textContent = error.name === "AbortError" ? "stopped" : "";
    if (error.name !== "AbortError") showError(String(error));
  } finally {
    $("generate").disabled = false;
    $("stop").disabled = true;
  }
}

async function inspectPrompt(prompt) {
  const response = await fetch("v1/inspect", {
    method: "POST", headers: headers(), body: JSON.stringify({ prompt, top_k: 5 }),
  });
  if (!response.ok) { clearInspection(`No attention map: ${await errorMessage(response)}`); return; }
  const body = await response.json();
  inspection = body;
  const layers = Object.keys(body.attention);
  $("layer").replaceChildren(...layers.map((name) => new Option(name, name)));
  const skipped = body.without_attention.length ? ` (${body.without_attention.join(", ")} report no weights)` : "";
  $("attention-note").textContent = layers.length
    ? `Rows: each prompt token attending; columns: the tokens it attends to${skipped}.`
    : `No attention part reports its weights${skipped}.`;
  fillHeads();
}

function fillHeads() {
  if (!inspection) return;
  const heads = inspection.attention[$("layer").value] || [];
  const chosen = Number($("head").value) || 0;
  $("head").replaceChildren(...heads.map((_, i) => new Option(String(i), String(i))));
  $("head").value = String(Math.min(chosen, Math.max(heads.length - 1, 0)));
  drawAttention();
}

function drawAttention() {
  const table = $("attention");
  table.replaceChildren();
  if (!inspection) return;
  const weights = (inspection.attention[$("layer").value] || [])[Number($("head").value)];
  if (!weights) return;
  const labels = inspection.tokens.map((token) => visible(token.text));
  const head = table.createTHead().insertRow();
  head.appendChild(document.createElement("th"));
  for (const label of labels) { const th = document.createElement("th"); th.textContent = label; head.appendChild(th); }
  const rows = table.createTBody();
  weights.forEach((row, query) => {
    const tr = rows.insertRow();
    const th = document.createElement("th");
    th.textContent = labels[query];
    tr.appendChild(th);
    row.forEach((weight, key) => {
      const cell = tr.insertCell();
      cell.style.background = `rgba(30, 90, 200, ${weight})`;
      cell.title = `${labels[query]} -> ${labels[key]}: ${weight.toFixed(3)}`;
      cell.dataset.weight = String(weight);
    });
  });
}

$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => controller && controller.abort());
$("output").addEventListener("mousemove", showTip);
$("output").addEventListener("mouseleave", () => { $("tooltip").hidden = true; });
$("layer").addEventListener("change", fillHeads);
$("head").addEventListener("change", drawAttention);
$("api-key").addEventListener("change", loadModel);
loadModel().catch((error) => showError(String(error)));
