// One WebRTC call to the gateway through its public API only:
// POST the SDP offer to /v1/realtime/calls, JSON events on the "oai-events" data channel,
// DELETE the Location it answered with to hang up.

const ICE_GATHERING_TIMEOUT_MS = 3000;
const DISCONNECTED_GRACE_MS = 4000;

/** A failure the page explains to the user; `kind` is microphone | refused | unreachable | lost. */
export class CallError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

export async function openMicrophone(deviceId) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new CallError("microphone", "This page cannot use a microphone: browsers allow it only on https:// pages and on localhost.");
  }
  const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  if (deviceId) audio.deviceId = { exact: deviceId };
  try {
    return await navigator.mediaDevices.getUserMedia({ audio });
  } catch (err) {
    const reasons = {
      NotAllowedError: "Microphone access was denied. Allow the microphone for this page (the icon in the address bar), then retry.",
      SecurityError: "Microphone access was denied. Allow the microphone for this page (the icon in the address bar), then retry.",
      NotFoundError: "No microphone was found. Plug one in, then retry.",
      OverconstrainedError: "The chosen microphone is not available any more. Pick another one, then retry.",
      NotReadableError: "The microphone could not be opened: another application may be using it.",
    };
    throw new CallError("microphone", reasons[err.name] || `The microphone could not be opened: ${err.message}`);
  }
}

export class RealtimeCall extends EventTarget {
  /** @param {{callsUrl: string, microphone: MediaStream, token?: string}} options */
  constructor({ callsUrl, microphone, token }) {
    super();
    this.callsUrl = callsUrl;
    this.microphone = microphone;
    this.token = token || "";
    this.pc = null;
    this.channel = null;
    this.location = null;
    this.remoteStream = null;
    this.ended = false;
    this.disconnectedTimer = null;
  }

  async start() {
    const pc = (this.pc = new RTCPeerConnection());
    pc.ontrack = (e) => {
      this.remoteStream = e.streams[0] || new MediaStream([e.track]);
      this.dispatchEvent(new CustomEvent("remotestream", { detail: this.remoteStream }));
    };
    pc.onconnectionstatechange = () => this.#onConnectionState();
    for (const track of this.microphone.getAudioTracks()) pc.addTrack(track, this.microphone);
    const channel = (this.channel = pc.createDataChannel("oai-events"));
    channel.onmessage = (e) => {
      let event;
      try { event = JSON.parse(e.data); } catch { return; }
      this.dispatchEvent(new CustomEvent("event", { detail: event }));
    };
    channel.onclose = () => this.#lost("The event channel closed: the gateway ended the call.");

    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc);
    const headers = { "Content-Type": "application/sdp" };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    let response;
    try {
      response = await fetch(this.callsUrl, { method: "POST", body: pc.localDescription.sdp, headers });
    } catch {
      throw new CallError("unreachable", `Cannot reach the gateway at ${this.callsUrl}. Is it running, and does it allow this page's origin (--allow-origin)?`);
    }
    if (!response.ok) throw new CallError("refused", await refusal(response));
    const location = response.headers.get("Location");
    this.location = location ? new URL(location, this.callsUrl).href : null;
    await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
  }

  /** Send one client event; false if the channel is not open. */
  send(event) {
    if (this.channel?.readyState !== "open") return false;
    this.channel.send(JSON.stringify(event));
    return true;
  }

  /** Swap the microphone without renegotiating. */
  async replaceMicrophone(stream) {
    const sender = this.pc?.getSenders().find((s) => s.track?.kind === "audio");
    if (sender) await sender.replaceTrack(stream.getAudioTracks()[0]);
    this.microphone = stream;
  }

  async hangup() {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.disconnectedTimer);
    if (this.channel) this.channel.onclose = null;
    if (this.location) {
      const headers = this.token ? { Authorization: `Bearer ${this.token}` } : {};
      // keepalive: the hang-up still leaves when the page is being closed.
      try { await fetch(this.location, { method: "DELETE", headers, keepalive: true }); } catch { /* gone either way */ }
    }
    this.pc?.close();
  }

  #onConnectionState() {
    const state = this.pc.connectionState;
    this.dispatchEvent(new CustomEvent("state", { detail: state }));
    clearTimeout(this.disconnectedTimer);
    if (state === "failed") this.#lost("The connection to the gateway failed.");
    if (state === "disconnected") {
      this.disconnectedTimer = setTimeout(() => this.#lost("The connection to the gateway was lost."), DISCONNECTED_GRACE_MS);
    }
  }

  #lost(message) {
    if (this.ended) return;
    this.ended = true;
    this.pc?.close();
    this.dispatchEvent(new CustomEvent("lost", { detail: new CallError("lost", message) }));
  }
}

/** The gateway has no trickle ICE: the offer must carry the candidates. */
function iceGathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ICE_GATHERING_TIMEOUT_MS);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

async function refusal(response) {
  let detail = response.statusText || "";
  try {
    const body = await response.json();
    if (body?.error?.message) detail = body.error.code ? `${body.error.message} (${body.error.code})` : body.error.message;
  } catch { /* not JSON */ }
  const retry = response.headers.get("Retry-After");
  return `The gateway refused the call (HTTP ${response.status}): ${detail}${retry ? ` — try again in ${retry} s` : ""}`;
}
