"""What every transport implements: :class:`Transport` (and, for offer/answer ones, :class:`OfferTransport`).

A transport moves a caller's audio and events, and knows nothing of the
protocol beyond "send this event" and "here is a message from the client";
the session on top of it (:class:`~gateway.session.session.RealtimeSession`)
does the rest. To add one (a WebSocket carrying base64 PCM16, Twilio's μ-law
media stream):

* call the listener's ``on_events_open()`` once events can flow,
  ``on_client_event(message)`` for each client message (a data channel), or
  ``await on_client_message(message)`` (a socket carrying audio in events: the
  session decodes ``input_audio_buffer.append`` with your :attr:`Transport.event_audio`
  and feeds it before returning, so do not read the next message before),
  ``await on_audio(pcm)`` with audio of your own (16 kHz mono float32; bound it
  by real time with a :class:`media.budget.RealTimeGate`), ``on_connected()``
  when the media path is up and ``on_lost(reason)`` when the caller is gone;
* pace :attr:`Transport.audio_out` (a :class:`media.OutboundAudioTrack`) by
  awaiting its ``recv()`` every 20 ms and send what it returns — or, on a socket,
  make it a :class:`gateway.transports.socket_audio.SocketAudio`, whose ``run(send)``
  pulls 20 ms frames a little ahead of the wall clock, converts them to the wire
  rate and tells you, per reply, before the reply is over;
* start background work only in the :class:`~gateway.aio.TaskSet` given to
  ``attach``: the session cancels and awaits it on close.

*How a call on a socket is placed (the seam across the layers).* Signaling owns
the HTTP request: auth, the upgrade's checks, JSON errors before the upgrade
(``signaling/realtime_socket.py``: ``GET /v1/realtime``). It hands the checked
request to its call service, ``CallService.serve_socket(request, SocketRequest(kind,
session, call_id, protocol, admitted))`` (:mod:`signaling.service`). In one process
that is :class:`gateway.app.sockets.LocalCalls`, which calls the handler the app
registered for the kind (``add_socket_handler``); the handler makes this
package's transport and admits the call with
``SessionRegistry.open_call(make_transport, session, setup=...)`` — the same
admission, settings, session, start and observer as an offer's — where ``setup``
upgrades the socket once the call is admitted (a refusal before it is JSON). A
front process (``server.workers > 1``, :class:`gateway.app.workers.WorkerPool`)
implements ``serve_socket`` by proxying the socket to a worker
(:mod:`signaling.socket_relay`), where the same handler serves it.

:mod:`gateway.transports.memory` is the smallest complete example. The
protocols are defined next to the session, which depends on them and sits
below the transports; they are re-exported here.
"""

from gateway.session.transport import (
    EventAudio,
    OfferTransport,
    OfferTransportFactory,
    Transport,
    TransportFactory,
    TransportListener,
)

__all__ = ["EventAudio", "OfferTransport", "OfferTransportFactory", "Transport", "TransportFactory",
           "TransportListener"]
