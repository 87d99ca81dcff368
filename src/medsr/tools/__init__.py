"""What runs outside the DAG: the dvc.yaml writer (`dvc_yaml`), Snakemake's rule builder (`snakemake_rules`), both
from the stage table through `rule_files`; each stage's source files (`sources`: the import graph), the paths a user
brings (`user_paths`) and the overlay printer (`overlay`). No stage imports them, so editing one reruns nothing."""
