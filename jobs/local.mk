EXTRA_DIST += jobs/README.md jobs/setup.sh jobs/quickstart.sh jobs/bench_layouts.sh jobs/bench_load.sh jobs/bench_tokenizer.sh jobs/bench_transformers_layer.py jobs/bench_serving.py
# A real Slurm cluster on one machine (tests and demos).
EXTRA_DIST += jobs/cluster/setup.sh jobs/cluster/start.sh jobs/cluster/stop.sh
# The user-facing job scripts, installed under $(pkgdatadir)/jobs.
nobase_dist_pkgdata_SCRIPTS = jobs/slurm/convert.sbatch jobs/slurm/generate.sbatch \
	jobs/slurm/serve.sbatch jobs/slurm/replica.sbatch jobs/slurm/bench.sbatch jobs/slurm/wait.sh \
	jobs/mpirun/launch.sh jobs/mpirun/serve.sh jobs/mpirun/generate.sh jobs/mpirun/bench.sh
nobase_dist_pkgdata_DATA = jobs/slurm/common.sh
# Scaling studies: runs -> CSV -> gnuplot PNGs.
nobase_dist_pkgdata_SCRIPTS += jobs/scaling/run.sh jobs/scaling/plot.sh jobs/scaling/validate_netns.sh
# The README's example study (CPU ranks on one machine).
EXTRA_DIST += jobs/scaling/example-throughput.png jobs/scaling/example-results.csv \
	jobs/scaling/example-validation.png jobs/scaling/example-validation.csv jobs/scaling/example-validation-throughput.png
