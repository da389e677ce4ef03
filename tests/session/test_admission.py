"""The admission model with a fake CPU reader and clock: timing-exact decisions (the real paths: tests/gateway)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import AdmissionConfig, GatewayConfig, LimitsConfig
from gateway.ops.observers import TurnReport
from gateway.session.admission import LEVELS, Admission
from gateway.session.cost_model import MIN_SAMPLES, TRUST_SAMPLES, CostModel, CostPrior, cgroup_cpu_quota, cpu_capacity
from gateway.session.load import LoadMonitor
from gateway.session.service_level import ServiceLevel


class Machine:
    """A fake /proc/stat and process clock: ``busy`` of ``cpus`` CPUs, ``process`` cores of them ours."""

    def __init__(self, cpus: float = 2.0) -> None:
        self.cpus = cpus
        self.now = 0.0
        self.busy = 0.0  # machine cores busy
        self.process = 0.0  # cores this process uses
        self._busy_ticks = self._total_ticks = self._process_seconds = 0.0

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self._busy_ticks += self.busy * seconds * 100
        self._total_ticks += self.cpus * seconds * 100
        self._process_seconds += self.process * seconds

    def proc_stat(self) -> tuple[float, float]:
        return self._busy_ticks, self._total_ticks

    def process_time(self) -> float:
        return self._process_seconds


class Levels:
    """An engine with the degradation hook, recording what it was told."""

    def __init__(self) -> None:
        self.levels: list[int] = []

    def set_degradation(self, level: int) -> None:
        self.levels.append(level)


def make(machine: Machine, admission: AdmissionConfig | None = None,
         limits: LimitsConfig | None = None) -> tuple[Admission, LoadMonitor]:
    config = GatewayConfig(admission=admission or AdmissionConfig(), limits=limits or LimitsConfig())
    load = LoadMonitor(config.limits, cpu_reader=machine.proc_stat)
    return Admission(config, load, capacity=machine.cpus, process_cpu=machine.process_time,
                     clock=lambda: machine.now), load


def run(machine: Machine, admission: Admission, load: LoadMonitor, seconds: float, calls: int, active: int) -> None:
    """``seconds`` of 0.5 s samples, as the load monitor takes them."""
    for _ in range(int(seconds / 0.5)):
        machine.advance(0.5)
        load.sample_cpu(machine.now)
        admission.sample(machine.now, calls, active)


def test_the_cost_model_splits_the_process_cpu_into_idle_and_active_calls() -> None:
    model = CostModel(CostPrior(idle=0.05, active=0.3))
    for _ in range(20):
        model.observe(0.02, 0, 0)  # no call: the base
    assert model.base == pytest.approx(0.02, abs=0.003)
    for _ in range(MIN_SAMPLES - 1):
        model.observe(0.02 + 4 * 0.01, 4, 0)
    assert model.idle == 0.05  # the prior until MIN_SAMPLES
    model.observe(0.06, 4, 0)
    assert model.idle == pytest.approx(0.01, abs=0.002)
    for _ in range(TRUST_SAMPLES // 2):
        model.observe(0.02 + 2 * 0.01 + 2 * 0.12, 4, 2)  # 2 idle + 2 active at 0.12
    assert model.active == pytest.approx((0.12 + 0.3) / 2, abs=0.01)  # half trusted: blended with the prior
    for _ in range(TRUST_SAMPLES):
        model.observe(0.02 + 2 * 0.01 + 2 * 0.12, 4, 2)
    assert model.active == pytest.approx(0.12, abs=0.01)


def test_the_prior_from_calibration_takes_the_costlier_of_talking_and_replying() -> None:
    prior = CostPrior.from_calibration(asr_decode_seconds=0.127, partial_interval_seconds=0.8, tts_rtf=0.105)
    assert prior.active == pytest.approx(0.03 + 0.127 / 0.8)
    assert CostPrior.from_calibration(asr_decode_seconds=0.05, partial_interval_seconds=0.8, tts_rtf=0.2).active \
        == pytest.approx(0.23)
    assert CostPrior.from_calibration(asr_decode_seconds=0.3, partial_interval_seconds=0, tts_rtf=0).active \
        == pytest.approx(0.13)  # no partials: one decode per ~3 s turn


def test_cpu_capacity_is_the_affinity_capped_by_the_cgroup_quota(tmp_path: Path) -> None:
    assert cpu_capacity(3.5) == 3.5
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    assert cpu_capacity(cgroup_root=tmp_path) == min(1.5, cpu_capacity(cgroup_root=tmp_path / "none"))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None


def test_refuses_when_the_projected_load_exceeds_the_target_and_admits_again_when_it_drops() -> None:
    machine = Machine(cpus=2.0)
    admission, load = make(machine)  # target 0.8: 1.6 cores
    assert admission.decide(0).reason is None  # a process with no call always takes one
    machine.busy, machine.process = 0.4, 0.3
    run(machine, admission, load, 6, calls=2, active=1)
    decision = admission.decide(2)
    assert decision.reason is None and decision.headroom_calls >= 1
    machine.busy, machine.process = 1.5, 1.2  # the machine got busy (the callers, other programs)
    run(machine, admission, load, 3, calls=6, active=3)
    refused = admission.decide(6)
    assert refused.reason is not None and "projected CPU use" in refused.reason
    assert refused.headroom_calls == 0 and refused.projected_utilization > 0.8
    assert 1 <= refused.retry_after <= 30
    assert admission.decide(0).reason is None  # ... but never with no call to protect
    machine.busy, machine.process = 0.3, 0.2
    run(machine, admission, load, 3, calls=2, active=0)
    assert admission.decide(2).reason is None


def test_calls_admitted_a_moment_ago_count_at_their_peak_cost_before_they_show_in_the_load() -> None:
    machine = Machine(cpus=2.0)
    admission, load = make(machine)
    machine.busy = machine.process = 0.3
    run(machine, admission, load, 3, calls=1, active=0)
    headroom = admission.decide(1).headroom_calls
    assert headroom >= 2
    for _ in range(headroom):
        admission.admitted()  # a burst: no sample in between
    assert admission.decide(1 + headroom).reason is not None
    run(machine, admission, load, 11, calls=1 + headroom, active=0)  # settled: the measured load counts now
    assert admission.decide(1 + headroom).reason is None


def test_max_calls_stays_the_upper_bound_and_the_model_can_be_turned_off() -> None:
    machine = Machine()
    admission, load = make(machine, limits=LimitsConfig(max_calls=3))
    run(machine, admission, load, 2, calls=0, active=0)
    assert admission.decide(2).headroom_calls == 1 and admission.decide(3).headroom_calls == 0
    off, load = make(machine, AdmissionConfig(enabled=False))
    machine.busy = machine.process = 2.0
    run(machine, off, load, 3, calls=5, active=5)
    assert off.decide(5).reason is None


def report(overhead_ms: float) -> TurnReport:
    return TurnReport(item_id="item", response_id="resp", speculative=True, latency_ms={}, overhead_ms=overhead_ms,
                      asr_compute_ms=50, audio_ms=2000)


def test_the_admitted_calls_service_level_refuses_and_clears_with_the_window() -> None:
    now = [0.0]
    service = ServiceLevel(AdmissionConfig(window_seconds=30), clock=lambda: now[0])
    for overhead in [200.0] * 18 + [900.0, 950.0]:
        service.turn_completed("c", report(overhead))
    assert service.overhead_p95_ms == 900.0
    violation = service.violation()
    assert violation is not None and "overhead p95 900 ms" in violation
    now[0] = 31.0
    assert service.violation() is None
    service.reply_played("c", 3.0, 0.0)
    assert service.violation() is None
    service.reply_played("c", 3.0, 0.2)
    assert service.violation() == "1 replies with underruns in the last 30 s"
    now[0] = 62.0
    for stop in (0.5, 0.45, 0.1):
        service.barge_in("c", stop)
    assert service.violation() == "barge-in stop p50 450 ms over the last 30 s"
    now[0] = 100.0
    for _ in range(5):
        service.tts_finished(2.0, 1.4)
    assert service.violation() == "speech synthesis at 0.70 of real time"


def test_a_missed_service_level_refuses_with_retry_after_from_the_calls_durations() -> None:
    machine = Machine()
    admission, load = make(machine)
    run(machine, admission, load, 3, calls=4, active=1)
    for _ in range(30):
        admission.service.call_ended("c", "hangup", 18.0, 3)
    assert admission.service.call_seconds == pytest.approx(18.0, abs=0.1)
    admission.service.reply_played("c", 2.0, 0.5)
    refused = admission.decide(4)
    assert refused.reason is not None and "underruns" in refused.reason
    assert refused.retry_after == 5  # 18 s calls, 4 under way: one ends about every 4.5 s
    assert admission.decide(0).reason is None


def test_degradation_steps_up_at_once_and_down_one_level_per_hold() -> None:
    machine = Machine(cpus=2.0)
    admission, load = make(machine, AdmissionConfig(degrade_hold_seconds=5))
    asr = Levels()
    admission.set_engines(type("E", (), {"asr": asr, "tts": object()})())  # type: ignore[arg-type]
    run(machine, admission, load, 3, calls=4, active=2)
    assert admission.level == 0
    machine.busy = 1.96  # 98 %: straight to the strongest level
    run(machine, admission, load, 3, calls=4, active=2)
    assert LEVELS[admission.level] == "low_cost_decoding" and asr.levels[-1] == 2
    machine.busy = 1.0
    run(machine, admission, load, 4.5, calls=4, active=2)
    assert admission.level == 2  # calm, but not for long enough
    run(machine, admission, load, 3, calls=4, active=2)
    assert admission.level == 1 and asr.levels[-1] == 1
    run(machine, admission, load, 6, calls=4, active=2)
    assert admission.level == 0 and asr.levels == [0, 2, 1, 0]
    machine.busy = 1.75  # 88 %: partials shed
    run(machine, admission, load, 3, calls=4, active=2)
    assert LEVELS[admission.level] == "partials_shed"


def test_under_continuous_load_both_costs_are_fitted_together() -> None:
    """Some call is always active: no sample has only idle calls, yet the idle cost is learned."""
    model = CostModel(CostPrior(idle=0.2, active=0.5))
    mixes = [(6, 1), (6, 3), (8, 2), (5, 4), (9, 1), (7, 5)]
    for n in range(TRUST_SAMPLES + 30):
        calls, active = mixes[n % len(mixes)]
        model.observe(0.015 * (calls - active) + 0.11 * active, calls, active)
    assert model.idle == pytest.approx(0.015, abs=0.002) and model.active == pytest.approx(0.11, abs=0.005)
    assert model.idle_samples == 0  # the sequential estimate had nothing to go on
