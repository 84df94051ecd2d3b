"""Checkpoint layouts come from the classes: a class that changes refuses old checkpoints by
itself, with no version constant to bump (issue 14, Done-when 6)."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamfuse import EngineConfig, session
from streamfuse.engine import Engine
from streamfuse.fusion import levels
from streamfuse.gateway.app import Gateway
from streamfuse.state_layout import class_fields, code_layout, layout_changes, state_layout
from tests.gateway_configs import gateway_config
from tests.streams import device_messages


def _checkpointed(tmp_path: Path) -> Engine:
    engine = Engine()
    engine.push_many(device_messages("a", 25, seed=3))
    assert engine.counters["learned"] > 0
    Gateway(engine, gateway_config(checkpoint_dir=str(tmp_path))).checkpoint()
    return engine


def _restore(tmp_path: Path) -> Gateway:
    gateway = Gateway(Engine(), gateway_config(checkpoint_dir=str(tmp_path)))
    gateway.restore()
    return gateway


def _posing_as(cls: type, original: type) -> type:
    """``cls`` under ``original``'s name, so pickle's lookups find it instead."""
    cls.__module__, cls.__qualname__, cls.__name__ = (
        original.__module__, original.__qualname__, original.__name__,
    )
    return cls


def test_an_unchanged_layout_restores(tmp_path: Path) -> None:
    engine = _checkpointed(tmp_path)
    gateway = _restore(tmp_path)
    assert gateway.restored is not None
    assert gateway.engine.counters == engine.counters


def test_a_dataclass_that_gained_a_field_refuses_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _checkpointed(tmp_path)

    @dataclass(slots=True)
    class DeviceSession(session.DeviceSession):  # the next release keeps one more thing
        last_battery: float = 1.0

    monkeypatch.setattr(session, "DeviceSession", _posing_as(DeviceSession,
                                                             session.DeviceSession))
    with caplog.at_level(logging.ERROR):
        gateway = _restore(tmp_path)
    assert gateway.restored is None
    assert gateway.engine.counters == {}  # a fresh engine, not the old objects
    assert "streamfuse.session.DeviceSession gained ['last_battery']" in caplog.text
    assert "starting fresh" in caplog.text
    assert list(tmp_path.glob("*.ckpt"))  # left in place for inspection


def test_a_plain_class_that_assigns_a_new_attribute_refuses_the_old_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _checkpointed(tmp_path)

    class FusionHub(levels.FusionHub):
        def reset_counts(self) -> None:
            self.resets = 0

    monkeypatch.setattr(levels, "FusionHub", _posing_as(FusionHub, levels.FusionHub))
    with caplog.at_level(logging.ERROR):
        gateway = _restore(tmp_path)
    assert gateway.restored is None
    assert "streamfuse.fusion.levels.FusionHub gained ['resets']" in caplog.text


def test_the_layout_names_the_core_classes_an_engine_pickles() -> None:
    engine = Engine()
    engine.push_many(device_messages("a", 25, seed=3))
    layout = state_layout(engine)
    for name in (
        "streamfuse.engine.Engine",
        "streamfuse.session.DeviceSession",
        "streamfuse.align.device.DeviceAligner",
        "streamfuse.align.clock.ClockModel",
        "streamfuse.features.ecg.ECGFeatures",
        "streamfuse.fusion.levels.FusionHub",
        "streamfuse.learn.metrics.PrequentialMetrics",
    ):
        assert name in layout, name
    assert layout["streamfuse.session.Pending"] == (
        "t_start", "t_end", "index", "evidence", "verdict",
    )
    assert "hub" in layout["streamfuse.engine.Engine"]
    recorded = code_layout()
    assert {k: v for k, v in layout.items() if k.startswith("streamfuse.")}.items() <= (
        recorded.items()
    )
    assert layout_changes(recorded, engine) == []


def test_reordered_or_lost_fields_new_classes_and_foreign_layouts_are_changes() -> None:
    engine = Engine()
    layout = code_layout()
    name = "streamfuse.config.ModalitySpec"
    swapped = dict(layout, **{name: ("channel_names", "name", "fs", "unit")})
    assert layout_changes(swapped, engine) == [f"{name} reordered fields"]
    more = dict(layout, **{name: (*layout[name], "gain")})
    assert layout_changes(more, engine) == [f"{name} lost ['gain']"]
    fewer = {k: v for k, v in layout.items() if k != name}
    assert layout_changes(fewer, engine) == [f"{name} is not in the checkpoint's layout"]
    for junk in (None, 4, {"x": [1]}):
        assert layout_changes(junk, engine) != []


def test_another_river_version_is_a_change() -> None:
    import river

    engine = Engine(EngineConfig(model="river-logreg"))  # river's own models in the state
    engine.push_many(device_messages("a", 5, seed=3))
    assert any(name.startswith("river.") for name in state_layout(engine))
    assert layout_changes(code_layout(), engine) == []
    older = dict(code_layout(), river=("0.1.0",))
    assert layout_changes(older, engine) == [f"river 0.1.0 -> {river.__version__}"]
    unknown = {k: v for k, v in code_layout().items() if k != "river"}
    assert layout_changes(unknown, engine) == [
        f"river of unknown version -> {river.__version__}"
    ]


def test_the_recorded_layout_reaches_nested_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    module = types.ModuleType("streamfuse._layout_probe")
    exec(  # a module made here, for the test
        "class Outer:\n"
        "    class Inner:\n"
        "        __slots__ = ('a',)\n"
        "    __slots__ = ('b',)\n",
        module.__dict__,
    )
    monkeypatch.setitem(sys.modules, module.__name__, module)
    layout = code_layout()
    assert layout["streamfuse._layout_probe.Outer"] == ("b",)
    assert layout["streamfuse._layout_probe.Outer.Inner"] == ("a",)


def test_slots_and_source_give_the_attributes_of_classes_without_dataclass_fields() -> None:
    class Slotted:
        __slots__ = ("a", "b")

    class Child(Slotted):
        __slots__ = "c"

    class Plain:
        def __init__(self) -> None:
            self.x, (self.y, z) = 1, (2, 3)
            self.n: int = z

        def bump(self) -> None:
            self.n += 1
            other = Plain()
            other.w = 1  # not on self: not an attribute of this instance

    class WithLambdas:  # a lambda's source line need not parse on its own
        g = (lambda self:  # noqa: E731 - the case under test
             setattr(self, "z", 1))
        h = [lambda self: None,
             lambda self: None][0]

        def __init__(self) -> None:
            self.a = 1

    assert class_fields(Child) == ("a", "b", "c")
    assert class_fields(Plain) == ("n", "x", "y")
    assert class_fields(WithLambdas) == ("a",)
