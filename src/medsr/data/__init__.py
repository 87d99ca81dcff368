"""The labeled HR dataset: the embedded generators (mni: the default, MNI152 template slices; synthetic: the cartoon
used by the smoke overlay), real sources (folder, url, kaggle) and `download.run`."""
