"""The command-line programs of vjepa-vlm, one module each.

Each runs three ways: as a console command once the package is installed (`[project.scripts]` in
pyproject.toml, e.g. `vjepa-pipeline`), as `python scripts/<module>.py` from a checkout, and as
`vjepa_vlm.scripts.<module>.main(argv)` from Python, where `main` returns its results (a dict of accuracies,
a summary) for tests and callers.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def command(module: str) -> Callable[[], int]:
    """A console command running `module.main(sys.argv[1:])`.

    The console-script wrapper hands a command's return value to `sys.exit`, which prints anything but an int
    or None and exits with status 1; `main` returning its results would make every successful run a failure, so
    only an int (an explicit status) is passed on. The module is imported when the command runs, so one
    command does not pay for another's imports (lmms-eval, scikit-learn).
    """

    def run() -> int:
        status = importlib.import_module(module).main(sys.argv[1:])
        return status if isinstance(status, int) else 0

    run.program = module
    return run


# Named after the commands: a bare program name (`demo`) would be replaced by the submodule of that name as soon
# as it is imported.
vjepa_convert = command("vjepa_vlm.scripts.convert_checkpoint")
vjepa_make_world = command("vjepa_vlm.scripts.make_synthetic_data")
vjepa_baselines = command("vjepa_vlm.scripts.synthetic_baselines")
vjepa_pretrain = command("vjepa_vlm.train.pretrain")
vjepa_probe = command("vjepa_vlm.scripts.run_probe")
vjepa_anticipation = command("vjepa_vlm.scripts.run_anticipation")
vjepa_eval = command("vjepa_vlm.scripts.eval_vlm")
vjepa_pipeline = command("vjepa_vlm.scripts.vlm_pipeline")
vjepa_demo = command("vjepa_vlm.scripts.demo")
vjepa_record_play = command("vjepa_vlm.scripts.record_play")
vjepa_train_ac = command("vjepa_vlm.train.train_ac")
vjepa_eval_world_model = command("vjepa_vlm.scripts.eval_world_model")
vjepa_eval_planning = command("vjepa_vlm.scripts.eval_planning")
vjepa_curate = command("vjepa_vlm.scripts.curate")
