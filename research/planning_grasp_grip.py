"""Would the planner grasp if it were told the grip? A control for grasp through sub-goals (Fetch, issue 20).

    python research/planning_grasp_grip.py --model LABEL=WM_DIR --tasks grasp_subgoal3,grasp_subgoal --episodes 20 \\
        --samples 100 --top-k 10 --iterations 3 --warm-start hold_gripper --out runs/planning/grip_control

On `grasp_subgoal` and `grasp_subgoal3` (eval/planning.py) the planner on the oblique model brings the gripper down
around the block by the first switch and moves it up in the last stage, but its gripper command stays within the
CEM's noise (never a squeeze), so the fingers are open, or closed on nothing, when it lifts: the model's energy
hardly tells the grip (research/planning_gripper.py). This control runs the planners and behaviour-cloning policies
of `scripts/eval_planning.py` (its arguments: models, policies, draws, CEM settings, seeds, schedule) with one
change: the gripper command executed at each step is the oracle's for the current stage (its last waypoint's: open
while going down around the block, squeeze once there and while lifting), and a planner's warm start holds that
command. The motion stays the method's. It says whether the grip is the only thing missing (success near the
oracle's) or the motion fails too (the fingers not around the block at the squeeze, or no lift), for the planner
and for BC alike. A control that locates the failure, not a method: the grip is read from the task's script, which
a method from image goals does not have.

Writes `episodes.jsonl` (eval_planning's records, method `LABEL_scripted_grip`), `summary.json` and `table.md` to
`--out` (rerunning overwrites).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
from vjepa_vlm.eval.planning import (
    FRAME_SKIP,
    BCPolicy,
    PlannerPolicy,
    Policy,
    check_tasks,
    make_setup,
    resolve_camera,
    run_episode,
)
from vjepa_vlm.scripts import eval_planning
from vjepa_vlm.scripts.eval_planning import simulator

GRIPPER = 3


class ScriptedGrip(Policy):
    """A method whose executed gripper command is the oracle's for the current stage; motion as the method acts."""

    def __init__(self, method: Policy):
        self.method, self.name = method, f"{method.name}_scripted_grip"

    def reset(self, setup) -> None:
        super().reset(setup)
        self.method.reset(setup)

    def act(self, env, frame, step, goal_index):
        action = self.method.act(env, frame, step, goal_index).copy()
        action[GRIPPER] = self.setup.phases[goal_index].waypoints[-1].gripper * FRAME_SKIP
        if isinstance(self.method, PlannerPolicy):
            # The next step's hold_gripper warm start starts at the grip executed, as for any planner.
            self.method.executed = torch.from_numpy(action)
        return action


def main(argv=None) -> dict:
    args = eval_planning.parse_args(argv)
    tasks = check_tasks(args.tasks.split(","))
    unsplit = [task.name for task in tasks if task.base is None]
    if unsplit:
        raise ValueError(f"tasks {unsplit} have no stages to read a grip from; give split tasks (grasp_subgoal, ...)")
    cem, _ = eval_planning.planner_config(args)
    policies, cameras = eval_planning.build_policies(args, cem)
    methods = [ScriptedGrip(policy) for policy in policies.values() if isinstance(policy, (PlannerPolicy, BCPolicy))]
    if not methods:
        raise ValueError("no learned method: give a world model with --model LABEL=PATH or a policy with --bc")
    camera = resolve_camera(args.camera, cameras)
    settings = {"samples": cem.samples, "top_k": cem.top_k, "iterations": cem.iterations, "horizon": cem.horizon,
                "seed": args.seed, "camera": camera, "warm_start": cem.warm_start, "grip": "the oracle's per stage"}
    env, records, started = simulator(args.size, "default", camera), [], time.time()
    for task in tasks:
        for index in range(args.first_episode, args.first_episode + args.episodes):
            setup = make_setup(env, task, args.seed, index, args.frame_skip)
            for method in methods:
                record = run_episode(env, setup, method, args.frame_skip)
                planned = isinstance(method.method, PlannerPolicy)
                records.append({**record, "variant": "default", "camera": camera, "settings": settings if planned else None})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / eval_planning.EPISODES_FILE).write_text("".join(json.dumps(record) + "\n" for record in records))
    summary = eval_planning.summarize(records)
    result = {"summary": summary, "settings": settings, "seconds": round(time.time() - started, 1)}
    (out / "summary.json").write_text(json.dumps(result, indent=1))
    (out / "table.md").write_text(eval_planning.markdown_table(summary))
    print(eval_planning.markdown_table(summary))
    return result


if __name__ == "__main__":
    os.environ.setdefault("MUJOCO_GL", "egl")
    main()
