"""WebRTC media: inbound tracks to 16 kHz mono PCM, a paced outbound track.

This package knows aiortc and av, and nothing about engines or conversations.
"""

from media.inbound import InboundAudioReader
from media.outbound import OutboundAudioTrack, PlaybackListener, PlayoutResult
from media.pcm import PcmConverter, read_audio_file

__all__ = ["InboundAudioReader", "OutboundAudioTrack", "PcmConverter", "PlaybackListener", "PlayoutResult",
           "read_audio_file"]
