"""The one console entry point: ``algoperf <command> [--flags]``.

Each command lives in its own module that defines its absl flags at import time and a
``main(argv)``. Only the chosen command's module is imported, so commands never see (or
clash with) each other's flags, and ``algoperf run`` keeps AlgoPerf's flag names.
"""
import importlib
import sys

from absl import app

# command -> (module, one-line help). Modules are imported lazily.
COMMANDS = {
    "run": ("algoperf.commands.run", "run a submission on a workload (AlgoPerf flags)"),
    "check": ("algoperf.commands.check",
              "smoke-test a submission: a few steps, an eval, checkpoint and resume per workload"),
    "score": ("scoring.cli", "score a folder of logged runs: tables, profiles, plot"),
    "data": ("workloads.data_cli", "prepare a dataset once into the on-disk form loaders read"),
    "benchmark": ("algoperf.commands.benchmark",
                  "the small benchmark: baselines on the _tiny tier, then scores"),
    "suite": ("algoperf.commands.suite",
              "submissions x workloads x studies x trials in parallel (or on Slurm), then scores"),
}


def _usage() -> str:
    lines = ["usage: algoperf <command> [--flags]   (algoperf <command> --helpfull for flags)", ""]
    lines += [f"  {name:<10} {helptext}" for name, (_, helptext) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv=None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_usage())
        sys.exit(0 if len(argv) >= 2 else 2)
    command = argv[1]
    if command not in COMMANDS:
        print(f"algoperf: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        sys.exit(2)
    module = importlib.import_module(COMMANDS[command][0])
    app.run(module.main, argv=[f"algoperf {command}"] + argv[2:])


if __name__ == "__main__":
    main()
