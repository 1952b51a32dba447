"""The data sets, one file each: a file registers its data set (`register_dataset`) next to the
reader that lists its images. `study.data.registry` imports every module here on its first lookup,
so a new data set is one new file in this folder and nothing else."""
