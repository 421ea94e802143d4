#!/usr/bin/env bash
# The device check (`make gpu-check`, issue 17): what a session lent a GPU runs first, inside 9 minutes.
#   A. MJX-JAX physics and env steps/s at 1,024 / 4,096 / 16,384 envs, with MuJoCo C on the host's cores beside them
#   B. the paper profile's PPO training steps/s at 2,048 and 4,096 envs (the paper's 600k and 1.2M figures)
#   C. time to target: the paper profile trained (seed 0) until its held-out joint error beats the mean-trajectory
#      baseline (bench/time_to_target.yaml), for the time that is left
# and whether MuJoCo Warp is installed (its wheel is too big to travel to the lent machine: there, MJX-JAX only).
# Each part has a time budget (`--budget-s`: no measurement starts past it) and a hard `timeout` above it; every
# report is rewritten after each env count, so a part cut short keeps what it measured. Reports go to --out-dir
# (default reports/throughput), with gpu-check-<UTC>.json saying what each part did.
#
#   bash bench/gpu_check.sh [--out-dir DIR] [--budget-s 480] [--params FILE] [--dry-run]
# --dry-run: the same parts on the CPU at 2 envs, 0.1 s calls, physics only, and a time to target of one iteration
# (the test suite runs it).
# Where the Python lacks mujoco, brax or pydantic and .whl/ holds wheels (`make gpu-wheels`), they are installed to a
# temporary folder first (no network).
set -uo pipefail
cd "$(dirname "$0")/.."

OUT_DIR=reports/throughput
BUDGET=480
PARAMS=params.yaml
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out-dir) OUT_DIR=$2; shift 2 ;;
    --budget-s) BUDGET=$2; shift 2 ;;
    --params) PARAMS=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    *) echo "gpu-check: unknown option $1" >&2; exit 2 ;;
  esac
done

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3
fi

