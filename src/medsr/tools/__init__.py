"""Commands that are not pipeline stages (`medsr.cli.TOOLS`): the dvc.yaml writer and the overlay printer. No stage
imports them, so editing one reruns nothing."""
