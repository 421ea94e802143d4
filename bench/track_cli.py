"""`mimic-bench train` and `mimic-bench evaluate`: the imitation (TRACK) stages."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from bench.common import clear_errors, params_option


@click.command("train")
@click.option("--ctrl-cost", "weight", required=True,
              help="The control-cost weight of this policy, as written in track.ctrl_cost_weights (e.g. 0.15).")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Policy folder (default data/policies/<weight>).")
@click.option("--metrics-csv", default=None, type=click.Path(dir_okay=False),
              help="Per-iteration metrics (default reports/training/<weight>.csv).")
@click.option("--checkpoints", "ckpt_root", default="data/checkpoints", show_default=True,
              type=click.Path(file_okay=False), help="Checkpoints (resumed when the settings match).")
@click.option("--registered", default=None, help="Registered clips: a folder or a glob (default track.registered_dir).")
@params_option
@clear_errors
def train_cmd(weight, out_dir, metrics_csv, ckpt_root, registered, params_path):
    """Train one policy of the control-cost sweep with PPO in MJX (the `train` stage)."""
    import jax

    from mimic_core.params import load_params
    from mimic_core.track.stage import run_train

    params = load_params(params_path)
    out_dir = out_dir or f"data/policies/{weight}"
    metrics_csv = metrics_csv or f"reports/training/{weight}.csv"
    click.echo(f"training lambda_ctrl={weight} on {jax.device_count()} {jax.devices()[0].platform} device(s)",
               err=True)
    bar = None

    def progress(row):
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=None, unit=" it", file=sys.stderr, dynamic_ncols=True, initial=row["iteration"] - 1)
        bar.update(1)
        bar.set_postfix_str(f"steps {row['env_steps']:,} | {row['steps_per_s']:,.0f}/s | reward {row['reward']:.3f} "
                            f"(joint {row['reward_joint']:.3f} ctrl {row['reward_ctrl']:.3f} "
                            f"energy {row['reward_energy']:.3f}) | joint error {row['joint_error_deg']:.2f} deg")

    meta = run_train(params, weight, Path(out_dir), Path(metrics_csv), Path(ckpt_root), progress, registered)
    if bar is not None:
        bar.close()
    f = meta["final"]
    click.echo(f"policy lambda_ctrl={weight}: {meta['env_steps']:,} env steps in {f.get('seconds', 0):.0f} s "
               f"({f.get('steps_per_s', 0):,.0f}/s); last joint error {f.get('joint_error_deg', float('nan')):.2f} "
               f"deg -> {out_dir}")


@click.command("evaluate")
@click.option("--policies", "policies_dir", default="data/policies", show_default=True,
              type=click.Path(file_okay=False), help="Stage mode: one folder per weight.")
@click.option("--out", "out_dir", default="data/rollouts", show_default=True, type=click.Path(file_okay=False))
@click.option("--metrics", "metrics_path", default="reports/metrics/tracking.json", show_default=True,
              type=click.Path(dir_okay=False))
@click.option("--policy", "policy_dir", default=None, type=click.Path(file_okay=False),
              help="Evaluate one policy (e.g. on other clips) instead of the whole sweep.")
@click.option("--registered", default=None,
              help="Registered clips: a folder or a glob (default track.registered_dir).")
@click.option("--fps", type=float, default=None, help="Frame rate of clips that do not store it.")
@click.option("--label", type=click.Choice(["real", "synthetic"]), default=None, help="What the clips are.")
@params_option
@clear_errors
def evaluate_cmd(policies_dir, out_dir, metrics_path, policy_dir, registered, fps, label, params_path):
    """Deterministic rollouts of each policy over every clip, and tracking metrics (the `evaluate` stage)."""
    from mimic_core.io import write_json
    from mimic_core.params import load_params
    from mimic_core.track.stage import evaluate_policy, run_evaluate

    params = load_params(params_path)
    if policy_dir is None:
        run_evaluate(params, Path(policies_dir), Path(out_dir), Path(metrics_path), registered, click.echo)
        return
    from mimic_core.track.evaluate import write_rollout

    weight, metrics, rec, kp, clips, fm = evaluate_policy(params, Path(policy_dir), registered, label, fps=fps)
    write_json(metrics_path, {weight: metrics})
    if out_dir != "data/rollouts":
        write_rollout(Path(out_dir) / f"{weight}.h5", rec, kp, clips, fm, weight, metrics["data"])
    e = metrics["keypoint_error_mm"]
    click.echo(f"{len(clips.clip_names)} clips ({metrics['data']}), policy lambda_ctrl {weight}: keypoint error "
               f"mean {e['mean']:.3f} mm ({', '.join(f'{k} {v:.3f}' for k, v in e['per_keypoint'].items())}), "
               f"joint error {metrics['joint_error_deg']:.2f} deg")
