// The live transcript of both sides, built from the gateway's events.
//
// Caller: input_audio_buffer.speech_started opens a turn, ...transcription.delta appends
// greyed partial text, ...transcription.completed replaces it with the final transcript.
// Gateway: response.created opens a turn, response.output_audio_transcript.delta appends the
// text as it is spoken, response.done closes it; when a barge-in truncated the reply
// (conversation.item.truncated, response.done "cancelled"), only what the caller heard stays,
// the rest is struck through and the turn is marked "interrupted".

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export class Transcript {
  constructor(root) {
    this.root = root;
    this.users = new Map();      // item_id -> {turn, final, partial}
    this.replies = new Map();    // response_id -> {turn, text, spoken, metrics}
    this.replyOfItem = new Map(); // assistant item_id -> response_id
    this.truncated = new Set();  // assistant item_ids
  }

  clear() {
    this.root.replaceChildren();
    this.users.clear();
    this.replies.clear();
    this.replyOfItem.clear();
    this.truncated.clear();
  }

  #turn(role, label) {
    this.root.querySelector(".hint")?.remove();
    const turn = element("div", `turn ${role}`);
    turn.append(element("div", "who", label));
    const body = element("div", "text");
    turn.append(body);
    this.root.append(turn);
    this.root.scrollTop = this.root.scrollHeight;
    return { turn, body };
  }

  // ------------------------------------------------------------------ caller

  #user(itemId) {
    let user = this.users.get(itemId);
    if (!user) {
      // A turn that ended without words (a cough, a noise) is dropped when the next one starts.
      for (const [id, other] of this.users) {
        if (!other.done) { other.turn.remove(); this.users.delete(id); }
      }
      const { turn, body } = this.#turn("user", "You");
      turn.dataset.itemId = itemId;
      const final = element("span", "final");
      const partial = element("span", "partial");
      body.append(final, partial);
      user = { turn, final, partial, done: false };
      this.users.set(itemId, user);
    }
    return user;
  }

  speechStarted(itemId) {
    const user = this.#user(itemId);
    user.turn.classList.add("speaking");
  }

  speechStopped(itemId) {
    this.users.get(itemId)?.turn.classList.remove("speaking");
  }

  userDelta(itemId, delta) {
    const user = this.#user(itemId);
    user.partial.textContent += delta;
  }

  userFinal(itemId, text) {
    const user = this.#user(itemId);
    user.done = true;
    user.final.textContent = text;
    user.partial.textContent = "";
    user.turn.classList.remove("speaking");
    user.turn.classList.add("final");
  }

  userFailed(itemId, message) {
    const user = this.#user(itemId);
    user.done = true;
    user.partial.textContent = "";
    user.final.textContent = `(not understood: ${message})`;
    user.turn.classList.remove("speaking");
  }

  inputCleared() {
    for (const [id, user] of this.users) {
      if (!user.done) { user.turn.remove(); this.users.delete(id); }
    }
  }

  // ----------------------------------------------------------------- gateway

  replyStarted(responseId) {
    if (this.replies.has(responseId)) return;
    const { turn, body } = this.#turn("assistant", "Gateway");
    turn.dataset.responseId = responseId;
    turn.classList.add("speaking");
    const spoken = element("span", "spoken");
    const unheard = element("s", "unheard");
    body.append(spoken, unheard);
    const metrics = element("div", "metrics");
    turn.append(metrics);
    this.replies.set(responseId, { turn, spoken, unheard, metrics, text: "" });
  }

  replyItem(responseId, itemId) {
    this.replyStarted(responseId);
    this.replyOfItem.set(itemId, responseId);
    this.replies.get(responseId).turn.dataset.itemId = itemId;
  }

  replyDelta(responseId, delta) {
    this.replyStarted(responseId);
    const reply = this.replies.get(responseId);
    reply.text += delta;
    reply.spoken.textContent = reply.text;
  }

  itemTruncated(itemId) {
    this.truncated.add(itemId);
  }

  /** response.done: `heard` is the transcript of what was played (all of it when not cut). */
  replyDone(responseId, status, itemId, heard) {
    this.replyStarted(responseId);
    const reply = this.replies.get(responseId);
    reply.turn.classList.remove("speaking");
    reply.turn.dataset.status = status;
    const cut = status === "cancelled" || this.truncated.has(itemId);
    const text = heard ?? reply.text;
    reply.spoken.textContent = text;
    reply.unheard.textContent = cut && reply.text.startsWith(text) ? reply.text.slice(text.length) : "";
    if (cut) {
      reply.turn.classList.add("interrupted");
      reply.turn.querySelector(".who").append(element("span", "mark interrupted-mark", "interrupted"));
    } else if (status === "failed") {
      reply.turn.querySelector(".who").append(element("span", "mark failed-mark", "failed"));
    }
    if (!text && !cut) reply.spoken.textContent = "(no reply)";
  }

  /** A one-line latency summary under the reply. */
  replyMetrics(responseId, text) {
    const reply = this.replies.get(responseId);
    if (reply) reply.metrics.textContent = text;
  }
}
