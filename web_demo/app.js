// The demo page: connect / hang up, microphone picker, levels, transcript, latency, settings.
// Everything goes through the gateway's public API (see call.js).

import { CallError, RealtimeCall, openMicrophone } from "./call.js";
import { LevelMonitor } from "./levels.js";
import { Transcript } from "./transcript.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
// ?gateway=https://host:port/ talks to a gateway on another origin (it must allow this one).
const gatewayBase = params.get("gateway") ? params.get("gateway").replace(/\/?$/, "/") : new URL(".", location.href).href;
const callsUrl = new URL("v1/realtime/calls", gatewayBase).href;
const token = params.get("token") || "";
const CONNECT_TIMEOUT_MS = 15000;
const MAX_LOGGED_EVENTS = 300;
const STAGE_LABELS = {
  turn_confirmed: "turn confirmed", asr_final: "ASR", agent_first_text: "agent", tts_first_audio: "TTS",
  first_packet_sent: "first packet",
};

const transcript = new Transcript($("transcript"));
let call = null;
let monitor = null;
let microphone = null;
let connectTimer = null;
let session = null;
const editedSettings = new Set();  // ids of the settings fields changed since the session last said
let pendingSettings = null;  // event_id of the session.update awaiting its answer
let turnCount = 0;
const latencies = [];  // {responseId, turn, gatewayMs, stages, browserMs}

// ------------------------------------------------------------------ call

async function connect() {
  if (call || $("connect").disabled) return;
  $("connect").disabled = true;
  hideError();
  setPhase("connecting", "Connecting…");
  transcript.clear();
  latencies.length = 0;
  turnCount = 0;
  renderLatency();
  monitor ??= new LevelMonitor({ onLevels: showLevels, onReplyStart: browserLatency });
  await monitor.resume();
  let current = null;
  try {
    microphone = await openMicrophone($("microphone").value);
    monitor.setMicrophone(microphone);
    listMicrophones();
    current = call = new RealtimeCall({ callsUrl, microphone, token });
    current.addEventListener("event", (e) => onEvent(e.detail));
    current.addEventListener("remotestream", (e) => {
      $("reply").srcObject = e.detail;
      $("reply").play().catch(() => {});
      monitor.setReply(e.detail);
    });
    current.addEventListener("lost", (e) => fail(e.detail));
    $("hangup").disabled = false;
    await current.start();
    if (call !== current) return;  // hung up meanwhile
    connectTimer = setTimeout(() => fail(new CallError("lost",
      "The call did not connect: no media path to the gateway (a firewall, or ICE servers missing).")), CONNECT_TIMEOUT_MS);
  } catch (err) {
    if (current && call !== current) return;  // hung up meanwhile: not an error
    fail(err instanceof CallError ? err : new CallError("lost", `The call failed: ${err.message}`));
  }
}

async function hangup() {
  const current = call;
  teardown();
  setPhase("idle", "Not connected");
  await current?.hangup();
}

function fail(err) {
  const current = call;
  teardown();
  current?.hangup();
  setPhase("error", err.kind === "microphone" ? "No microphone" : err.kind === "refused" ? "Refused" : "Disconnected");
  showError(err.message, true);
}

function teardown() {
  clearTimeout(connectTimer);
  call = null;
  session = null;
  pendingSettings = null;
  microphone?.getTracks().forEach((t) => t.stop());
  microphone = null;
  monitor?.setMicrophone(null);
  monitor?.setReply(null);
  $("reply").srcObject = null;
  $("connect").disabled = false;
  $("hangup").disabled = true;
  $("apply").disabled = true;
}

function setPhase(phase, text) {
  document.body.dataset.phase = phase;
  $("status").dataset.phase = phase;
  $("status").textContent = text;
}

// ---------------------------------------------------------------- events

