"""profiles/slurm as sbatch sees it, and the GPU check script, without a cluster or a GPU."""
import re
import subprocess
import sys

from conftest import REPO


def run(script: str, *args: str) -> str:
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True,
                            text=True, cwd=REPO / "benchmarks", timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_profile_sends_a_4_gpu_train_to_one_node_with_its_partition_and_memory():
    out = run("sbatch_lines.py", "--gpus", "4")
    train = re.search(r"^train.*\n\s+(sbatch .*)$", out, re.M).group(1)
    phi = re.search(r"^phi.*\n\s+(sbatch .*)$", out, re.M).group(1)
    for flag in ("-p gpu", "-A my_account", "--gpus=a100:4", "--nodes=1", "--cpus-per-gpu=8", "--mem 36000"):
        assert flag in train, (flag, train)
    for flag in ("-p gpu", "--gpus=a100:1", "--cpus-per-gpu=4"):
        assert flag in phi, (flag, phi)


def test_the_gpu_check_runs_its_whole_workload_in_miniature():
    out = run("gpu_check.py", "--smoke")
    assert "train bf16 autocast" in out and "phi   fp32/TF32" in out and "k-means k=10" in out
