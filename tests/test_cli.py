"""The command line as a user meets it: help, wrong flags, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from streamfuse.cli import build_parser, main


def commands() -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted(sub.choices)  # type: ignore[arg-type]


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    names = commands()
    assert {"demo", "gateway", "simulate"} <= set(names)
    for name in [*names, None]:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"] if name else ["--help"])
        assert info.value.code == 0
        text = capsys.readouterr().out
        assert text.startswith("usage: streamfuse") and (name is None or name in text)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--nope"], "unrecognized arguments: --nope"),
        (["demo", "--devices", "zero"], "expected a positive number"),
        (["demo", "--duration", "-1"], "expected a positive number"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_wrong_usage_exits_2_with_a_message(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_console_script_entry_point() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "streamfuse.cli", "gateway", "--broker", "http://x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2  # a setting to fix (ConfigError)
    assert "streamfuse: error:" in done.stderr and "http://x" in done.stderr


def test_a_stuck_shutdown_is_cut_short_with_a_stack_dump() -> None:
    import signal
    import textwrap
    import time

    script = textwrap.dedent(
        """
        import asyncio, sys, time
        from streamfuse.gateway import server as srv
        from streamfuse.gateway.loading import from_mapping
        srv.SHUTDOWN_GRACE_S = 0.5

        async def main():
            server = srv.Server(from_mapping({"shutdown": {"drain_timeout_s": 0.5}}))
            with server.capture_signals():
                print("ready", flush=True)
                await server.should_exit.wait()
                time.sleep(60)  # a shutdown path that never returns

        asyncio.run(main())
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
            waited = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
    assert code == 3  # EXIT_STUCK: neither a hang nor a clean 0
    assert waited < 30
    assert "shutdown still running" in err
    assert 'File "<string>"' in err  # the stack dump shows where it was stuck


def test_a_second_signal_exits_at_once_with_130() -> None:
    import signal
    import textwrap

    script = textwrap.dedent(
        """
        import asyncio
        from streamfuse.gateway.server import Server
        from streamfuse.gateway.loading import from_mapping

        async def main():
            server = Server(from_mapping({"shutdown": {"drain_timeout_s": 30.0}}))
            with server.capture_signals():
                print("ready", flush=True)
                await server.should_exit.wait()
                print("draining", flush=True)
                await asyncio.sleep(60)  # a long drain: the second signal cuts it
        asyncio.run(main())
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            proc.send_signal(signal.SIGTERM)
            assert proc.stdout.readline().strip() == "draining"
            proc.send_signal(signal.SIGINT)
            code = proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()
        err = proc.stderr.read() if proc.stderr else ""
    assert code == 130
    assert "second SIGINT: exiting at once" in err


def test_capture_signals_puts_the_previous_handlers_back() -> None:
    import asyncio
    import signal

    from streamfuse.gateway.loading import from_mapping
    from streamfuse.gateway.server import Server

    def mine(signum: int, frame: object) -> None:  # pragma: no cover - never delivered
        pass

    async def main() -> tuple[object, object]:
        server = Server(from_mapping({}))
        with server.capture_signals():
            during = signal.getsignal(signal.SIGTERM)
            server.handle_exit(signal.SIGTERM)  # as the loop would on SIGTERM
            assert server.should_exit.is_set() and not server.force_exit
        server._watchdog.cancel()  # type: ignore[union-attr]
        return during, signal.getsignal(signal.SIGTERM)

    old = signal.signal(signal.SIGTERM, mine)
    try:
        during, after = asyncio.run(main())
    finally:
        signal.signal(signal.SIGTERM, old)
    assert during is not mine
    assert after is mine
