// tinyseek web chat: one page over the server's own /v1/chat/completions stream (no build step, no CDN).
// - The reasoning (reasoning_content deltas) fills a collapsible block; its token count and time come
//   from the stream's usage chunk. The answer (content deltas) goes below it.
// - History sent back holds only the answers: the API never feeds reasoning back to the model.
// - Stop aborts the fetch; the server sees the disconnect and aborts the generation.
// - With `tinyseek serve --api-key`, the key is asked once and kept in localStorage.
// - Model text is only ever set through textContent, never parsed as HTML.
"use strict";

const KEY_STORE = "tinyseek.apiKey";
const $ = (id) => document.getElementById(id);
const state = { model: null, history: [], controller: null, chat: 0 };  // chat: bumped by New chat

function apiKey() { return localStorage.getItem(KEY_STORE) || ""; }

function headers() {
  const h = { "Content-Type": "application/json" };
  if (apiKey()) h.Authorization = "Bearer " + apiKey();
  return h;
}

function scrollDown() { const m = $("messages"); m.scrollTop = m.scrollHeight; }

function addMessage(role, text) {
  const box = document.createElement("div");
  box.className = "msg " + role;
  const body = document.createElement("div");
  body.className = "text";
  body.textContent = text;
  box.appendChild(body);
  $("messages").appendChild(box);
  scrollDown();
  return box;
}

function showError(message) { addMessage("error", message).dataset.role = "error"; }

async function errorMessage(response) {
  let text = "";
  try {
    const body = await response.json();
    text = (body.error && body.error.message) || JSON.stringify(body);
  } catch (_) {
    text = response.statusText;
  }
  return "Error " + response.status + ": " + text;
}

function askKey(reason) {
  $("key-form").hidden = false;
  $("change-key").hidden = false;
  if (reason) showError(reason);
  $("key-input").focus();
}

async function loadModel() {
  let response;
  try {
    response = await fetch("/v1/models", { headers: headers() });
  } catch (err) {
    showError("Cannot reach the server: " + err.message);
    return;
  }
  if (response.status === 401) {
    askKey(apiKey() ? await errorMessage(response) : "");
    return;
  }
  if (!response.ok) {
    showError(await errorMessage(response));
    return;
  }
  const body = await response.json();
  state.model = body.data[0].id;
  $("model-name").textContent = state.model;
  if (apiKey()) $("change-key").hidden = false;
}

function numberField(id, name, integer) {
  const raw = $(id).value.trim();
  if (raw === "") return undefined;
  const value = Number(raw);
  if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new Error(name + " must be " + (integer ? "a whole number" : "a number") + ", got '" + raw + "'");
  }
  return value;
}

function requestBody() {
  const body = { model: state.model, messages: state.history.slice(), stream: true,
                 stream_options: { include_usage: true } };
  const temperature = numberField("temperature", "temperature", false);
  const maxTokens = numberField("max-tokens", "max tokens", true);
  const budget = numberField("reasoning-budget", "reasoning budget", true);
  if (temperature !== undefined) body.temperature = temperature;
  if (maxTokens !== undefined) body.max_tokens = maxTokens;
  if (budget !== undefined) body.max_reasoning_tokens = budget;
  return body;
}

// One assistant turn: the reasoning block (created on the first reasoning delta), then the answer.
class Turn {
  constructor() {
    this.box = addMessage("assistant", "");
    this.box.firstChild.remove();
    this.started = performance.now();
    this.reasoning = "";
    this.answer = "";
    this.thinkingEnded = null;
    this.deltas = 0;
    this.details = null;
    this.answerEl = document.createElement("div");
    this.answerEl.className = "answer";
    this.box.appendChild(this.answerEl);
  }

  seconds() { return (((this.thinkingEnded || performance.now()) - this.started) / 1000).toFixed(1); }

