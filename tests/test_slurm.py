"""The tiny workflow through a real SLURM (slurmctld + slurmd on this machine) with the executor plugin.

Every job goes through `sbatch` with a test variant of profiles/slurm: its GPU settings kept (the node
has placeholder GPUs, see slurm_cluster.py), a 2-GPU `train` that starts 2 DDP processes (gloo: the
jobs run on the CPU, `device: cpu`, the override of the profile's `device: cuda`), site values removed,
short status-check waits. The outputs are compared with the local run of the same config (the session's
`finished_run`). SLURM is installed with apt-get when missing (tests/slurm_cluster.py);
where it cannot be (not root, no apt-get, install fails, or another SLURM already runs here) the test is
skipped with the reason, as a warning too. SEMCORE_SLURM_TEST=0 skips it on purpose.
SEMCORE_SLURM_EVIDENCE=<file> saves the sbatch lines and job ids seen (they are printed with `pytest -s`).
"""
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from slurm_cluster import CONF, GPU_TYPE, GPUS, GRES_CONF, MARKER, Cluster, Unavailable, ensure_installed

import conftest
from conftest import REPO, TINY_CONFIG, write_config

PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
SITE_KEYS = ("slurm_partition", "slurm_account")
RUN_TIMEOUT = 600  # s; the run takes ~1–2 min on 2 cores
# The plugin's wait between two rounds of status checks starts at slurm-init-seconds-before-status-checks and
# grows by 10 s after each round that finds no job finished (up to 180 s): a job of 20 s is noticed up to ~30 s
# late, a few times a run (a third of this test's time). snakemake runs here with that wait capped at
# STATUS_WAIT s (a squeue on an idle one-node cluster); nothing checked depends on it. With another plugin
# interface, where the wait is not that property, snakemake runs unchanged (only slower).
STATUS_WAIT = 2
SNAKEMAKE = [sys.executable, "-c", f"""
import sys
try:
    from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
    wait = RemoteExecutor.next_seconds_between_status_checks
    if isinstance(wait, property) and wait.fset is not None:
        RemoteExecutor.next_seconds_between_status_checks = property(
            wait.fget, lambda self, seconds: wait.fset(self, min(seconds, {STATUS_WAIT})))
except (ImportError, AttributeError):
    pass
from snakemake.cli import main
sys.argv[0] = "snakemake"
main()
"""]


def skip_loudly(reason: str):
    conftest.skip_loudly(f"SLURM test NOT RUN: {reason}", opt_out="SEMCORE_SLURM_TEST")


@pytest.fixture(scope="module")
def slurm_installed():
    """Before the local run (finished_run) is asked for: a machine without SLURM skips at once."""
    if os.environ.get("SEMCORE_SLURM_TEST") == "0":
        skip_loudly("SEMCORE_SLURM_TEST=0")
    try:
        ensure_installed()
    except Unavailable as e:
        skip_loudly(str(e))


@pytest.fixture
def cluster(slurm_installed, request, tmp_path_factory):
    request.getfixturevalue("finished_run")  # the local reference run first, without daemons around
    try:
        running = Cluster(tmp_path_factory.mktemp("slurm")).__enter__()
    except Unavailable as e:
        skip_loudly(str(e))
    try:
        yield running
    finally:  # the test passed, failed or was interrupted
        running.stop()
    # The machine as the test found it: no daemon of ours left, none of our files in /etc, /run, /var or
    # the temporary folder (the Debian packages, when the test installed them, stay installed).
    assert all(proc.poll() is not None for proc in running.procs.values()), "a SLURM daemon outlived the test"
    assert not [conf for conf in (CONF, GRES_CONF) if conf.exists() and MARKER in conf.read_text(errors="replace")]
    assert not running.leftovers(), (running.leftovers(), running.cleanup_errors)


def slurm_test_profile(cpus: int, rules: list[str], path: Path) -> Path:
    """profiles/slurm for the test cluster: its GPU settings on the placeholder GPUs (train on all of them),
    the jobs on the CPU, no site values, short waits, squeue status."""
    profile = yaml.safe_load(PROFILE.read_text())
    assert profile["executor"] == "slurm" and profile["config"] == {"device": "cuda"}
    for key in SITE_KEYS:
        profile["default-resources"].pop(key, None)
    gpu_rules = {rule for rule, res in profile["set-resources"].items() if res.get("gpu")}
    assert {"train", "phi", "block_means"} <= gpu_rules, "the network's rules ask for a GPU on a cluster"
    for rule in rules:
        res = profile["set-resources"].setdefault(rule, {"gpu": 0})  # unlisted rules: CPU only, as on a cluster
        for key in SITE_KEYS:
            res.pop(key, None)
        if res.get("gpu"):
            res.update(gpu_model=GPU_TYPE, cpus_per_gpu=1)
    profile["set-resources"]["train"]["gpu"] = GPUS
    profile.update({
        "config": {"device": "cpu"},                    # the override: torch here sees no GPU
        "slurm-no-account": True,                       # no accounting database to look one up in
        "slurm-status-command": "squeue",               # sacct needs slurmdbd; squeue + MinJobAge 600
        "slurm-init-seconds-before-status-checks": STATUS_WAIT,  # the plugin's default waits 40 s
        "slurm-keep-successful-logs": True,             # checked below
        "max-threads": cpus,                            # rules ask for up to 8 per GPU; the node has `cpus`
        "set-threads": {"phi": 1},                      # φ's jobs side by side on this small node
        "latency-wait": 5,
        "retries": 0,
    })
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return path


