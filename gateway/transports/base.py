"""What every transport implements: :class:`Transport` (and, for offer/answer ones, :class:`OfferTransport`).

A transport moves a caller's audio and events, and knows nothing of the
protocol beyond "send this event" and "here is a message from the client";
the session on top of it (:class:`~gateway.session.session.RealtimeSession`)
does the rest. To add one (a WebSocket carrying base64 PCM16, Twilio's μ-law
media stream):

* call the listener's ``on_events_open()`` once events can flow,
  ``on_client_event(message)`` for each client message, ``await on_audio(pcm)``
  with the caller's audio as 16 kHz mono float32, ``on_connected()`` when the
  media path is up and ``on_lost(reason)`` when the caller is gone;
* pace :attr:`Transport.audio_out` (a :class:`media.OutboundAudioTrack`) by
  awaiting its ``recv()`` every 20 ms and send what it returns;
* start background work only in the :class:`~gateway.aio.TaskSet` given to
  ``attach``: the session cancels and awaits it on close.

:mod:`gateway.transports.memory` is the smallest complete example. The
protocols are defined next to the session, which depends on them and sits
below the transports; they are re-exported here.
"""

from gateway.session.transport import OfferTransport, OfferTransportFactory, Transport, TransportListener

__all__ = ["OfferTransport", "OfferTransportFactory", "Transport", "TransportListener"]
