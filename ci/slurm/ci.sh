#!/usr/bin/env bash
# CI stage "real SLURM": bring up the one-node cluster (ci/slurm/up.sh), run the integration test
# tests/test_slurm_cluster.py with the virtual environment the README's install/test command created,
# tear the cluster down whatever happens. Run from the repository root (or anywhere: it cds there) as
# root, after the README's test command:  bash ci/slurm/ci.sh
# A cluster that cannot start fails this stage with up.sh's reason; so does a test that would skip
# (AVLOC_SLURM_REQUIRED=1 turns the test's "no cluster" skip into a failure).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${VENV:-.venv}"
[ -x "$VENV/bin/python" ] || { echo "ci/slurm/ci.sh: no virtual environment at $VENV (run the README's install and test command first)" >&2; exit 1; }
"$VENV/bin/python" -c 'import snakemake_executor_plugin_slurm' 2>/dev/null ||
    { echo "ci/slurm/ci.sh: snakemake-executor-plugin-slurm is missing from $VENV (pip install -e '.[test]')" >&2; exit 1; }
# activated, as a user's shell is: the rules' commands run `python` from PATH, on the compute node too
# (SLURM exports the submitting environment)
# shellcheck disable=SC1091
. "$VENV/bin/activate"
trap 'bash ci/slurm/down.sh' EXIT
t0=$(date +%s)
echo "+ ci/slurm/up.sh"
bash ci/slurm/up.sh
t1=$(date +%s)
echo "+ python -m pytest tests/test_slurm_cluster.py -m slurm (cluster up in $((t1 - t0)) s)"
AVLOC_SLURM_REQUIRED=1 python -m pytest tests/test_slurm_cluster.py -m slurm -q -s -p no:cacheprovider
t2=$(date +%s)
echo "+ SLURM stage: cluster up $((t1 - t0)) s, integration test $((t2 - t1)) s"
