"""The sbatch lines profiles/slurm makes for the ImageNet config: a 4-GPU `train` and a `phi` job.

Runs Snakemake with the SLURM executor plugin against a stand-in `sbatch` (and silent squeue/sacct/…)
placed first on PATH: the stand-in records its arguments and answers a job id; Snakemake is stopped
once the job is submitted. The DAG is bench_dag's: the ImageNet config over empty stand-in shards.
The profile is profiles/slurm with `train: gpu: 4`, as a user would set it.
Usage: python benchmarks/sbatch_lines.py [--gpus 4]
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench_dag import REPO, imagenet_workdir

STAND_IN = '#!/bin/sh\necho "sbatch $*" >> "$SBATCH_LOG"\necho 4242\n'
SILENT = "#!/bin/sh\nexit 0\n"
ACCOUNTS = "#!/bin/sh\necho my_account\n"  # the plugin checks the profile's account with sacctmgr


def submitted(workdir: Path, profile: Path, target: str, rule: str, log: Path, env: dict, *args: str) -> str:
    """The sbatch line of the one job that makes `target`, forced to run (`args`: more of Snakemake's)."""
    log.write_text("")
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--workflow-profile", str(profile), "--nolock", *args, "--forcerun", rule, "--until", rule, target]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 300
    while not log.read_text() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    _, err = proc.communicate()
    if not log.read_text():
        sys.exit(f"no sbatch call for {target}:\n{err[-3000:]}")
    return log.read_text().strip().split(" --wrap")[0]


def stand_in_cluster(root: Path, gpus: int) -> tuple[Path, Path, dict]:
    """Stand-ins for sbatch (it logs its arguments) and SLURM's other commands first on PATH, and
    profiles/slurm with `train: gpu: gpus`: (the profile's folder, sbatch's log, the environment)."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    stand_ins = {"sbatch": STAND_IN, "sacctmgr": ACCOUNTS} | {n: SILENT for n in ("squeue", "sacct", "scancel", "sinfo", "scontrol", "sshare")}
    for name, text in stand_ins.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    profile["set-resources"]["train"]["gpu"] = gpus
    (root / "profile").mkdir()
    (root / "profile" / "config.yaml").write_text(yaml.safe_dump(profile))
    log = root / "sbatch.log"
    return root / "profile", log, os.environ | {"PATH": f"{bin_dir}:{os.environ['PATH']}", "SBATCH_LOG": str(log)}


def first_phi_target(workdir: Path, results: str) -> str:
    """The output of the first φ job: its chunk is named by its first and last shard."""
    shards = sorted(p.stem for p in (workdir / results / "shards").glob("train-*.tar"))
    per_job = yaml.safe_load((workdir / "config.yaml").read_text())["phi"]["shards_per_job"]
    return f"{results}/phi/{shards[0]}-{shards[per_job - 1].split('-')[1]}.parquet"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpus", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "work").mkdir()
        workdir, _ = imagenet_workdir(root / "work", 1_281_167)
        profile, log, env = stand_in_cluster(root, args.gpus)
        results = "results/imagenet64"
        # φ first: a killed submission leaves its output marked incomplete, and train's would be φ's input.
        print("phi (one job):\n  " + submitted(workdir, profile, first_phi_target(workdir, results), "phi", log, env))
        print(f"train ({args.gpus} GPUs):\n  " + submitted(workdir, profile, f"{results}/model/model.pt", "train", log, env))


if __name__ == "__main__":
    main()