function onEvent(event) {
  logEvent(event);
  switch (event.type) {
    case "session.created":
      clearTimeout(connectTimer);
      setPhase("connected", "Connected — talk");
      showSession(event.session);
      $("apply").disabled = false;
      if (editedSettings.size) applySettings();  // changed before connecting
      break;
    case "session.updated":
      if (pendingSettings) {
        editedSettings.clear();
        settingsStatus("Applied", "ok");
      }
      showSession(event.session);
      pendingSettings = null;
      break;
    case "input_audio_buffer.speech_started":
      transcript.speechStarted(event.item_id);
      break;
    case "input_audio_buffer.speech_stopped":
      transcript.speechStopped(event.item_id);
      break;
    case "input_audio_buffer.cleared":
      transcript.inputCleared();
      break;
    case "conversation.item.input_audio_transcription.delta":
      transcript.userDelta(event.item_id, event.delta);
      break;
    case "conversation.item.input_audio_transcription.completed":
      transcript.userFinal(event.item_id, event.transcript);
      break;
    case "conversation.item.input_audio_transcription.failed":
      transcript.userFailed(event.item_id, event.error?.message || "transcription failed");
      break;
    case "response.created":
      transcript.replyStarted(event.response.id);
      turnCount += 1;
      latencies.push({ responseId: event.response.id, turn: turnCount, gatewayMs: null, stages: null, browserMs: null });
      renderLatency();
      break;
    case "response.output_item.added":
      transcript.replyItem(event.response_id, event.item.id);
      break;
    case "response.output_audio_transcript.delta":
      transcript.replyDelta(event.response_id, event.delta);
      break;
    case "conversation.item.truncated":
      transcript.itemTruncated(event.item_id);
      break;
    case "response.done": {
      const item = event.response.output?.[0];
      const heard = item?.content?.[0]?.transcript;
      transcript.replyDone(event.response.id, event.response.status, item?.id, heard);
      break;
    }
    case "gateway.turn.metrics": {
      const row = latencies.find((r) => r.responseId === event.response_id);
      if (row) {
        row.stages = event.stages_ms;
        row.gatewayMs = event.stages_ms?.first_packet_sent ?? null;
        renderLatency();
      }
      break;
    }
    case "error":
      onServerError(event.error || {});
      break;
    case "gateway.session.ended":
      fail(new CallError("lost", `The gateway ended the call: ${event.message || event.reason}.`));
      break;
    default:
      break;
  }
}

function onServerError(error) {
  if (pendingSettings && error.event_id === pendingSettings) {
    pendingSettings = null;
    settingsStatus(error.message, "bad");
    return;
  }
  showError(`The gateway reported an error: ${error.message}${error.code ? ` (${error.code})` : ""}`, false);
}

function logEvent(event) {
  const list = $("events");
  const item = document.createElement("li");
  const detail = event.delta ?? event.transcript ?? event.error?.message ?? event.response?.status ?? "";
  item.textContent = detail ? `${event.type} — ${detail}` : event.type;
  list.prepend(item);
  while (list.childElementCount > MAX_LOGGED_EVENTS) list.lastElementChild.remove();
}

// --------------------------------------------------------------- latency

function browserLatency(ms) {
  const row = [...latencies].reverse().find((r) => r.browserMs === null);
  if (!row) return;
  row.browserMs = ms;
  renderLatency();
}

function renderLatency() {
  const body = $("latency").tBodies[0];
  body.replaceChildren();
  for (const row of latencies) {
    const tr = document.createElement("tr");
    tr.dataset.responseId = row.responseId;
    const cells = [String(row.turn), formatMs(row.gatewayMs), formatMs(row.browserMs)];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      tr.append(td);
    }
    tr.cells[1].className = "gateway-ms";
    tr.cells[2].className = "browser-ms";
    if (row.stages) tr.cells[1].title = stagesText(row.stages);
    body.append(tr);
    const parts = [];
    if (row.gatewayMs !== null) parts.push(`gateway: first audio sent ${formatMs(row.gatewayMs)} after your speech ended (${stagesText(row.stages)})`);
    if (row.browserMs !== null) parts.push(`browser heard it after ${formatMs(row.browserMs)}`);
    transcript.replyMetrics(row.responseId, parts.join(" · "));
  }
  $("latency").classList.toggle("empty", latencies.length === 0);
}

function stagesText(stages) {
  return Object.entries(STAGE_LABELS)
    .filter(([key]) => typeof stages?.[key] === "number")
    .map(([key, label]) => `${label} ${Math.round(stages[key])}`)
    .join(", ") + " ms";
}

function formatMs(ms) {
  return typeof ms === "number" ? `${Math.round(ms)} ms` : "—";
}

// -------------------------------------------------------------- settings

