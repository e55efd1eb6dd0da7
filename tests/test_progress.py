"""Progress bars as lines in logs, and the header, footer and tracebacks of a workflow job's log."""
import io
import os
import re
import subprocess
import sys
import textwrap
import time

from semcore.progress import progress

from conftest import REPO

LINE = re.compile(r"train: (\d+)/20 steps \((\d+)%\)(, .*)?, \d\d:\d\d elapsed, ETA (\d\d:\d\d|\?)")


def lines_of(monkeypatch, interval: float, loop) -> list[str]:
    """What a progress bar run by `loop` writes to a stderr that is not a terminal (a log)."""
    monkeypatch.setenv("SEMCORE_PROGRESS_INTERVAL", str(interval))
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    loop()
    text = stderr.getvalue()
    assert "\r" not in text and text.endswith("\n")
    return text.splitlines()


def count_to_20(pause: float = 0.0, postfix_at: int | None = None):
    def loop():
        with progress(total=20, desc="train", unit="steps") as bar:
            for step in range(1, 21):
                time.sleep(pause)
                bar.update()
                if step == postfix_at:
                    bar.set_postfix_str("loss 0.0123, 912 img/s", refresh=False)
    return loop


def test_lines_carry_the_counts_the_postfix_and_the_eta(monkeypatch):
    lines = lines_of(monkeypatch, 0, count_to_20(postfix_at=10))
    counts = [int(LINE.fullmatch(line)[1]) for line in lines]  # each line whole, in the format
    assert counts == list(range(21))  # interval 0: the start, then every update
    assert "loss 0.0123, 912 img/s" in lines[11] and "loss" not in lines[10]
    assert LINE.fullmatch(lines[-1])[2] == "100"


def test_lines_are_at_most_one_per_interval(monkeypatch):
    assert [int(LINE.fullmatch(line)[1]) for line in lines_of(monkeypatch, 3600, count_to_20())] == [0, 20]
    lines = lines_of(monkeypatch, 0.05, count_to_20(pause=0.01))  # 0.2 s: about 4 lines besides the first and last
    assert 3 <= len(lines) <= 8


def test_without_a_total_lines_count_alone(monkeypatch):
    def loop():
        for _ in progress(iter(range(5)), desc="shard", unit="img"):
            pass
    assert lines_of(monkeypatch, 3600, loop) == ["shard: 0 img, 00:00 elapsed", "shard: 5 img, 00:00 elapsed"]


def test_a_terminal_gets_a_bar(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    for _ in progress(range(3), desc="φ", unit="img"):
        pass
    assert "\r" in sys.stderr.getvalue() and "3/3" in sys.stderr.getvalue()


# A workflow script, with what Snakemake's `snakemake` object offers job_log.
SCRIPT = """
    import sys, types
    {imports}
    from semcore.joblog import job_log

    class Named(list):
        '''Snakemake's Namedlist as job_log reads it: the entries in order, and items() by name.'''
        def __init__(self, named=None, unnamed=()):
            named = named or {{}}
            super().__init__([*(p for v in named.values() for p in (v if isinstance(v, list) else [v])), *unnamed])
            self.named = named

        def items(self):
            return self.named.items()

    snakemake = types.SimpleNamespace(
        rule="demo", threads=3, log=["job.log"], wildcards=Named({{"k": "4"}}),
        input=Named({{"table": "table.parquet", "shards": "shards", "code": [f"m{{i}}.py" for i in range(12)]}},
                    unnamed=["loose.txt"]),
        output=Named({{"out": "out.parquet"}}), params=Named({{"sigmas": [0.1, 0.5], "seed": 7}}),
        resources=Named({{"_cores": 3, "mem_mb": 4000, "gpu": 0}}))
    job = job_log(snakemake)
    {body}
"""


def run_script(tmp_path, imports: str, body: str) -> tuple[subprocess.CompletedProcess, str]:
    (tmp_path / "table.parquet").write_bytes(b"x" * 2048)
    (tmp_path / "shards").mkdir()
    for name in ("a.tar", "b.tar", "index.json"):
        (tmp_path / "shards" / name).write_bytes(b"y" * 1024)
    code = textwrap.dedent(SCRIPT.format(imports=imports, body=body))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            env=os.environ | {"PYTHONPATH": str(REPO)})
    return result, (tmp_path / "job.log").read_text()


def test_the_job_log_has_a_header_and_a_footer(tmp_path):
    result, log = run_script(tmp_path, "from semcore.runtime import resolve_device", textwrap.dedent("""
        resolve_device("cpu")
        print("the script's own output", file=sys.stderr)
    """).replace("\n", "\n    "))
    assert result.returncode == 0, result.stderr
    assert log.startswith("=== rule demo, started ")
    assert re.search(r"^host .+, pid \d+, Python 3\.\d+\.\d+, torch \d", log, re.M)
    assert "threads 3; resources mem_mb=4000, gpu=0\n" in log and "wildcards k=4\n" in log
    assert "  table: table.parquet (2.0 KiB)\n" in log
    assert "  shards: shards (folder: 3 files, 3.0 KiB)\n" in log
    assert "  code: 12 files (first m0.py, last m11.py)\n" in log
    assert "  loose.txt (missing)\n" in log
    assert "output:\n  out: out.parquet\n" in log
    assert "params:\n  sigmas: [0.1, 0.5]\n  seed: 7\n" in log
    assert re.search(r"INFO device cpu, \d+ thread\(s\)\n", log)
    assert "the script's own output\n" in log
    assert re.search(r"=== finished after \d+\.\d s, peak memory \d+\.\d MiB\n$", log)


def test_a_failing_job_logs_its_traceback_and_no_torch(tmp_path):
    result, log = run_script(tmp_path, "", "assert 'torch' not in sys.modules\n    raise ValueError('boom')")
    assert result.returncode == 1
    assert "torch" not in log.split("\n")[1]  # a data-only script does not import it
    assert re.search(r"Traceback \(most recent call last\):\n.*ValueError: boom\n=== failed after \d+\.\d s", log,
                     re.S)
