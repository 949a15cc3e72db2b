"""Progress as a user sees it: clean lines in a pipe, a live bar only on a terminal, an honest ETA."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time

from rich.console import Console

from ganplug.progress import Bar, fmt_duration

LINE = re.compile(r"^step (\d+)/~?(\d+) \(\d+%\)(  [\d,.]+ img/s)?  elapsed (\d+:\d\d:\d\d)  eta (\d+:\d\d:\d\d)")


def _pipe() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False, width=60), buf


def _seconds(hms: str) -> int:
    h, m, s = map(int, hms.split(":"))
    return 3600 * h + 60 * m + s


def test_in_a_pipe_lines_are_whole_and_spaced_by_the_cadence():
    console, buf = _pipe()
    bar = Bar("step", 1000, console=console, every=0.2)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < 0.5:
        bar.update(bar.done + 1, "G 1.000  D 2.000")
        time.sleep(0.005)
    bar.close()
    lines = buf.getvalue().splitlines()
    assert 2 <= len(lines) <= 5  # about every 0.2 s plus the final state, not one per update
    assert all(LINE.match(x) and "…" not in x and x.endswith("G 1.000  D 2.000") for x in lines), lines
    assert LINE.match(lines[-1]).group(1) == str(bar.done)


def test_eta_never_exceeds_the_time_budget_left():
    console, buf = _pipe()
    bar = Bar("step", 10_000_000, console=console, budget_s=30.0, every=0.0)
    bar.update(1)
    time.sleep(0.05)
    bar.update(2)  # at this rate the steps would take days
    assert bar.eta() <= 30.0
    eta = _seconds(LINE.match(buf.getvalue().splitlines()[-1]).group(5))
    assert eta <= 30


def test_a_time_bound_run_counts_to_what_fits_in_the_budget_not_to_its_step_cap():
    """`ganplug demo` asks for 1,000,000 steps and 3 minutes: the count shows the steps the minutes hold."""
    console, buf = _pipe()
    bar = Bar("step", 1_000_000, console=console, budget_s=100.0, every=0.0)
    bar.t0 -= 10.0  # 50 steps in 10 s of a 100 s budget: about 500 fit
    bar.update(50)
    line = buf.getvalue().splitlines()[-1]
    done, shown = map(int, LINE.match(line).groups()[:2])
    assert done == 50 and 450 <= shown <= 550 and "/~" in line and "(10%)" in line
    small = Bar("step", 60, console=_pipe()[0], budget_s=100.0, every=1e9)
    small.t0 -= 10.0
    small.update(50)
    assert small.shown_total() == 60  # the step cap comes first: it is the goal


def test_eta_without_budget_follows_the_rate():
    bar = Bar("step", 200, console=_pipe()[0], every=1e9)
    bar.t0 -= 10.0  # 100 steps in 10 s: 100 more take 10 s
    bar.update(100)
    assert abs(bar.eta() - 10.0) < 0.5
    assert fmt_duration(3725) == "1:02:05" and fmt_duration(None) == "-:--:--"


def test_training_in_a_pipe_prints_clean_lines_and_an_eta_within_the_budget(tmp_path, shapes_dir):
    cmd = [sys.executable, "-m", "ganplug.cli.app", "train", str(shapes_dir), "--out", str(tmp_path / "run"),
           "--size", "32", "--batch", "8", "--arch", "dcgan", "--base-channels", "8", "--device", "cpu", "--steps",
           "1000000",
           "--minutes", "0.1", "--no-watch"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [x for x in proc.stderr.splitlines() if x.startswith("step ")]
    assert lines and all(LINE.match(x) for x in lines), lines
    assert all("…" not in x for x in proc.stderr.splitlines())
    assert all(_seconds(LINE.match(x).group(5)) <= 6 for x in lines)  # 0.1 minutes, never 10 hours
    assert "for at most 0.1 minutes" in proc.stderr
    said = " ".join(proc.stderr.split())
    step = int(re.search(r"stopped at step (\d+) of 1000000: the time limit \(0.1 minutes\) was reached", said)[1])
    assert f"Continue with `ganplug train --resume {tmp_path / 'run'} --steps 1000000 --minutes 0.1`" in said
    assert 0 < step < 1000000


def test_a_finished_run_says_so_and_how_to_train_further(tmp_path, shapes_dir, capsys):
    from ganplug.cli.app import main

    out = tmp_path / "run"
    assert main(["train", str(shapes_dir), "--out", str(out), "--size", "32", "--batch", "8", "--arch", "dcgan",
                 "--base-channels", "8",
                 "--device", "cpu", "--steps", "2", "--no-watch"]) == 0
    said = " ".join(capsys.readouterr().err.split())
    assert "done: trained to step 2 (--steps 2)" in said
    assert f"`ganplug train --resume {out} --steps 4`" in said


def test_the_final_line_is_not_printed_twice():
    console, buf = _pipe()
    bar = Bar("step", 3, console=console, every=0.0)
    for k in (1, 2, 3):
        bar.update(k)
    bar.close()
    lines = buf.getvalue().splitlines()
    assert [LINE.match(x).group(1) for x in lines] == ["1", "2", "3"]
