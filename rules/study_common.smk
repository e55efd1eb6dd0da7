# The study's runs and the functions its rules use (rules/study.smk).
from pathlib import Path

from semcore.plan import code, names
from semcore.plan.study import ANALYSES, study_runs

STUDY = config["study"]
RUNS = study_runs({"study": STUDY})  # each run's config validated as a run alone would be; errors name the run
STUDY_RESULTS = f"results/{STUDY['name']}"
WORKFLOW_DIR = str(Path(workflow.current_basedir.get_path_or_uri(secret_free=True)).parent)


def profile_settings_for_every_run(settings):
    """A profile's settings per rule name (set-resources and set-threads, e.g. `train` with `gpu` 4) apply
    to that rule of every run (<run>_train) as to a run alone. Snakemake applies them by name as it creates
    each rule, so they are added before the runs' rules are created."""
    for per_name in (settings._parsed_overwrite_resources, settings._parsed_overwrite_threads):
        for rule_name, value in list(per_name.items()):
            per_name.update({f"{run.module}_{rule_name}": value for run in RUNS})


profile_settings_for_every_run(workflow.resource_settings)


def run_rule(run, name):
    return getattr(rules, f"{run.module}_{name}")


def runs_with(analysis):
    """The runs that have this analysis: emergence needs training (not model.pretrained) and kept steps;
    the gist needs scene factors or labels (known once the run's `shard` has run: its own `findings` asks)."""
    if analysis == "emergence":
        return [r for r in RUNS if not r.config["model"]["pretrained"] and r.config["emergence"]["steps"]]
    return RUNS


def run_tables(wildcards):
    """{run name: its table of the analysis}, for the runs that have it."""
    analysis = wildcards.analysis
    if analysis == "gist":
        agreement = {r.name: run_rule(r, "findings").input.agreement(wildcards) for r in RUNS}
        return {name: str(path) for name, path in agreement.items() if path}  # a path, or [] without a gist
    return {r.name: f"results/{r.name}/{ANALYSES[analysis][0]}" for r in runs_with(analysis)}


def study_category(analysis):
    """The analysis's category in the runs' reports ("07 Semantics"), so that a study report reads alike."""
    return names.report_category(ANALYSES[analysis][1])


def script_code(script):
    """workflow_scripts/<script>.py and the semcore files it imports (as rules/common.smk's)."""
    return code.script_code(WORKFLOW_DIR, script)