def run_snakemake(workdir: Path, *args: str) -> tuple[int, str]:
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    with open(workdir / "snakemake.out", "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env=os.environ | {"PYTHONUNBUFFERED": "1"})
        try:
            rc = proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)  # snakemake cancels its SLURM jobs on SIGTERM
            proc.wait(timeout=60)
            rc = "timeout"
        except BaseException:  # interrupted: no snakemake of ours keeps running
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
            raise
    return rc, (workdir / "snakemake.out").read_text()


def kill_after_submission(workdir: Path, *args: str) -> list[str]:
    """Run snakemake and SIGKILL it (not its SLURM jobs, which slurmd runs) as soon as it has submitted a
    job, as a closed login session would; returns the SLURM ids it had submitted."""
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    with open(workdir / "killed.out", "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env=os.environ | {"PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + RUN_TIMEOUT
        try:
            while not (submitted := re.findall(r"submitted with SLURM jobid (\d+)", (workdir / "killed.out").read_text())):
                assert proc.poll() is None and time.monotonic() < deadline, (workdir / "killed.out").read_text()[-3000:]
                time.sleep(0.2)
        finally:  # also when the assertion fails or the test is interrupted
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # it and its group had already ended
                pass
            proc.wait()
    return submitted


def wait_until_finished(slurm_ids: list[str]) -> None:
    """Poll squeue (generously) until none of the jobs is pending or running."""
    deadline = time.monotonic() + RUN_TIMEOUT
    while subprocess.run(["squeue", "-h", "-t", "PD,R,CG", "-j", ",".join(slurm_ids)], capture_output=True, text=True).stdout.strip():
        assert time.monotonic() < deadline, f"SLURM jobs {slurm_ids} still queued after {RUN_TIMEOUT} s"
        time.sleep(1)


def job_logs(workdir: Path, chars: int = 3000) -> str:
    """The end of every rule log and SLURM job log of the run: what a failed job said."""
    logs = sorted([*(workdir / "results").rglob("logs/**/*.log"),
                   *(workdir / ".snakemake" / "slurm_logs").rglob("*.log")])
    return "\n".join(f"--- {p.relative_to(workdir)} ---\n{p.read_text(errors='replace')[-chars:]}" for p in logs)


def scontrol_jobs() -> dict[str, dict[str, str]]:
    """{job id: fields} of the jobs slurmctld still holds (finished ones for MinJobAge = 600 s)."""
    out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True, timeout=30).stdout
    jobs = {}
    for line in out.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    return jobs


def files(results: Path) -> set[str]:
    return {str(p.relative_to(results)) for p in results.rglob("*")
            if p.is_file() and p.relative_to(results).parts[0] not in ("logs", "benchmarks")}


