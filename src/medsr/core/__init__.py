"""What every stage stands on: parameters and their validation (`parameters`, `config`), file and image I/O (`io`),
model files and training state (`model_files`), provenance, device choice, seeded randomness, the shared training
machinery (`training`) and the one error type (`errors`)."""
