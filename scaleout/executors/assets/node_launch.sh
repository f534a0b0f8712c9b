#!/bin/bash
# Run one node's share of a scaleout trial: ARGV with its per-node placeholders filled.
#   node_launch.sh ARGV...
# {node_rank}   <- $NODE_RANK, else $SLURM_NODEID (srun sets it per node), else 0
# {master_addr} <- $MASTER_ADDR (the first node: the rendezvous of torchrun)
# {master_port} <- $MASTER_PORT (chosen per trial, so trials sharing a node do not collide)
# The Slurm executor copies this file into each job's dir and runs it under srun; the Ray
# executor fills the same placeholders per placement-group bundle in Python.
set -eu
node_rank=${NODE_RANK:-${SLURM_NODEID:-0}}
args=()
for a in "$@"; do
  a=${a//\{node_rank\}/$node_rank}
  a=${a//\{master_addr\}/${MASTER_ADDR:-127.0.0.1}}
  a=${a//\{master_port\}/${MASTER_PORT:-29500}}
  args+=("$a")
done
exec "${args[@]}"