def test_tiny_workflow_runs_through_slurm_and_matches_the_local_run(cluster, request, tmp_path):
    # Order: slurm_installed (may skip), finished_run (the local run; not an argument, as a session
    # fixture would come first), cluster (daemons up), this test.
    finished_run = request.getfixturevalue("finished_run")
    started = time.monotonic()
    workdir = tmp_path / "run"
    workdir.mkdir()
    write_config(workdir, TINY_CONFIG)
    rules = sorted({name for path in [REPO / "Snakefile", *(REPO / "rules").glob("*.smk")]
                    for name in re.findall(r"^(?:rule|checkpoint) (\w+):", path.read_text(), re.M)})
    profile = slurm_test_profile(cluster.cpus, rules, tmp_path / "profile")
    # Up to φ: shard → train → φ, the jobs that matter on a cluster (the network's, φ's in parallel); the
    # whole tiny workflow through SLURM takes several minutes on 2 cores. φ's jobs are known once the
    # `shard` checkpoint has run (`--until phi` plans none), so: `shard` first, then every φ file
    # (one per phi.shards_per_job shards of a split, named by its first and last) — the second run
    # continues the first.
    steps = []
    for targets in (["shard"], None):
        if targets is None:
            shards = sorted(p.stem for p in (workdir / "results/tiny/shards").glob("*.tar"))
            per_job = TINY_CONFIG["phi"].get("shards_per_job", 8)
            targets = []
            for split in ("test", "train"):
                names = [s for s in shards if s.startswith(split)]
                targets += [f"results/tiny/phi/{chunk[0]}-{chunk[-1].split('-')[1]}.parquet"
                            for chunk in (names[i:i + per_job] for i in range(0, len(names), per_job))]
        rc, out = run_snakemake(workdir, "--workflow-profile", str(profile), "--verbose", *targets)
        assert rc == 0, (f"snakemake {' '.join(targets)} through SLURM: {rc}\n{out[-6000:]}\n"
                         f"--- slurmctld ---\n{cluster.tail('slurmctld')}\n{job_logs(workdir)}")
        steps.append(out)
    elapsed = time.monotonic() - started

    # What SLURM saw. snakemake announces each job ("rule phi: … jobid: 7"), the plugin logs its sbatch
    # call and the SLURM job id it got back; slurmctld logs each submission and completion.
    ran, submitted, sbatch_calls = [], {}, []  # ran: rule of each job; submitted: SLURM job id → rule
    for out in steps:
        announced = {jobid: rule for _, rule, jobid in
                     re.findall(r"^(rule|checkpoint) (\w+):\n(?:    .*\n)*?    jobid: (\d+)$", out, re.M)}
        ran += announced.values()
        for jobid, slurm_id in re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", out):
            submitted[slurm_id] = announced.get(jobid, "?")
        sbatch_calls += [c.split(" --wrap=")[0] for c in re.findall(r"sbatch call: (.*)", out)]
    ctld = cluster.ctld_log.read_text()
    ctld_submits = re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", ctld)
    exits = dict(re.findall(r"_job_complete: JobId=(\d+) WEXITSTATUS (\d+)", ctld))
    jobs = scontrol_jobs()
    slurm_logs = sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log"))

    evidence = [f"SLURM run of the tiny workflow up to phi: {elapsed:.0f} s, {len(submitted)} sbatch jobs", "",
                "sbatch calls (the plugin's, --wrap=<job> cut):"]
    evidence += [f"  {c}" for c in sbatch_calls]
    evidence += ["", "SLURM jobs (scontrol show job):"]
    evidence += [f"  JobId={s:<3} rule={rule:12s} state={jobs.get(s, {}).get('JobState', '?')} "
                 f"exit={jobs.get(s, {}).get('ExitCode', '?')} cpus={jobs.get(s, {}).get('NumCPUs', '?')} "
                 f"tres={jobs.get(s, {}).get('TRES', '?')} comment={jobs.get(s, {}).get('Comment', '?')}"
                 for s, rule in submitted.items()]
    evidence += ["", "slurmctld log:"]
    evidence += [f"  {line}" for line in ctld.splitlines()
                 if "_slurm_rpc_submit_batch_job" in line or "_job_complete" in line or "sched: Allocate" in line]
    evidence += ["", "plugin logs (.snakemake/slurm_logs):"]
    evidence += [f"  {p.relative_to(workdir)}" for p in slurm_logs]
    text = "\n".join(evidence) + "\n"
    print("\n" + text)
    if os.environ.get("SEMCORE_SLURM_EVIDENCE"):
        Path(os.environ["SEMCORE_SLURM_EVIDENCE"]).write_text(text)

    # Every job snakemake ran went through sbatch, and SLURM ran it to completion.
    assert Counter(submitted.values()) == Counter(ran), (submitted, ran)
    assert Counter(ran)["shard"] == 1 and Counter(ran)["train"] == 1 and Counter(ran)["phi"] >= 2
    assert len(sbatch_calls) == len(submitted)
    assert sorted(ctld_submits, key=int) == sorted(submitted, key=int), "slurmctld saw other jobs"
    for slurm_id, rule in submitted.items():
        assert exits.get(slurm_id) == "0", f"SLURM job {slurm_id} ({rule}) exit status {exits.get(slurm_id)}"
        assert jobs[slurm_id]["JobState"] == "COMPLETED"
        assert jobs[slurm_id]["Comment"].startswith(f"rule_{rule}")
        assert any(p.name == f"{slurm_id}.log" for p in slurm_logs), f"no plugin log for SLURM job {slurm_id}"
    # Rule resources reached sbatch: memory and time everywhere; the profile's GPUs for the network's rules,
    # all of them on one node for train; and SLURM allocated them.
    calls = dict(zip(submitted.values(), sbatch_calls))  # one call of each rule suffices
    for call in sbatch_calls:
        assert " --mem " in call and " -t " in call, call
    assert "--cpus-per-task=" in calls["shard"] and "--gpus" not in calls["shard"]
    assert f"--gpus={GPU_TYPE}:{GPUS}" in calls["train"] and "--nodes=1" in calls["train"]
    assert f"--gpus={GPU_TYPE}:1" in calls["phi"] and "--cpus-per-gpu=1" in calls["phi"]
    assert max(int(jobs[s]["NumCPUs"]) for s in submitted) <= cluster.cpus
    for slurm_id, rule in submitted.items():
        gpus = {"shard": 0, "train": GPUS}.get(rule, 1)
        asked = " ".join(f"{k}={v}" for k, v in jobs[slurm_id].items() if k.startswith("TresPer") or k == "TRES")
        granted = any(f in asked for f in (f"gpu:{GPU_TYPE}:{gpus}", f"gpu:{GPU_TYPE}={gpus}", f"gres/gpu={gpus}"))
        assert granted == (gpus > 0), (rule, asked)
    train_log = (workdir / "results" / "tiny" / "logs" / "train.log").read_text()
    assert f"CUDA_VISIBLE_DEVICES={','.join(map(str, range(GPUS)))}" in train_log, train_log[-3000:]

    # The same outputs as the local run (of everything, so a superset of this one's).
    local, remote = finished_run / "results" / "tiny", workdir / "results" / "tiny"
    assert files(remote) <= files(local), files(remote) - files(local)
    phi_files = {f for f in files(local) if f.startswith("phi/")}
    assert phi_files and phi_files <= files(remote)
    pd.testing.assert_frame_equal(pd.read_parquet(remote / "manifest.parquet"),
                                  pd.read_parquet(local / "manifest.parquet"))
    options_r, options_l = (json.loads((d / "model" / "options.json").read_text()) for d in (remote, local))
    def strip(options):  # data: shard mtimes; runtime: process counts; train.device: cpu here, auto locally
        kept = {k: v for k, v in options.items() if k not in ("data", "hash", "runtime")}
        return kept | {"train": {k: v for k, v in kept["train"].items() if k != "device"}}

    assert strip(options_r) == strip(options_l) and options_r["runtime"]["processes"] == GPUS
    assert [f[:2] for f in options_r["data"]] == [f[:2] for f in options_l["data"]]  # names and sizes
    model_r, model_l = (torch.load(d / "model" / "model.pt", weights_only=True) for d in (remote, local))
    assert model_r["config"] == model_l["config"]
    # Two DDP processes trained one model (the local run: one process, so other batches and other weights).
    replicas = [json.loads(line) for line in (remote / "model" / "log.jsonl").read_text().splitlines()
                if json.loads(line)["kind"] == "replicas"]
    assert len(replicas) == 1 and replicas[0]["processes"] == GPUS and len(set(replicas[0]["sha256"])) == 1
    assert all(torch.isfinite(t).all() for t in model_r["state_dict"].values())

    phi_r, phi_l = (pd.read_parquet(d / "phi").sort_values(["key", "sigma"], ignore_index=True)
                    for d in (remote, local))
    pd.testing.assert_frame_equal(phi_r.drop(columns="phi"), phi_l.drop(columns="phi"))
    x_r = np.stack(phi_r.phi)
    assert x_r.shape == (len(phi_l), TINY_CONFIG["model"]["channels"][-1]) and np.isfinite(x_r).all()

    # Snakemake killed while its SLURM jobs run: the rerun resubmits the job if its file is not there yet,
    # while the orphan may still be running (each writes its own temporary file), or takes the file the
    # orphan finished (whole: it appears only renamed). Either way the φ file is the same.
    before = pd.read_parquet(remote / "phi").sort_values(["key", "sigma"], ignore_index=True)
    # (The target before --forcerun, which takes every name after it: else the killed run plans the whole
    # workflow and its orphans hold the node's CPUs while the rerun's job waits.)
    orphans = kill_after_submission(workdir, "--workflow-profile", str(profile), *targets[:1], "--forcerun", "phi")
    assert run_snakemake(workdir, "--unlock")[0] == 0
    rc, out = run_snakemake(workdir, "--workflow-profile", str(profile), *targets)
    assert rc == 0, out[-3000:]
    resubmitted = "submitted with SLURM jobid" in out
    assert resubmitted or "Nothing to be done" in out, out[-3000:]
    wait_until_finished(orphans)
    print(f"[slurm] after the kill: {'resubmitted' if resubmitted else 'took the finished file of the orphan'}")
    after = pd.read_parquet(remote / "phi").sort_values(["key", "sigma"], ignore_index=True)
    pd.testing.assert_frame_equal(after, before)
    assert not list(remote.rglob("*.tmp")), "a temporary file was left behind"
    print(f"[slurm] test done in {time.monotonic() - started:.0f} s (SLURM run {elapsed:.0f} s)")
