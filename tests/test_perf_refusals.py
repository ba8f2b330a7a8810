"""dcsim perf refuses a step that could not run (one line naming the flag, exit 2)."""

from __future__ import annotations

import pytest

from sim.cli import main


@pytest.mark.parametrize("argv, flag", [
    (["--model", "llama-3.1-405b"], "--tp"),  # 811 GB of weights on one H100
    (["--model", "llama-3.1-8b", "--context", "10000000"], "--context"),  # beyond the model's context
    (["--model", "llama-3.1-70b", "--tp", "2", "--context", "131072"], "--context"),
    (["--model", "llama-3.1-8b", "--batch", "4096", "--context", "8192"], "--batch"),  # 52 fit
    (["--model", "llama-3.1-8b", "--dtype", "fp4"], "--dtype"),  # no fp4 tensor cores on an H100
    (["--model", "llama-3.1-8b", "--power-cap-w", "900"], "--power-cap-w"),  # above its 700 W TDP
    (["--model", "llama-3.1-8b", "--kv-memory-fraction", "1.5"], "--kv-memory-fraction"),
])
def test_impossible_steps_are_one_line_exit_2(capsys, argv, flag):
    assert main(["perf", "--hardware", "h100-sxm", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"dcsim: error: {flag}"), err


def test_a_step_that_runs_still_prints_its_figures(capsys):
    argv = ["perf", "--hardware", "h100-sxm", "--model", "llama-3.1-8b", "--batch", "52", "--context", "8192"]
    assert main(argv) == 0
    assert "decode_step_s" in capsys.readouterr().out


@pytest.mark.parametrize("argv, flag", [
    (["--kv-memory-fraction", "0.98"], "--kv-memory-fraction"),
    (["--batch", "1500", "--context", "128"], "--batch"),
    (["--clock-lock", "0.3"], "--clock-lock"),
    (["--tp", "16", "--model", "llama-3.1-405b"], "--tp"),  # past one node's NVLink
])
def test_odd_but_legal_steps_run_with_one_warning(capsys, argv, flag):
    argv = ["perf", "--hardware", "h100-sxm", "--model", "llama-3.1-8b", *argv]
    assert main(argv) == 0
    cap = capsys.readouterr()
    warns = [x for x in cap.err.splitlines() if x.startswith("dcsim: warning:")]
    assert len(warns) == 1 and flag in warns[0] and "decode_step_s" in cap.out, cap.err


def test_a_plain_step_warns_nothing(capsys):
    assert main(["perf", "--hardware", "h100-sxm", "--model", "llama-3.1-8b", "--batch", "32"]) == 0
    assert "warning" not in capsys.readouterr().err
