"""The gRPC server itself: auth, status codes for bad input, health, reflection, cancellation, TLS."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import cast

import grpc
import pytest
import riva.client
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from riva.client.proto import riva_asr_pb2, riva_tts_pb2

from gateway.config import ServerConfig
from gateway.speech.service import SpeechServices
from gateway.voice.engines import Engines
from signaling.speech_service import SPEECH
from tests.speech.conftest import API_KEY, SpeechGateway, speech_config, start_gateway
from tests.speech.riva_clients import auth, chunks, pcm16, recognition_config
from tests.support.speech import utterance


def _status(call: object) -> grpc.StatusCode:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    raise AssertionError("the call succeeded")


async def test_auth_matches_http(speech_gateway: SpeechGateway) -> None:
    clip = utterance("ps_cards_001.wav").path.read_bytes()
    for key in (None, "sk-not-the-key-0000000000"):
        asr = riva.client.ASRService(auth(speech_gateway.grpc_uri, key))
        tts = riva.client.SpeechSynthesisService(auth(speech_gateway.grpc_uri, key))
        assert await asyncio.to_thread(_status, lambda a=asr: a.offline_recognize(clip, recognition_config())) \
            == grpc.StatusCode.UNAUTHENTICATED
        assert await asyncio.to_thread(_status, lambda t=tts: list(t.synthesize_online("Hello."))) \
            == grpc.StatusCode.UNAUTHENTICATED


async def test_bad_input_gets_status_codes(engines: Engines) -> None:
    gateway = await start_gateway(speech_config(max_input_chars=100, max_audio_seconds=2), engines)
    try:
        asr = riva.client.ASRService(auth(gateway.grpc_uri))
        tts = riva.client.SpeechSynthesisService(auth(gateway.grpc_uri))
        invalid = grpc.StatusCode.INVALID_ARGUMENT
        cases = [
            lambda: asr.offline_recognize(b"", recognition_config()),
            lambda: asr.offline_recognize(b"not audio" * 50, riva.client.RecognitionConfig(
                encoding=riva.client.AudioEncoding.FLAC)),
            lambda: asr.offline_recognize(pcm16(utterance("ps_cards_005.wav")), recognition_config()),  # 3.5 s > 2
            lambda: asr.offline_recognize(b"\0" * 320, recognition_config(**{"language_code": "de-DE"})),
            lambda: asr.offline_recognize(b"\0" * 320, riva.client.RecognitionConfig(
                encoding=riva.client.AudioEncoding.MULAW, sample_rate_hertz=8000)),
            lambda: tts.synthesize(""),
            lambda: tts.synthesize("word " * 50),
            lambda: tts.synthesize("Hello.", voice_name="English-US.Female-1"),
            lambda: tts.synthesize("Hello.", encoding=riva.client.AudioEncoding.ALAW),
        ]
        for index, case in enumerate(cases):
            assert await asyncio.to_thread(_status, case) == invalid, index
        config = riva.client.StreamingRecognitionConfig(config=recognition_config())
        long_stream = lambda: list(asr.streaming_response_generator(chunks(b"\0\0" * 16_000 * 3), config))  # noqa: E731
        assert await asyncio.to_thread(_status, long_stream) == invalid
        no_config = lambda: list(asr.stub.StreamingRecognize(iter([riva_asr_pb2.StreamingRecognizeRequest(  # noqa: E731
            audio_content=b"\0" * 320)]), metadata=asr.auth.get_auth_metadata()))
        assert await asyncio.to_thread(_status, no_config) == invalid
    finally:
        await gateway.server.close()


async def test_an_invalid_protobuf_is_refused(speech_gateway: SpeechGateway) -> None:
    async with grpc.aio.insecure_channel(speech_gateway.grpc_uri) as channel:
        raw = channel.unary_unary("/nvidia.riva.tts.RivaSpeechSynthesis/Synthesize",
                                  request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await raw(b"\xff\xff\xff\xff\x0f garbage", metadata=(("authorization", f"Bearer {API_KEY}"),))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith("invalid_message")
    # and the server goes on answering
    tts = riva.client.SpeechSynthesisService(auth(speech_gateway.grpc_uri))
    assert (await asyncio.to_thread(tts.synthesize, "Still here.")).audio


async def test_health_and_reflection(speech_gateway: SpeechGateway) -> None:
    async with grpc.aio.insecure_channel(speech_gateway.grpc_uri) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "nvidia.riva.asr.RivaSpeechRecognition", "nvidia.riva.tts.RivaSpeechSynthesis"):
            for _ in range(50):  # the health watch runs every 0.5 s
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service))  # no key needed
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.1)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        replies = [r async for r in stub.ServerReflectionInfo(iter([request]),
                                                              metadata=(("authorization", f"Bearer {API_KEY}"),))]
        names = {s.name for s in replies[0].list_services_response.service}
        assert {"nvidia.riva.asr.RivaSpeechRecognition", "nvidia.riva.tts.RivaSpeechSynthesis",
                "grpc.health.v1.Health"} <= names


async def test_a_cancelled_stream_frees_its_job(speech_gateway: SpeechGateway) -> None:
    service = cast(SpeechServices, speech_gateway.server.app[SPEECH])
    metadata = (("authorization", f"Bearer {API_KEY}"),)
    async with grpc.aio.insecure_channel(speech_gateway.grpc_uri) as channel:
        stub = riva_tts_pb2.DESCRIPTOR  # noqa: F841 - the protos are loaded
        from riva.client.proto import riva_tts_pb2_grpc

        call = riva_tts_pb2_grpc.RivaSpeechSynthesisStub(channel).SynthesizeOnline(metadata=metadata)
        await call.write(riva_tts_pb2.SynthesizeSpeechRequest(text="A long text. " * 40, sample_rate_hz=16000))
        await call.read()  # the first clause's audio
        assert service.jobs == 1
        call.cancel()
        for _ in range(100):
            if service.jobs == 0:
                break
            await asyncio.sleep(0.05)
        assert service.jobs == 0


async def test_one_address_holds_at_most_its_share_of_jobs(engines: Engines) -> None:
    from riva.client.proto import riva_tts_pb2_grpc

    gateway = await start_gateway(speech_config(max_jobs_per_client=1), engines)
    metadata = (("authorization", f"Bearer {API_KEY}"),)
    try:
        async with grpc.aio.insecure_channel(gateway.grpc_uri) as channel:
            stub = riva_tts_pb2_grpc.RivaSpeechSynthesisStub(channel)
            held = stub.SynthesizeOnline(metadata=metadata)
            await held.write(riva_tts_pb2.SynthesizeSpeechRequest(text="A long text. " * 40))
            await held.read()  # its job is running
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Synthesize(riva_tts_pb2.SynthesizeSpeechRequest(text="Me too."), metadata=metadata)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert caught.value.details().startswith("too_many_jobs")
            held.cancel()
    finally:
        await gateway.server.close()


async def test_a_taken_port_leaves_the_gateway_up_without_grpc(speech_gateway: SpeechGateway, engines: Engines,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    import dataclasses

    import aiohttp

    config = speech_config()
    config = dataclasses.replace(config, server=dataclasses.replace(config.server, grpc_port=speech_gateway.grpc_port))
    second = await start_gateway(config, engines)
    try:
        assert any("speech gRPC services are OFF" in r.getMessage() for r in caplog.records)
        async with aiohttp.ClientSession() as http, http.get(
                second.url + "/v1/models", headers={"Authorization": f"Bearer {API_KEY}"}) as response:
            assert response.status == 200  # HTTP (and calls) go on
        tts = riva.client.SpeechSynthesisService(auth(speech_gateway.grpc_uri))  # the first still owns the port
        assert (await asyncio.to_thread(tts.synthesize, "Still the first.")).audio
    finally:
        await second.server.close()


async def test_a_cancelled_recognition_stream_frees_its_job(speech_gateway: SpeechGateway) -> None:
    from riva.client.proto import riva_asr_pb2_grpc

    service = cast(SpeechServices, speech_gateway.server.app[SPEECH])
    metadata = (("authorization", f"Bearer {API_KEY}"),)
    async with grpc.aio.insecure_channel(speech_gateway.grpc_uri) as channel:
        call = riva_asr_pb2_grpc.RivaSpeechRecognitionStub(channel).StreamingRecognize(metadata=metadata)
        config = riva.client.StreamingRecognitionConfig(config=recognition_config(), interim_results=True)
        await call.write(riva_asr_pb2.StreamingRecognizeRequest(streaming_config=config))
        for chunk in chunks(pcm16(utterance("realpython_harvard.wav")))[:40]:  # 4 s: speech under way
            await call.write(riva_asr_pb2.StreamingRecognizeRequest(audio_content=chunk))
        await call.read()  # an interim result: the stream is being recognised
        assert service.jobs == 1
        call.cancel()
        for _ in range(100):
            if service.jobs == 0:
                break
            await asyncio.sleep(0.05)
        assert service.jobs == 0


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


async def test_tls(engines: Engines, tmp_path: Path) -> None:
    import dataclasses

    cert, key = _self_signed(tmp_path)
    config = speech_config()
    config = dataclasses.replace(config, server=dataclasses.replace(
        config.server, grpc_tls_cert_file=str(cert), grpc_tls_key_file=str(key)))
    assert isinstance(config.server, ServerConfig)
    gateway = await start_gateway(config, engines)
    try:
        tts = riva.client.SpeechSynthesisService(auth(gateway.grpc_uri, ssl_root_cert=str(cert)))
        assert (await asyncio.to_thread(tts.synthesize, "Over TLS.")).audio
        plain = riva.client.SpeechSynthesisService(auth(gateway.grpc_uri))
        assert await asyncio.to_thread(_status, lambda: plain.synthesize("In the clear.")) \
            == grpc.StatusCode.UNAVAILABLE
    finally:
        await gateway.server.close()