  summary(tokens, done) {
    if (!this.details) return;
    const label = done ? "Thought for " + this.seconds() + " s" : "Thinking… " + this.seconds() + " s";
    this.details.querySelector("summary").textContent = label + " · " + tokens + " tokens";
  }

  addReasoning(text) {
    if (!this.details) {
      this.details = document.createElement("details");
      this.details.className = "reasoning";
      this.details.open = true;
      this.details.appendChild(document.createElement("summary"));
      const thought = document.createElement("div");
      thought.className = "thought";
      this.details.appendChild(thought);
      this.box.insertBefore(this.details, this.answerEl);
    }
    this.reasoning += text;
    this.deltas += 1;
    this.details.querySelector(".thought").textContent = this.reasoning;
    this.summary(this.deltas, false);
  }

  addAnswer(text) {
    if (this.details && this.thinkingEnded === null) {
      this.thinkingEnded = performance.now();
      this.details.open = false;  // collapse the thinking once the answer starts, as DeepSeek's chat does
      this.summary(this.deltas, true);
    }
    this.answer += text;
    this.answerEl.textContent = this.answer;
  }

  finish(usage, note) {
    if (this.details && this.thinkingEnded === null) this.thinkingEnded = performance.now();
    const tokens = usage && usage.completion_tokens_details
      ? usage.completion_tokens_details.reasoning_tokens : this.deltas;
    this.summary(tokens, true);
    if (note) {
      const el = document.createElement("div");
      el.className = "note";
      el.textContent = note;
      this.box.appendChild(el);
    }
  }
}

async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

function setBusy(busy) {
  $("send").hidden = busy;
  $("stop").hidden = !busy;
  $("prompt").disabled = busy;
}

async function send(text) {
  if (!state.model) await loadModel();
  if (!state.model) return;
  let body;
  state.history.push({ role: "user", content: text });
  try {
    body = requestBody();
  } catch (err) {
    state.history.pop();
    showError(err.message);
    return;
  }
  addMessage("user", text);
  const chat = state.chat;
  const turn = new Turn();
  const controller = new AbortController();
  state.controller = controller;
  setBusy(true);
  let usage = null;
  let finish = null;
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) {
      const message = await errorMessage(response);
      if (response.status === 401) askKey();
      throw new Error(message);
    }
    await readEvents(response, (chunk) => {
      if (chunk.error) throw new Error("Error " + (chunk.error.code || "") + ": " + chunk.error.message);
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices || []) {
        const delta = choice.delta || {};
        if (delta.reasoning_content) turn.addReasoning(delta.reasoning_content);
        if (delta.content) turn.addAnswer(delta.content);
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      scrollDown();
    });
    turn.finish(usage, finish === "length" ? "(stopped at the max tokens limit)" : "");
    state.history.push({ role: "assistant", content: turn.answer });
  } catch (err) {
    if (chat !== state.chat) {
      // New chat aborted this turn: its history is gone, nothing to record.
    } else if (err.name === "AbortError") {
      turn.finish(null, "(stopped)");
      state.history.push({ role: "assistant", content: turn.answer });
    } else {
      if (!turn.reasoning && !turn.answer) turn.box.remove();
      else turn.finish(null, "");
      state.history.pop();  // the question got no answer: let the user ask again
      showError(err.message);
    }
  } finally {
    state.controller = null;
    setBusy(false);
    $("prompt").focus();
  }
}

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || state.controller) return;
  $("prompt").value = "";
  send(text);
});
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("composer").requestSubmit();
  }
});
$("stop").addEventListener("click", () => { if (state.controller) state.controller.abort(); });
$("new-chat").addEventListener("click", () => {
  state.chat += 1;
  if (state.controller) state.controller.abort();
  state.history = [];
  $("messages").replaceChildren();
  $("prompt").focus();
});
$("change-key").addEventListener("click", () => askKey());
$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(KEY_STORE, $("key-input").value.trim());
  $("key-input").value = "";
  $("key-form").hidden = true;
  state.model = null;
  loadModel();
});
loadModel();
