"""Extraction worker: per-video Snakemake jobs whose networks stay loaded between videos.

Why: a per-video job that starts Python, imports torch, builds RAFT/I3D/VGGish and hashes their
checkpoints pays seconds of start-up for a few seconds of work (a 5 s clip's VGGish job was 4.7 s,
nearly all start-up). Snakemake still owns the DAG here, one job per video and stage, so skipping,
incremental reruns, retries and per-video outputs stay exactly Snakemake's; only the process that
does the work lives longer.

How: each job's shell command runs ``python -m extractors.worker POOL -- <extract arguments>``, a
stdlib-only client (about 50 ms). The client takes the first free *slot* of its pool (a file lock
per slot, so one job per worker at a time and as many workers as jobs run at once), connects to that
slot's worker over a Unix socket, or starts it when none is listening, and hands it the job's
arguments, working directory, thread count, **its whole environment and umask**, and its own
stdout/stderr file descriptors (so everything the job prints lands in the job's Snakemake log). The
worker runs the job's *entry* in-process (``main(argv)`` of :data:`~extractors.worker.protocol.ENTRIES`: :mod:`extractors.extract`
by default, ``extractors.llp.extract`` for LLP's per-clip jobs) with
:func:`extractors.weight_loading.keep_networks_resident` on, replies with the exit code and waits for the next
job.

The job's own environment: for the duration of a job the worker's ``os.environ``, umask, working
directory and ``tempfile.tempdir`` are the client's (restored afterwards), so a job behaves as it would
in its own process: ``TMPDIR``, ``PATH``, ``IMAGEIO_FFMPEG_EXE``, every ``AVLOC_*`` variable reach
the job and its ffmpeg children. Only what a process reads once at start-up is part of the worker's
*fingerprint* (in the socket name) instead: the interpreter, every source of ``extractors/`` (this package included), ``PYTHONPATH``,
``LD_LIBRARY_PATH``, and what picks the GPU (``CUDA_VISIBLE_DEVICES``, ``SLURM_JOB_ID``/``STEP_ID``).
Thread counts come from the job's ``--threads`` (``torch.set_num_threads`` per job).

Lifetime: a worker exits after ``AVLOC_WORKER_IDLE_S`` seconds without work (default 120; a worker that
used CUDA after ``AVLOC_WORKER_GPU_IDLE_S``, default 10, so a GPU Snakemake released is really free),
after any failed or cancelled job (a fresh process for the next one), and never serves other code.
Each worker runs under a small supervisor (a child subreaper): when the worker dies, even by
``kill -9``, the supervisor kills what the worker left running (ffmpeg) and removes the temporary files
of the job it was running.

Cancellation: when the client goes away (Snakemake killed it, or it got SIGINT/SIGTERM/SIGHUP and
closed its side), the worker kills the job's child processes, removes its temporary files, writes
``[worker] job cancelled ...`` to the job's log and exits without publishing anything; the next job of
the slot starts a fresh worker (a client whose request was not acknowledged simply retries).

Security model (a shared machine): the worker folder must be a directory owned by the user with mode
0700 (created so; anything else, also via ``AVLOC_WORKER_DIR``, is refused with an error), sockets are
0600 whatever the umask, both sides check the other's uid (``SO_PEERCRED``), lock and log files are
opened without following symlinks, and a worker runs only the extraction entry points of
:data:`~extractors.worker.protocol.ENTRIES`, nothing a request names otherwise.

Accounting: the worker measures each job's own wall time, CPU time (its own and its children's), its
peak RSS during the job and, with CUDA, the peak GPU memory; it writes them at the end of the job's log
and, with ``--record PATH``, as JSON to PATH (the rules put it beside Snakemake's benchmark file, whose
numbers are the client's). ``AVLOC_WORKER=0`` runs each job in its own process instead (the per-process
design, kept for debugging and as the reference of ``bench/extract_overhead_bench.py``); the record is
written the same way.

Slot ``i`` of a pool uses GPU ``i mod n_gpus`` when the job asks for CUDA, so a workstation running N
GPU jobs at once (``resources: gpu: N``) spreads them over its N GPUs. On SLURM the grouped jobs of one
submission run on one node and share that node's workers; SLURM ends them with the submission.

The modules, one job each: :mod:`~extractors.worker.protocol` (the folder, slot paths, fingerprint, peer
checks, the request format and the entry points a worker may run), :mod:`~extractors.worker.client` (a
job's client), :mod:`~extractors.worker.server` (the worker's loop and job cancellation),
:mod:`~extractors.worker.supervisor` (clean-up after a dead worker), :mod:`~extractors.worker.jobs` (one
job's environment, exit code and leftovers), :mod:`~extractors.worker.accounting` (a job's resources) and
``__main__`` (the command line).
"""