/** Show the session's settings, except in fields the user changed and has not applied yet. */
function showSession(value) {
  session = value;
  const turn = value?.audio?.input?.turn_detection || {};
  const output = value?.audio?.output || {};
  const voices = output.voices || [];
  const select = $("voice");
  const chosen = select.value;
  select.replaceChildren(...voices.map((v) => new Option(v, v)));
  $("voice-row").hidden = voices.length < 2;
  const show = (id, v) => { if (v !== undefined && v !== null && !editedSettings.has(id)) $(id).value = v; };
  show("silence", turn.silence_duration_ms);
  show("threshold", turn.threshold);
  show("instructions", value?.instructions);
  select.value = editedSettings.has("voice") && voices.includes(chosen) ? chosen : output.voice || voices[0] || "";
  showThreshold();
}

function applySettings() {
  if (!call) return;
  const eventId = `event_settings_${Date.now()}`;
  const output = $("voice-row").hidden ? {} : { voice: $("voice").value };
  const sent = call.send({
    type: "session.update",
    event_id: eventId,
    session: {
      type: "realtime",
      instructions: $("instructions").value,
      audio: {
        input: {
          turn_detection: {
            type: "server_vad",
            silence_duration_ms: Number($("silence").value),
            threshold: Number($("threshold").value),
          },
        },
        output,
      },
    },
  });
  if (sent) {
    pendingSettings = eventId;
    settingsStatus("Applying…", "");
  }
}

function settingsStatus(text, kind) {
  $("settings-status").textContent = text;
  $("settings-status").dataset.kind = kind;
}

function showThreshold() {
  $("threshold-value").textContent = Number($("threshold").value).toFixed(2);
}

// ------------------------------------------------------ microphone, levels

async function listMicrophones() {
  if (!navigator.mediaDevices?.enumerateDevices) return;
  const select = $("microphone");
  const chosen = select.value;
  const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "audioinput");
  const options = [new Option("Default microphone", "")];
  devices.forEach((d, i) => {
    if (d.deviceId && d.deviceId !== "default") options.push(new Option(d.label || `Microphone ${i + 1}`, d.deviceId));
  });
  select.replaceChildren(...options);
  select.value = options.some((o) => o.value === chosen) ? chosen : "";
}

async function switchMicrophone() {
  if (!call) return;
  try {
    const stream = await openMicrophone($("microphone").value);
    await call.replaceMicrophone(stream);
    microphone?.getTracks().forEach((t) => t.stop());
    microphone = stream;
    monitor.setMicrophone(stream);
  } catch (err) {
    showError(err.message, false);
  }
}

function showLevels(micDb, replyDb) {
  $("mic-level").style.width = `${levelPercent(micDb)}%`;
  $("reply-level").style.width = `${levelPercent(replyDb)}%`;
}

function levelPercent(db) {
  return Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
}

// ----------------------------------------------------------------- errors

function showError(message, retry) {
  $("error-text").textContent = message;
  $("retry").hidden = !retry;
  $("error").hidden = false;
}

function hideError() {
  $("error").hidden = true;
}

// ------------------------------------------------------------------ wiring

$("connect").addEventListener("click", connect);
$("hangup").addEventListener("click", hangup);
$("retry").addEventListener("click", connect);
$("dismiss").addEventListener("click", hideError);
$("microphone").addEventListener("change", switchMicrophone);
$("threshold").addEventListener("input", showThreshold);
$("settings").addEventListener("input", (e) => { editedSettings.add(e.target.id); settingsStatus("", ""); });
$("settings").addEventListener("submit", (e) => { e.preventDefault(); applySettings(); });
navigator.mediaDevices?.addEventListener?.("devicechange", listMicrophones);
window.addEventListener("pagehide", () => call?.hangup());
$("gateway").textContent = new URL(gatewayBase).host;
showThreshold();
listMicrophones();

// Read-only state for tests and for the curious (the browser console).
window.voiceDemo = {
  get phase() { return document.body.dataset.phase; },
  get levels() { return monitor ? { ...monitor.stats } : null; },
  get latencies() { return latencies.map((r) => ({ ...r })); },
  get session() { return session; },
  get reply() {
    const audio = $("reply");
    return { playing: !audio.paused && audio.srcObject !== null, currentTime: audio.currentTime };
  },
};
