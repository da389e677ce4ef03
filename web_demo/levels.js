// Audio levels with WebAudio AnalyserNodes, and the latency the browser itself hears:
// from the end of the caller's speech on the microphone to the first reply audio on the
// remote stream.

const POLL_MS = 20;
const SPEECH_DB = -45;     // the microphone is "speaking" above this level
const AUDIBLE_DB = -50;    // the reply is audible above this level
const QUIET_BEFORE_REPLY_MS = 250;

export class Level {
  constructor(context, stream) {
    this.source = context.createMediaStreamSource(stream);
    this.analyser = context.createAnalyser();
    this.analyser.fftSize = 2048;  // ~43 ms at 48 kHz: longer than a poll, so no audio is missed
    this.samples = new Float32Array(this.analyser.fftSize);
    this.source.connect(this.analyser);
  }

  /** RMS level of the latest samples, dBFS (-100 for silence). */
  db() {
    this.analyser.getFloatTimeDomainData(this.samples);
    let sum = 0;
    for (const s of this.samples) sum += s * s;
    const rms = Math.sqrt(sum / this.samples.length);
    return rms > 1e-5 ? 20 * Math.log10(rms) : -100;
  }

  disconnect() {
    this.source.disconnect();
  }
}

/**
 * Polls the microphone and reply levels. Calls `onLevels(micDb, replyDb)` every poll and
 * `onReplyStart(latencyMs)` when reply audio starts after a quiet spell, with the time since
 * the microphone last carried speech.
 */
export class LevelMonitor {
  constructor({ onLevels, onReplyStart }) {
    this.context = new AudioContext();
    this.mic = null;
    this.reply = null;
    this.onLevels = onLevels;
    this.onReplyStart = onReplyStart;
    this.lastSpeechAt = null;
    this.lastAudibleAt = -Infinity;
    this.stats = { micDb: -100, replyDb: -100, replyPeakDb: -100, replyAudibleMs: 0, replyStarts: 0 };
    this.timer = setInterval(() => this.#poll(), POLL_MS);
  }

  setMicrophone(stream) {
    this.mic?.disconnect();
    this.mic = stream ? new Level(this.context, stream) : null;
  }

  setReply(stream) {
    this.reply?.disconnect();
    this.reply = stream ? new Level(this.context, stream) : null;
  }

  async resume() {
    if (this.context.state === "suspended") await this.context.resume();
  }

  #poll() {
    const now = performance.now();
    const micDb = this.mic ? this.mic.db() : -100;
    const replyDb = this.reply ? this.reply.db() : -100;
    if (micDb > SPEECH_DB) this.lastSpeechAt = now;
    if (replyDb > AUDIBLE_DB) {
      // A reply starts after a quiet spell that followed the caller's speech (not at a pause
      // between two of its sentences).
      const quiet = now - this.lastAudibleAt > QUIET_BEFORE_REPLY_MS;
      if (quiet && this.lastSpeechAt !== null && this.lastSpeechAt > this.lastAudibleAt) {
        this.stats.replyStarts += 1;
        this.onReplyStart(Math.round(now - this.lastSpeechAt));
      }
      this.lastAudibleAt = now;
      this.stats.replyAudibleMs += POLL_MS;
    }
    this.stats.micDb = micDb;
    this.stats.replyDb = replyDb;
    this.stats.replyPeakDb = Math.max(this.stats.replyPeakDb, replyDb);
    this.onLevels(micDb, replyDb);
  }

  close() {
    clearInterval(this.timer);
    this.setMicrophone(null);
    this.setReply(null);
    this.context.close();
  }
}
