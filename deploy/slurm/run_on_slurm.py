"""Run Nightjar's pipeline on Dask workers that are SLURM jobs (dask-jobqueue), from a login or service node.

    pip install "nightjar[postgresql]" dask-jobqueue     # in an environment every compute node can see
    export NIGHTJAR_HOME=/shared/nightjar NIGHTJAR_KAFKA=... NIGHTJAR_DATABASE_URL=...
    python deploy/slurm/run_on_slurm.py --topic alerts --jobs 4 --account astro --partition compute

Each SLURM job runs one Dask worker with two threads (what ``nightjar run`` expects of a worker); the driver
(this script) stays on the node that starts it and must reach Kafka, the scheduler and the workers. Change the
resources, the partition, the account and the environment's activation (``job_script_prologue``) to your site's.
Until the lake moves to object storage, NIGHTJAR_HOME must be on a file system every node mounts.
"""

from __future__ import annotations

import argparse

from dask_jobqueue import SLURMCluster
from distributed import Client

from nightjar.pipelines.run import run
from nightjar.settings import load_settings


def main() -> None:
    """Start a Dask cluster of SLURM jobs and run the pipeline on it over an alert topic."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--topic", required=True, help="the alert topic to read")
    parser.add_argument("--jobs", type=int, default=4, help="SLURM jobs, one Dask worker each")
    parser.add_argument("--account", help="SLURM account to charge")
    parser.add_argument("--partition", default=None, help="SLURM partition (queue)")
    parser.add_argument("--walltime", default="12:00:00", help="each job's time limit; replaced as it ends")
    parser.add_argument("--activate", default="", help="a shell line that activates Nightjar's environment")
    args = parser.parse_args()

    settings = load_settings()
    cluster = SLURMCluster(
        cores=2,
        processes=1,
        memory="8GiB",  # Dask's limit for the worker: a 2,000-alert batch takes ~1.5 GB from fetch to commit
        walltime=args.walltime,
        account=args.account,
        queue=args.partition,
        job_script_prologue=[args.activate] if args.activate else [],
        worker_extra_args=["--nthreads", "2", "--resources", "bulk=1"],
        log_directory=str(settings.home / "slurm-logs"),
    )
    # Jobs that reach their wall time are replaced, so the pipeline keeps its workers for the whole night.
    cluster.adapt(minimum_jobs=args.jobs, maximum_jobs=args.jobs)
    with Client(cluster) as client:
        client.wait_for_workers(1, timeout=1800)
        report = run(settings, client, args.topic)
    print(f"{report.accepted} alerts stored in {report.batches} batches")


if __name__ == "__main__":
    main()
