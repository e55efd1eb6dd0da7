"""What the Snakemake rules plan with, and nothing a job computes: torch-free, and it imports nothing of
semcore outside this package (tests/test_house.py checks both).

- schema: the config's schema, the one source of every default; readable errors
- settings: the model's and training's settings as dataclasses
- checks: the rules that tie config keys together, run before any job
- sizes: images per source, training steps, and the batch and chunk sizes jobs share
- sampler: the samplers' step arithmetic and presets
- resources: each rule's memory and runtime
- names: feature sets, chunks and snapshots, as paths and wildcards spell them
- inputs: a folder source's files, listed without decoding them
- authors_arguments: the architecture an authors' exp_arguments.pkl describes
- code: the semcore files a workflow script runs (a rule's `code` input)

The numerical layer (the rest of semcore: model, training, φ, statistics, sampling, figures) imports from
here; workflow scripts and the `semcore` command call the numerical layer.
"""