if ! "$PY" -c 'import mujoco.mjx, brax, pydantic' >/dev/null 2>&1 && ls .whl/*.whl >/dev/null 2>&1; then
  SITE=$(mktemp -d /tmp/mimic-site.XXXXXX)
  "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
    --target "$SITE" .whl/*.whl || { echo "gpu-check: installing .whl/ failed" >&2; exit 1; }
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
mkdir -p "$OUT_DIR"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
LOG="$OUT_DIR/gpu-check-$STAMP.log"
START=$(date +%s)

if [ $DRY = 1 ]; then   # the plumbing only (parts, budgets, reports, summary): the measurements have their own tests
  DEV=cpu; ENVS_A=2; ENVS_B=2; SECONDS_=0.1; REPEATS=1; PROFILE_ARGS=(); MEASURE_A=physics; MEASURE_B=physics
  TTT=$(mktemp /tmp/mimic-ttt.XXXXXX.yaml)
  printf 'weight: 0.1\ntarget: fixed\ntarget_joint_error_deg: 1000.0\neval_every_iterations: 1\nmax_env_steps: 1\nseeds: [0]\n' > "$TTT"
  TTT_ARGS=(--settings "$TTT")
else
  DEV=gpu; ENVS_A=1024,4096,16384; ENVS_B=2048,4096; SECONDS_=2; REPEATS=3; PROFILE_ARGS=(--profile paper)
  MEASURE_A=physics,env,mujoco_c; MEASURE_B=train; TTT_ARGS=()
fi

# part NAME SHARE_S COMMAND ARGS...: run `mimic-bench COMMAND` with a budget of SHARE_S (at most what is left) and a
# hard limit 45 s above it (480 + 45 s: inside 9 minutes); its status goes to $OUT_DIR/.parts
: > "$OUT_DIR/.parts-$STAMP"
part() {
  local name=$1 share=$2 cmd=$3; shift 3
  local left=$(( BUDGET - ($(date +%s) - START) ))
  local b=$(( share < left ? share : left ))
  if [ "$b" -le 10 ]; then
    echo "$name skipped 0 no time left" >> "$OUT_DIR/.parts-$STAMP"; return
  fi
  echo "== part $name: budget ${b}s ==" | tee -a "$LOG"
  local before; before=$(ls "$OUT_DIR"/*.json 2>/dev/null | sort)
  timeout --signal=TERM --kill-after=10 $(( b + 45 )) "$PY" -m bench.cli "$cmd" --devices "$DEV" --budget-s "$b" \
    --out-dir "$OUT_DIR" --params "$PARAMS" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  local report; report=$(comm -13 <(echo "$before") <(ls "$OUT_DIR"/*.json 2>/dev/null | sort) | grep -v gpu-check | tail -1)
  [ -n "$report" ] || report=none
  echo "$name done $rc ${report:-none}" >> "$OUT_DIR/.parts-$STAMP"
}

"$PY" - <<'EOF' 2>&1 | tee -a "$LOG"
import platform, jax
print(f"python {platform.python_version()}, jax {jax.__version__}, devices: {jax.devices()}")
EOF
[ $DRY = 1 ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$LOG"

# every MJX backend installed here: MJX-JAX always, MuJoCo Warp where it imports and starts
WARP=$("$PY" -c 'from mimic_core.track.env import warp_status; ok, why = warp_status(); print(why if ok else "")' \
  2>/dev/null | tail -1 || echo "")
IMPL=jax; [ -n "$WARP" ] && IMPL=jax,warp
echo "MJX backends: $IMPL${WARP:+ ($WARP)}" | tee -a "$LOG"

TIMING=(--seconds "$SECONDS_" --repeats "$REPEATS")
part physics 200 throughput --envs "$ENVS_A" --measure "$MEASURE_A" --impl "$IMPL" "${TIMING[@]}" "${PROFILE_ARGS[@]}"
part train 200 throughput --envs "$ENVS_B" --measure "$MEASURE_B" --impl "$IMPL" "${TIMING[@]}" "${PROFILE_ARGS[@]}"
part time_to_target 600 time-to-target --seeds 0 "${TTT_ARGS[@]}" "${PROFILE_ARGS[@]}"

"$PY" - "$OUT_DIR" "$STAMP" "$START" "$BUDGET" "$DRY" "$WARP" <<'EOF'
import json, os, platform, sys, time
out_dir, stamp, start, budget, dry, warp = sys.argv[1:]
parts = []
for line in open(os.path.join(out_dir, f".parts-{stamp}")):
    name, status, rc, report = line.split(" ", 3)
    report = report.strip()
    entry = {"part": name, "status": status, "exit_code": int(rc),
             "report": os.path.basename(report) if report not in ("none", "no time left") else None}
    if status == "skipped":
        entry["reason"] = report
    elif entry["report"]:
        r = json.load(open(report))
        entry.update(complete=r.get("complete"), device_kind=r["hardware"]["device_kind"])
        if "results" in r:
            entry.update(stopped=r.get("stopped"), envs=[x["envs"] for x in r["results"]])
        else:
            entry.update(target=r["target"], summary=r["summary"],
                         runs=[{k: x[k] for k in ("seed", "reached", "stopped", "env_steps", "train_seconds")}
                               for x in r["runs"]])
        if int(rc) in (124, 137):
            entry["status"] = "killed at the hard limit (the report keeps the env counts before it)"
    parts.append(entry)
summary = {
    "check": "gpu-check", "created_utc": stamp, "dry_run": dry == "1", "budget_s": float(budget),
    "wall_s": round(time.time() - float(start), 1), "python": platform.python_version(), "parts": parts,
    "warp": {"installed": bool(warp), "version": warp or None,
             "note": None if warp else "MuJoCo Warp is not installed (or cannot start) here: only MJX-JAX was measured"},
}
path = os.path.join(out_dir, f"gpu-check-{stamp}.json")
with open(path + ".tmp", "w") as f:
    json.dump(summary, f, indent=2)
os.replace(path + ".tmp", path)
os.remove(os.path.join(out_dir, f".parts-{stamp}"))
print(json.dumps(summary, indent=2))
print(f"wrote {path}")
EOF
