"""``make mutate``: mutation testing (mutmut 3) of the modules whose mistakes give silent wrong answers.

Each module runs on its own, in ``build/mutate/<module>/`` (a copy of the tree, so runs never touch the work
tree and never share results), against a focused test selection, so one module takes minutes, not hours.
Prints killed / survived / score per module and the surviving mutants' names (``--show`` prints their
diffs). Not collected by pytest (the name does not start with ``test_``).

    python tests/mutation_scores.py                 # every module
    python tests/mutation_scores.py sms coupon      # some modules, by short name
    python tests/mutation_scores.py --show sms      # with the survivors' diffs

Scores and the explanation of each remaining survivor are in tests/MUTATION.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "build" / "mutate"
TREE = ("engine", "plugins", "service", "rules", "tests", "pyproject.toml")

EVALUATOR_TESTS = ["tests/engine/test_evaluators.py", "tests/engine/test_boundaries.py",
                   "tests/engine/test_compiled_in_use.py"]
#: short name → (module, focused tests)
MODULES: dict[str, tuple[str, list[str]]] = {
    "reference": ("engine/evaluators/reference.py", EVALUATOR_TESTS),
    "compiled": ("engine/evaluators/compiled.py", EVALUATOR_TESTS),
    "loader": ("engine/rulefiles/loader.py", ["tests/engine/test_rulefiles.py", "tests/engine/test_ruleset_version.py",
                                              "tests/engine/test_loader_errors.py"]),
    "sms": ("plugins/channels/sms.py", ["tests/plugins/channels/test_sms.py", "tests/plugins/channels/test_sms_limits.py",
                                        "tests/plugins/channels/test_sms_texts.py", "tests/engine/test_delivery.py",
                                        "tests/plugins/channels/test_reachability.py",
                                        "tests/plugins/channels/test_registration.py", "tests/engine/test_compliance.py"]),
    "coupon": ("plugins/incentives/coupon.py", ["tests/plugins/incentives/test_coupon.py",
                                                "tests/plugins/incentives/test_coupon_edges.py",
                                                "tests/plugins/incentives/test_coupon_texts.py"]),
    "pipeline": ("engine/pipeline.py", ["tests/engine/test_pipeline.py", "tests/engine/test_pipeline_mutants.py",
                                        "tests/engine/test_send_instant_facts.py", "tests/engine/test_run.py",
                                        "tests/engine/test_plugins_and_hooks.py", "tests/engine/test_compliance.py",
                                        "tests/plugins/incentives/test_coupon.py"]),
    "finish": ("engine/finish.py", ["tests/engine/test_pipeline.py", "tests/engine/test_finish_mutants.py",
                                    "tests/engine/test_pipeline_mutants.py", "tests/engine/test_run.py",
                                    "tests/engine/test_compliance.py", "tests/plugins/incentives/test_coupon.py",
                                    "tests/plugins/incentives/test_coupon_edges.py",
                                    "tests/engine/test_send_instant_facts.py", "tests/engine/test_scheduling_recurring.py",
                                    "tests/plugins/optimizers/test_frequency_cap.py",
                                    "tests/engine/test_plugins_and_hooks.py"]),
}
KILLED = {"killed", "timeout"}
# not ``python -m mutmut``: that imports mutmut.__main__ twice, and the second import fails
MUTMUT = [sys.executable, "-c", "import sys; from mutmut.__main__ import cli; sys.argv[0] = 'mutmut'; cli()"]
#: the mutmut release this driver is written for (its configuration keys and result files changed before)


def prepare(name: str, module: str, tests: list[str]) -> Path:
    """A fresh copy of the tree for one module's run, with mutmut's configuration in ``setup.cfg``."""
    work = WORK / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
    for item in TREE:
        src = ROOT / item
        (shutil.copytree(src, work / item, ignore=ignore) if src.is_dir() else shutil.copy(src, work / item))
    tests = [t for t in tests if (ROOT / t).exists()]
    lines = {"source_paths": ["engine", "plugins", "service"], "only_mutate": [module], "also_copy": ["rules"],
             "pytest_add_cli_args_test_selection": tests}
    # forkserver: mutmut's main process has run the whole selection (polars' thread pool is up), and a worker
    # forked from it deadlocks in its first polars query; that "timeout" would count as a kill
    # timeout_multiplier 8 (mutmut: 15): a mutant that loops (a code generator that never finds a free code)
    # is stopped after 8 times its tests' normal time instead of 15
    cfg = ("[mutmut]\nuse_git_change_detection = false\nprocess_isolation = forkserver\n"
           "timeout_multiplier = 8\n") + "".join(
        f"{key} =\n" + "".join(f"    {v}\n" for v in values) for key, values in lines.items())
    (work / "setup.cfg").write_text(cfg)
    return work


def run(name: str, children: int) -> dict[str, str]:
    """Run mutmut for one module; returns mutant name → status."""
    module, tests = MODULES[name]
    work = prepare(name, module, tests)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("HERALD_DIFF_EXAMPLES", "50")
    log = work / "mutmut.log"
    with log.open("w") as out:
        # no stdin: a mutant that makes the code read standard input must fail, not wait for a timeout
        subprocess.run([*MUTMUT, "run", "--max-children", str(children)], cwd=work, env=env,
                       stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, check=False)
    meta = work / "mutants" / (module + ".meta")
    if not meta.exists():
        sys.exit(f"{name}: mutmut produced no results; see {log}")
    from mutmut.stats import status_by_exit_code

    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {key: status_by_exit_code.get(code, f"exit {code}") for key, code in codes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", choices=[[], *MODULES], help="short names (default: all)")
    parser.add_argument("--children", type=int, default=2, help="parallel mutant runs (default 2)")
    parser.add_argument("--show", action="store_true", help="print each survivor's diff")
    args = parser.parse_args()
    rows = []
    for name in args.modules or list(MODULES):
        statuses = run(name, args.children)
        killed = sum(s in KILLED for s in statuses.values())
        timeouts = sum(s == "timeout" for s in statuses.values())
        survivors = sorted(k for k, s in statuses.items() if s not in KILLED)
        score = 100.0 * killed / len(statuses) if statuses else 100.0
        rows.append((name, killed, len(survivors), score))
        print(f"{name}: {killed} killed ({timeouts} by timeout), {len(survivors)} survived, {score:.1f} %", flush=True)
        for key in survivors:
            print(f"    {statuses[key]:>9}  {key}")
            if args.show:
                diff = subprocess.run([*MUTMUT, "show", key], cwd=WORK / name,
                                      capture_output=True, text=True, check=False).stdout
                print("        " + diff.replace("\n", "\n        "))
    print("\nmodule      killed  survived  score")
    for name, killed, survived, score in rows:
        print(f"{name:<10} {killed:>7} {survived:>9}  {score:5.1f} %")


if __name__ == "__main__":
    main()
