"""Where training statistics go: metrics.jsonl always, TensorBoard when it is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ganplug.atomic import atomic_write_text, disk_full


class JsonlSink:
    """Appends one JSON object per logged step. On resume, rows after the resume step are dropped."""

    def __init__(self, path: Path, resume_step: int | None = None):
        self.path = Path(path)
        if resume_step is not None and self.path.exists():
            kept = []
            for line in self.path.read_text().splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        kept.append(line)
                except ValueError:
                    continue  # a line cut short by a kill
            atomic_write_text(self.path, "".join(k + "\n" for k in kept))  # a kill here keeps the old log
        try:
            self._f = self.path.open("a")
        except OSError as e:
            raise disk_full(self.path, e) from e

    def write(self, step: int, stats: dict[str, Any]) -> None:
        try:
            self._f.write(json.dumps({"step": step, **stats}) + "\n")
            self._f.flush()
        except OSError as e:
            raise disk_full(self.path, e) from e

    def close(self) -> None:
        self._f.close()


class TensorBoardSink:
    def __init__(self, logdir: Path):
        from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

        self.writer = SummaryWriter(log_dir=str(logdir))

    def write(self, step: int, stats: dict[str, Any]) -> None:
        for k, v in stats.items():
            if isinstance(v, int | float):
                self.writer.add_scalar(k, v, step)

    def close(self) -> None:
        self.writer.close()


def open_sinks(run_dir: Path, resume_step: int | None) -> list:
    sinks: list = [JsonlSink(run_dir / "metrics.jsonl", resume_step)]
    try:
        sinks.append(TensorBoardSink(run_dir / "tensorboard"))
    except ImportError:
        pass
    return sinks
